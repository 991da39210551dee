"""Judging a restic lock by who took it: dead holders are found, a live one never is."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from engine.locks import Here, Holders, Verdict, judge
from engine.restic import LockInfo, parse_restic_time
from kube.errors import KubeError

NOW = dt.datetime(2026, 12, 1, 12, 0, tzinfo=dt.UTC)
MINUTE = dt.timedelta(minutes=1)


def lock(host: str, age: dt.timedelta = MINUTE, pid: int = 42) -> LockInfo:
    return LockInfo("a" * 64, host, pid, NOW - age, exclusive=False)


def pod(name: str, started: dt.datetime | None, *, sidecar: bool = True, **extra: Any) -> Any:
    running = {"running": {"startedAt": f"{started:%Y-%m-%dT%H:%M:%SZ}"}} if started else {}
    statuses = [{"name": "app", "state": {"running": {"startedAt": "2026-01-01T00:00:00Z"}}}]
    if sidecar:
        statuses.append({"name": "stash", "state": running})
    return {
        "metadata": {"name": name},
        "spec": extra.pop("spec", {}),
        "status": {"phase": "Running", "containerStatuses": statuses, **extra},
    }


def holders(where: Here, *pods: Any, gone: tuple[str, ...] = ()) -> Holders:
    """``pods`` exist; ``gone`` were pods here lately (their Events say so)."""
    by_name = {p["metadata"]["name"]: p for p in pods}
    return Holders(where, by_name.get, lambda: list(pods), lambda name: name in gone)


POD = Here("web-1", "web-1", "demo", NOW - 10 * MINUTE, repository_only_here=True)
HOSTNET = Here("node-a", "web-1", "demo", NOW - 10 * MINUTE, repository_only_here=True)


def verdict(lk: LockInfo, h: Holders, running: bool = True) -> Verdict:
    return judge(lk, h.where, h, NOW, pid_running=lambda _: running)[0]


def test_a_lock_of_a_pod_that_is_gone_is_dead_when_only_this_namespace_uses_the_repo() -> None:
    assert verdict(lock("web-0"), holders(POD, gone=("web-0",))) is Verdict.DEAD
    shared = Here("web-1", "web-1", "demo", POD.started, repository_only_here=False)
    assert verdict(lock("web-0"), holders(shared, gone=("web-0",))) is Verdict.UNKNOWN


def test_a_lock_of_a_host_that_never_was_a_pod_here_is_kept_while_it_may_be_refreshed() -> None:
    # restic run by hand on a workstation: kept while it can be live (refreshed every 5 min)
    assert verdict(lock("laptop", age=4 * MINUTE), holders(POD)) is Verdict.UNKNOWN
    assert verdict(lock("laptop", age=12 * MINUTE), holders(POD)) is Verdict.DEAD


def test_a_lock_of_a_running_pod_whose_restic_ran_since_before_it_is_alive() -> None:
    holder = pod("web-0", NOW - 5 * MINUTE)
    assert verdict(lock("web-0"), holders(POD, holder)) is Verdict.ALIVE


def test_a_lock_older_than_the_pods_restarted_sidecar_is_dead() -> None:
    holder = pod("web-0", NOW - MINUTE / 2)  # the stash container restarted after the lock
    assert verdict(lock("web-0"), holders(POD, holder)) is Verdict.DEAD


def test_a_lock_of_an_ended_job_pod_is_dead() -> None:
    done = pod("stash-backup-x", None, sidecar=False, phase="Succeeded")
    assert verdict(lock("stash-backup-x"), holders(POD, done)) is Verdict.DEAD


def test_this_pods_own_lock_is_judged_by_its_process_and_its_containers_start() -> None:
    assert verdict(lock("web-1"), holders(POD), running=True) is Verdict.ALIVE
    assert verdict(lock("web-1"), holders(POD), running=False) is Verdict.DEAD
    old = lock("web-1", age=20 * MINUTE)  # before this container started: an earlier one's
    assert verdict(old, holders(POD), running=True) is Verdict.DEAD


def test_on_the_host_network_another_pod_running_since_before_the_lock_keeps_it() -> None:
    other = pod("web-2", NOW - 30 * MINUTE, spec={"hostNetwork": True})
    assert verdict(lock("node-a"), holders(HOSTNET, other), running=False) is Verdict.UNKNOWN


def test_on_the_host_network_a_lock_from_before_this_restart_with_no_other_pod_is_dead() -> None:
    job_done = pod(
        "stash-backup-y", None, sidecar=False, phase="Succeeded", spec={"hostNetwork": True}
    )
    old = lock("node-a", age=20 * MINUTE)
    assert verdict(old, holders(HOSTNET, job_done), running=True) is Verdict.DEAD


def test_on_the_host_network_a_shared_repository_keeps_every_lock() -> None:
    shared = Here("node-a", "web-1", "demo", HOSTNET.started, repository_only_here=False)
    assert verdict(lock("node-a", age=20 * MINUTE), holders(shared)) is Verdict.UNKNOWN


def test_a_lock_not_refreshed_for_30_minutes_is_dead_whoever_took_it() -> None:
    holder = pod("web-0", NOW - 60 * MINUTE)
    assert verdict(lock("web-0", age=31 * MINUTE), holders(POD, holder)) is Verdict.DEAD


def test_a_pod_that_cannot_be_looked_up_keeps_its_lock() -> None:
    def failing(name: str) -> Any:
        raise KubeError("pods is forbidden", 403, "Forbidden")

    broken = Holders(POD, failing, list)
    assert verdict(lock("web-0"), broken) is Verdict.UNKNOWN


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2026-12-01T15:59:18.726162119Z", dt.datetime(2026, 12, 1, 15, 59, 18, 726162, dt.UTC)),
        ("2026-12-01T16:59:18+01:00", dt.datetime(2026, 12, 1, 15, 59, 18, tzinfo=dt.UTC)),
    ],
)
def test_restics_lock_times_are_read_with_nanoseconds_and_offsets(
    text: str, expected: dt.datetime
) -> None:
    assert parse_restic_time(text) == expected


def test_a_lock_whose_time_cannot_be_read_is_never_taken_for_stale() -> None:
    unreadable = LockInfo.from_json("b" * 64, {"hostname": "web-0", "time": "yesterday"})
    holder = pod("web-0", NOW - 60 * MINUTE)
    assert verdict(unreadable, holders(POD, holder)) is Verdict.ALIVE
    shared = Here("web-1", "web-1", "demo", POD.started, repository_only_here=False)
    assert verdict(unreadable, holders(shared)) is Verdict.UNKNOWN
