"""The Pushgateway's groups derived from the API's record: the operator, their only writer,
turns the hosts' recorded stats, the session and the Repository's status into them."""

from __future__ import annotations

import datetime as dt

from hypothesis import given
from hypothesis import strategies as st
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from controller.sessions import metric_groups
from engine import metrics
from engine.results import HostResult, SnapshotResult

WHO = metrics.Invoker("BackupBatch", "nightly", "team-a", "repo")
NOW = dt.datetime(2026, 12, 7, 12, 0, tzinfo=dt.UTC)


def _values(group: metric_groups.Group) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    text = generate_latest(group.registry).decode()
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def _value(group: metric_groups.Group, name: str) -> float:
    (value,) = [v for (n, _), v in _values(group).items() if n == name]
    return value


def _host(hostname: str, phase: str = "Succeeded", size: int = 2048) -> dict[str, object]:
    snap = SnapshotResult("abcd", "/data", size, 1024, 0.5, 10, 4, 3, 3)
    return HostResult(hostname, phase, 2.5, (snap,)).to_status()  # type: ignore[arg-type]


def _session_status() -> dict[str, object]:
    return {
        "phase": "Succeeded",
        "sessionDuration": "3s",
        "targets": [
            {
                "ref": {"kind": "StatefulSet", "name": "db"},
                "phase": "Succeeded",
                "stats": [_host("host-0"), _host("host-1", "Failed")],
            },
            {"ref": {"kind": "Deployment", "name": "web"}, "phase": "Succeeded", "stats": []},
        ],
    }


def test_each_recorded_host_becomes_its_own_group_with_the_stats_it_recorded() -> None:
    groups = metric_groups.backup_host_groups(WHO, _session_status())
    assert [g.labels for g in groups] == [
        {"kind": "StatefulSet", "name": "db", "hostname": "host-0"},
        {"kind": "StatefulSet", "name": "db", "hostname": "host-1"},
    ]
    first, second = groups
    assert _value(first, "stash_backup_host_backup_success") == 1.0
    assert _value(second, "stash_backup_host_backup_success") == 0.0
    assert _value(first, "stash_backup_host_data_size_bytes") == 2048.0
    assert _value(first, "stash_backup_host_data_uploaded_bytes") == 1024.0
    assert _value(first, "stash_backup_host_files_total") == 10.0
    assert _value(first, "stash_backup_host_backup_duration_seconds") == 2.5
    labels = next(iter(_values(first)))[1]
    assert dict(labels) == {
        "invoker_kind": "BackupBatch",
        "invoker_name": "nightly",
        "namespace": "team-a",
        "repository": "repo",
        "kind": "StatefulSet",
        "name": "db",
        "hostname": "host-0",
    }


def test_the_newest_finished_session_gives_the_session_group_and_its_hosts() -> None:
    def session(name: str, created: str, status: dict[str, object]) -> dict[str, object]:
        return {"metadata": {"name": name, "creationTimestamp": created}, "status": status}

    older = session("nightly-1", "2026-12-06T12:00:00Z", {**_session_status(), "phase": "Failed"})
    newer = session("nightly-2", "2026-12-07T11:00:00Z", _session_status())
    running = session("nightly-3", "2026-12-07T11:59:00Z", {"phase": "Running"})
    groups = metric_groups.latest_session_groups(WHO, [older, newer, running])
    assert groups[0].labels == {}
    assert len(groups) == 3  # the session and its two hosts
    assert _value(groups[0], "stash_backup_session_success") == 1.0
    ended = dt.datetime(2026, 12, 7, 11, 0, 3, tzinfo=dt.UTC).timestamp()
    assert _value(groups[0], "stash_backup_last_success_time_seconds") == ended
    assert metric_groups.latest_session_groups(WHO, [running]) == []


def test_the_repository_group_comes_from_the_repositorys_status_and_none_before_a_backup() -> None:
    repo = {
        "status": {
            "integrity": True,
            "totalSize": "1.500 KiB",
            "snapshotCount": 3,
            "snapshotsRemovedOnLastCleanup": 1,
        }
    }
    group = metric_groups.repository_group(WHO, repo)
    assert group is not None
    assert group.labels == {"repository": "repo"}
    assert _value(group, "stash_repository_size_bytes") == 1536.0
    assert _value(group, "stash_repository_snapshot_count") == 3.0
    assert _value(group, "stash_repository_snapshot_cleaned") == 1.0
    assert _value(group, "stash_repository_integrity") == 1.0
    assert metric_groups.repository_group(WHO, {"status": {}}) is None


def test_a_restores_hosts_become_restore_host_groups() -> None:
    targets = [
        {"ref": {"kind": "PersistentVolumeClaim", "name": "shared"}, "stats": [_host("host-0")]}
    ]
    (group,) = metric_groups.restore_host_groups(WHO, targets)
    assert group.labels == {"kind": "PersistentVolumeClaim", "name": "shared", "hostname": "host-0"}
    assert _value(group, "stash_restore_host_restore_success") == 1.0
    assert _value(group, "stash_restore_host_restore_duration_seconds") == 2.5


JUNK = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=10),
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.dictionaries(
            st.sampled_from(["ref", "kind", "name", "stats", "hostname", "phase", "targets"]),
            inner,
            max_size=4,
        )
    ),
    max_leaves=15,
)


@given(JUNK)
def test_whatever_shape_the_recorded_targets_have_the_groups_are_built_or_left_out(
    junk: object,
) -> None:
    status = {"targets": junk}
    for group in metric_groups.backup_host_groups(WHO, status):
        assert group.labels["hostname"]
        generate_latest(group.registry)
    targets = junk if isinstance(junk, list) else [junk]
    for group in metric_groups.restore_host_groups(WHO, targets):
        generate_latest(group.registry)
