"""Writing results where users and the operator read them: a host's backup stats into
``BackupSession.status.targets[].stats``, a host's restore stats into
``RestoreSession.status.stats`` or ``RestoreBatch.status.members[].stats``, follow-up conditions
on the session, and the figures of ``Repository.status``.

Several hosts (sidecars, Jobs) and the operator write one session concurrently, so every write
is read-modify-write conditional on the resourceVersion read, retried on Conflict. The pure
parts (``with_host``, ``hosts_complete``, ``repository_status``) are what the tests exercise.
"""

from __future__ import annotations

import copy
import datetime as dt
import logging
from collections.abc import Callable
from dataclasses import dataclass

from api.conditions import get_condition, now_rfc3339, parse_rfc3339, set_condition
from api.constants import DEADLINE_EXCEEDED, REPOSITORY_WORK_CLAIMED
from api.hooks import HOOK_CONDITIONS
from api.objects import JSON
from api.units import human_size
from engine.results import HostResult, RepositoryFigures
from kube import Client
from kube.status import StatusError, update_status
from kube.types import BACKUP_SESSIONS, REPOSITORIES

log = logging.getLogger(__name__)


def deadline_passed(status: JSON, now: dt.datetime) -> bool:
    """Whether a session's (or restore's) ``sessionDeadline`` has passed: no host starts work
    for it then, since the operator fails whatever is unfinished at that time."""
    when = status.get("sessionDeadline")
    if not isinstance(when, str):
        return False
    try:
        ends = parse_rfc3339(when)
    except ValueError:
        return False
    return now > ends


def why_ended(what: str, status: JSON) -> str:
    """Why a host's work for ``what`` (``session nightly-1``, ``RestoreSession web``), which
    ended with ``status``, is stopped midway: nobody would count what it made."""
    phase = status.get("phase")
    deadline = get_condition(status.get("conditions"), DEADLINE_EXCEEDED)
    if deadline is not None and deadline.get("status") == "True":
        return f"{what} ended {phase} at its deadline: {deadline.get('message')}"
    return f"{what} ended {phase} before this host finished"


class ReportError(StatusError):
    """The session has no such target (the invoker changed under it), or writes kept failing."""


def _same_target(ref: JSON, kind: str, name: str) -> bool:
    return bool(ref.get("kind") == kind and ref.get("name") == name)


def target_index(status: JSON, kind: str, name: str) -> int | None:
    for index, target in enumerate(status.get("targets") or []):
        if _same_target(target.get("ref") or {}, kind, name):
            return index
    return None


def host_reported(status: JSON, kind: str, name: str, hostname: str) -> bool:
    index = target_index(status, kind, name)
    if index is None:
        return False
    stats = status["targets"][index].get("stats") or []
    return any(s.get("hostname") == hostname for s in stats)


def with_host(status: JSON, kind: str, name: str, result: HostResult) -> JSON:
    """``status`` with the host's stats recorded (replacing an earlier entry of that host)."""
    updated = copy.deepcopy(status)
    index = target_index(updated, kind, name)
    if index is None:
        raise ReportError(f"the session has no target {kind}/{name}")
    target = updated["targets"][index]
    stats = [s for s in target.get("stats") or [] if s.get("hostname") != result.hostname]
    stats.append(result.to_status())
    target["stats"] = sorted(stats, key=lambda s: str(s.get("hostname")))
    _record_hooks(target, result)
    return updated


def _record_hooks(target: JSON, result: HostResult) -> None:
    """Stash's hook conditions on the target, from the host's hooks: a failure on any host
    stays."""
    for hook in result.hooks:
        kind = HOOK_CONDITIONS[hook.kind]
        earlier = get_condition(target.get("conditions"), kind)
        if earlier is not None and earlier.get("status") == "False" and hook.ok:
            continue
        target["conditions"] = set_condition(
            target.get("conditions"),
            kind,
            hook.ok,
            "HookExecutionSucceeded" if hook.ok else "HookExecutionFailed",
            f"{result.hostname}: {hook.message}",
            now=dt.datetime.now(dt.UTC),
        )


