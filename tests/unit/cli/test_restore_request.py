"""A RestoreSession asked for by a person, completed from the backup of the same target."""

from __future__ import annotations

import pytest

from cli.restore_request import (
    RestoreRequest,
    backup_member_of,
    restore_session_for,
    restore_task_for,
)
from tests.factories import batch, member

WEB = {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"}
PVC = {"apiVersion": "v1", "kind": "PersistentVolumeClaim", "name": "shared"}


def test_the_backup_tasks_restore_twin_is_named_as_stash_names_it() -> None:
    assert restore_task_for("pvc-backup") == "pvc-restore"
    assert restore_task_for("postgres-backup") == "postgres-restore"
    assert restore_task_for("custom") == "custom"


def test_a_workload_restore_takes_the_backups_mounts_repository_and_the_snapshot() -> None:
    web = member("Deployment", "web", mounts=(("data", "/data"),))
    web["target"]["alias"] = "front"
    invoker = {"kind": "BackupBatch", **batch("nightly", "demo", web)}
    found = backup_member_of([invoker], WEB)
    assert found is not None
    request = RestoreRequest("back", "demo", WEB, snapshot="1a2b3c4d", paths=("/data/a",))
    body = restore_session_for(request, found)
    assert body["metadata"] == {"name": "back", "namespace": "demo"}
    spec = body["spec"]
    assert spec["repository"] == invoker["spec"]["repository"]
    assert spec["target"]["ref"] == WEB
    assert spec["target"]["volumeMounts"] == web["target"]["volumeMounts"]
    assert spec["target"]["alias"] == "front"
    assert spec["target"]["rules"] == [{"snapshots": ["1a2b3c4d"], "paths": ["/data/a"]}]
    assert "task" not in spec


def test_the_latest_snapshot_of_a_pvc_is_restored_by_pvc_restore() -> None:
    invoker = {"kind": "BackupBatch", **batch("nightly", "demo", member(task="pvc-backup"))}
    shared = member("PersistentVolumeClaim", "shared", task="pvc-backup")
    invoker["spec"]["members"].append(shared)
    body = restore_session_for(
        RestoreRequest("back", "demo", PVC), backup_member_of([invoker], PVC)
    )
    assert body["spec"]["task"] == {"name": "pvc-restore"}
    assert "rules" not in body["spec"]["target"]  # the host's latest snapshot, all of it


def test_without_a_backup_the_repository_must_be_given() -> None:
    with pytest.raises(ValueError, match="give --repository"):
        restore_session_for(RestoreRequest("back", "demo", PVC), None)
    body = restore_session_for(RestoreRequest("back", "demo", PVC, repository="repo"), None)
    assert body["spec"]["repository"] == {"name": "repo"}
    assert body["spec"]["task"] == {"name": "pvc-restore"}
