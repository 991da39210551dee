"""restic's forget rules applied to a listing: per target, per host and paths, newest first."""

from __future__ import annotations

from api.common import RetentionPolicy
from api.objects import JSON
from engine.restic import Snapshot
from engine.retention import (
    Guard,
    LastGood,
    apply_policy,
    guard_of,
    hold_large,
    keeps_anything,
    last_good,
    plan,
    policy_mark,
    protect,
    snapshot_time,
)


def _snap(ident: str, time: str, *tags: str, host: str = "host-0", path: str = "/data") -> Snapshot:
    return Snapshot(ident, ident, time, host, (path,), tags)


def _ids(snaps: list[Snapshot] | tuple[Snapshot, ...]) -> list[str]:
    return [s.id for s in snaps]


def test_keep_last_keeps_the_newest_whatever_the_listing_order() -> None:
    snaps = [_snap(str(i), f"2024-01-0{i}T10:00:00.123456789Z") for i in (3, 1, 4, 2, 5)]
    keep, remove = apply_policy(snaps, RetentionPolicy(name="p", keep_last=2))
    assert _ids(keep) == ["5", "4"]
    assert _ids(remove) == ["3", "2", "1"]


def test_daily_buckets_use_the_time_zone_the_snapshot_was_taken_in() -> None:
    # 03:00 on 2 January at +05:00 is 22:00 on 1 January in UTC: its own day is the 2nd.
    east = _snap("east", "2024-01-02T03:00:00+05:00")
    utc = _snap("utc", "2024-01-01T21:00:00+00:00")
    old = _snap("old", "2023-12-20T10:00:00+00:00")
    keep, remove = apply_policy([old, utc, east], RetentionPolicy(name="p", keep_daily=2))
    assert _ids(keep) == ["east", "utc"]
    assert _ids(remove) == ["old"]


def test_the_oldest_snapshot_is_kept_while_a_rule_has_count_left() -> None:
    snaps = [_snap("new", "2024-05-02T10:00:00Z"), _snap("old", "2024-05-02T09:00:00Z")]
    keep, _ = apply_policy(snaps, RetentionPolicy(name="p", keep_daily=3))
    assert _ids(keep) == ["new", "old"]


def test_weeks_are_iso_weeks() -> None:
    sunday = _snap("sun", "2024-01-07T12:00:00Z")
    monday = _snap("mon", "2024-01-08T12:00:00Z")
    saturday = _snap("sat", "2024-01-06T12:00:00Z")
    keep, remove = apply_policy(
        [monday, sunday, saturday], RetentionPolicy(name="p", keep_weekly=1)
    )
    assert _ids(keep) == ["mon"]
    assert _ids(remove) == ["sun", "sat"]


def test_keep_tags_keeps_a_snapshot_holding_every_tag_of_one_list() -> None:
    snaps = [
        _snap("both", "2024-01-03T00:00:00Z", "gold", "silver"),
        _snap("gold", "2024-01-02T00:00:00Z", "gold"),
        _snap("none", "2024-01-01T00:00:00Z"),
    ]
    keep, remove = apply_policy(snaps, RetentionPolicy(name="p", keep_tags=["gold,silver"]))
    assert _ids(keep) == ["both"]
    assert _ids(remove) == ["gold", "none"]


def test_each_target_host_and_paths_is_its_own_group() -> None:
    web, data = "target:Deployment/web", "target:PersistentVolumeClaim/data"
    snaps = [
        _snap("w2", "2024-01-02T00:00:00Z", web, "session:b"),
        _snap("w1", "2024-01-01T00:00:00Z", web, "session:a"),
        _snap("d2", "2024-01-02T00:00:00Z", data, "session:b"),
        _snap("d1", "2024-01-01T00:00:00Z", data, "session:a"),
        _snap("h1", "2024-01-01T00:00:00Z", web, "session:a", host="host-1"),
        _snap("p1", "2024-01-01T00:00:00Z", web, "session:a", path="/other"),
        _snap("x1", "2024-01-01T00:00:00Z", "target:Deployment/elsewhere"),
    ]
    planned = plan(snaps, RetentionPolicy(name="p", keep_last=1), [web, data, web])
    assert [t.tag for t in planned] == [web, data]
    assert _ids(planned[0].removed) == ["w1"]
    assert sorted(_ids(planned[0].kept)) == ["h1", "p1", "w2"]
    assert _ids(planned[1].removed) == ["d1"]


def test_a_policy_without_a_rule_keeps_nothing_and_says_so() -> None:
    assert not keeps_anything(RetentionPolicy(name="p", prune=True))
    assert keeps_anything(RetentionPolicy(name="p", keep_tags=["x"]))


def test_restics_nanosecond_times_are_read() -> None:
    assert snapshot_time("2024-01-01T10:00:00.123456789+05:30").utcoffset() is not None