def with_restore_host(
    invoker_kind: str, status: JSON, kind: str, name: str, result: HostResult
) -> JSON:
    """``status`` of a RestoreSession (its own ``stats``) or a RestoreBatch (its member's) with
    the host's restore stats recorded, replacing an earlier entry of that host."""
    updated = copy.deepcopy(status)
    holder = updated
    if invoker_kind == "RestoreBatch":
        members = updated.get("members") or []
        found = next((m for m in members if _same_target(m.get("ref") or {}, kind, name)), None)
        if found is None:
            raise ReportError(f"the RestoreBatch has no member {kind}/{name} (yet)")
        holder = found
    stats = [s for s in holder.get("stats") or [] if s.get("hostname") != result.hostname]
    stats.append(result.to_status())
    holder["stats"] = sorted(stats, key=lambda s: str(s.get("hostname")))
    _record_hooks(holder, result)
    return updated


def hosts_complete(status: JSON) -> bool:
    """Every host of every target has reported (nothing more will be backed up)."""
    targets = status.get("targets") or []
    return bool(targets) and all(
        len(t.get("stats") or []) >= int(t.get("totalHosts") or 1) for t in targets
    )


@dataclass(frozen=True)
class ConditionUpdate:
    type: str
    ok: bool
    reason: str
    message: str


def claim(holder: str) -> ConditionUpdate:
    """Who does the session's repository work now (``kube.mutex.pod_holder``)."""
    return ConditionUpdate(REPOSITORY_WORK_CLAIMED, True, "RepositoryWorkClaimed", holder)


def with_conditions(status: JSON, updates: list[ConditionUpdate], now: dt.datetime) -> JSON:
    updated = copy.deepcopy(status)
    for u in updates:
        updated["conditions"] = set_condition(
            updated.get("conditions"), u.type, u.ok, u.reason, u.message, now=now
        )
    return updated


def repository_status(current: JSON, figures: RepositoryFigures, now: dt.datetime) -> JSON:
    status = copy.deepcopy(current)
    stamp = now_rfc3339(now)
    status.setdefault("firstBackupTime", stamp)
    status.update(
        {
            "lastBackupTime": stamp,
            "integrity": figures.integrity,
            "totalSize": human_size(figures.size_bytes),
            "snapshotCount": figures.snapshot_count,
            "snapshotsRemovedOnLastCleanup": figures.snapshots_removed,
        }
    )
    return status


class SessionReporter:
    """Conditional status writes to one BackupSession."""

    def __init__(self, client: Client, namespace: str, name: str) -> None:
        self.client, self.namespace, self.name = client, namespace, name

    def get(self) -> JSON:
        return self.client.get(BACKUP_SESSIONS, self.name, self.namespace)

    def update(self, change: Callable[[JSON], JSON | None]) -> tuple[JSON, JSON]:
        return update_status(self.client, BACKUP_SESSIONS, self.namespace, self.name, change)

    def record_host(self, kind: str, name: str, result: HostResult, holder: str = "") -> bool:
        """Record the host's stats; True when this write completed the session's hosts (the
        writer is then the last host and does the repository work, which ``holder``, this
        pod, claims in the same write: if it dies first, the operator sees whose it was)."""
        now = dt.datetime.now(dt.UTC)

        def change(status: JSON) -> JSON:
            after = with_host(status, kind, name, result)
            if holder and hosts_complete(after) and not hosts_complete(status):
                after = with_conditions(after, [claim(holder)], now)
            return after

        before, after = self.update(change)
        return hosts_complete(after) and not hosts_complete(before)

    def claim(self, holder: str) -> None:
        """Claim the session's repository work for ``holder`` (a finish Job's pod)."""
        self.set_conditions([claim(holder)])

    def set_conditions(self, updates: list[ConditionUpdate]) -> None:
        now = dt.datetime.now(dt.UTC)
        self.update(lambda s: with_conditions(s, updates, now))


def update_repository(
    client: Client, namespace: str, name: str, figures: RepositoryFigures
) -> None:
    now = dt.datetime.now(dt.UTC)
    update_status(
        client, REPOSITORIES, namespace, name, lambda s: repository_status(s, figures, now)
    )


def member_entry(invoker: JSON, index: int) -> JSON | None:
    """The member's status entry (a RestoreSession's: its own status), None before it starts."""
    status = invoker.get("status") or {}
    if invoker.get("kind") == "RestoreBatch":
        members = status.get("members") or []
        return members[index] if index < len(members) else None
    return {"phase": status.get("phase"), "stats": status.get("stats") or []}
