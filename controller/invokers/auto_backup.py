"""Auto-backup, the pure part: what a target annotated with BackupBlueprints should have
generated, as Stash generates it (docs/guides/auto-backup.md).

A Deployment, StatefulSet, DaemonSet or PersistentVolumeClaim annotated with
``stash.appscode.com/backup-blueprint: <name>[,<name>…]`` gets, per blueprint, a Repository
and a BackupConfiguration named ``<kind>-<name>`` (``<kind>-<name>-<blueprint>`` each when it
names several) in its own namespace: the blueprint's backend with the ``${TARGET_*}`` variables
filled in, its schedule (or the target's ``stash.appscode.com/schedule``), task, retention,
runtime settings and hooks, and the target itself, with a workload's paths and volume mounts
from its ``target-paths`` and ``volume-mounts`` annotations. The BackupConfiguration is owned
by the target; the Repository is not (it outlives the target: it is what a restore reads).

``plan`` says what is wanted, and why a blueprint generates nothing (``problems``): an unknown
blueprint, a variable without a value, missing or malformed annotations, a namespace the
operator never acts in, a blueprint that would place objects in another namespace. What is
generated is then judged by the same tenant boundary as anything a tenant writes.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from pydantic import ValidationError

from api.appbinding import APPBINDING_KIND, app_identity
from api.base import first_error
from api.blueprint import (
    BLUEPRINT_ANNOTATION,
    GENERATED_BY_LABEL,
    GENERATED_DIGEST_ANNOTATION,
    SCHEDULE_ANNOTATION,
    TARGET_PATHS_ANNOTATION,
    VOLUME_MOUNTS_ANNOTATION,
    BackupBlueprint,
)
from api.constants import MANAGED_BY, PVC_KIND, V1ALPHA1, V1BETA1
from api.naming import auto_backup_name, label_value
from api.objects import JSON
from api.substitution import SubstitutionError, substitute_all
from api.views import Obj, part, text
from kube import ResourceType
from kube.types import APPBINDINGS, PVCS, WORKLOAD_TYPES

# What auto-backup generates for, and where each kind is served (``${TARGET_RESOURCE}``: its
# plural)
TARGET_TYPES: Final[dict[str, ResourceType]] = {
    **WORKLOAD_TYPES,
    PVC_KIND: PVCS,
    APPBINDING_KIND: APPBINDINGS,
}
# What generated names start with, as Stash's (ResourceKindShortForm): else the kind in lower case
NAME_PREFIXES: Final = {APPBINDING_KIND: "app"}
# On a target: ``params.stash.appscode.com/<name>: <value>`` adds a param to its Task
PARAM_ANNOTATION_PREFIX: Final = "params.stash.appscode.com/"
# Whose objects are generated: the target, by kind/name (an annotation on what was generated)
GENERATED_FOR_ANNOTATION: Final = "stash.appscode.com/generated-for"
# The BackupConfiguration fields a blueprint carries over as they are
_CARRIED: Final = (
    "schedule",
    "task",
    "retentionPolicy",
    "runtimeSettings",
    "tempDir",
    "interimVolumeTemplate",
    "backupHistoryLimit",
    "hooks",
    "timeOut",
    "retryConfig",
    "paused",
)


@dataclass(frozen=True)
class Generated:
    """One blueprint's Repository and BackupConfiguration for a target."""

    blueprint: str
    repository: JSON
    invoker: JSON


@dataclass(frozen=True)
class Plan:
    wanted: tuple[Generated, ...] = ()
    # the blueprints that generate nothing now, and why: what they generated before is kept
    held: tuple[str, ...] = ()
    problems: tuple[str, ...] = ()


def blueprint_names(annotations: Mapping[str, str]) -> list[str]:
    """The blueprints a target's annotation names, in order, each once."""
    names: list[str] = []
    for name in (annotations.get(BLUEPRINT_ANNOTATION) or "").split(","):
        if name.strip() and name.strip() not in names:
            names.append(name.strip())
    return names


def generated_for(target: JSON) -> str:
    """The mark generated objects carry of their target (``<Kind>/<name>``)."""
    return f"{Obj(target).kind}/{Obj(target).name}"


