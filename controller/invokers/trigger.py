"""The objects that trigger an invoker's sessions: CronJob ``stash-trigger-<invoker>`` and the
service account it runs as, allowed to create BackupSessions and nothing else; and the
identities its backups run as (backup Jobs' service account, the sidecars' RoleBinding), and
the one a restore invoker's restore Jobs run as.

All are owned by the invoker (deleted with it), built here as pure functions.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from api import constants as c
from api.naming import (
    BACKUP_JOB_CLUSTER_ROLE,
    RESTORE_INIT_CLUSTER_ROLE,
    RESTORE_JOB_CLUSTER_ROLE,
    SIDECAR_CLUSTER_ROLE,
    backup_service_account,
    cronjob_name,
    invoker_service_account,
    label_value,
    named_access,
    repository_init_lease,
    restore_init_binding,
    restore_service_account,
    restore_turn_lease,
    sidecar_lease,
    sidecar_role_binding,
)
from api.objects import JSON
from api.repository import Repository
from api.views import Obj, text
from pods.hardening import HARDENED_CONTAINER, RESTRICTED_POD, field_env

TRIGGER_CONTAINER = "stash-trigger"


def owner_reference(obj: JSON, *, controller: bool = True) -> JSON:
    return {
        "apiVersion": obj["apiVersion"],
        "kind": obj["kind"],
        "name": obj["metadata"]["name"],
        "uid": obj["metadata"]["uid"],
        "controller": controller,
        "blockOwnerDeletion": False,
    }


def invoker_labels(invoker: JSON) -> dict[str, str]:
    """The labels of everything the operator makes for an invoker: who manages it, whose."""
    return {
        **c.MANAGED_BY,
        c.INVOKER_TYPE_LABEL: invoker["kind"],
        c.INVOKER_NAME_LABEL: label_value(invoker["metadata"]["name"]),
    }


def _meta(invoker: JSON, name: str) -> JSON:
    return {
        "name": name,
        "namespace": invoker["metadata"]["namespace"],
        "labels": invoker_labels(invoker),
        "ownerReferences": [owner_reference(invoker)],
    }


def service_account_name(invoker: JSON) -> str:
    """The invoker's own ``runtimeSettings.pod.serviceAccountName``, else ours."""
    pod = Obj(invoker).spec.runtime_pod
    return text(pod, "serviceAccountName") or invoker_service_account(Obj(invoker).name)


def sidecar_binding(
    invoker: JSON,
    workloads: Iterable[tuple[str, str, str]],
    repository: Repository | None = None,
) -> list[JSON]:
    """What the sidecars of the invoker's sidecar-model workloads (``workloads``: kind, name,
    the service account their pods run as) may do, in the invoker's namespace only: the
    ClusterRole ``stash-sidecar`` (manifests/rbac/sidecar.yaml: their sessions, nothing named)
    by a RoleBinding, and by name their Repository, its Secret, their Leases and their own
    workloads (``named_access_objects``). The grant goes with the invoker (owner reference)."""
    workloads = list(workloads)
    accounts = [account for _, _, account in workloads]
    name = invoker["metadata"]["name"]
    binding = _binding(
        invoker, sidecar_role_binding(name), accounts, cluster_role=SIDECAR_CLUSTER_ROLE
    )
    leases = [sidecar_lease(kind, target) for kind, target, _ in workloads]
    namespace = invoker["metadata"]["namespace"]
    if repository is not None and (repository.metadata.namespace or namespace) == namespace:
        leases.append(repository_init_lease(repository.metadata.name or ""))
    named = named_access_objects(
        invoker,
        accounts,
        repository,
        leases=leases,
        workloads=[(kind, target) for kind, target, _ in workloads],
        repository_status=True,
    )
    return [binding, *named]


def rbac_objects(invoker: JSON) -> list[JSON]:
    """For the trigger CronJob: ServiceAccount, Role (create BackupSessions, nothing else) and
    RoleBinding. For backup Jobs: a ServiceAccount bound in this namespace to the ClusterRole
    ``stash-backup-job`` (manifests/rbac/backup-job.yaml)."""
    name = invoker_service_account(invoker["metadata"]["name"])
    objects: list[JSON] = []
    if service_account_name(invoker) == name:
        objects.append(
            {
                "apiVersion": "v1",
                "kind": "ServiceAccount",
                "metadata": _meta(invoker, name),
                "automountServiceAccountToken": True,
            }
        )
    objects.append(
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "Role",
            "metadata": _meta(invoker, name),
            "rules": [
                {"apiGroups": [c.GROUP], "resources": ["backupsessions"], "verbs": ["create"]}
            ],
        }
    )
    objects.append(_binding(invoker, name, [service_account_name(invoker)]))
    objects += _job_identity(invoker, backup_service_account, BACKUP_JOB_CLUSTER_ROLE)
    return objects


def restore_rbac_objects(
    invoker: JSON,
    workloads: Iterable[tuple[str, str, str]] = (),
    repository: Repository | None = None,
) -> list[JSON]:
    """For a RestoreSession's or RestoreBatch's restore Jobs: a ServiceAccount bound in the
    invoker's namespace to the ClusterRole ``stash-restore-job``
    (manifests/rbac/restore-job.yaml). The service accounts the restored workloads' pods run as
    (``workloads``: kind, name, account) get, for their stash-init, the ClusterRole
    ``stash-restore-init`` (nothing named) and by name only the Repository, its Secret and their
    turn's Lease (``named_access_objects``): never every Secret of the namespace."""
    objects = _job_identity(invoker, restore_service_account, RESTORE_JOB_CLUSTER_ROLE)
    workloads = list(workloads)
    accounts = sorted({account for _, _, account in workloads})
    if not accounts:
        return objects
    binding = _binding(
        invoker,
        restore_init_binding(invoker["kind"], invoker["metadata"]["name"]),
        accounts,
        cluster_role=RESTORE_INIT_CLUSTER_ROLE,
    )
    leases = [restore_turn_lease(kind, target) for kind, target, _ in workloads]
    return [
        *objects,
        binding,
        *named_access_objects(invoker, accounts, repository, leases=leases, workloads=()),
    ]


