"""The schedule's metrics: when each invoker's trigger CronJob last started a slot, and whether
it is suspended, from the cached CronJobs."""

from __future__ import annotations

from typing import Any

from prometheus_client import CollectorRegistry, generate_latest

from api.objects import JSON
from controller.invokers.schedule_metrics import ScheduleCollector, StalenessCollector


def cronjob(name: str, kind: str = "BackupBatch", **status: Any) -> JSON:
    return {
        "metadata": {
            "name": f"stash-trigger-{name}",
            "namespace": "demo",
            "ownerReferences": [
                {"apiVersion": "stash.appscode.com/v1beta1", "kind": kind, "name": name}
            ],
        },
        "spec": {"suspend": status.pop("suspend", False)},
        "status": status,
    }


def _text(*cronjobs: JSON) -> str:
    registry = CollectorRegistry()
    registry.register(ScheduleCollector(lambda: list(cronjobs)))
    return generate_latest(registry).decode()


def test_each_invokers_last_slot_and_pause_are_reported() -> None:
    text = _text(
        cronjob("nightly", lastScheduleTime="2026-12-02T01:00:00Z"),
        cronjob("weekly", "BackupConfiguration", suspend=True),
    )
    labels = 'invoker_kind="BackupBatch",invoker_name="nightly",namespace="demo"'
    assert f"stash_backup_schedule_last_time_seconds{{{labels}}} 1.7961732e+09" in text
    assert f"stash_backup_schedule_suspended{{{labels}}} 0.0" in text
    weekly = 'invoker_kind="BackupConfiguration",invoker_name="weekly",namespace="demo"'
    assert f"stash_backup_schedule_suspended{{{weekly}}} 1.0" in text
    assert f"stash_backup_schedule_last_time_seconds{{{weekly}}}" not in text  # never fired


def test_cronjobs_not_made_for_an_invoker_or_with_a_strange_time_say_nothing_wrong() -> None:
    foreign = cronjob("other")
    foreign["metadata"]["ownerReferences"] = [{"apiVersion": "v1", "kind": "Pod", "name": "x"}]
    text = _text(foreign, cronjob("odd", lastScheduleTime="yesterday"))
    assert 'invoker_name="other"' not in text
    assert 'stash_backup_schedule_suspended{invoker_kind="BackupBatch",invoker_name="odd"' in text
    assert (
        'stash_backup_schedule_last_time_seconds{invoker_kind="BackupBatch",invoker_name="odd"'
        not in text
    )


def test_each_invokers_staleness_is_reported_from_its_condition() -> None:
    def invoker(name: str, status: str | None) -> JSON:
        conditions = [] if status is None else [{"type": "BackupStale", "status": status}]
        return {
            "kind": "BackupBatch",
            "metadata": {"name": name, "namespace": "demo"},
            "status": {"conditions": conditions},
        }

    registry = CollectorRegistry()
    invokers = [invoker("stopped", "True"), invoker("fresh", "False"), invoker("new", None)]
    registry.register(StalenessCollector(lambda: invokers))
    text = generate_latest(registry).decode()
    assert (
        'stash_backup_stale{invoker_kind="BackupBatch",invoker_name="stopped",namespace="demo"} 1.0'
        in text
    )
    assert (
        'stash_backup_stale{invoker_kind="BackupBatch",invoker_name="fresh",namespace="demo"} 0.0'
        in text
    )
    assert 'invoker_name="new"' not in text  # not judged yet: nothing said


def test_each_invokers_verification_is_reported_from_its_condition() -> None:
    def invoker(name: str, status: str | None) -> JSON:
        conditions = [] if status is None else [{"type": "BackupVerified", "status": status}]
        return {
            "kind": "BackupBatch",
            "metadata": {"name": name, "namespace": "demo"},
            "status": {"conditions": conditions},
        }

    registry = CollectorRegistry()
    invokers = [invoker("whole", "True"), invoker("torn", "False"), invoker("new", None)]
    registry.register(StalenessCollector(lambda: invokers))
    text = generate_latest(registry).decode()
    metric = "stash_backup_verification_success"
    assert (
        f'{metric}{{invoker_kind="BackupBatch",invoker_name="whole",namespace="demo"}} 1.0' in text
    )
    assert (
        f'{metric}{{invoker_kind="BackupBatch",invoker_name="torn",namespace="demo"}} 0.0' in text
    )
    assert 'invoker_name="new"' not in text  # never verified: nothing said
