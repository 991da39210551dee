"""The index answers which invokers target a workload in sidecar mode."""

from __future__ import annotations

import random
from typing import Any

from pods.invokers import SidecarIndex, sidecar_targets_of
from tests.factories import batch, configuration, member


def test_a_batch_indexes_each_workload_member_and_skips_job_members() -> None:
    obj = batch(
        "nightly",
        "demo",
        member("Deployment", "web"),
        member("StatefulSet", "db"),
        member("PersistentVolumeClaim", "shared", task="pvc-backup"),
        member("Deployment", "worker", task="custom-task"),
    )
    targets = sidecar_targets_of(obj)
    assert sorted(targets) == [("demo", "Deployment", "web"), ("demo", "StatefulSet", "db")]
    assert targets[("demo", "StatefulSet", "db")][0].member_index == 1


def test_a_volume_snapshotter_batch_needs_no_sidecar() -> None:
    assert sidecar_targets_of(batch("snap", "demo", driver="VolumeSnapshotter")) == {}


def test_an_invoker_that_does_not_parse_targets_nothing() -> None:
    broken = batch()
    broken["spec"]["executionOrder"] = "Random"
    assert sidecar_targets_of(broken) == {}
    assert sidecar_targets_of({"kind": "ConfigMap"}) == {}


def test_two_invokers_on_one_workload_are_both_listed_in_a_stable_order() -> None:
    index = SidecarIndex()
    index.upsert(configuration("zeta"))
    index.upsert(batch("alpha"))
    assert [t.invoker for t in index.targets("demo", "Deployment", "web")] == [
        "BackupBatch/alpha",
        "BackupConfiguration/zeta",
    ]


def test_deleting_an_invoker_removes_its_targets() -> None:
    index = SidecarIndex()
    index.upsert(batch("a"))
    index.upsert(batch("b"))
    index.delete(batch("a"))
    assert [t.invoker for t in index.targets("demo", "Deployment", "web")] == ["BackupBatch/b"]
    index.delete(batch("b"))
    assert index.targets("demo", "Deployment", "web") == ()


def test_an_update_that_drops_a_member_drops_its_target() -> None:
    index = SidecarIndex()
    index.upsert(batch("a", "demo", member("Deployment", "web"), member("Deployment", "api")))
    index.upsert(batch("a", "demo", member("Deployment", "api")))
    assert index.targets("demo", "Deployment", "web") == ()
    assert len(index.targets("demo", "Deployment", "api")) == 1


def test_replace_swaps_the_whole_index() -> None:
    index = SidecarIndex()
    index.upsert(batch("old"))
    index.replace([batch("new", "demo", member("Deployment", "api"))])
    assert set(index.workloads()) == {("demo", "Deployment", "api")}


def test_replacing_one_kind_keeps_the_invokers_of_the_other() -> None:
    index = SidecarIndex()
    index.upsert(configuration("single"))
    index.replace([batch("fresh")], kind="BackupBatch")
    assert [t.invoker for t in index.targets("demo", "Deployment", "web")] == [
        "BackupBatch/fresh",
        "BackupConfiguration/single",
    ]


def test_changes_one_by_one_leave_the_index_a_full_rebuild_would_give() -> None:
    rng = random.Random(15)  # noqa: S311 - a reproducible sequence of changes
    workloads = [("Deployment", "web"), ("Deployment", "api"), ("StatefulSet", "db")]
    index, current = SidecarIndex(), dict[str, dict[str, Any]]()
    for step in range(300):
        name = f"b{rng.randrange(8)}"
        if rng.random() < 0.25:
            if name in current:
                index.delete(current.pop(name))
            continue
        chosen = rng.sample(workloads, rng.randrange(1, 3))
        obj = batch(name, "demo", *(member(kind, target) for kind, target in chosen))
        index.upsert(obj)
        current[name] = obj
        if step % 50 == 49:
            rebuilt = SidecarIndex()
            rebuilt.replace(current.values())
            assert index.workloads() == rebuilt.workloads(), step
    assert set(index.workloads()) == {
        ("demo", kind, target)
        for obj in current.values()
        for m in obj["spec"]["members"]
        for kind, target in [(m["target"]["ref"]["kind"], m["target"]["ref"]["name"])]
    }


def test_a_remembered_sidecar_is_forgotten_when_an_invoker_of_its_workload_changes() -> None:
    index = SidecarIndex()
    index.upsert(batch("a", "demo", member("Deployment", "web")))
    index.upsert(batch("b", "demo", member("Deployment", "api")))
    assert index.derive("demo", "Deployment", "web", "n", len) == 1
    assert index.derive("demo", "Deployment", "api", "n", len) == 1
    index.upsert(batch("c", "demo", member("Deployment", "web")))
    assert index.derive("demo", "Deployment", "web", "n", len) == 2
    assert index.derive("demo", "Deployment", "api", "n", len) == 1