def named_access_objects(
    invoker: JSON,
    accounts: Iterable[str],
    repository: Repository | None,
    *,
    leases: Iterable[str],
    workloads: Iterable[tuple[str, str]],
    repository_status: bool = False,
) -> list[JSON]:
    """A Role and RoleBinding in the invoker's namespace that let ``accounts`` (the service
    accounts of the pods that carry out the invoker in its workloads) reach by name what their
    container needs there and nothing else of its kind: the Repository (and with
    ``repository_status`` its status) and its storage Secret when they are in this namespace
    (another namespace's come from its grant), ``leases``, and ``workloads`` (kind, name)."""
    namespace = invoker["metadata"]["namespace"]
    rules: list[JSON] = []
    if repository is not None and (repository.metadata.namespace or namespace) == namespace:
        repo = [repository.metadata.name or ""]
        rules.append(_rule(c.GROUP, "repositories", ["get"], repo))
        if repository_status:
            rules.append(_rule(c.GROUP, "repositories/status", ["get", "patch", "update"], repo))
        if repository.spec.backend.storage_secret_name:
            secret = [repository.spec.backend.storage_secret_name]
            rules.append(_rule("", "secrets", ["get"], secret))
    names = sorted(set(leases))
    if names:
        rules.append(
            _rule("coordination.k8s.io", "leases", ["get", "update", "delete", "watch"], names)
        )
    by_kind: dict[str, set[str]] = {}
    for kind, target in workloads:
        by_kind.setdefault(f"{kind.lower()}s", set()).add(target)
    for plural, targets in sorted(by_kind.items()):
        rules.append(_rule("apps", plural, ["get"], sorted(targets)))
    name = named_access(invoker["kind"], invoker["metadata"]["name"])
    role = {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "Role",
        "metadata": _meta(invoker, name),
        "rules": rules,
    }
    return [role, _binding(invoker, name, accounts)]


def _rule(group: str, resource: str, verbs: list[str], names: list[str]) -> JSON:
    return {"apiGroups": [group], "resources": [resource], "verbs": verbs, "resourceNames": names}


def _binding(invoker: JSON, name: str, accounts: Iterable[str], *, cluster_role: str = "") -> JSON:
    """RoleBinding ``name`` in the invoker's namespace of ``accounts`` there to the Role of the
    same name, or to ``cluster_role``."""
    namespace = invoker["metadata"]["namespace"]
    role = (
        {"kind": "ClusterRole", "name": cluster_role}
        if cluster_role
        else {"kind": "Role", "name": name}
    )
    return {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "RoleBinding",
        "metadata": _meta(invoker, name),
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", **role},
        "subjects": [
            {"kind": "ServiceAccount", "name": account, "namespace": namespace}
            for account in sorted(set(accounts))
        ],
    }


def _job_identity(invoker: JSON, account_name: Callable[[str], str], role: str) -> list[JSON]:
    """The Jobs' own ServiceAccount and its RoleBinding to ClusterRole ``role``."""
    account = account_name(invoker["metadata"]["name"])
    return [
        {
            "apiVersion": "v1",
            "kind": "ServiceAccount",
            "metadata": _meta(invoker, account),
            "automountServiceAccountToken": True,
        },
        _binding(invoker, account, [account], cluster_role=role),
    ]


def _trigger_pod(invoker: JSON, image: str) -> JSON:
    """The pod spec of each slot's Job: ``stash create-backupsession`` for the invoker."""
    who = Obj(invoker)
    container = {
        "name": TRIGGER_CONTAINER,
        "image": image,
        "args": [
            "create-backupsession",
            f"--invoker-kind={who.kind}",
            f"--invoker-name={who.name}",
            f"--invoker-uid={who.meta.uid}",
        ],
        "env": [field_env("POD_NAMESPACE", "metadata.namespace")],
        "resources": {"requests": {"cpu": "10m", "memory": "64Mi"}, "limits": {"memory": "128Mi"}},
        "securityContext": {**HARDENED_CONTAINER, "readOnlyRootFilesystem": True},
    }
    return {
        "serviceAccountName": service_account_name(invoker),
        "restartPolicy": "Never",
        "securityContext": dict(RESTRICTED_POD),
        "containers": [container],
    }


def cronjob(invoker: JSON, image: str) -> JSON:
    """The CronJob that runs ``stash create-backupsession`` at every schedule slot."""
    spec, meta = Obj(invoker).spec, Obj(invoker).meta
    return {
        "apiVersion": "batch/v1",
        "kind": "CronJob",
        "metadata": _meta(invoker, cronjob_name(meta.name)),
        "spec": {
            "schedule": spec.schedule,
            "suspend": spec.paused,
            "concurrencyPolicy": "Forbid",
            "startingDeadlineSeconds": 300,
            "successfulJobsHistoryLimit": 1,
            "failedJobsHistoryLimit": 1,
            "jobTemplate": {
                "metadata": {"labels": invoker_labels(invoker)},
                "spec": {
                    "backoffLimit": 3,
                    "ttlSecondsAfterFinished": 3600,
                    "template": {
                        "metadata": {"labels": invoker_labels(invoker)},
                        "spec": _trigger_pod(invoker, image),
                    },
                },
            },
        },
    }
