"""BackupStale: an invoker whose backups stopped happening is named, from its own schedule."""

from __future__ import annotations

import datetime as dt
from typing import Any

from api import constants as c
from api.conditions import get_condition
from api.objects import JSON
from controller.invokers.evaluation import InvokerFacts, evaluate
from controller.invokers.staleness import LastSuccess, last_success, staleness
from tests.factories import batch

NOW = dt.datetime(2026, 12, 7, 12, 30, tzinfo=dt.UTC)


def hourly(**spec: Any) -> JSON:
    invoker = batch("nightly", "demo", schedule="0 * * * *", **spec)
    invoker["metadata"]["creationTimestamp"] = "2026-12-01T00:00:00Z"
    return invoker


def session(name: str, created: str, phase: str, duration: str = "1m0s") -> JSON:
    return {
        "metadata": {"name": name, "namespace": "demo", "creationTimestamp": created},
        "spec": {"invoker": {"kind": "BackupBatch", "name": "nightly"}},
        "status": {"phase": phase, "sessionDuration": duration},
    }


def success(began: str, name: str = "nightly-1") -> LastSuccess:
    start = dt.datetime.fromisoformat(began.replace("Z", "+00:00"))
    return LastSuccess(name, start, start + dt.timedelta(minutes=1))


def test_the_newest_succeeded_session_is_the_last_success() -> None:
    found = last_success(
        [
            session("nightly-3", "2026-12-07T12:00:00Z", "Failed"),
            session("nightly-2", "2026-12-07T11:00:00Z", "Succeeded", "2m30s"),
            session("nightly-1", "2026-12-07T10:00:00Z", "Succeeded"),
            session("nightly-4", "2026-12-07T12:05:00Z", "Running"),
        ]
    )
    assert found == LastSuccess(
        "nightly-2",
        dt.datetime(2026, 12, 7, 11, 0, tzinfo=dt.UTC),
        dt.datetime(2026, 12, 7, 11, 2, 30, tzinfo=dt.UTC),
    )
    assert last_success([session("nightly-1", "2026-12-07T10:00:00Z", "Failed")]) is None


def test_a_success_within_two_slots_is_recent_until_the_second_slot_passes() -> None:
    verdict = staleness(hourly(), success("2026-12-07T11:00:00Z"), NOW)
    assert not verdict.stale
    assert verdict.reason == "BackupRecent"
    assert verdict.due == dt.datetime(2026, 12, 7, 13, 0, tzinfo=dt.UTC)
    assert "stale from 2026-12-07T13:00:00Z" in verdict.message


def test_two_slots_without_a_success_make_it_stale_saying_which() -> None:
    verdict = staleness(hourly(), success("2026-12-07T10:00:00Z"), NOW)
    assert verdict.stale
    assert verdict.reason == "NoRecentBackup"
    assert "nightly-1, ended 2026-12-07T10:01:00Z" in verdict.message
    assert "slots at 2026-12-07T11:00:00Z and 2026-12-07T12:00:00Z" in verdict.message


def test_an_invoker_that_never_succeeded_counts_from_its_creation() -> None:
    young = hourly()
    young["metadata"]["creationTimestamp"] = "2026-12-07T11:30:00Z"
    assert not staleness(young, None, NOW).stale
    verdict = staleness(hourly(), None, NOW)
    assert verdict.stale
    assert "since it was created (2026-12-01T00:00:00Z)" in verdict.message


def test_a_paused_invoker_is_never_stale() -> None:
    verdict = staleness(hourly(paused=True), None, NOW)
    assert not verdict.stale
    assert verdict.reason == "InvokerPaused"
    assert verdict.due is None


def test_the_stale_after_annotation_sets_the_age_allowed() -> None:
    invoker = hourly()
    invoker["metadata"]["annotations"] = {c.STALE_AFTER_ANNOTATION: "36h"}
    last = success("2026-12-06T06:00:00Z")
    assert not staleness(invoker, last, NOW).stale  # 36h after 06:01 yesterday: 18:01 today
    assert staleness(invoker, last, NOW + dt.timedelta(days=1)).stale
    unscheduled = batch("adhoc", "demo", schedule="")
    unscheduled["metadata"]["annotations"] = {c.STALE_AFTER_ANNOTATION: "1h"}
    unscheduled["metadata"]["creationTimestamp"] = "2026-12-01T00:00:00Z"
    assert staleness(unscheduled, None, NOW).stale


def test_a_wrong_annotation_is_said_and_the_schedule_decides() -> None:
    invoker = hourly()
    invoker["metadata"]["annotations"] = {c.STALE_AFTER_ANNOTATION: "soon"}
    verdict = staleness(invoker, success("2026-12-07T10:00:00Z"), NOW)
    assert verdict.stale
    assert "'soon' is not a duration" in verdict.message


def test_without_a_schedule_nothing_is_judged_and_the_condition_says_how_to_be_told() -> None:
    verdict = staleness(batch("adhoc", "demo", schedule=""), None, NOW)
    assert not verdict.stale
    assert verdict.reason == "ScheduleNotSet"
    assert c.STALE_AFTER_ANNOTATION in verdict.message


def test_judging_again_later_changes_nothing_until_the_verdict_turns() -> None:
    facts = InvokerFacts(last_success=success("2026-12-07T11:00:00Z"))
    first = evaluate(hourly(), facts, now=NOW)
    invoker = {**hourly(), "status": first.as_status(None)}
    again = evaluate(invoker, facts, now=NOW + dt.timedelta(minutes=20))
    assert again.conditions == first.conditions
    assert first.recheck_at == dt.datetime(2026, 12, 7, 13, 0, tzinfo=dt.UTC)
    later = evaluate(invoker, facts, now=dt.datetime(2026, 12, 7, 13, 0, tzinfo=dt.UTC))
    condition = get_condition(later.conditions, c.BACKUP_STALE)
    assert condition is not None
    assert condition["status"] == "True"
    assert later.recheck_at is None
    assert later.phase == first.phase  # stale is said, not a reason to stop backing up
