"""The demo's progress lines and its following of a session until it ends."""

from __future__ import annotations

import pytest

from api.objects import JSON
from devcluster.progress import TimedOut, follow, progress_line, wait_for


def member(kind: str, name: str, phase: str, hosts: int, total: int) -> JSON:
    return {
        "ref": {"kind": kind, "name": name},
        "phase": phase,
        "totalHosts": total,
        "stats": [{"hostname": f"host-{n}"} for n in range(hosts)],
    }


def test_a_progress_line_names_each_entry_its_hosts_and_the_jobs() -> None:
    status = {
        "phase": "Running",
        "members": [
            member("Deployment", "web", "Running", 0, 1),
            member("PersistentVolumeClaim", "data", "Succeeded", 1, 1),
        ],
    }
    jobs = [{"metadata": {"name": "stash-restore-all-1"}, "status": {"succeeded": 1}}]
    assert progress_line(status, "members", jobs) == (
        "   Running: Deployment/web Running (0/1 hosts), "
        "PersistentVolumeClaim/data Succeeded (1/1 hosts); Job stash-restore-all-1 Complete"
    )
    assert progress_line({}, "targets", []) == "   Pending: "


def test_following_says_each_change_once_and_returns_the_ended_object() -> None:
    states = iter(
        [
            {"status": {"phase": "Running"}},
            {"status": {"phase": "Running"}},
            {"status": {"phase": "Succeeded"}},
        ]
    )
    said: list[str] = []
    done = {
        "status": {"succeeded": 1, "completionTime": "2026-01-01T00:00:00Z"},
        "metadata": {"name": "j"},
    }
    ended = follow(
        said.append,
        30,
        lambda: next(states),
        lambda: [done],
        entries="targets",
        final=("Succeeded",),
    )
    assert ended == {"status": {"phase": "Succeeded"}}
    assert said == ["   Running: ; Job j Complete", "   Succeeded: ; Job j Complete"]


def test_waiting_for_what_never_comes_says_what() -> None:
    with pytest.raises(TimedOut, match="timed out waiting for the moon"):
        wait_for(lambda: None, 0.6, "the moon")
