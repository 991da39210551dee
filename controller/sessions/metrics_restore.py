"""The Pushgateway's metrics put back from the API's record after it lost them.

The Pushgateway keeps its groups in memory, in the leader's pod: a failover or a restart of
its container empties it, and an alert such as "no successful backup for N hours" would then
see nothing. The record is in the API: each invoker's newest finished BackupSession (history
keeps the last Succeeded one) and its Repository's status. While leading, the operator lists
the Pushgateway's groups every ``CHECK_SECONDS`` and pushes every invoker's session, host and
repository groups that are missing, derived from that record
(``controller.sessions.metric_groups``).
A group that is there is never touched: the session reconciler writes newer values as
sessions end.
"""

from __future__ import annotations

import json
import logging
import threading
import urllib.request
from urllib.error import URLError

from api import constants as c
from api.conditions import is_true
from api.objects import JSON
from api.views import Obj
from controller.runtime.caches import BACKUP_SESSIONS, INVOKER_TYPES, REPOSITORIES, Caches
from controller.sessions import metric_groups
from engine import metrics

log = logging.getLogger(__name__)

CHECK_SECONDS = 20.0


def pushed_groups(url: str) -> set[frozenset[tuple[str, str]]]:
    """The grouping labels (``job`` included) of every group the Pushgateway holds."""
    with urllib.request.urlopen(  # noqa: S310 - the operator's own Pushgateway URL
        f"{url.rstrip('/')}/api/v1/metrics", timeout=metrics.PUSH_TIMEOUT
    ) as response:
        doc = json.load(response)
    return {
        frozenset((doc_group.get("labels") or {}).items()) for doc_group in doc.get("data") or []
    }


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
            view = Obj(session)
            ref = view.spec.invoker
            key = (view.namespace, ref.kind, ref.name)
            by_invoker.setdefault(key, []).append(session)
        return by_invoker

    def _missing_of(
        self,
        who: metrics.Invoker,
        invoker: JSON,
        sessions: list[JSON],
        present: set[frozenset[tuple[str, str]]],
    ) -> list[metric_groups.Group]:
        """The invoker's groups the Pushgateway lacks and the record can rebuild."""
        wanted = metric_groups.latest_session_groups(who, sessions)
        repo_ref = Obj(invoker).spec.repository
        conditions = Obj(invoker).status.conditions
        if who.repository and is_true(conditions, c.REPOSITORY_FOUND):  # usable only
            namespace = repo_ref.namespace_or(who.namespace)
            repo = self.caches.get(REPOSITORIES, namespace, who.repository)
            figures = metric_groups.repository_group(who, repo) if repo else None
            wanted += [figures] if figures else []
        return [
            group
            for group in wanted
            if frozenset({("job", who.job), *group.grouping}) not in present
        ]

    def restore_missing(self) -> int:
        """Push every invoker's missing session and repository group; how many were pushed."""
        present = pushed_groups(self.url)
        by_invoker = self._sessions_by_invoker()
        pushed = 0
        for kind, rt in INVOKER_TYPES.items():
            for obj in self.caches.informer(rt).items():
                namespace, name = Obj(obj).key
                who = metrics.Invoker(kind, name, namespace, Obj(obj).spec.repository.name)
                sessions = by_invoker.get((namespace, kind, name), [])
                for group in self._missing_of(who, obj, sessions, present):
                    try:
                        metrics.push(self.url, who.job, group.labels, group.registry)
                    except metrics.MetricsError as exc:
                        log.info("metrics: %s", exc)
                        return pushed
                    pushed += 1
                    self.restored += 1
        if pushed:
            log.info("metrics: put %d group(s) back into the Pushgateway from the API", pushed)
        return pushed
