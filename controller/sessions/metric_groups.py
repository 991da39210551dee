"""What the Pushgateway holds for an invoker, derived from the API's record alone.

The operator is the Pushgateway's only writer (docs/security.md, "Metrics"): the pods that run
restic in tenants' namespaces record their results in the session's or restore's status, which
the API server already keeps to their namespace, and the operator turns that record into the
groups below. No pod can then push, overwrite or delete another namespace's metrics.

Every group is one PUT into job ``<invoker-kind>-<ns>-<invoker>`` (DESIGN.md section 4):

- the session group (no grouping labels): session and target success and duration, the last
  success times derived from the invoker's history;
- one host group per host (``kind``, ``name``, ``hostname``): the host's backup or restore;
- the repository group (``repository``): integrity, size, snapshot count, snapshots cleaned,
  from ``Repository.status``.

Sizes come from Stash's human-readable status fields, so they are exact to within the three
decimals those keep (at most 0.05%).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from prometheus_client import CollectorRegistry

from api import constants as c
from api.objects import JSON
from api.units import parse_size
from api.views import Entry, Obj, items, part, session_ended
from controller.sessions.backup_status import session_outcome
from engine import metrics
from engine.results import HostResult, RepositoryFigures


@dataclass(frozen=True)
class Group:
    """One PUT: the grouping labels besides ``job``, and what the group holds."""

    grouping: tuple[tuple[str, str], ...]
    registry: CollectorRegistry

    @property
    def labels(self) -> dict[str, str]:
        return dict(self.grouping)


def push_groups(url: str, who: metrics.Invoker, groups: list[Group]) -> None:
    """PUT every group of ``who``; raises ``MetricsError`` at the first the Pushgateway refuses."""
    for group in groups:
        metrics.push(url, who.job, group.labels, group.registry)


def _text(value: object) -> str:
    return value if isinstance(value, str) else ""


def _count(status: Mapping[str, Any], key: str) -> int:
    """A count the last host wrote (shape-checked: a pod wrote it), else 0."""
    value = status.get(key, None)
    return value if isinstance(value, int) and value >= 0 else 0


def _hosts(target: object) -> list[tuple[str, str, HostResult]]:
    """(kind, name, result) of each host recorded for a target entry (shape-checked: a pod
    wrote it)."""
    if not isinstance(target, dict):
        return []
    entry = Entry(target)
    kind, name = entry.ref.kind, entry.ref.name
    return [
        (kind, name, HostResult.from_status(dict(host.raw)))
        for host in entry.stats
        if host.hostname
    ]


def backup_host_groups(who: metrics.Invoker, status: JSON) -> list[Group]:
    """A backup session's host groups, one per host in ``status.targets[].stats``."""
    groups = []
    for target in items(status, "targets"):
        for kind, name, result in _hosts(target):
            groups.append(
                Group(
                    (("kind", kind), ("name", name), ("hostname", result.hostname)),
                    metrics.host_registry(who, kind, name, result),
                )
            )
    return groups


def restore_host_groups(who: metrics.Invoker, targets: Sequence[object]) -> list[Group]:
    """A restore's host groups, one per host in its targets' ``stats``."""
    return [
        Group(
            (("kind", kind), ("name", name), ("hostname", result.hostname)),
            metrics.restore_host_registry(who, kind, name, result),
        )
        for target in targets
        for kind, name, result in _hosts(target)
    ]


def latest_finished(sessions: list[JSON]) -> JSON | None:
    finished = [s for s in sessions if Obj(s).status.phase in c.RESULT_PHASES]
    return max(finished, key=lambda s: (Obj(s).meta.created, Obj(s).name), default=None)


def session_group(
    who: metrics.Invoker, status: JSON, history: list[JSON], ended: dt.datetime
) -> Group:
    """A finished session's group: ``status`` is the session's, ``history`` the invoker's other
    sessions (for the last success times)."""
    return Group((), metrics.session_registry(who, session_outcome(status, history, ended)))


def latest_session_groups(who: metrics.Invoker, sessions: list[JSON]) -> list[Group]:
    """The session group and host groups of the invoker's newest finished session (none when
    no session has finished)."""
    latest = latest_finished(sessions)
    if latest is None:
        return []
    status = part(latest, "status")
    history = [s for s in sessions if s is not latest]
    return [
        session_group(who, status, history, session_ended(Obj(latest))),
        *backup_host_groups(who, status),
    ]


def repository_group(who: metrics.Invoker, repository: JSON) -> Group | None:
    """The repository group from ``Repository.status`` (None: never backed up)."""
    status = Obj(repository).status.raw
    if "integrity" not in status:
        return None
    figures = RepositoryFigures(
        integrity=status["integrity"] is True,
        size_bytes=parse_size(_text(status.get("totalSize", "")) or "0 B"),
        snapshot_count=_count(status, "snapshotCount"),
        snapshots_removed=_count(status, "snapshotsRemovedOnLastCleanup"),
    )
    return Group((("repository", who.repository),), metrics.repository_registry(who, figures))