def plan(
    target: JSON, blueprints: Mapping[str, JSON | None], *, forbidden_namespaces: frozenset[str]
) -> Plan:
    """What ``target`` (its ``kind`` set) should have generated from the blueprints its
    annotation names (``blueprints``: by name, None for one that does not exist)."""
    view = Obj(target)
    names = blueprint_names(view.meta.annotations)
    if not names or view.kind not in TARGET_TYPES:
        return Plan()
    where = f"{view.kind} {view.namespace}/{view.name}"
    if view.namespace in forbidden_namespaces:
        why = f"{where}: auto-backup never acts in namespace {view.namespace}"
        return Plan(held=tuple(names), problems=(why,))
    problems: list[str] = []
    try:
        target_part: JSON | None = _target(target)
    except ValueError as exc:
        target_part = None
        problems.append(f"{where}: {exc}")
    wanted: list[Generated] = []
    held: list[str] = []
    for name in names:
        blueprint = blueprints.get(name)
        try:
            if blueprint is None:
                raise ValueError(
                    "not found (BackupBlueprints are cluster-scoped: kubectl get backupblueprints)"
                )
            if target_part is not None:
                wanted.append(_generate(target, name, blueprint, target_part, len(names)))
                continue
        except ValueError as exc:
            problems.append(f"BackupBlueprint {name}: {exc}")
        held.append(name)
    return Plan(tuple(wanted), tuple(held), tuple(problems))


def variables(target: JSON) -> dict[str, str]:
    """The ``${TARGET_*}`` variables a blueprint may use, for ``target`` (as Stash fills them:
    the kind in lower case)."""
    view = Obj(target)
    rt = TARGET_TYPES[view.kind]
    values = {
        "TARGET_API_VERSION": rt.api_version,
        "TARGET_KIND": view.kind.lower(),
        "TARGET_NAMESPACE": view.namespace,
        "TARGET_NAME": view.name,
        "TARGET_RESOURCE": rt.plural,
    }
    if view.kind == APPBINDING_KIND:  # what the database is (kubedb.com/postgres, its version)
        values.update(app_identity(target))
    return values


def _target(target: JSON) -> JSON:
    """The BackupConfiguration's ``spec.target``; a workload's paths and volume mounts come
    from its annotations, which it must have."""
    view = Obj(target)
    api_version = TARGET_TYPES[view.kind].api_version
    out: JSON = {"ref": {"apiVersion": api_version, "kind": view.kind, "name": view.name}}
    if view.kind in (PVC_KIND, APPBINDING_KIND):
        return out
    annotations = view.meta.annotations
    paths = [p.strip() for p in (annotations.get(TARGET_PATHS_ANNOTATION) or "").split(",")]
    paths = [p for p in paths if p]
    if not paths:
        raise ValueError(f"annotation {TARGET_PATHS_ANNOTATION} is required for a {view.kind}")
    for path in paths:
        if not path.startswith("/"):
            raise ValueError(f"annotation {TARGET_PATHS_ANNOTATION}: {path!r} is not absolute")
    out["paths"] = paths
    out["volumeMounts"] = volume_mounts(annotations.get(VOLUME_MOUNTS_ANNOTATION) or "")
    if not out["volumeMounts"]:
        raise ValueError(f"annotation {VOLUME_MOUNTS_ANNOTATION} is required for a {view.kind}")
    return out


def volume_mounts(annotation: str) -> list[JSON]:
    """``<volume>:<mountPath>[:<subPath>]``, comma-separated, as volume mounts."""
    mounts: list[JSON] = []
    for item in (piece.strip() for piece in annotation.split(",")):
        if not item:
            continue
        fields = item.split(":")
        if len(fields) not in (2, 3) or not all(fields[:2]):
            raise ValueError(
                f"annotation {VOLUME_MOUNTS_ANNOTATION}: {item!r} is not "
                "<volume>:<mountPath> or <volume>:<mountPath>:<subPath>"
            )
        if not fields[1].startswith("/"):
            raise ValueError(
                f"annotation {VOLUME_MOUNTS_ANNOTATION}: mount path {fields[1]!r} is not absolute"
            )
        mount: JSON = {"name": fields[0], "mountPath": fields[1]}
        if len(fields) == 3 and fields[2]:
            mount["subPath"] = fields[2]
        mounts.append(mount)
    return mounts