WEB = "target:Deployment/web"
DATA = "target:PersistentVolumeClaim/data"


def _history(tag: str, count: int) -> list[Snapshot]:
    return [_snap(f"{tag}-{i}", f"2024-01-{i + 1:02d}T10:00:00Z", tag) for i in range(count)]


def test_a_forget_of_more_than_half_a_targets_snapshots_is_held_and_says_how_many() -> None:
    listing = _history(WEB, 10) + _history(DATA, 2)
    policy = RetentionPolicy(name="typo", keep_last=1)
    web, data = hold_large(plan(listing, policy, [WEB, DATA]), Guard())
    assert web.removed == ()
    assert len(web.kept) == 10
    assert web.held == "would remove 9 of its 10 snapshots at once, more than 50% of them"
    assert _ids(data.removed) == [f"{DATA}-0"]  # one of two: the usual slot, not held
    assert data.held == ""


def test_a_confirmed_policy_or_a_larger_share_lets_the_forget_go_ahead() -> None:
    listing = _history(WEB, 10)
    policy = RetentionPolicy(name="typo", keep_last=1)
    (confirmed,) = hold_large(plan(listing, policy, [WEB]), Guard(confirmed=True))
    assert len(confirmed.removed) == 9
    (wider,) = hold_large(plan(listing, policy, [WEB]), Guard(share=0.9))
    assert len(wider.removed) == 9  # 9 of 10 is not more than 90%


def test_the_invokers_annotations_set_the_guard_for_this_very_policy() -> None:
    policy = RetentionPolicy(name="nightly", keep_last=1)
    mark = policy_mark(policy)
    confirm = "stash.appscode.com/confirm-retention"
    share = "stash.appscode.com/retention-hold-share"
    assert guard_of({}, policy) == Guard(0.5, confirmed=False)
    assert guard_of({confirm: mark}, policy).confirmed
    changed = RetentionPolicy(name="nightly", keep_last=2)  # same name, other rules
    assert not guard_of({confirm: mark}, changed).confirmed
    assert guard_of({share: "0.8"}, policy).share == 0.8
    for wrong in ("0", "-1", "2", "half", ""):
        assert guard_of({share: wrong}, policy).share == 0.5


def _session(name: str, created: str, phase: str, *snapshot_ids: str) -> JSON:
    return {
        "metadata": {"name": name, "namespace": "demo", "creationTimestamp": created},
        "spec": {"invoker": {"kind": "BackupBatch", "name": "nightly"}},
        "status": {
            "phase": phase,
            "targets": [
                {
                    "ref": {"kind": "PersistentVolumeClaim", "name": "data"},
                    "stats": [
                        {"hostname": "host-0", "snapshots": [{"name": s, "path": "/data"}]}
                        for s in snapshot_ids
                    ],
                }
            ],
        },
    }


def test_the_last_good_session_is_the_newest_succeeded_one_of_the_invoker() -> None:
    other = _session("weekly-9", "2024-01-09T00:00:00Z", "Succeeded", "x")
    other["spec"]["invoker"]["name"] = "weekly"
    sessions = [
        _session("nightly-3", "2024-01-03T00:00:00Z", "Failed", "c"),
        _session("nightly-2", "2024-01-02T00:00:00Z", "Succeeded", "b1", "b2"),
        _session("nightly-1", "2024-01-01T00:00:00Z", "Succeeded", "a"),
        other,
    ]
    assert last_good(sessions, "BackupBatch", "nightly") == LastGood(
        "nightly-2", frozenset({"b1", "b2"})
    )
    assert last_good(sessions[:1], "BackupBatch", "nightly") is None


def test_retention_never_removes_the_snapshot_of_the_last_good_session() -> None:
    # The newest snapshot comes from a session not (yet) Succeeded; keepLast 1 would remove
    # the one before it, the last one known good: it stays, and is counted.
    listing = _history(DATA, 3)
    policy = RetentionPolicy(name="one", keep_last=1)
    good = LastGood("nightly-2", frozenset({f"{DATA}-1"}))
    (data,) = protect(plan(listing, policy, [DATA]), good)
    assert _ids(data.removed) == [f"{DATA}-0"]
    assert sorted(_ids(data.kept)) == [f"{DATA}-1", f"{DATA}-2"]
    assert data.protected == 1
    (unprotected,) = protect(plan(listing, policy, [DATA]), None)
    assert len(unprotected.removed) == 2
    assert unprotected.protected == 0


def test_a_short_id_recorded_protects_its_snapshot_too() -> None:
    snap = Snapshot("0123456789abcdef", "01234567", "2024-01-01T10:00:00Z", "h", ("/d",), (DATA,))
    assert LastGood("s", frozenset({"01234567"})).holds(snap)
    assert not LastGood("s", frozenset({"76543210"})).holds(snap)
