"""A RestoreSession asked for by a person: a target, a snapshot, and what the backup that made
the snapshot already says about the target (its mounts, paths, Task, host alias).

``restore_session_for`` is pure: the caller (``kubectl stash restore``) finds the backup
member of the same target with ``backup_member_of`` and creates what comes back.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from api.constants import V1BETA1
from api.objects import JSON
from api.pod_members import member_documents

LATEST = "latest"


@dataclass(frozen=True)
class RestoreRequest:
    name: str
    namespace: str
    target: JSON  # the target's ref: apiVersion, kind, name
    repository: str = ""  # default: the backup member's invoker's Repository
    snapshot: str = LATEST  # a snapshot id, or the host's latest
    paths: tuple[str, ...] = ()  # default: all of the snapshot


def backup_member_of(invokers: Iterable[JSON], target: JSON) -> tuple[JSON, JSON] | None:
    """(invoker, member) of the first backup invoker (by name) that backs up ``target``."""
    for invoker in sorted(invokers, key=lambda o: str(o["metadata"]["name"])):
        for member in member_documents(invoker):
            ref = ((member or {}).get("target") or {}).get("ref") or {}
            if ref.get("kind") == target.get("kind") and ref.get("name") == target.get("name"):
                return invoker, member
    return None


def restore_task_for(backup_task: str) -> str:
    """The Task that undoes a backup Task: ``pvc-backup`` → ``pvc-restore`` (Stash's pairs)."""
    stem = backup_task.removesuffix("-backup")
    return f"{stem}-restore" if stem != backup_task else backup_task


def restore_session_for(request: RestoreRequest, backup: tuple[JSON, JSON] | None) -> JSON:
    """The RestoreSession for ``request``; ValueError saying what is missing to write one."""
    invoker, member = backup if backup else ({}, {})
    repository = request.repository or (
        ((invoker.get("spec") or {}).get("repository") or {}).get("name") or ""
    )
    if not repository:
        raise ValueError(
            f"no backup of {request.target.get('kind')}/{request.target.get('name')} in "
            f"namespace {request.namespace} names its Repository: give --repository"
        )
    source = (member.get("target") or {}) if member else {}
    target: JSON = {"ref": dict(request.target)}
    for key in ("volumeMounts", "alias"):
        if source.get(key):
            target[key] = source[key]
    spec: JSON = {"repository": {"name": repository}, "target": target}
    rule: JSON = {}
    if request.snapshot and request.snapshot != LATEST:
        rule["snapshots"] = [request.snapshot]
    if request.paths:  # otherwise all of the snapshot, into the paths it was taken from
        rule["paths"] = list(request.paths)
    if rule:
        target["rules"] = [rule]
    task = ((member.get("task") or {}) if member else {}).get("name")
    if task:
        spec["task"] = {"name": restore_task_for(str(task))}
    elif request.target.get("kind") == "PersistentVolumeClaim":
        spec["task"] = {"name": "pvc-restore"}
    return {
        "apiVersion": V1BETA1,
        "kind": "RestoreSession",
        "metadata": {"name": request.name, "namespace": request.namespace},
        "spec": spec,
    }