def _generate(target: JSON, name: str, blueprint: JSON, target_part: JSON, count: int) -> Generated:
    try:
        BackupBlueprint.model_validate(blueprint)
    except ValidationError as exc:
        where, words = first_error(exc)
        raise ValueError(f"spec.{where}: {words}") from None
    view = Obj(target)
    spec: JSON = dict(Obj(blueprint).spec.raw)
    for field in ("repoNamespace", "backupNamespace"):
        other = spec.get(field)
        if other and other != view.namespace:
            raise ValueError(
                f"spec.{field}: {other}: auto-backup generates in the target's own namespace "
                f"({view.namespace}); a blueprint cannot place a target's backup in another"
            )
    spec = _substituted(spec, variables(target))
    prefix = NAME_PREFIXES.get(view.kind, view.kind.lower())
    object_name = auto_backup_name(prefix, view.name, name if count > 1 else None)
    repository_spec: JSON = {k: spec[k] for k in ("backend", "wipeOut", "usagePolicy") if k in spec}
    invoker_spec: JSON = {k: spec[k] for k in _CARRIED if spec.get(k) is not None}
    schedule = view.meta.annotations.get(SCHEDULE_ANNOTATION)
    if schedule:
        invoker_spec["schedule"] = schedule.strip()
    task = _task(target, invoker_spec.get("task"))
    if task:
        invoker_spec["task"] = task
    invoker_spec["repository"] = {"name": object_name}
    invoker_spec["target"] = target_part
    owner = {
        "apiVersion": TARGET_TYPES[view.kind].api_version,
        "kind": view.kind,
        "name": view.name,
        "uid": view.meta.uid,
        "controller": True,
        "blockOwnerDeletion": False,
    }
    repository = _object("Repository", object_name, target, name, repository_spec)
    invoker = _object("BackupConfiguration", object_name, target, name, invoker_spec)
    invoker["metadata"]["ownerReferences"] = [owner]
    invoker["metadata"]["annotations"][GENERATED_DIGEST_ANNOTATION] = digest([invoker_spec, owner])
    return Generated(name, repository, invoker)


def _task(target: JSON, task: JSON | None) -> JSON | None:
    """The Task: the blueprint's, else (an AppBinding, as KubeDB makes them) the one its
    ``spec.parameters.stash.addon.backupTask`` names; with the target's
    ``params.stash.appscode.com/<name>`` annotations as params (they win)."""
    view = Obj(target)
    out = dict(task or {})
    if not out.get("name") and view.kind == APPBINDING_KIND:
        addon = part(part(part(view.spec.raw, "parameters"), "stash"), "addon")
        out = dict(part(addon, "backupTask"))
    params = {text(p, "name"): p for p in out.get("params") or [] if isinstance(p, dict)}
    for key, value in view.meta.annotations.items():
        if key.startswith(PARAM_ANNOTATION_PREFIX) and key[len(PARAM_ANNOTATION_PREFIX) :]:
            name = key[len(PARAM_ANNOTATION_PREFIX) :]
            params[name] = {"name": name, "value": value}
    if params:
        out["params"] = list(params.values())
    return out or None


def _substituted(spec: JSON, values: Mapping[str, str]) -> JSON:
    """The blueprint's spec with the target's variables in its backend (every variable must
    have a value) and task (other variables are the Task's own, filled in when it runs)."""
    out = dict(spec)
    try:
        out["backend"] = substitute_all(spec.get("backend") or {}, values)
    except SubstitutionError as exc:
        raise ValueError(f"spec.backend: {exc} (known: {', '.join(sorted(values))})") from None
    if spec.get("task"):
        out["task"] = substitute_all(spec["task"], values, strict=False)
    return out


def _object(kind: str, name: str, target: JSON, blueprint: str, spec: JSON) -> JSON:
    view = Obj(target)
    return {
        "apiVersion": V1ALPHA1 if kind == "Repository" else V1BETA1,
        "kind": kind,
        "metadata": {
            "name": name,
            "namespace": view.namespace,
            "labels": {**MANAGED_BY, GENERATED_BY_LABEL: label_value(blueprint)},
            "annotations": {
                GENERATED_FOR_ANNOTATION: generated_for(target),
                GENERATED_DIGEST_ANNOTATION: digest(spec),
            },
        },
        "spec": spec,
    }


def digest(spec: Any) -> str:
    """A short, stable digest of what was generated (it changes when the spec would)."""
    return hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:16]
