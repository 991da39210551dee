"""Restoring into new PVCs: a restore member's ``target.volumeClaimTemplates`` (Stash's "clone a
PVC" and "restore a StatefulSet's volumes before it exists" workflows).

For each ordinal ``0 … replicas-1`` (one without ``replicas``) the templates become PVCs with
``${POD_ORDINAL}`` resolved, made in the restore's own namespace and never owned by it (the
restored data outlives the RestoreSession). One restore Job per ordinal mounts them where the
member's ``volumeMounts`` say and restores the ordinal's restic host: ``host-<ordinal>``
(``<alias>-<ordinal>``) with ``replicas``, else ``host-0`` (or the alias). A volume is named
after its claim without the ``-<ordinal>`` suffix, as in Stash, so a StatefulSet's
``data-web-${POD_ORDINAL}`` is mounted by ``volumeMounts[].name: data-web``.

Pure: the reconciler creates what these functions describe.
"""

from __future__ import annotations

import copy
import re

from api import constants as c
from api.hosts import ordinal_host, single_host
from api.objects import JSON
from api.substitution import substitute, substitute_all
from controller.invokers.evaluation import RestoreView
from controller.jobs.builtin_tasks import PVC_RESTORE_FUNCTION, UPDATE_STATUS_FUNCTION

POD_ORDINAL = "POD_ORDINAL"
RESTORED_BY = f"{c.GROUP}/restored-by"  # annotation on a PVC the restore made: Kind/name
_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$")
_OUTPUT = {"name": "outputDir", "value": "/tmp/output"}  # noqa: S108 - the pod's own emptyDir


def ordinals(view: RestoreView) -> range:
    return range(view.replicas() or 1)


def hostname(view: RestoreView, ordinal: int) -> str:
    """The restic host the ordinal's Job restores (before the rules map it to a source)."""
    target = view.member.target
    alias = target.alias if target and target.alias else ""
    if view.replicas() is None:
        return single_host(alias)
    return ordinal_host(alias, ordinal)


def _resolve(text: str, ordinal: int, missing: list[str] | None = None) -> str:
    return substitute(text, {POD_ORDINAL: str(ordinal)}, missing)


def volume_name(claim: str, ordinal: int) -> str:
    """The volume a claim is mounted as: its name without the ordinal's suffix (Stash's rule)."""
    return claim.removesuffix(f"-{ordinal}")


def claims_for(view: RestoreView, ordinal: int, invoker: JSON) -> list[JSON]:
    """The PVCs of one ordinal, as they are to be created."""
    meta = invoker["metadata"]
    made = []
    for template in view.claims:
        body = copy.deepcopy(template)
        tmeta = body.get("metadata") or {}
        annotations = dict(tmeta.get("annotations") or {})
        annotations[RESTORED_BY] = f"{invoker['kind']}/{meta['name']}"
        made.append(
            {
                "apiVersion": "v1",
                "kind": "PersistentVolumeClaim",
                "metadata": {
                    "name": _resolve(str(tmeta.get("name") or ""), ordinal),
                    "namespace": meta["namespace"],
                    "labels": {
                        k: _resolve(str(v), ordinal) for k, v in (tmeta.get("labels") or {}).items()
                    },
                    "annotations": annotations,
                },
                "spec": substitute_all(
                    body.get("spec") or {}, {POD_ORDINAL: str(ordinal)}, strict=False
                ),
            }
        )
    return made


def volumes(claims: list[JSON], ordinal: int) -> list[JSON]:
    return [
        {
            "name": volume_name(claim["metadata"]["name"], ordinal),
            "persistentVolumeClaim": {"claimName": claim["metadata"]["name"]},
        }
        for claim in claims
    ]


def restore_task(view: RestoreView) -> JSON:
    """What ``pvc-restore`` means for new PVCs: its restore step with the first mounted
    volume as ``targetVolume`` (the others are mounted beside it), then ``update-status``;
    no volumes of its own (the claims are them)."""
    mounts = (view.member.target.volume_mounts or []) if view.member.target else []
    first = mounts[0].name if mounts else ""
    return {
        "metadata": {"name": PVC_RESTORE_FUNCTION},
        "spec": {
            "steps": [
                {
                    "name": PVC_RESTORE_FUNCTION,
                    "params": [_OUTPUT, {"name": "targetVolume", "value": first}],
                },
                {"name": UPDATE_STATUS_FUNCTION, "params": [_OUTPUT]},
            ],
            "volumes": [],
        },
    }


