"""What each backup invoker's schedule promised, as metrics: when its trigger CronJob last
started a slot, and whether it is suspended (the invoker paused).

The Pushgateway's metrics say when a backup last succeeded; these say when one was last due,
so an alert can tell "the last slot produced no successful backup" without knowing any cron
expression. Read from the informer's cache at scrape time: no API request.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator

from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from api.conditions import parse_rfc3339
from api.constants import GROUP
from api.objects import JSON
from api.views import Obj, text

LABELS = ["invoker_kind", "invoker_name", "namespace"]


def _invoker_of(cronjob: JSON) -> tuple[str, str] | None:
    for ref in Obj(cronjob).meta.owners:
        if ref.api_version.startswith(f"{GROUP}/") and ref.kind in (
            "BackupBatch",
            "BackupConfiguration",
        ):
            return ref.kind, ref.name
    return None


class ScheduleCollector(Collector):
    def __init__(self, cronjobs: Callable[[], Iterable[JSON]]) -> None:
        self.cronjobs = cronjobs

    def collect(self) -> Iterator[GaugeMetricFamily]:
        last = GaugeMetricFamily(
            "stash_backup_schedule_last_time_seconds",
            "When the invoker's schedule last started a backup slot (Unix time)",
            labels=LABELS,
        )
        suspended = GaugeMetricFamily(
            "stash_backup_schedule_suspended",
            "1 while the invoker is paused (its trigger CronJob suspended)",
            labels=LABELS,
        )
        for cronjob in self.cronjobs():
            invoker = _invoker_of(cronjob)
            if invoker is None:
                continue
            view = Obj(cronjob)
            labels = [*invoker, view.namespace]
            suspended.add_metric(labels, 1.0 if view.spec.suspended else 0.0)
            scheduled = text(view.status.raw, "lastScheduleTime")
            try:
                at = parse_rfc3339(scheduled).timestamp() if scheduled else None
            except ValueError:
                at = None  # not written by a CronJob controller: nothing to say
            if at is not None:
                last.add_metric(labels, at)
        yield last
        yield suspended
