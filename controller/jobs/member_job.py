"""Build the Job of a Job-model member: Task → Functions → containers, with Stash's variables
substituted. Every step but the last is an init container, so they run in order. A backup Job
(``stash-backup-<session>-<index>``) works for a BackupSession; a restore Job
(``stash-restore-<invoker>-<index>``) for a RestoreSession or RestoreBatch, which then is both
``session`` and ``invoker``, and its Functions also get the host's rule (``RESTORE_PATHS``,
``RESTORE_SNAPSHOTS``, ``SOURCE_HOSTNAME``, ``INCLUDE_PATTERNS``, ``EXCLUDE_PATTERNS``).

``build_job`` is pure: it gets the session, the invoker member, the Repository, the Task and its
Functions (``job_inputs`` gathers them from the caches); problems (a missing Task or Function,
an unset variable) raise ``JobError`` naming them.
"""

from __future__ import annotations

from dataclasses import dataclass

from api import constants as c
from api.appbinding import (
    APPBINDING_KIND,
    AppBindingError,
    connection_variables,
    credentials_env,
)
from api.backup import BackupTarget
from api.hosts import single_host
from api.naming import (
    JOB_NAME_MAX,
    backup_job_name,
    backup_service_account,
    fit,
    label_value,
    restore_job_name,
    restore_service_account,
)
from api.objects import JSON
from api.repository import Repository
from api.restore import Rule
from api.substitution import SubstitutionError, substitute, substitute_all
from api.views import Obj, items, part, text
from controller.invokers.evaluation import DEFAULT_PVC_RESTORE_TASK, MemberView, RestoreView
from controller.invokers.trigger import invoker_labels, owner_reference
from controller.jobs import claims
from controller.jobs.builtin_tasks import DEFAULT_MOUNT_PATH
from controller.runtime.caches import FUNCTIONS, REPOSITORIES, TASKS, Caches
from engine.restore import RestoreError, rule_for_host
from kube import KubeError, NotFound
from kube.types import APPBINDINGS
from pods.hardening import pod_settings, with_image_group
from pods.volumes import local_volume

SESSION_LABEL = f"{c.GROUP}/backup-session"
MEMBER_LABEL = f"{c.GROUP}/member-index"
INTERIM_VOLUME = "stash-interim-volume"
CACHE_DIR = f"{c.TMP_DIR_MOUNT_PATH}/restic-cache"  # in the Job's tmp-dir emptyDir
JOB_CONTAINER_SETTING_KEYS = ("resources", "securityContext", "env", "envFrom")
INTERIM_META = ("labels", "annotations")  # what of the interim volume template's metadata is kept


class JobError(ValueError):
    """The member's Job cannot be built; the message says which Task/Function/variable."""


@dataclass(frozen=True)
class JobInputs:
    session: JSON  # a BackupSession; for a restore, the RestoreSession / RestoreBatch itself
    invoker: JSON
    member: MemberView | RestoreView
    repository: Repository
    task: JSON
    functions: dict[str, JSON]
    image: str
    ordinal: int | None = None  # restoring into new PVCs: the ordinal whose claims this Job fills
    # an AppBinding target: where its database is (``api.appbinding.connection_variables``)
    app_variables: dict[str, str] | None = None

    @property
    def restoring(self) -> bool:
        return isinstance(self.member, RestoreView)

    @property
    def job_name(self) -> str:
        if self.restoring:
            return restore_job_name(
                self.invoker["metadata"]["name"], self.member.index, self.ordinal
            )
        return backup_job_name(self.session["metadata"]["name"], self.member.index)

    @property
    def service_account(self) -> str:
        name = self.invoker["metadata"]["name"]
        return restore_service_account(name) if self.restoring else backup_service_account(name)


def job_inputs(
    caches: Caches,
    session: JSON,
    invoker: JSON,
    member: MemberView | RestoreView,
    *,
    image: str,
    ordinal: int | None = None,
) -> JobInputs:
    """What ``build_job`` needs for one member, from the caches: the invoker's Repository, the
    member's Task and its Functions (restoring into new PVCs with ``pvc-restore``: its restore
    into every claim); a JobError names what is missing."""
    repo_ref = Obj(invoker).spec.repository
    repo_obj = caches.get(
        REPOSITORIES, repo_ref.namespace_or(Obj(session).namespace), repo_ref.name
    )
    if repo_obj is None:
        raise JobError(f"Repository {repo_ref.name!r} not found")
    task = caches.get(TASKS, "", member.task or "")
    if task is None:
        raise JobError(f"Task {member.task} not found")
    if (
        isinstance(member, RestoreView)
        and member.claims
        and member.task == DEFAULT_PVC_RESTORE_TASK
    ):
        task = claims.restore_task(member)
    functions = {
        name: fn
        for step in Obj(task).spec.steps
        if (name := text(step, "name")) and (fn := caches.get(FUNCTIONS, "", name)) is not None
    }
    return JobInputs(
        session,
        invoker,
        member,
        Repository.from_dict(repo_obj),
        task,
        functions,
        image,
        ordinal,
        _app_variables(caches, session, member),
    )


