"""The ``stash`` sidecar and the ``stash-init`` restore init container: what they need for a
workload (a plan), its hash, and their injection.

The plan merges every invoker member that targets the workload (one sidecar serves them all;
one stash-init restores every unfinished restore of it); ``inject`` / ``inject_init`` add the
container and the ``tmp-dir`` emptyDir to a copy of a pod and say, as warnings, what they had to
leave out rather than produce a pod the API server would reject.
"""

from __future__ import annotations

import copy
import functools
import hashlib
import json
from dataclasses import dataclass
from typing import Any

from api.constants import (
    RESTORE_INIT_CONTAINER,
    SIDECAR_CONTAINER,
    SIDECAR_HASH_ANNOTATION,
    TMP_DIR_MOUNT_PATH,
    TMP_DIR_VOLUME,
)
from api.objects import JSON
from pods.hardening import field_env, with_image_group
from pods.invokers import SidecarTarget

# Keys of Stash's ContainerRuntimeSettings that are core/v1 Container fields (nice and ionice
# are Stash's own: they shape how restic runs, not the container).
SIDECAR_SETTING_KEYS = (
    "resources",
    "livenessProbe",
    "readinessProbe",
    "lifecycle",
    "securityContext",
    "env",
    "envFrom",
)


SIDECAR_CACHE_DIR = f"{TMP_DIR_MOUNT_PATH}/restic-cache"  # in the tmp-dir emptyDir


@dataclass(frozen=True)
class SidecarSettings:
    """How the operator runs: the image every sidecar uses."""

    image: str
    image_pull_policy: str = "IfNotPresent"
    log_format: str = ""  # the webhook's own (json: the sidecars log JSON too)


