"""The Pushgateway's metrics put back from the API's record after it lost them.

The Pushgateway keeps its groups in memory, in the leader's pod: a failover or a restart of
its container empties it, and an alert such as "no successful backup for N hours" would then
see nothing. The record is in the API: each invoker's newest finished BackupSession (history
keeps the last Succeeded one) and its Repository's status. While leading, the operator lists
the Pushgateway's groups every ``CHECK_SECONDS`` and pushes every invoker's session group and
repository group that is missing, derived from that record. A group that is there is never
touched: hosts and the session reconciler write newer values as sessions end.
"""

from __future__ import annotations

import json
import logging
import threading
import urllib.request
from typing import Any
from urllib.error import URLError

from prometheus_client import CollectorRegistry

from controller.caches import BACKUP_SESSIONS, INVOKER_TYPES, REPOSITORIES, Caches
from controller.session_status import session_outcome
from controller.targets import parse_time
from engine import metrics
from engine.results import RepositoryFigures, parse_duration, parse_size

log = logging.getLogger(__name__)

JSON = dict[str, Any]
CHECK_SECONDS = 20.0
FINISHED = ("Succeeded", "Failed")


def pushed_groups(url: str) -> set[frozenset[tuple[str, str]]]:
    """The grouping labels (``job`` included) of every group the Pushgateway holds."""
    with urllib.request.urlopen(  # noqa: S310 - the operator's own Pushgateway URL
        f"{url.rstrip('/')}/api/v1/metrics", timeout=metrics.PUSH_TIMEOUT
    ) as response:
        doc = json.load(response)
    return {
        frozenset((doc_group.get("labels") or {}).items()) for doc_group in doc.get("data") or []
    }


def latest_finished(sessions: list[JSON]) -> JSON | None:
    finished = [s for s in sessions if (s.get("status") or {}).get("phase") in FINISHED]
    return max(
        finished,
        key=lambda s: (s["metadata"].get("creationTimestamp", ""), s["metadata"]["name"]),
        default=None,
    )


def session_group(invoker: metrics.Invoker, sessions: list[JSON]) -> CollectorRegistry | None:
    """The session group's registry, as it was pushed when the newest finished session ended."""
    latest = latest_finished(sessions)
    if latest is None:
        return None
    status = latest["status"]
    ended = parse_time(latest["metadata"]["creationTimestamp"]) + parse_duration(
        status.get("sessionDuration") or "0s"
    )
    history = [s for s in sessions if s is not latest]
    return metrics.session_registry(invoker, session_outcome(status, history, ended))


def repository_group(invoker: metrics.Invoker, repository: JSON) -> CollectorRegistry | None:
    """The repository group's registry from the Repository's status (None: never backed up)."""
    status = repository.get("status") or {}
    if "integrity" not in status:
        return None
    figures = RepositoryFigures(
        integrity=bool(status.get("integrity")),
        size_bytes=parse_size(str(status.get("totalSize") or "0 B")),
        snapshot_count=int(status.get("snapshotCount") or 0),
        snapshots_removed=int(status.get("snapshotsRemovedOnLastCleanup") or 0),
    )
    return metrics.repository_registry(invoker, figures)


class MetricsRestorer:
    """While running, puts back what the Pushgateway lacks of the API's record."""

    def __init__(self, caches: Caches, url: str, interval: float = CHECK_SECONDS) -> None:
        self.caches = caches
        self.url = url
        self.interval = interval
        self.restored = 0  # groups pushed back, for the log and tests
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._stop.clear()
        self._thread = threading.Thread(target=self._loop, name="metrics-restore", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(metrics.PUSH_TIMEOUT + 5)

    def _loop(self) -> None:
        while not self._stop.is_set():
            if self.caches.synced():
                try:
                    self.restore_missing()
                except (URLError, OSError, ValueError) as exc:
                    log.info("metrics: cannot read the Pushgateway's groups: %s", exc)
            self._stop.wait(self.interval)

    def _sessions_by_invoker(self) -> dict[tuple[str, str, str], list[JSON]]:
        by_invoker: dict[tuple[str, str, str], list[JSON]] = {}
        for session in self.caches.informer(BACKUP_SESSIONS).items():
            ref = (session.get("spec") or {}).get("invoker") or {}
            namespace = session["metadata"].get("namespace", "")
            key = (namespace, ref.get("kind", ""), ref.get("name", ""))
            by_invoker.setdefault(key, []).append(session)
        return by_invoker

    def _missing_of(
        self,
        who: metrics.Invoker,
        repo_namespace: str,
        sessions: list[JSON],
        present: set[frozenset[tuple[str, str]]],
    ) -> list[tuple[dict[str, str], CollectorRegistry]]:
        """The invoker's groups the Pushgateway lacks and the record can rebuild."""
        wanted: list[tuple[dict[str, str], CollectorRegistry | None]] = []
        if frozenset({("job", who.job)}) not in present:
            wanted.append(({}, session_group(who, sessions)))
        grouping = {"repository": who.repository}
        if frozenset({("job", who.job), *grouping.items()}) not in present:
            repo = self.caches.get(REPOSITORIES, repo_namespace, who.repository)
            wanted.append((grouping, repository_group(who, repo) if repo else None))
        return [(group, registry) for group, registry in wanted if registry is not None]

    def restore_missing(self) -> int:
        """Push every invoker's missing session and repository group; how many were pushed."""
        present = pushed_groups(self.url)
        by_invoker = self._sessions_by_invoker()
        pushed = 0
        for kind, rt in INVOKER_TYPES.items():
            for obj in self.caches.informer(rt).items():
                namespace = obj["metadata"].get("namespace", "")
                name = obj["metadata"]["name"]
                repo_ref = (obj.get("spec") or {}).get("repository") or {}
                who = metrics.Invoker(kind, name, namespace, repo_ref.get("name", ""))
                sessions = by_invoker.get((namespace, kind, name), [])
                repo_namespace = repo_ref.get("namespace") or namespace
                for group, registry in self._missing_of(who, repo_namespace, sessions, present):
                    try:
                        metrics.push(self.url, who.job, group, registry)
                    except metrics.MetricsError as exc:
                        log.info("metrics: %s", exc)
                        return pushed
                    pushed += 1
                    self.restored += 1
        if pushed:
            log.info("metrics: put %d group(s) back into the Pushgateway from the API", pushed)
        return pushed
