"""Which members of an invoker are carried out inside their workload's pods (the ``stash``
sidecar for backups, ``stash-init`` for restores), read from the object as stored.

A plain reading of raw dicts, without the pydantic models: the sidecar decides with it on every
session event while staying small (issue 15), and ``pods.invokers`` (the webhook's index) takes
the same decision from here after validating the object.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from api.objects import JSON

WORKLOAD_KINDS = ("Deployment", "StatefulSet", "DaemonSet")
BATCH_KINDS = ("BackupBatch", "RestoreBatch")


def member_documents(invoker: JSON) -> list[Any]:
    """An invoker's members as written: a batch's ``spec.members``; a BackupConfiguration's or
    RestoreSession's own spec (a batch of one)."""
    spec = invoker.get("spec") or {}
    if not isinstance(spec, dict):
        return []
    if invoker.get("kind") in BATCH_KINDS:
        members = spec.get("members") or []
        return list(members) if isinstance(members, list) else []
    return [spec]


def _dict(value: Any) -> JSON:
    return value if isinstance(value, dict) else {}


@dataclass(frozen=True)
class PodMember:
    """A member carried out in the pods of workload ``kind``/``name`` of the invoker's own
    namespace."""

    index: int
    kind: str
    name: str
    alias: str = ""


def pod_members(invoker: JSON) -> list[PodMember]:
    """The members done in their workload's pods: the restic driver, no Task, a Deployment,
    StatefulSet or DaemonSet of the invoker's own namespace as target (another namespace's
    workload gets nothing: the operator reports the member as invalid), and for a restore no
    ``volumeClaimTemplates`` (those are restored into new PVCs by Jobs)."""
    spec = _dict(invoker.get("spec"))
    if (spec.get("driver") or "Restic") != "Restic":
        return []
    namespace = str(_dict(invoker.get("metadata")).get("namespace") or "")
    found = []
    for index, doc in enumerate(member_documents(invoker)):
        member = _dict(doc)
        if _dict(member.get("task")).get("name"):
            continue
        target = _dict(member.get("target"))
        ref = _dict(target.get("ref"))
        kind, name = ref.get("kind"), ref.get("name")
        if kind not in WORKLOAD_KINDS or not name or not isinstance(name, str):
            continue
        if target.get("volumeClaimTemplates"):
            continue
        if (ref.get("namespace") or namespace) != namespace:
            continue
        found.append(PodMember(index, str(kind), name, str(target.get("alias") or "")))
    return found