@dataclass(frozen=True)
class SidecarPlan:
    target_kind: str
    target_name: str
    invokers: tuple[str, ...]
    volume_mounts: tuple[JSON, ...]
    container_settings: JSON
    temp_dir: JSON
    warnings: tuple[str, ...] = ()
    # (volume, mount) of each local-backend Repository the invokers back up into
    local_backends: tuple[tuple[JSON, JSON], ...] = ()

    @functools.cached_property
    def _fingerprint(self) -> str:
        material = {
            "mounts": self.volume_mounts,
            "container": self.container_settings,
            "tempDir": self.temp_dir,
            "localBackends": self.local_backends,
        }
        canonical = json.dumps(material, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()[:16]

    def fingerprint(self) -> str:
        """A hash of what the pod must contain for this plan: when it changes, pods roll
        (worked out once per plan: the webhook asks for it on every pod).

        The invoker list is left out on purpose: the sidecar discovers its invokers at run
        time, so adding a second BackupBatch on the same volumes needs no new pods.
        """
        return self._fingerprint


def plan_for(
    kind: str,
    name: str,
    targets: tuple[SidecarTarget, ...],
    local_backends: tuple[tuple[JSON, JSON], ...] = (),
) -> SidecarPlan:
    """Merge the members targeting one workload into one sidecar plan (deterministic), with
    the local-backend volumes of their Repositories (``SidecarIndex.local_backends``)."""
    mounts: dict[str, JSON] = {}
    warnings: list[str] = []
    settings: JSON = {}
    settings_from = ""
    temp_dir: JSON = {}
    for target in targets:
        for mount in target.volume_mounts:
            as_json = mount.to_dict()
            seen = mounts.get(mount.mount_path)
            if seen is None:
                mounts[mount.mount_path] = as_json
            elif seen != as_json:
                warnings.append(
                    f"{target.invoker} mounts {mount.name!r} at {mount.mount_path}, where "
                    f"{seen['name']!r} is already mounted by an earlier invoker: kept the first"
                )
        if target.container_settings:
            chosen = {
                k: v for k, v in target.container_settings.items() if k in SIDECAR_SETTING_KEYS
            }
            if not settings:
                settings, settings_from = chosen, target.invoker
            elif chosen and chosen != settings:
                warnings.append(
                    f"{target.invoker} has other container runtimeSettings than "
                    f"{settings_from}: the sidecar uses those of {settings_from}"
                )
        if target.temp_dir and not temp_dir:
            temp_dir = target.temp_dir.to_dict()
    return SidecarPlan(
        target_kind=kind,
        target_name=name,
        invokers=tuple(dict.fromkeys(t.invoker for t in targets)),
        volume_mounts=tuple(mounts[path] for path in sorted(mounts)),
        container_settings=settings,
        temp_dir=temp_dir,
        warnings=tuple(warnings),
        local_backends=local_backends,
    )


def _container(
    name: str,
    command: str,
    plan: SidecarPlan,
    settings: SidecarSettings,
    mounts: list[JSON],
    *,
    setting_keys: tuple[str, ...],
    tmp_volume: str = TMP_DIR_VOLUME,
) -> JSON:
    """The ``stash`` sidecar or ``stash-init``: the image, ``<command> --target-kind=…
    --target-name=…``, the pod's identity from the downward API, ``tmp-dir`` and ``mounts``,
    and the plan's container settings among ``setting_keys``."""
    container: JSON = {
        "name": name,
        "image": settings.image,
        "imagePullPolicy": settings.image_pull_policy,
        "args": [
            command,
            f"--target-kind={plan.target_kind}",
            f"--target-name={plan.target_name}",
            *([] if plan.temp_dir.get("disableCaching") else [f"--cache-dir={SIDECAR_CACHE_DIR}"]),
            # the default (text) needs no flag: pods made before and after stay alike
            *(
                [f"--log-format={settings.log_format}"]
                if settings.log_format not in ("", "text")
                else []
            ),
        ],
        "env": [
            field_env("POD_NAME", "metadata.name"),
            field_env("POD_NAMESPACE", "metadata.namespace"),
            field_env("NODE_NAME", "spec.nodeName"),
        ],
        "volumeMounts": [{"name": tmp_volume, "mountPath": TMP_DIR_MOUNT_PATH}, *mounts],
    }
    for key, value in plan.container_settings.items():
        if key not in setting_keys:
            continue
        if key == "env":
            container["env"] = container["env"] + copy.deepcopy(list(value))
        elif key == "securityContext":
            container[key] = with_image_group(copy.deepcopy(value))
        else:
            container[key] = copy.deepcopy(value)
    return container


def build_container(
    plan: SidecarPlan,
    settings: SidecarSettings,
    mounts: list[JSON],
    tmp_volume: str = TMP_DIR_VOLUME,
) -> JSON:
    return _container(
        SIDECAR_CONTAINER,
        SIDECAR_COMMAND,
        plan,
        settings,
        mounts,
        setting_keys=SIDECAR_SETTING_KEYS,
        tmp_volume=tmp_volume,
    )


def _tmp_volume(temp_dir: JSON, name: str = TMP_DIR_VOLUME) -> JSON:
    empty_dir = {k: temp_dir[k] for k in ("medium", "sizeLimit") if temp_dir.get(k) is not None}
    return {"name": name, "emptyDir": empty_dir}


# -- names the pod already uses -------------------------------------------------------------------
# The webhook never gives an injected container or volume a name the pod uses for something of
# its own: a container name it cannot take is refused with a warning that says so (the names
# `stash` and `stash-init` are contracts); a volume gets the next free name instead.

CONTAINER_LISTS = ("containers", "initContainers", "ephemeralContainers")
SIDECAR_COMMAND = "run-backup"
INIT_COMMAND = "restore-init"
MAX_NAME_ATTEMPTS = 100


def _ours(container: JSON, command: str) -> bool:
    args = container.get("args") or []
    return bool(args) and args[0] == command


def _injected(pod: JSON, where: str, name: str, command: str) -> bool:
    """Whether ``pod`` already carries our container ``name`` (its args start with
    ``command``) in ``spec.<where>``: reinvoked, nothing to add."""
    containers = (pod.get("spec") or {}).get(where) or []
    return any(c.get("name") == name and _ours(c, command) for c in containers)


def name_clash(pod: JSON, name: str, command: str) -> str | None:
    """Why ``name`` cannot be given to an injected container: the pod has a container or init
    container of its own by that name (container names are one namespace per pod)."""
    spec = pod.get("spec") or {}
    for where in CONTAINER_LISTS:
        for container in spec.get(where) or []:
            if container.get("name") == name and not _ours(container, command):
                kind = {"containers": "container", "initContainers": "init container"}.get(
                    where, "ephemeral container"
                )
                return (
                    f"the pod has its own {kind} named {name!r}: {name} is not injected "
                    f"(rename that {kind}; {name!r} is the name Stash gives its own)"
                )
    return None


def free_volume_name(base: str, volume: JSON, existing: dict[Any, JSON]) -> str | None:
    """``base`` when the pod has no volume of that name or has exactly ``volume`` under it (an
    earlier injection's, shared); else ``base-2``, ``base-3``, … the first that is free."""
    for attempt in range(1, MAX_NAME_ATTEMPTS + 1):
        name = base if attempt == 1 else f"{base}-{attempt}"
        current = existing.get(name)
        if current is None or current == {**volume, "name": name}:
            return name
    return None


def has_sidecar(pod: JSON) -> bool:
    return _injected(pod, "containers", SIDECAR_CONTAINER, SIDECAR_COMMAND)


def _local_backends(
    plan: SidecarPlan, existing: dict[Any, JSON], mounts: list[JSON], warnings: list[str], what: str
) -> list[JSON]:
    """Mount each Repository's local backend (into ``mounts``); the volumes to add for them."""
    added: list[JSON] = []
    mounted = {m["mountPath"] for m in mounts} | {TMP_DIR_MOUNT_PATH}
    for volume, mount in plan.local_backends:
        if mount["mountPath"] in mounted:
            warnings.append(
                f"the repository volume at {mount['mountPath']} collides with a target volume "
                f"mounted there: not mounted into {what}"
            )
            continue
        name = free_volume_name(volume["name"], volume, existing)
        if name is None:
            warnings.append(f"no free volume name for the repository: not mounted into {what}")
            continue
        if name not in existing:  # else the same volume (the sidecar's): shared
            existing[name] = {**volume, "name": name}
            added.append(existing[name])
        mounts.append({**mount, "name": name})
        mounted.add(mount["mountPath"])
    return added


def _with_volumes(
    pod: JSON, plan: SidecarPlan, what: str
) -> tuple[JSON, JSON, list[JSON], str, list[str]]:
    """A path copy of ``pod`` with the volumes ``plan`` needs added (the repository's local
    backend, ``tmp-dir``), the mounts of the container to add, the name its ``/tmp`` volume got
    (``tmp-dir`` unless the pod has another volume by that name), and warnings for what was
    left out (``what`` names the container in them)."""
    warnings = list(plan.warnings)
    mutated = dict(pod)
    spec = mutated["spec"] = dict(pod.get("spec") or {})
    volumes = spec.get("volumes") or []
    existing = {v.get("name"): v for v in volumes}
    mounts: list[JSON] = []
    for mount in plan.volume_mounts:
        if mount["mountPath"] == TMP_DIR_MOUNT_PATH:
            warnings.append(f"volume {mount['name']!r} not mounted at /tmp: {what} uses /tmp")
        elif mount["name"] not in existing:
            warnings.append(f"volume {mount['name']!r} is not in the pod: not mounted into {what}")
        else:
            mounts.append(dict(mount))
    added = _local_backends(plan, existing, mounts, warnings, what)
    tmp = _tmp_volume(plan.temp_dir)
    tmp_name = free_volume_name(TMP_DIR_VOLUME, tmp, existing) or f"{TMP_DIR_VOLUME}-stash"
    if tmp_name not in existing:  # else the sidecar's: shared
        added.append(_tmp_volume(plan.temp_dir, tmp_name))
    if added:
        spec["volumes"] = [*volumes, *added]
    return mutated, spec, mounts, tmp_name, warnings


def inject(pod: JSON, plan: SidecarPlan, settings: SidecarSettings) -> tuple[JSON, list[str]]:
    """A copy of ``pod`` with the sidecar, and warnings for what was left out.

    The copy is a path copy: the pod, its spec and the lists that grow are new objects, every
    other part is shared with ``pod`` (which is never modified). A pod that already has a
    ``stash`` container is returned as it is (reinvocation-safe).
    """
    if has_sidecar(pod):
        return pod, list(plan.warnings)
    clash = name_clash(pod, SIDECAR_CONTAINER, SIDECAR_COMMAND)
    if clash:
        return pod, [*plan.warnings, clash]
    mutated, spec, mounts, tmp_name, warnings = _with_volumes(pod, plan, "the stash sidecar")
    sidecar = build_container(plan, settings, mounts, tmp_name)
    spec["containers"] = [*(spec.get("containers") or []), sidecar]
    meta = mutated["metadata"] = dict(pod.get("metadata") or {})
    # What this pod carries: the operator need not roll a workload whose pods are current.
    meta["annotations"] = {
        **(meta.get("annotations") or {}),
        SIDECAR_HASH_ANNOTATION: plan.fingerprint(),
    }
    return mutated, warnings


# An init container may not have probes or a lifecycle (unless it is a native sidecar).
INIT_SETTING_KEYS = ("resources", "securityContext", "env", "envFrom")


def build_init_container(
    plan: SidecarPlan,
    settings: SidecarSettings,
    mounts: list[JSON],
    tmp_volume: str = TMP_DIR_VOLUME,
) -> JSON:
    """``stash-init``: restores the workload's volumes before the application starts."""
    return _container(
        RESTORE_INIT_CONTAINER,
        INIT_COMMAND,
        plan,
        settings,
        mounts,
        setting_keys=INIT_SETTING_KEYS,
        tmp_volume=tmp_volume,
    )


def has_init(pod: JSON) -> bool:
    return _injected(pod, "initContainers", RESTORE_INIT_CONTAINER, INIT_COMMAND)


def inject_init(pod: JSON, plan: SidecarPlan, settings: SidecarSettings) -> tuple[JSON, list[str]]:
    """A copy of ``pod`` with ``stash-init`` first among its init containers (the data is in
    place before the pod's own init containers and the application run), and warnings."""
    if has_init(pod):
        return pod, list(plan.warnings)
    clash = name_clash(pod, RESTORE_INIT_CONTAINER, INIT_COMMAND)
    if clash:
        return pod, [*plan.warnings, clash]
    mutated, spec, mounts, tmp_name, warnings = _with_volumes(pod, plan, "stash-init")
    init = build_init_container(plan, settings, mounts, tmp_name)
    spec["initContainers"] = [init, *(spec.get("initContainers") or [])]
    return mutated, warnings
