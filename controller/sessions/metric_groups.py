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
from collections.abc import Sequence
from dataclasses import dataclass

from prometheus_client import CollectorRegistry

from api import constants as c
from api.conditions import parse_rfc3339
from api.objects import JSON
from api.units import parse_duration, parse_size
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


def _hosts(target: object) -> list[tuple[str, str, HostResult]]:
    """(kind, name, result) of each host recorded for a target entry (shape-checked: a pod
    wrote it)."""
    if not isinstance(target, dict):
        return []
    ref = target.get("ref")
    ref = ref if isinstance(ref, dict) else {}
    stats = target.get("stats")
    kind, name = _text(ref.get("kind")), _text(ref.get("name"))
    return [
        (kind, name, HostResult.from_status(host))
        for host in (stats if isinstance(stats, list) else [])
        if isinstance(host, dict) and _text(host.get("hostname"))
    ]


def backup_host_groups(who: metrics.Invoker, status: JSON) -> list[Group]:
    """A backup session's host groups, one per host in ``status.targets[].stats``."""
    targets = status.get("targets")
    groups = []
    for target in targets if isinstance(targets, list) else []:
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
    finished = [s for s in sessions if (s.get("status") or {}).get("phase") in c.RESULT_PHASES]
    return max(
        finished,
        key=lambda s: (s["metadata"].get("creationTimestamp", ""), s["metadata"]["name"]),
        default=None,
    )


def ended_at(session: JSON) -> dt.datetime:
    """When a finished session ended: its creation plus its recorded duration."""
    status = session.get("status") or {}
    return parse_rfc3339(session["metadata"]["creationTimestamp"]) + parse_duration(
        _text(status.get("sessionDuration")) or "0s"
    )


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
    status = latest.get("status") or {}
    history = [s for s in sessions if s is not latest]
    return [session_group(who, status, history, ended_at(latest)), *backup_host_groups(who, status)]


def repository_group(who: metrics.Invoker, repository: JSON) -> Group | None:
    """The repository group from ``Repository.status`` (None: never backed up)."""
    status = repository.get("status") or {}
    if "integrity" not in status:
        return None
    count = status.get("snapshotCount")
    removed = status.get("snapshotsRemovedOnLastCleanup")
    figures = RepositoryFigures(
        integrity=status.get("integrity") is True,
        size_bytes=parse_size(_text(status.get("totalSize")) or "0 B"),
        snapshot_count=count if isinstance(count, int) and count >= 0 else 0,
        snapshots_removed=removed if isinstance(removed, int) and removed >= 0 else 0,
    )
    return Group((("repository", who.repository),), metrics.repository_registry(who, figures))