def _app_variables(
    caches: Caches, session: JSON, member: MemberView | RestoreView
) -> dict[str, str] | None:
    """What an AppBinding target says of its database, read from the API server when its Job
    is made (its CRD is optional: no cache is counted on). Its credentials Secret is read by
    the Job's own pod, so the binding must be in the Job's namespace."""
    if member.kind != APPBINDING_KIND:
        return None
    namespace = Obj(session).namespace
    if member.target_namespace != namespace:
        raise JobError(
            f"AppBinding {member.target_namespace}/{member.name}: an AppBinding target must be "
            f"in the invoker's namespace ({namespace}), where the Job reads its Secret"
        )
    try:
        binding = caches.client.get(APPBINDINGS, member.name, namespace)
    except NotFound:
        raise JobError(f"AppBinding {member.name} not found") from None
    except KubeError as exc:
        raise JobError(f"AppBinding {member.name}: {exc}") from None
    try:
        return connection_variables(binding)
    except AppBindingError as exc:
        raise JobError(str(exc)) from None


def _restore_variables(view: RestoreView, invoker: JSON, hostname: str) -> dict[str, str]:
    """The host's rule, as Stash passes it to restore Functions (empty: the newest snapshot)."""
    target = view.member.target
    rules = target.rules if target and target.rules else None
    if rules is None and not view.batch:
        rules = [Rule.model_validate(r) for r in items(Obj(invoker).spec.raw, "rules")]
    try:
        rule = rule_for_host(hostname, rules)
    except RestoreError:
        rule = None
    return {
        "RESTORE_SESSION": Obj(invoker).name,
        "RESTORE_PATHS": ",".join(rule.paths) if rule else "",
        "RESTORE_SNAPSHOTS": ",".join(rule.snapshots) if rule else "",
        "SOURCE_HOSTNAME": rule.source_host if rule else hostname,
        "INCLUDE_PATTERNS": ",".join(rule.include) if rule else "",
        "EXCLUDE_PATTERNS": ",".join(rule.exclude) if rule else "",
    }


def _hostname(view: MemberView | RestoreView, ordinal: int | None) -> str:
    if isinstance(view, RestoreView) and ordinal is not None:
        return claims.hostname(view, ordinal)
    target = view.member.target
    return single_host(target.alias if target else None)


