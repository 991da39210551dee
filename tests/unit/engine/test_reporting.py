"""Recording hosts in a session's status, and the Repository's figures."""

from __future__ import annotations

import copy
import datetime as dt
from typing import Any

import pytest

from api.conditions import get_condition
from api.constants import (
    POST_BACKUP_HOOK_SUCCEEDED,
    PRE_BACKUP_HOOK_SUCCEEDED,
    REPOSITORY_WORK_CLAIMED,
)
from engine.reporting import (
    ReportError,
    SessionReporter,
    host_reported,
    hosts_complete,
    repository_status,
    with_host,
)
from engine.results import HookOutcome, HostResult, RepositoryFigures

NOW = dt.datetime(2026, 1, 1, 10, 0, tzinfo=dt.UTC)


def status(*targets: tuple[str, str, int]) -> dict[str, Any]:
    return {
        "phase": "Running",
        "targets": [
            {"ref": {"kind": kind, "name": name}, "totalHosts": hosts, "phase": "Running"}
            for kind, name, hosts in targets
        ],
    }


def test_hosts_are_recorded_once_each_and_sorted() -> None:
    before = status(("StatefulSet", "db", 2))
    one = with_host(before, "StatefulSet", "db", HostResult("host-1", "Failed", 1.0, error="x"))
    two = with_host(one, "StatefulSet", "db", HostResult("host-0", "Succeeded", 1.0))
    again = with_host(two, "StatefulSet", "db", HostResult("host-1", "Succeeded", 2.0))
    stats = again["targets"][0]["stats"]
    assert [(s["hostname"], s["phase"]) for s in stats] == [
        ("host-0", "Succeeded"),
        ("host-1", "Succeeded"),
    ]
    assert "stats" not in before["targets"][0], "the input is not modified"
    assert host_reported(again, "StatefulSet", "db", "host-1")
    assert not host_reported(again, "Deployment", "db", "host-1")


def test_the_session_is_complete_when_every_target_has_all_its_hosts() -> None:
    current = status(("StatefulSet", "db", 2), ("Deployment", "web", 1))
    current = with_host(current, "StatefulSet", "db", HostResult("host-0", "Succeeded", 1))
    current = with_host(current, "Deployment", "web", HostResult("host-0", "Succeeded", 1))
    assert not hosts_complete(current)
    current = with_host(current, "StatefulSet", "db", HostResult("host-1", "Succeeded", 1))
    assert hosts_complete(current)
    assert not hosts_complete({})


def test_a_host_of_an_unknown_target_is_refused() -> None:
    with pytest.raises(ReportError, match="no target Deployment/other"):
        with_host(
            status(("Deployment", "web", 1)), "Deployment", "other", HostResult("h", "Failed", 0)
        )


def test_repository_status_keeps_the_first_backup_time_and_updates_the_rest() -> None:
    figures = RepositoryFigures(True, 3 * 2**20, 4, 1)
    first = repository_status({"references": [{"name": "x"}]}, figures, NOW)
    assert first == {
        "references": [{"name": "x"}],
        "firstBackupTime": "2026-01-01T10:00:00Z",
        "lastBackupTime": "2026-01-01T10:00:00Z",
        "integrity": True,
        "totalSize": "3.000 MiB",
        "snapshotCount": 4,
        "snapshotsRemovedOnLastCleanup": 1,
    }
    later = repository_status(first, figures, NOW + dt.timedelta(hours=1))
    assert later["firstBackupTime"] == "2026-01-01T10:00:00Z"
    assert later["lastBackupTime"] == "2026-01-01T11:00:00Z"


def test_hook_outcomes_become_the_targets_stash_conditions_and_a_failure_stays() -> None:
    failed = HostResult(
        "host-0", "Failed", 1.0, error="x", hooks=(HookOutcome("preBackup", False, "exit 1"),)
    )
    fine = HostResult(
        "host-1",
        "Succeeded",
        1.0,
        hooks=(HookOutcome("preBackup", True, "ran"), HookOutcome("postBackup", True, "ran")),
    )
    after = with_host(
        with_host(status(("StatefulSet", "db", 2)), "StatefulSet", "db", failed),
        "StatefulSet",
        "db",
        fine,
    )
    conditions = after["targets"][0]["conditions"]
    pre = get_condition(conditions, PRE_BACKUP_HOOK_SUCCEEDED)
    post = get_condition(conditions, POST_BACKUP_HOOK_SUCCEEDED)
    assert pre is not None
    assert pre["status"] == "False"  # host-1's success does not hide host-0's failure
    assert pre["message"] == "host-0: exit 1"
    assert post is not None
    assert post["status"] == "True"


class _OneSession:
    """An API server holding one BackupSession: conditional status writes, as the real one."""

    def __init__(self, session_status: dict[str, Any]) -> None:
        self.obj: dict[str, Any] = {
            "metadata": {"name": "s", "namespace": "demo", "resourceVersion": "1"},
            "status": session_status,
        }

    def get(self, rt: Any, name: str, namespace: str | None = None) -> dict[str, Any]:
        return copy.deepcopy(self.obj)

    def patch(self, rt: Any, name: str, patch: Any, **kw: Any) -> dict[str, Any]:
        assert patch["metadata"]["resourceVersion"] == self.obj["metadata"]["resourceVersion"]
        self.obj["status"] = patch["status"]
        self.obj["metadata"]["resourceVersion"] = str(
            int(self.obj["metadata"]["resourceVersion"]) + 1
        )
        return copy.deepcopy(self.obj)


def test_the_host_that_completes_the_session_claims_its_repository_work_in_the_same_write() -> None:
    api = _OneSession(status(("StatefulSet", "db", 2)))
    reporter = SessionReporter(api, "demo", "s")  # type: ignore[arg-type]
    holder = "pod:demo/db-1"
    assert not reporter.record_host(
        "StatefulSet", "db", HostResult("host-0", "Succeeded", 1.0), holder
    )
    assert get_condition(api.obj["status"].get("conditions"), REPOSITORY_WORK_CLAIMED) is None
    last = reporter.record_host("StatefulSet", "db", HostResult("host-1", "Succeeded", 1.0), holder)
    assert last
    assert api.obj["metadata"]["resourceVersion"] == "3"  # stats and claim: one write each time
    claimed = get_condition(api.obj["status"]["conditions"], REPOSITORY_WORK_CLAIMED)
    assert claimed is not None
    assert claimed["message"] == holder
