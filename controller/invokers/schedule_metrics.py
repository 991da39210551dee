"""What each backup invoker's schedule promised, as metrics: when its trigger CronJob last
started a slot, whether it is suspended (the invoker paused), and whether the invoker is stale
(``controller.invokers.staleness``).

The Pushgateway's metrics say when a backup last succeeded; these say when one was last due,
so an alert can tell "the last slot produced no successful backup" without knowing any cron
expression; and whether the newest successful session was verified to restore whole
(``controller.sessions.verification``). Read from the informer's cache at scrape time: no API
request.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator

from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from api.conditions import get_condition, parse_rfc3339
from api.constants import BACKUP_STALE, BACKUP_VERIFIED, GROUP
from api.objects import JSON
from api.views import ConditionView, Obj, text

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


class StalenessCollector(Collector):
    """``stash_backup_stale``: 1 while an invoker's ``BackupStale`` condition says its backups
    stopped happening, 0 while it says they did not (paused, or recent); from the invokers'
    cache at scrape time."""

    def __init__(self, invokers: Callable[[], Iterable[JSON]]) -> None:
        self.invokers = invokers

    def collect(self) -> Iterator[GaugeMetricFamily]:
        stale = GaugeMetricFamily(
            "stash_backup_stale",
            "1 while no session of the invoker succeeded for longer than its schedule (two "
            "slots) or its stale-after annotation allows",
            labels=LABELS,
        )
        verified = GaugeMetricFamily(
            "stash_backup_verification_success",
            "1 when the last verification restored the invoker's newest successful session "
            "whole, 0 when it found differences or could not finish (BackupVerified)",
            labels=LABELS,
        )
        for invoker in map(Obj, self.invokers()):
            if not invoker.kind:
                continue
            labels = [invoker.kind, invoker.name, invoker.namespace]
            said = get_condition(invoker.status.conditions, BACKUP_STALE)
            if said is not None:
                stale.add_metric(labels, 1.0 if ConditionView(said).true else 0.0)
            proven = get_condition(invoker.status.conditions, BACKUP_VERIFIED)
            if proven is not None:
                verified.add_metric(labels, 1.0 if ConditionView(proven).true else 0.0)
        yield stale
        yield verified