def attach(pod_spec: JSON, claim_volumes: list[JSON], mounts: list[JSON], ordinal: int) -> None:
    """Give every container of the Job's pod the claims at ``mounts`` (replacing a mount of
    the same name) and ``POD_ORDINAL``; the pod's volumes of those names become the claims."""
    names = {v["name"] for v in claim_volumes}
    pod_spec["volumes"] = [
        v for v in pod_spec.get("volumes") or [] if v.get("name") not in names
    ] + claim_volumes
    for key in ("initContainers", "containers"):
        for container in pod_spec.get(key) or []:
            wanted = {m["name"] for m in mounts}
            container["volumeMounts"] = [
                m for m in container.get("volumeMounts") or [] if m.get("name") not in wanted
            ] + [dict(m) for m in mounts]
            env = [e for e in container.get("env") or [] if e.get("name") != POD_ORDINAL]
            container["env"] = [*env, {"name": POD_ORDINAL, "value": str(ordinal)}]


def claim_problems(view: RestoreView) -> list[str]:
    """What is wrong in a member's ``replicas`` / ``volumeClaimTemplates`` / ``volumeMounts``
    for restoring into new PVCs."""
    where = f"{view.where}.target"
    replicas = view.replicas()
    if not view.claims:
        if replicas is not None:
            return [
                f"{where}.replicas: only with volumeClaimTemplates (how many ordinals get new "
                "PVCs); a StatefulSet restored in place restores each of its own pods"
            ]
        return []
    problems = []
    if replicas is not None and replicas < 1:
        problems.append(f"{where}.replicas: {replicas} restores nothing; at least 1")
    names: set[str] = set()
    seen: dict[str, int] = {}
    for i, template in enumerate(view.claims):
        problems += _template_problems(template, f"{where}.volumeClaimTemplates[{i}]", view)
        raw = str((template.get("metadata") or {}).get("name") or "")
        if raw in seen:
            problems.append(
                f"{where}.volumeClaimTemplates[{i}].metadata.name: {raw!r} is also "
                f"template {seen[raw]}"
            )
        seen[raw] = i
        names.add(volume_name(_resolve(raw, 0, []), 0))
    return problems + _mount_problems(view, where, names)


def _template_problems(template: JSON, at: str, view: RestoreView) -> list[str]:
    tmeta = template.get("metadata") or {}
    raw = str(tmeta.get("name") or "")
    if not raw:
        return [f"{at}.metadata.name: the new PVC's name is required"]
    problems = []
    if tmeta.get("namespace") not in (None, "", view.namespace):
        problems.append(
            f"{at}.metadata.namespace: the PVCs are made in the restore's own namespace "
            f"{view.namespace}, not {tmeta['namespace']}"
        )
    missing: list[str] = []
    resolved = _resolve(raw, 0, missing)
    if missing:
        return [
            *problems,
            f"{at}.metadata.name: {raw!r} uses ${{{missing[0]}}}; only ${{{POD_ORDINAL}}} "
            "is known here",
        ]
    if len(resolved) > 253 or not _SUBDOMAIN.match(resolved):
        problems.append(
            f"{at}.metadata.name: {resolved!r} is not a valid PVC name (lower-case "
            "letters, digits, '-' and '.')"
        )
    replicas = view.replicas() or 1
    if replicas > 1 and f"${{{POD_ORDINAL}}}" not in raw:
        problems.append(
            f"{at}.metadata.name: with replicas: {replicas} each ordinal needs its own PVC: "
            f"put ${{{POD_ORDINAL}}} in {raw!r}"
        )
    return problems


def _mount_problems(view: RestoreView, where: str, names: set[str]) -> list[str]:
    target = view.member.target
    mounts = (target.volume_mounts or []) if target else []
    if not mounts:
        return [
            f"{where}.volumeMounts: say where each new PVC is mounted in the restore Job (the "
            "path it was backed up from)"
        ]
    problems = []
    paths: dict[str, int] = {}
    for i, mount in enumerate(mounts):
        path = mount.mount_path.rstrip("/") or "/"
        if path in paths:
            problems.append(
                f"{where}.volumeMounts[{i}].mountPath: {mount.mount_path} is also "
                f"volumeMounts[{paths[path]}]'s; a pod mounts one volume per path"
            )
        paths.setdefault(path, i)
        if names and mount.name not in names:
            problems.append(
                f"{where}.volumeMounts[{i}].name: no claim template gives a volume "
                f"{mount.name!r} (they give: {', '.join(sorted(names))}; a name loses its "
                f"-${{{POD_ORDINAL}}} suffix)"
            )
        if mount.mount_path.rstrip("/") == c.TMP_DIR_MOUNT_PATH:
            problems.append(
                f"{where}.volumeMounts[{i}].mountPath: {c.TMP_DIR_MOUNT_PATH} is the restore "
                "Job's own scratch space; mount the volume elsewhere"
            )
    return problems
