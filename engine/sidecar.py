"""The ``stash`` sidecar and the ``stash-init`` restore init container: what they need for a
workload (a plan), its hash, and their injection.

The plan merges every invoker member that targets the workload (one sidecar serves them all;
one stash-init restores every unfinished restore of it); ``inject`` / ``inject_init`` add the
container and the ``tmp-dir`` emptyDir to a copy of a pod and say, as warnings, what they had to
leave out rather than produce a pod the API server would reject.
"""

from __future__ import annotations

import copy
import hashlib
import json
from dataclasses import dataclass
from typing import Any

from api.constants import (
    RESTORE_INIT_CONTAINER,
    SIDECAR_CONTAINER,
    TMP_DIR_MOUNT_PATH,
    TMP_DIR_VOLUME,
)
from engine.invokers import SidecarTarget

JSON = dict[str, Any]

# Keys of Stash's ContainerRuntimeSettings that are core/v1 Container fields (nice and ionice
# are Stash's own: they shape how restic runs, not the container).
CONTAINER_SETTING_KEYS = (
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

    def fingerprint(self) -> str:
        """A hash of what the pod must contain for this plan: when it changes, pods roll.

        The invoker list is left out on purpose: the sidecar discovers its invokers at run
        time, so adding a second BackupBatch on the same volumes needs no new pods.
        """
        material = {
            "mounts": self.volume_mounts,
            "container": self.container_settings,
            "tempDir": self.temp_dir,
            "localBackends": self.local_backends,
        }
        canonical = json.dumps(material, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()[:16]


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
                k: v for k, v in target.container_settings.items() if k in CONTAINER_SETTING_KEYS
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


def _field_env(name: str, path: str) -> JSON:
    return {"name": name, "valueFrom": {"fieldRef": {"fieldPath": path}}}


def _container(
    name: str,
    command: str,
    plan: SidecarPlan,
    settings: SidecarSettings,
    mounts: list[JSON],
    *,
    setting_keys: tuple[str, ...],
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
            _field_env("POD_NAME", "metadata.name"),
            _field_env("POD_NAMESPACE", "metadata.namespace"),
            _field_env("NODE_NAME", "spec.nodeName"),
        ],
        "volumeMounts": [{"name": TMP_DIR_VOLUME, "mountPath": TMP_DIR_MOUNT_PATH}, *mounts],
    }
    for key, value in plan.container_settings.items():
        if key not in setting_keys:
            continue
        if key == "env":
            container["env"] = container["env"] + copy.deepcopy(list(value))
        else:
            container[key] = copy.deepcopy(value)
    return container


def build_container(plan: SidecarPlan, settings: SidecarSettings, mounts: list[JSON]) -> JSON:
    return _container(
        SIDECAR_CONTAINER, "run-backup", plan, settings, mounts, setting_keys=CONTAINER_SETTING_KEYS
    )


def _tmp_volume(temp_dir: JSON) -> JSON:
    empty_dir = {k: temp_dir[k] for k in ("medium", "sizeLimit") if temp_dir.get(k) is not None}
    return {"name": TMP_DIR_VOLUME, "emptyDir": empty_dir}


def has_sidecar(pod: JSON) -> bool:
    containers = pod.get("spec", {}).get("containers") or []
    return any(c.get("name") == SIDECAR_CONTAINER for c in containers)


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
        if existing.get(volume["name"]) != volume:  # the same volume (the sidecar's): shared
            if volume["name"] in existing:
                warnings.append(
                    f"the pod already has a volume {volume['name']!r}: the repository's local "
                    f"backend is not mounted into {what}"
                )
                continue
            added.append(dict(volume))
        mounts.append(dict(mount))
        mounted.add(mount["mountPath"])
    return added


def _with_volumes(
    pod: JSON, plan: SidecarPlan, what: str
) -> tuple[JSON, JSON, list[JSON], list[str]]:
    """A path copy of ``pod`` with the volumes ``plan`` needs added (the repository's local
    backend, ``tmp-dir``), the mounts of the container to add, and warnings for what was left
    out (``what`` names the container in them)."""
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
    if existing.get(TMP_DIR_VOLUME) == _tmp_volume(plan.temp_dir):
        pass  # the sidecar's: shared
    elif TMP_DIR_VOLUME in existing:
        warnings.append(f"the pod already has a volume {TMP_DIR_VOLUME!r}: {what} reuses it")
    else:
        added.append(_tmp_volume(plan.temp_dir))
    if added:
        spec["volumes"] = [*volumes, *added]
    return mutated, spec, mounts, warnings


def inject(pod: JSON, plan: SidecarPlan, settings: SidecarSettings) -> tuple[JSON, list[str]]:
    """A copy of ``pod`` with the sidecar, and warnings for what was left out.

    The copy is a path copy: the pod, its spec and the lists that grow are new objects, every
    other part is shared with ``pod`` (which is never modified). A pod that already has a
    ``stash`` container is returned as it is (reinvocation-safe).
    """
    if has_sidecar(pod):
        return pod, list(plan.warnings)
    mutated, spec, mounts, warnings = _with_volumes(pod, plan, "the stash sidecar")
    spec["containers"] = [*(spec.get("containers") or []), build_container(plan, settings, mounts)]
    return mutated, warnings


# An init container may not have probes or a lifecycle (unless it is a native sidecar).
INIT_SETTING_KEYS = ("resources", "securityContext", "env", "envFrom")


def build_init_container(plan: SidecarPlan, settings: SidecarSettings, mounts: list[JSON]) -> JSON:
    """``stash-init``: restores the workload's volumes before the application starts."""
    return _container(
        RESTORE_INIT_CONTAINER,
        "restore-init",
        plan,
        settings,
        mounts,
        setting_keys=INIT_SETTING_KEYS,
    )


def has_init(pod: JSON) -> bool:
    containers = pod.get("spec", {}).get("initContainers") or []
    return any(c.get("name") == RESTORE_INIT_CONTAINER for c in containers)


def inject_init(pod: JSON, plan: SidecarPlan, settings: SidecarSettings) -> tuple[JSON, list[str]]:
    """A copy of ``pod`` with ``stash-init`` first among its init containers (the data is in
    place before the pod's own init containers and the application run), and warnings."""
    if has_init(pod):
        return pod, list(plan.warnings)
    mutated, spec, mounts, warnings = _with_volumes(pod, plan, "stash-init")
    init = build_init_container(plan, settings, mounts)
    spec["initContainers"] = [init, *(spec.get("initContainers") or [])]
    return mutated, warnings
