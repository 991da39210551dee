"""Which snapshot a backup compares against: the target's own last one, never another target's
that shares its host name and paths."""

from __future__ import annotations

from typing import Any

from agent.host_backup import HostJob, parent_in_sessions

JOB = HostJob(
    "demo", "nightly-300", "BackupBatch", "nightly", "PersistentVolumeClaim", "a", "host-0"
)


def session(
    name: str, created: str, targets: list[dict[str, Any]], invoker: str = "nightly"
) -> Any:
    return {
        "metadata": {"name": name, "creationTimestamp": created},
        "spec": {
            "invoker": {"apiGroup": "stash.appscode.com", "kind": "BackupBatch", "name": invoker}
        },
        "status": {"targets": targets},
    }


def target(kind: str, name: str, host: str, snapshot: str, path: str = "/stash-data") -> Any:
    return {
        "ref": {"kind": kind, "name": name},
        "stats": [{"hostname": host, "snapshots": [{"name": snapshot, "path": path}]}],
    }


def test_the_parent_is_the_targets_own_newest_snapshot_on_that_host() -> None:
    sessions = [
        session(
            "nightly-100",
            "2026-12-01T10:00:00Z",
            [target("PersistentVolumeClaim", "a", "host-0", "old-a")],
        ),
        session(
            "nightly-200",
            "2026-12-01T11:00:00Z",
            [
                target("PersistentVolumeClaim", "b", "host-0", "new-b"),
                target("PersistentVolumeClaim", "a", "host-0", "new-a"),
                target("Deployment", "web", "host-0", "web"),
            ],
        ),
    ]
    assert parent_in_sessions(sessions, JOB, "/stash-data") == "new-a"


def test_another_target_host_path_or_invoker_is_never_the_parent() -> None:
    sessions = [
        session(
            "nightly-200",
            "2026-12-01T11:00:00Z",
            [target("PersistentVolumeClaim", "b", "host-0", "b")],
        ),
        session(
            "nightly-201",
            "2026-12-01T11:01:00Z",
            [target("PersistentVolumeClaim", "a", "host-1", "a1")],
        ),
        session(
            "nightly-202",
            "2026-12-01T11:02:00Z",
            [target("PersistentVolumeClaim", "a", "host-0", "p", "/other")],
        ),
        session(
            "weekly-203",
            "2026-12-01T11:03:00Z",
            [target("PersistentVolumeClaim", "a", "host-0", "w")],
            "weekly",
        ),
    ]
    assert parent_in_sessions(sessions, JOB, "/stash-data") is None


def test_the_running_session_and_hosts_without_a_snapshot_are_skipped() -> None:
    failed = {
        "ref": {"kind": "PersistentVolumeClaim", "name": "a"},
        "stats": [{"hostname": "host-0"}],
    }
    sessions = [
        session(
            "nightly-100",
            "2026-12-01T10:00:00Z",
            [target("PersistentVolumeClaim", "a", "host-0", "ok")],
        ),
        session("nightly-200", "2026-12-01T11:00:00Z", [failed]),
        session(
            "nightly-300",
            "2026-12-01T12:00:00Z",
            [target("PersistentVolumeClaim", "a", "host-0", "mine")],
        ),
    ]
    assert parent_in_sessions(sessions, JOB, "/stash-data") == "ok"
