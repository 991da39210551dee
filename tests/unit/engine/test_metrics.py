"""Metric names and labels as DESIGN.md section 4 lists them."""

from __future__ import annotations

from prometheus_client import generate_latest

from engine.metrics import (
    Invoker,
    SessionOutcome,
    TargetOutcome,
    host_registry,
    repository_registry,
    session_registry,
)
from engine.results import HostResult, RepositoryFigures, SnapshotResult
from tests.prometheus import metric_value

WHO = Invoker("BackupBatch", "nightly", "demo", "repo")
LABELS = {
    "invoker_kind": "BackupBatch",
    "invoker_name": "nightly",
    "namespace": "demo",
    "repository": "repo",
}


def test_the_job_name_is_kind_namespace_invoker() -> None:
    assert WHO.job == "backupbatch-demo-nightly"


def test_host_metrics_carry_the_target_and_host() -> None:
    snap = SnapshotResult("a", "/data", 2048, 1024, 1.0, 10, 4, 3, 3)
    text = generate_latest(
        host_registry(WHO, "StatefulSet", "db", HostResult("host-1", "Succeeded", 2.5, (snap,)))
    ).decode()
    labels = {**LABELS, "kind": "StatefulSet", "name": "db", "hostname": "host-1"}
    expected = {
        "stash_backup_host_backup_success": 1,
        "stash_backup_host_backup_duration_seconds": 2.5,
        "stash_backup_host_data_size_bytes": 2048,
        "stash_backup_host_data_uploaded_bytes": 1024,
        "stash_backup_host_files_total": 10,
        "stash_backup_host_files_new": 4,
        "stash_backup_host_files_modified": 3,
        "stash_backup_host_files_unmodified": 3,
    }
    for metric, value in expected.items():
        assert metric_value(text, metric, **labels) == value, metric


def test_repository_and_session_metrics() -> None:
    repo = generate_latest(repository_registry(WHO, RepositoryFigures(False, 100, 7, 2))).decode()
    assert metric_value(repo, "stash_repository_integrity", **LABELS) == 0
    assert metric_value(repo, "stash_repository_size_bytes", **LABELS) == 100
    assert metric_value(repo, "stash_repository_snapshot_count", **LABELS) == 7
    assert metric_value(repo, "stash_repository_snapshot_cleaned", **LABELS) == 2
    outcome = SessionOutcome(
        False,
        41.0,
        1700000000.0,
        (
            TargetOutcome("Deployment", "web", False, None),
            TargetOutcome("PersistentVolumeClaim", "data", True, 1700000100.0),
        ),
    )
    text = generate_latest(session_registry(WHO, outcome)).decode()
    assert metric_value(text, "stash_backup_session_success", **LABELS) == 0
    assert metric_value(text, "stash_backup_session_duration_seconds", **LABELS) == 41
    assert metric_value(text, "stash_backup_last_success_time_seconds", **LABELS) == 1.7e9
    web = {**LABELS, "kind": "Deployment", "name": "web"}
    data = {**LABELS, "kind": "PersistentVolumeClaim", "name": "data"}
    assert metric_value(text, "stash_backup_target_success", **web) == 0
    assert metric_value(text, "stash_backup_target_success", **data) == 1
    assert metric_value(text, "stash_backup_target_last_success_time_seconds", **data) == 1700000100
    assert metric_value(text, "stash_backup_target_last_success_time_seconds", **web) is None