def variables(inputs: JobInputs) -> dict[str, str]:
    """The variables Stash provides to Functions, for one member of one session."""
    view, repo = inputs.member, inputs.repository
    backend = repo.spec.backend
    provider = backend.kind()
    store = getattr(backend, provider)
    invoker = Obj(inputs.invoker)
    retention = invoker.spec.retention
    target = view.member.target
    cache = not (view.member.temp_dir and view.member.temp_dir.disable_caching)
    mounts = (target.volume_mounts or []) if target else []
    # The target volume is mounted where the member's volumeMounts say, else /stash-data.
    mount_path = mounts[0].mount_path if mounts else DEFAULT_MOUNT_PATH
    paths = target.paths if isinstance(target, BackupTarget) and target.paths else None
    excludes = target.exclude if isinstance(target, BackupTarget) and target.exclude else []
    values = {
        "NAMESPACE": Obj(inputs.session).namespace,
        "INVOKER_KIND": invoker.kind,
        "INVOKER_NAME": invoker.name,
        "TARGET_API_VERSION": text(view.ref, "apiVersion"),
        "TARGET_KIND": view.kind,
        "TARGET_NAME": view.name,
        "TARGET_NAMESPACE": view.target_namespace,
        "TARGET_PATHS": ",".join(paths) if paths else mount_path,
        "EXCLUDE_PATTERNS": ",".join(excludes),
        "TARGET_MOUNT_PATH": mount_path,
        "HOSTNAME": _hostname(view, inputs.ordinal),
        "REPOSITORY_NAME": repo.metadata.name or "",
        "REPOSITORY_NAMESPACE": repo.metadata.namespace or "",
        "REPOSITORY_PROVIDER": provider,
        "REPOSITORY_SECRET_NAME": backend.storage_secret_name or "",
        "REPOSITORY_BUCKET": str(
            getattr(store, "bucket", None) or getattr(store, "container", None) or ""
        ),
        "REPOSITORY_PREFIX": str(
            getattr(store, "prefix", None) or getattr(store, "sub_path", None) or ""
        ),
        "REPOSITORY_ENDPOINT": str(
            getattr(store, "endpoint", None) or getattr(store, "url", None) or ""
        ),
        "REPOSITORY_REGION": str(getattr(store, "region", None) or ""),
        "RETENTION_POLICY_NAME": retention.name,
        "RETENTION_PRUNE": str(retention.prune).lower(),
        "RETENTION_DRY_RUN": str(retention.dry_run).lower(),
        "RETENTION_KEEP_TAGS": ",".join(retention.keep_tags),
        # Stash's Functions pass it on; here the operator alone pushes metrics, from the
        # status the steps write (docs/security.md), so a Function gets nothing to push to.
        "PROMETHEUS_PUSHGATEWAY_URL": "",
        "ENABLE_CACHE": str(cache).lower(),
        "CACHE_DIR": CACHE_DIR if cache else "",
    }
    for key in ("Last", "Hourly", "Daily", "Weekly", "Monthly", "Yearly"):
        values[f"RETENTION_KEEP_{key.upper()}"] = str(retention.keep(key))
    # where a database target listens: its AppBinding's, or (a Service) <name>.<namespace>.svc
    values["TARGET_APP_HOST"] = f"{view.name}.{view.target_namespace}.svc"
    values.update(inputs.app_variables or {})
    if isinstance(view, RestoreView):
        values.update(_restore_variables(view, inputs.invoker, values["HOSTNAME"]))
        if inputs.ordinal is not None:
            values[claims.POD_ORDINAL] = str(inputs.ordinal)
    else:
        values["BACKUP_SESSION"] = Obj(inputs.session).name
    return values


def _steps(task: JSON) -> list[JSON]:
    """The Task's steps, each naming its Function; a JobError saying which is wrong."""
    name = Obj(task).name
    steps = Obj(task).spec.steps
    if not steps:
        raise JobError(f"Task {name} has no steps")
    for index, step in enumerate(steps):
        if not text(step, "name"):
            raise JobError(
                f"Task {name}: spec.steps[{index}].name: the Function to run is required"
            )
    return steps


def _attach_claims(pod_spec: JSON, inputs: JobInputs) -> None:
    """Restoring into new PVCs: the ordinal's claims mounted where the member says."""
    view = inputs.member
    if not isinstance(view, RestoreView) or inputs.ordinal is None:
        return
    target = view.member.target
    mounts = [m.to_dict() for m in (target.volume_mounts or [])] if target else []
    made = claims.claims_for(view, inputs.ordinal, inputs.invoker)
    claims.attach(pod_spec, claims.volumes(made, inputs.ordinal), mounts, inputs.ordinal)


def _with_settings(container: JSON, settings: JSON) -> JSON:
    """The member's ``runtimeSettings.container`` on a step's container: env added to the
    step's, the rest as given (a security context naming the image's user gets its group)."""
    for key in JOB_CONTAINER_SETTING_KEYS:
        if key not in settings:
            continue
        if key == "env":
            container["env"] = container["env"] + settings["env"]
        elif key == "securityContext":
            container[key] = with_image_group(settings[key])
        else:
            container[key] = settings[key]
    return container


def _container_name(function: str, index: int, taken: set[str]) -> str:
    """A step's container: a Function's name is an object name (dots, up to 253 characters), a
    container's a DNS label, so it is shortened the way Kubernetes names are, unique in the
    pod."""
    name = fit(function, JOB_NAME_MAX)
    return name if name not in taken else fit(f"{function}-{index}", JOB_NAME_MAX)


def build_job(inputs: JobInputs) -> JSON:
    """The member's Job: one container per step of its Task (every step but the last an init
    container, so they run in order), the Task's volumes, the repository's and the scratch
    ones, under the member's runtime settings."""
    session, view = inputs.session, inputs.member
    base = variables(inputs)
    containers: list[JSON] = []
    for index, step in enumerate(_steps(inputs.task)):
        containers.append(_step_container(inputs, base, index, step, containers))
    volumes = _volumes(inputs, base, containers)
    settings = (view.member.runtime_settings.pod or {}) if view.member.runtime_settings else {}
    labels = _labels(inputs)
    pod_spec: JSON = {
        "restartPolicy": "Never",
        "serviceAccountName": inputs.service_account,
        **pod_settings(settings),
        "initContainers": containers[:-1],
        "containers": containers[-1:],
        "volumes": volumes,
    }
    _attach_claims(pod_spec, inputs)
    if not pod_spec["initContainers"]:
        del pod_spec["initContainers"]
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {
            "name": inputs.job_name,
            "namespace": session["metadata"]["namespace"],
            "labels": labels,
            "ownerReferences": [owner_reference(session)],
        },
        "spec": {
            "backoffLimit": 0,
            "template": {"metadata": {"labels": labels}, "spec": pod_spec},
        },
    }


