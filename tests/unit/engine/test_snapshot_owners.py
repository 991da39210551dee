"""Two tenants sharing one Repository, both with a Deployment ``web``: each one's retention,
restore and listing see only its own snapshots (``api.tags``), and older untagged snapshots
belong to the Repository's own namespace."""

from __future__ import annotations

import pytest

from agent.host_backup import HostJob
from api.common import RetentionPolicy
from api.tags import SnapshotOwner, invoker_tag, namespace_tag, session_tag, target_tag
from engine import retention
from engine.restic import Snapshot
from engine.restore import HostRule, RestoreError, choose_snapshots

WEB = target_tag("Deployment", "web")


def snap(id_: str, day: int, *tags: str) -> Snapshot:
    return Snapshot(id_ * 8, id_, f"2026-01-{day:02d}T10:00:00Z", "host-0", ("/data",), tags)


def of(namespace: str, invoker: str, id_: str, day: int) -> Snapshot:
    kind, name = invoker.split("/")
    return snap(
        id_, day, namespace_tag(namespace), invoker_tag(kind, name), WEB, session_tag(f"s{id_}")
    )


# Team a owns the Repository (namespace a) and shares it with team b.
SHARED = [
    snap("00", 1, WEB, session_tag("old")),  # before namespace tags: namespace a's
    of("a", "BackupBatch/nightly", "a1", 2),
    of("a", "BackupBatch/nightly", "a2", 3),
    of("b", "BackupBatch/nightly", "b1", 4),
    of("b", "BackupBatch/nightly", "b2", 5),
    of("a", "BackupConfiguration/hourly", "h1", 6),
]


def test_a_hosts_backup_carries_its_namespace_invoker_target_and_session() -> None:
    job = HostJob("b", "nightly-1", "BackupBatch", "nightly", "Deployment", "web", "host-0")
    assert job.tags == (
        "namespace:b",
        "invoker:BackupBatch/nightly",
        "target:Deployment/web",
        "session:nightly-1",
    )
    assert job.owner("a").owns(job.tags)


def test_an_owner_is_its_namespace_and_invoker_and_untagged_snapshots_are_the_repositorys() -> None:
    owner = SnapshotOwner("a", "a", "BackupBatch/nightly")
    assert [s.short_id for s in SHARED if owner.owns(s.tags)] == ["00", "a1", "a2"]
    other = SnapshotOwner("b", "a", "BackupBatch/nightly")
    assert [s.short_id for s in SHARED if other.owns(s.tags)] == ["b1", "b2"]
    namespace_only = SnapshotOwner("a", "a")
    assert [s.short_id for s in SHARED if namespace_only.owns(s.tags)] == ["00", "a1", "a2", "h1"]


def test_retention_of_one_tenant_never_removes_the_others_snapshots() -> None:
    policy = RetentionPolicy(name="keep-1", keep_last=1, prune=False)
    owner = SnapshotOwner("b", "a", "BackupBatch/nightly")
    mine = [s for s in SHARED if owner.owns(s.tags)]
    (planned,) = retention.plan(mine, policy, [WEB])
    assert [s.short_id for s in planned.kept] == ["b2"]
    assert [s.short_id for s in planned.removed] == ["b1"]
    # Without the owner's selection the same policy would have taken team a's history.
    (unselected,) = retention.plan(SHARED, policy, [WEB])
    assert {"00", "a1", "a2"} <= {s.short_id for s in unselected.removed}


def test_a_restore_of_latest_returns_its_own_namespaces_data() -> None:
    rule = HostRule("host-0")
    (pick,) = choose_snapshots(SHARED, "Deployment", "web", rule, SnapshotOwner("a", "a"))
    assert pick.snapshot.short_id == "h1"  # a's newest, not b's later b2
    (pick,) = choose_snapshots(SHARED, "Deployment", "web", rule, SnapshotOwner("b", "a"))
    assert pick.snapshot.short_id == "b2"


def test_another_namespaces_snapshot_cannot_be_named_by_its_id() -> None:
    rule = HostRule("host-0", snapshots=("a1",))
    with pytest.raises(RestoreError, match="no snapshot a1 in the repository"):
        choose_snapshots(SHARED, "Deployment", "web", rule, SnapshotOwner("b", "a"))
    (pick,) = choose_snapshots(SHARED, "Deployment", "web", rule, SnapshotOwner("a", "a"))
    assert pick.snapshot.short_id == "a1"


def test_a_namespace_with_no_snapshots_of_its_own_gets_none_of_the_others() -> None:
    with pytest.raises(RestoreError):
        choose_snapshots(SHARED, "Deployment", "web", HostRule("host-0"), SnapshotOwner("c", "a"))
