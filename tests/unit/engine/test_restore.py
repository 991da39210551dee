"""Which snapshots a host restores (Stash's rules, chosen per host, against a repository's
list), and a dump streamed into a restore command."""

from __future__ import annotations

import contextlib
import io
from collections.abc import Iterator
from typing import cast

import pytest

from api.restore import Rule
from engine.restic import Restic, Snapshot
from engine.restore import (
    HostRule,
    Pick,
    RestoreError,
    choose_snapshots,
    rule_for_host,
    stream_dump,
)


def snap(
    id_: str,
    time: str,
    host: str = "host-0",
    paths: tuple[str, ...] = ("/stash-data",),
    target: str = "PersistentVolumeClaim/data",
) -> Snapshot:
    return Snapshot(id_ * 8, id_, time, host, paths, (f"session:s-{id_}", f"target:{target}"))


REPO = [
    snap("a1", "2026-01-01T10:00:00Z"),
    snap("b2", "2026-01-02T10:00:00Z"),
    snap("c3", "2026-01-03T10:00:00Z", host="host-1"),
    snap("d4", "2026-01-04T10:00:00Z", target="PersistentVolumeClaim/other"),
    snap(
        "e5",
        "2026-01-05T10:00:00Z",
        host="host-0",
        paths=("/data/web", "/data/logs"),
        target="Deployment/web",
    ),
]


def chosen(rule: HostRule, kind: str = "PersistentVolumeClaim", name: str = "data") -> list[Pick]:
    return choose_snapshots(REPO, kind, name, rule)


def test_no_rules_restore_the_hosts_own_newest_snapshot() -> None:
    assert rule_for_host("host-0", None) == HostRule("host-0")
    assert [p.snapshot.short_id for p in chosen(HostRule("host-0"))] == ["b2"]


def test_a_rule_naming_the_host_wins_over_one_for_every_host() -> None:
    rules = [
        Rule(snapshots=["a1"]),
        Rule(target_hosts=["host-1"], source_host="host-0"),
    ]
    assert rule_for_host("host-1", rules) == HostRule("host-0")
    assert rule_for_host("host-0", rules) == HostRule("host-0", snapshots=("a1",))


def test_a_host_no_rule_applies_to_fails_saying_which_hosts_the_rules_name() -> None:
    rules = [Rule(target_hosts=["host-0", "host-1"])]
    with pytest.raises(RestoreError, match=r"no rule of spec\.target\.rules applies to host-2"):
        rule_for_host("host-2", rules, "spec.target.rules")


def test_a_snapshot_is_named_by_its_short_or_full_id_and_latest_means_the_hosts_newest() -> None:
    assert [p.snapshot.short_id for p in chosen(HostRule("host-0", snapshots=("a1",)))] == ["a1"]
    full = HostRule("host-0", snapshots=("b2" * 8,))
    assert [p.snapshot.short_id for p in chosen(full)] == ["b2"]
    latest = HostRule("host-1", snapshots=("latest",))
    assert [p.snapshot.short_id for p in chosen(latest)] == ["c3"]


def test_a_snapshot_that_is_not_there_is_said_by_its_id() -> None:
    with pytest.raises(RestoreError, match="no snapshot ffff in the repository"):
        chosen(HostRule("host-0", snapshots=("ffff",)))


def test_a_source_host_restores_another_hosts_data() -> None:
    assert [p.snapshot.short_id for p in chosen(HostRule("host-1"))] == ["c3"]


def test_a_host_without_snapshots_is_said_with_the_hosts_there_are() -> None:
    with pytest.raises(RestoreError, match=r"no snapshot of host host-9 .*host-0, host-1"):
        chosen(HostRule("host-9"))


def test_a_path_picks_the_newest_snapshot_holding_it_and_restores_only_that_path() -> None:
    picks = chosen(HostRule("host-0", paths=("/data/web",)), "Deployment", "web")
    assert [(p.snapshot.short_id, p.include) for p in picks] == [("e5", ("/data/web",))]
    whole = chosen(HostRule("host-0", paths=("/stash-data",)))
    assert [(p.snapshot.short_id, p.include) for p in whole] == [("b2", ())]


def test_a_path_below_a_snapshots_path_is_held_by_it() -> None:
    picks = chosen(HostRule("host-0", paths=("/stash-data/sub",)))
    assert [(p.snapshot.short_id, p.include) for p in picks] == [("b2", ("/stash-data/sub",))]


def test_a_path_no_snapshot_holds_fails() -> None:
    with pytest.raises(RestoreError, match="no snapshot of host host-0 holds /nowhere"):
        chosen(HostRule("host-0", paths=("/nowhere",)))


def test_restoring_into_another_target_takes_the_one_target_the_hosts_snapshots_are_of() -> None:
    picks = choose_snapshots(REPO[2:3], "PersistentVolumeClaim", "copy", HostRule("host-1"))
    assert [p.snapshot.short_id for p in picks] == ["c3"]


def test_restoring_into_another_target_never_guesses_between_several_targets() -> None:
    with pytest.raises(RestoreError, match=r"2 targets .*PersistentVolumeClaim/data.*other"):
        choose_snapshots(REPO[:4], "PersistentVolumeClaim", "copy", HostRule("host-0"))


def test_an_empty_repository_says_so() -> None:
    with pytest.raises(RestoreError, match="the repository has no snapshots"):
        choose_snapshots([], "PersistentVolumeClaim", "data", HostRule("host-0"))


class _Dumping:
    """A restic whose ``dump`` streams ``size`` bytes (enough to fill any pipe)."""

    def __init__(self, size: int) -> None:
        self.size = size

    @contextlib.contextmanager
    def dump(self, snapshot: str, filename: str) -> Iterator[io.BytesIO]:
        yield io.BytesIO(b"x" * self.size)


def test_a_restore_command_that_stops_early_fails_in_its_own_words() -> None:
    command = "sh -c 'echo \"FATAL:  database nope does not exist\" >&2; exit 2'"
    with pytest.raises(RestoreError, match=r"sh exited with 2: FATAL:  database nope does not"):
        stream_dump(cast(Restic, _Dumping(8 * 1024 * 1024)), REPO[0], "dumpfile.sql", command)


def test_a_restore_command_that_reads_it_all_succeeds() -> None:
    stream_dump(
        cast(Restic, _Dumping(3 * 1024 * 1024)), REPO[0], "dumpfile.sql", "sh -c 'cat >/dev/null'"
    )
