"""One target, one job at a time: a backup never reads a target the product is restoring, and a
restore never writes one being backed up.

A backup session and a restore of the same object that overlap would both report Succeeded,
and the backup's snapshot (then "latest") would hold a mix of old, restored and torn files. So
before a backup target starts, and before a restore starts, the operator asks here:

- a backup target waits (stays Pending, saying why) while an unfinished restore (not yet
  Succeeded, Failed or Invalid) names the same object — a restore has priority;
- a restore waits (stays Pending, saying why; its workloads are not rolled) while a backup
  session is Running on one of its targets, and starts once that target has finished.

What the caches show is read through two informer indexes (running backup targets, restoring
targets). The operator's own starts of the last ``WINDOW`` seconds are remembered too, under
one lock, so that a backup and a restore deciding at the same moment (each before the other's
status write reached the cache) never both start.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

from pydantic import ValidationError

from api import constants as c
from api.objects import JSON
from api.views import Obj
from controller.invokers.evaluation import MemberRef
from controller.runtime.caches import BACKUP_SESSIONS, Caches
from controller.sessions.restore_status import restore_members_of
from kube.types import RESTORE_INVOKER_TYPES

Use = Literal["backup", "restore"]

RUNNING_TARGETS = "running-targets"
RESTORING_TARGETS = "restoring-targets"
WINDOW = 10.0  # seconds a start is remembered beyond the caches
USE_RECHECK = 5.0  # how soon a waiting session or restore looks again


def target_key(namespace: str, kind: str, name: str) -> str:
    return f"{namespace}/{kind}/{name}"


def running_targets(session: JSON) -> Iterable[str]:
    """The targets an unfinished BackupSession uses: those it is backing up (Running) and those
    it backed up (Succeeded), until the session ends: its retention and integrity check of
    their snapshots come after the hosts report, and a restore started then would overlap
    them. A target not started (Pending) or that failed is free."""
    view = Obj(session)
    if view.status.phase in c.SESSION_TERMINAL_PHASES:
        return []
    keys = []
    for target in view.status.targets:
        ref = target.ref
        if target.phase in ("Running", "Succeeded") and ref.name:
            where = ref.namespace_or(view.namespace)
            keys.append(target_key(where, ref.kind, ref.name))
    return keys


def restoring_targets(invoker: JSON) -> Iterable[str]:
    """The targets an unfinished RestoreSession / RestoreBatch restores (or will)."""
    if Obj(invoker).status.phase in c.RESTORE_ENDED_PHASES:
        return []
    try:
        views = restore_members_of(invoker)
    except (ValidationError, TypeError, AttributeError, KeyError):
        return []  # a restore that does not parse is Invalid, and restores nothing
    return [target_key(v.target_namespace, v.kind, v.name) for v in views if v.name]


@dataclass(frozen=True)
class _Start:
    use: Use
    holder: str
    at: float


class TargetUse:
    """The judge both the session and the restore reconcilers ask before starting a target."""

    def __init__(self, caches: Caches) -> None:
        self.caches = caches
        self._lock = threading.Lock()
        self._starts: dict[str, _Start] = {}
        caches.informer(BACKUP_SESSIONS).add_index(RUNNING_TARGETS, running_targets)
        for rt in RESTORE_INVOKER_TYPES.values():
            caches.informer(rt).add_index(RESTORING_TARGETS, restoring_targets)

    def _users(self, use: Use, key: str, holder: str) -> list[str]:
        """Who the caches say uses target ``key`` for ``use`` (``"Kind ns/name"``), but
        ``holder``."""
        kinds = RESTORE_INVOKER_TYPES if use == "restore" else {"BackupSession": BACKUP_SESSIONS}
        index = RESTORING_TARGETS if use == "restore" else RUNNING_TARGETS
        found = []
        for kind, rt in kinds.items():
            for obj in self.caches.informer(rt).by_index(index, key):
                name = f"{kind} {Obj(obj).namespace}/{Obj(obj).name}"
                if name != holder:
                    found.append(name)
        return found

    def busy(self, use: Use, holder: str, views: Iterable[MemberRef]) -> dict[int, str]:
        """The members among ``views`` (not started yet) that may not start their ``use`` of
        their target now, and why; the others' starts are remembered."""
        busy = {}
        for view in views:
            if not view.name:
                continue
            key = target_key(view.target_namespace, view.kind, view.name)
            where = f"{view.kind} {view.target_namespace}/{view.name}"
            why = self.may_start(use, key, holder, where)
            if why:
                busy[view.index] = why
        return busy

    def may_start(self, use: Use, key: str, holder: str, what: str) -> str | None:
        """Why ``holder`` (``"BackupSession ns/name"``, ``"RestoreSession ns/name"``) may not
        start its ``use`` of the target ``key`` (described as ``what``) now; None: it may, and
        its start is remembered for ``WINDOW`` seconds."""
        now = time.monotonic()
        with self._lock:
            other: Use = "restore" if use == "backup" else "backup"
            users = self._users(other, key, holder)
            if users and use == "backup":
                return (
                    f"{users[0]} is restoring {what}: a backup now would mix old and restored "
                    "files; it starts once the restore has ended"
                )
            if users:
                return (
                    f"{users[0]} is backing up {what}: restoring now would tear that backup; "
                    "the restore starts once it has finished"
                )
            recent = self._starts.get(key)
            if recent and recent.use != use and now - recent.at < WINDOW:
                verb = "restoring" if recent.use == "restore" else "backing up"
                return f"{recent.holder} has just started {verb} {what}"
            self._starts[key] = _Start(use, holder, now)
            for stale in [k for k, s in self._starts.items() if now - s.at >= WINDOW]:
                del self._starts[stale]
            return None