def _step_container(
    inputs: JobInputs, base: dict[str, str], index: int, step: JSON, before: list[JSON]
) -> JSON:
    """Step ``index``'s container: its Function with the variables substituted."""
    view, task_name = inputs.member, inputs.task["metadata"]["name"]
    function = inputs.functions.get(step["name"])
    if function is None:
        raise JobError(f"Function {step['name']} (step {index} of Task {task_name}) not found")
    try:  # a Task's step params may use Stash's variables themselves
        step_params = {p["name"]: substitute(str(p["value"]), base) for p in items(step, "params")}
    except SubstitutionError as exc:
        raise JobError(f"Task {task_name}: {exc}") from None
    member_params = (
        {p.name: p.value for p in (view.member.task.params or [])} if view.member.task else {}
    )
    # A member's task params override the Task's step params; neither overrides what the
    # operator sets (validation.OPERATOR_VARIABLES: an invoker naming one is Invalid).
    step_vars = {**step_params, **member_params, **base}
    spec = part(function, "spec")
    try:
        resolved = substitute_all(
            {
                k: spec[k]
                for k in ("image", "command", "args", "workingDir", "ports", "volumeMounts")
                if k in spec
            },
            step_vars,
        )
    except SubstitutionError as exc:
        raise JobError(f"Function {step['name']}: {exc}") from None
    name = _container_name(step["name"], index, {c_["name"] for c_ in before})
    container: JSON = {
        "name": name,
        **resolved,
        "volumeMounts": [
            {"name": c.TMP_DIR_VOLUME, "mountPath": c.TMP_DIR_MOUNT_PATH},
            *items(resolved, "volumeMounts"),
        ],
        "env": [
            {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
            {"name": "NODE_NAME", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}},
            # where the step runs: a member's exec hook naming this container runs here
            {"name": "STASH_CONTAINER", "value": name},
            *_credentials(inputs),
        ],
    }
    settings = (
        (view.member.runtime_settings.container or {}) if view.member.runtime_settings else {}
    )
    return _with_settings(container, settings)


def _credentials(inputs: JobInputs) -> list[JSON]:
    """An AppBinding target's credentials, read from its Secret by the kubelet (the operator
    never sees them)."""
    secret = (inputs.app_variables or {}).get("TARGET_APP_SECRET")
    return credentials_env(secret) if secret else []


def _volumes(inputs: JobInputs, base: dict[str, str], containers: list[JSON]) -> list[JSON]:
    """The Task's volumes, the local repository's (mounted in every step, as in the sidecar),
    the scratch ``tmp-dir`` and the member's interim volume."""
    view = inputs.member
    try:
        volumes: list[JSON] = substitute_all(Obj(inputs.task).spec.volumes, base)
    except SubstitutionError as exc:
        raise JobError(f"Task {inputs.task['metadata']['name']}: {exc}") from None
    local = local_volume(inputs.repository)
    if local is not None:
        local_source, local_mount = local
        volumes.append(local_source)
        for container in containers:
            container["volumeMounts"].append(dict(local_mount))
    temp = view.member.temp_dir.to_dict() if view.member.temp_dir else {}
    volumes.append(
        {
            "name": c.TMP_DIR_VOLUME,
            "emptyDir": {k: temp[k] for k in ("medium", "sizeLimit") if temp.get(k) is not None},
        }
    )
    template = view.member.interim_volume_template
    if template:
        meta = {k: v for k, v in part(template, "metadata").items() if k in INTERIM_META}
        claim = {"metadata": meta, "spec": part(template, "spec")}
        volumes.append({"name": INTERIM_VOLUME, "ephemeral": {"volumeClaimTemplate": claim}})
    return volumes


def _labels(inputs: JobInputs) -> JSON:
    labels: JSON = {**invoker_labels(inputs.invoker), MEMBER_LABEL: str(inputs.member.index)}
    if not inputs.restoring:
        labels[SESSION_LABEL] = label_value(inputs.session["metadata"]["name"])
    return labels
