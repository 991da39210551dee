"""Progress of a running host: restic's status lines read, said in words, and reported as one
Event per host at a bounded rate."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable

import pytest

from api.objects import JSON
from cli.describe import describe_backup_session
from engine.progress import ProgressReport, event_name, progress_message, progress_of
from engine.restic import HostProgress, parse_progress

SESSION = {"kind": "BackupSession", "metadata": {"name": "nightly-1", "namespace": "demo"}}


def test_restics_backup_and_restore_status_lines_are_read() -> None:
    backup = parse_progress(
        '{"message_type":"status","seconds_elapsed":12,"seconds_remaining":90,'
        '"percent_done":0.42,"total_files":5000,"files_done":1200,"total_bytes":3113851290,'
        '"bytes_done":1307817542}'
    )
    assert backup == HostProgress(0.42, 1307817542, 3113851290, 1200, 5000, 90)
    restore = parse_progress(
        '{"message_type":"status","seconds_elapsed":3,"percent_done":0.5,"total_files":10,'
        '"files_restored":5,"total_bytes":2048,"bytes_restored":1024}'
    )
    assert restore == HostProgress(0.5, 1024, 2048, 5, 10, None)
    assert parse_progress('{"message_type":"summary"}') is None
    assert parse_progress("not json") is None
    assert parse_progress('{"message_type":"status","percent_done":"lots"}') is None


def test_progress_is_said_with_sizes_files_and_time_left() -> None:
    progress = HostProgress(0.42, 1307817542, 3113851290, 1200, 5000, 90)
    assert progress_message("PersistentVolumeClaim/data host host-0", progress) == (
        "PersistentVolumeClaim/data host host-0: 42% (1.2 GiB of 2.9 GiB, 1200 of 5000 files), "
        "about 1m30s left"
    )
    assert progress_message("Deployment/web host host-0", HostProgress(1.0, 10, 10, 0, 0)) == (
        "Deployment/web host host-0: 100% (10 B of 10 B)"
    )


class _Events:
    """An EventRecorder that keeps the Events it was given, by name."""

    def __init__(self) -> None:
        self.by_name: dict[str, JSON] = {}

    def record(self, obj: JSON, type_: str, reason: str, message: str, *, name: str = "") -> None:
        old = self.by_name.get(name, {"count": 0})
        self.by_name[name] = {"reason": reason, "message": message, "count": old["count"] + 1}


def _report(
    events: _Events, operation: str, what: str, clock: Callable[[], float]
) -> ProgressReport:
    return ProgressReport(
        events,  # type: ignore[arg-type]
        lambda: SESSION,
        operation=operation,
        what=what,
        clock=clock,
    )


def test_a_host_reports_one_event_at_a_bounded_rate(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("STASH_PROGRESS_INTERVAL", raising=False)
    now = [0.0]
    events = _Events()
    reads: list[int] = []

    def session() -> JSON:
        reads.append(1)
        return SESSION

    report = ProgressReport(
        events,  # type: ignore[arg-type]
        session,
        operation="backup",
        what="PersistentVolumeClaim/data host host-0",
        clock=lambda: now[0],
    )
    for second in range(0, 95):  # restic says where it is every second
        now[0] = float(second)
        report(HostProgress(second / 100, second, 100, 0, 0, None))
    name = event_name("nightly-1", "PersistentVolumeClaim/data host host-0")
    assert list(events.by_name) == [name]
    event = events.by_name[name]
    assert event["reason"] == "BackupProgress"
    assert event["count"] == 3  # at 10 s, 40 s and 70 s
    assert event["message"].startswith("PersistentVolumeClaim/data host host-0: 70% (")
    assert len(reads) == 1  # the session is read once, at the first report


def test_a_host_that_stopped_moving_leaves_its_event_at_its_last_advance(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("STASH_PROGRESS_INTERVAL", raising=False)
    now = [0.0]
    events = _Events()
    report = _report(events, "backup", "PersistentVolumeClaim/data host host-0", lambda: now[0])
    for second in range(0, 200):  # restic keeps saying where it is; it stuck at 20 s
        now[0] = float(second)
        done = min(second, 20)
        report(HostProgress(done / 100, done, 100, 0, 0, None))
    event = events.by_name[event_name("nightly-1", "PersistentVolumeClaim/data host host-0")]
    assert event["count"] == 2  # at 10 s and 40 s (at 20 %); from 70 s on nothing had moved
    assert event["message"].startswith("PersistentVolumeClaim/data host host-0: 20% (")


def test_a_short_backup_reports_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("STASH_PROGRESS_INTERVAL", raising=False)
    events = _Events()
    report = _report(events, "restore", "Deployment/web host host-0", lambda: 5.0)
    report(HostProgress(0.9, 9, 10, 0, 0, None))
    assert events.by_name == {}


def test_describe_shows_a_running_hosts_progress_beside_the_reported_ones() -> None:
    session = {
        **SESSION,
        "apiVersion": "stash.appscode.com/v1beta1",
        "spec": {"invoker": {"kind": "BackupBatch", "name": "nightly"}},
        "status": {
            "phase": "Running",
            "targets": [
                {
                    "ref": {"apiVersion": "apps/v1", "kind": "StatefulSet", "name": "db"},
                    "totalHosts": 3,
                    "phase": "Running",
                    "stats": [{"hostname": "host-0", "phase": "Succeeded", "duration": "3s"}],
                }
            ],
        },
    }
    progress = progress_of(
        [
            "StatefulSet/db host host-1: 42% (1.2 GiB of 2.9 GiB), about 1m30s left",
            "StatefulSet/db host host-0: 99% (9 B of 10 B)",  # reported since: not shown
            "garbage",
        ]
    )
    text = describe_backup_session(session, dt.datetime.now(dt.UTC), progress)
    assert "    host host-1: running, 42% (1.2 GiB of 2.9 GiB), about 1m30s left" in text
    assert "host host-0: running" not in text
    assert "    1 more host(s): still running" in text
