"""Backup and restore objects in plain words: what a person reads in ``kubectl stash describe``."""

from __future__ import annotations

import datetime as dt
from typing import Any

from api.objects import JSON
from cli.describe import (
    describe_backup_session,
    describe_blueprint,
    describe_invoker,
    describe_restore,
    status_rows,
)
from tests.factories import batch, member, restore_batch, restore_member, restore_session

NOW = dt.datetime(2026, 12, 2, 1, 0, 0, tzinfo=dt.UTC)


def _condition(kind: str, message: str, status: str = "True") -> JSON:
    return {
        "type": kind,
        "status": status,
        "reason": "Because",
        "message": message,
        "lastTransitionTime": "2026-12-02T00:59:00Z",
    }


def session(phase: str = "Succeeded", **status: Any) -> JSON:
    return {
        "apiVersion": "stash.appscode.com/v1beta1",
        "kind": "BackupSession",
        "metadata": {
            "name": "nightly-1764637140",
            "namespace": "demo",
            "creationTimestamp": "2026-12-02T00:59:00Z",
        },
        "spec": {
            "invoker": {"apiGroup": "stash.appscode.com", "kind": "BackupBatch", "name": "nightly"}
        },
        "status": {"phase": phase, **status},
    }


def _web_target(**more: Any) -> JSON:
    return {
        "ref": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"},
        "totalHosts": 1,
        "phase": "Succeeded",
        "stats": [
            {
                "hostname": "host-0",
                "phase": "Succeeded",
                "duration": "3.2s",
                "snapshots": [
                    {
                        "name": "1a2b3c4d5e6f70819a0b1c2d3e4f5a6b7c8d9e0f1a2b3c4d5e6f70819a0b1c2d",
                        "path": "/data",
                        "totalSize": "10.5 MiB",
                        "uploaded": "1.2 MiB",
                        "fileStats": {"totalFiles": 12, "newFiles": 3, "modifiedFiles": 1},
                    }
                ],
            }
        ],
        **more,
    }


def test_a_finished_session_says_each_host_its_snapshot_and_files() -> None:
    text = describe_backup_session(
        session(
            sessionDuration="4s",
            targets=[_web_target()],
            conditions=[_condition("RetentionPolicyApplied", "policy keep-last-5: removed 0")],
        ),
        NOW,
    )
    assert text.splitlines()[0] == "BackupSession demo/nightly-1764637140"
    assert "Invoker:      BackupBatch/nightly" in text
    assert "Phase:        Succeeded (took 4s)" in text
    assert "Created:      2026-12-02 00:59:00 UTC (1m ago)" in text
    assert "  Deployment/web: Succeeded, 1/1 host(s) reported" in text
    assert "    host host-0: Succeeded in 3.2s" in text
    assert (
        "      snapshot 1a2b3c4d, /data, 12 files (3 new, 1 modified), 10.5 MiB in total, "
        "1.2 MiB uploaded"
    ) in text
    assert "  RetentionPolicyApplied  True    policy keep-last-5: removed 0" in text


def test_a_running_session_says_which_hosts_are_still_running_and_a_failed_host_why() -> None:
    db = {
        "ref": {"apiVersion": "apps/v1", "kind": "StatefulSet", "name": "db"},
        "totalHosts": 3,
        "phase": "Running",
        "stats": [
            {"hostname": "host-0", "phase": "Failed", "error": "restic: permission denied\n/x"}
        ],
    }
    text = describe_backup_session(session("Running", targets=[db]), NOW)
    assert "  StatefulSet/db: Running, 1/3 host(s) reported" in text
    assert "      error: restic: permission denied" in text
    assert "      error: /x" in text
    assert "    2 more host(s): still running" in text
    ended = describe_backup_session(session("Failed", targets=[db]), NOW)
    assert "    2 more host(s): never reported" in ended


def test_a_new_session_says_nothing_started_yet() -> None:
    fresh = session()
    del fresh["status"]
    text = describe_backup_session(fresh, NOW)
    assert "Phase:        Pending" in text
    assert "Targets:      none started yet" in text


def test_an_unreadable_status_is_said_not_raised() -> None:
    broken = session(targets=[{"stats": [{"phase": "Exploded"}]}])
    text = describe_backup_session(broken, NOW)
    assert text.startswith("BackupSession demo/nightly-1764637140: its status cannot be read (")


def test_an_invoker_lists_its_members_and_newest_sessions_then_the_latest_in_full() -> None:
    invoker = batch("nightly", "demo", member("Deployment", "web"))
    invoker["spec"]["schedule"] = "0 1 * * *"
    older = session("Failed")
    older["metadata"].update(name="nightly-1", creationTimestamp="2026-12-01T00:59:00Z")
    text = describe_invoker(invoker, [older, session(sessionDuration="4s")], NOW)
    assert "Schedule:     0 1 * * *" in text
    assert "Paused:       no" in text
    assert "  Deployment/web (sidecar" in text
    lines = text.splitlines()
    first = lines.index("Sessions:")
    assert lines[first + 1].startswith("  nightly-1764637140: Succeeded in 4s, created ")
    assert lines[first + 2].startswith(
        "  nightly-1: Failed, created 2026-12-01 00:59:00 UTC (1d ago)"
    )
    assert "Latest session:" in text
    assert "  BackupSession demo/nightly-1764637140" in text
    assert "Sessions:     none yet" in describe_invoker(invoker, [], NOW)


def test_a_restore_batch_says_each_member_and_host() -> None:
    rb = restore_batch("back", "demo", restore_member("Deployment", "web"), restore_member())
    rb["metadata"]["creationTimestamp"] = "2026-12-02T00:58:00Z"
    rb["status"] = {
        "phase": "Running",
        "members": [
            {
                "ref": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"},
                "phase": "Succeeded",
                "totalHosts": 1,
                "stats": [{"hostname": "host-0", "phase": "Succeeded", "duration": "2s"}],
            },
            {
                "ref": {"apiVersion": "v1", "kind": "PersistentVolumeClaim", "name": "data"},
                "phase": "Running",
                "totalHosts": 1,
            },
        ],
    }
    text = describe_restore(rb, NOW)
    assert text.splitlines()[0] == "RestoreBatch demo/back"
    assert "Repository:   repo" in text
    assert "  Deployment/web: Succeeded, 1/1 host(s) reported" in text
    assert "    host host-0: Succeeded in 2s" in text
    assert "  PersistentVolumeClaim/data: Running, 0/1 host(s) reported" in text
    assert "    1 more host(s): still running" in text


def test_a_restore_session_says_its_hosts_and_why_it_failed() -> None:
    rs = restore_session("back", "demo", restore_member("StatefulSet", "db"))
    rs["status"] = {
        "phase": "Failed",
        "totalHosts": 2,
        "stats": [{"hostname": "host-0", "phase": "Failed", "error": "no snapshot deadbeef"}],
        "conditions": [_condition("RestoreFailed", "host host-0: no snapshot deadbeef")],
    }
    text = describe_restore(rs, NOW)
    assert "  StatefulSet/db: Failed, 1/2 host(s) reported" in text
    assert "      error: no snapshot deadbeef" in text
    assert "    1 more host(s): never reported" in text
    assert "RestoreFailed  True    host host-0: no snapshot deadbeef" in text


def test_status_lists_every_invoker_with_its_last_good_backup_its_age_and_staleness() -> None:
    now = dt.datetime(2026, 12, 7, 12, 0, tzinfo=dt.UTC)
    stale = batch("nightly", "demo")
    stale["status"] = {"conditions": [{"type": "BackupStale", "status": "True"}]}
    paused = batch("weekly", "demo", paused=True)
    never = batch("adhoc", "other", schedule="")

    def session(name: str, created: str, phase: str) -> JSON:
        return {
            "metadata": {"name": name, "namespace": "demo", "creationTimestamp": created},
            "spec": {"invoker": {"kind": "BackupBatch", "name": "nightly"}},
            "status": {"phase": phase, "sessionDuration": "1m0s"},
        }

    sessions = [
        session("nightly-2", "2026-12-07T09:00:00Z", "Failed"),
        session("nightly-1", "2026-12-07T08:00:00Z", "Succeeded"),
    ]
    rows = status_rows([stale, paused, never], sessions, now)
    assert [(r["namespace"], r["invoker"]) for r in rows] == [
        ("demo", "backupbatch/nightly"),
        ("demo", "backupbatch/weekly"),
        ("other", "backupbatch/adhoc"),
    ]
    nightly, weekly, adhoc = rows
    assert nightly["lastGoodBackup"] == "nightly-1"
    assert nightly["ended"] == "2026-12-07T08:01:00Z"
    assert nightly["age"] == "3h"
    assert nightly["stale"] == "yes"
    assert nightly["verified"] == "never"
    assert weekly["stale"] == "paused"
    assert weekly["lastGoodBackup"] == "never"
    assert adhoc["schedule"] == "-"
    assert adhoc["stale"] == "-"  # not judged (yet): nothing claimed


def test_status_says_whether_the_last_good_backup_itself_was_verified() -> None:
    now = dt.datetime(2026, 12, 7, 12, 0, tzinfo=dt.UTC)

    def invoker(name: str, status: str, verified: str) -> JSON:
        obj = batch(name, "demo")
        message = f"session {verified}: Deployment/app host host-0 snapshot abcd1234: ..."
        obj["status"] = {
            "conditions": [{"type": "BackupVerified", "status": status, "message": message}]
        }
        return obj

    def session(invoker: str, name: str) -> JSON:
        return {
            "metadata": {
                "name": name,
                "namespace": "demo",
                "creationTimestamp": "2026-12-07T08:00:00Z",
            },
            "spec": {"invoker": {"kind": "BackupBatch", "name": invoker}},
            "status": {"phase": "Succeeded", "sessionDuration": "1m0s"},
        }

    invokers = [
        invoker("a", "True", "a-1"),
        invoker("b", "True", "b-0"),  # b-1 succeeded since: not verified yet
        invoker("c", "False", "c-1"),
    ]
    sessions = [session("a", "a-1"), session("b", "b-1"), session("c", "c-1")]
    rows = status_rows(invokers, sessions, now)
    assert [r["verified"] for r in rows] == ["yes", "pending", "failed"]


def test_an_invoker_says_whether_it_is_stale_and_why() -> None:
    invoker = batch("nightly", "demo")
    invoker["status"] = {
        "conditions": [
            {"type": "BackupStale", "status": "True", "message": "stale: no backup since X"}
        ]
    }
    text = describe_invoker(invoker, [], dt.datetime(2026, 12, 7, tzinfo=dt.UTC))
    assert "Stale:        yes: stale: no backup since X" in text.splitlines()


def test_an_invoker_says_whether_its_newest_verification_found_differences() -> None:
    invoker = batch("nightly", "demo")
    message = "session nightly-1: PersistentVolumeClaim/data host host-0 snapshot ab: 1 differ"
    invoker["status"] = {
        "conditions": [
            {
                "type": "BackupVerified",
                "status": "False",
                "reason": "VerificationFailed",
                "message": message,
            }
        ]
    }
    text = describe_invoker(invoker, [], dt.datetime(2026, 12, 7, tzinfo=dt.UTC))
    assert f"Verified:     no (VerificationFailed): {message}" in text.splitlines()


def test_a_blueprint_says_where_when_and_what_it_generated_without_secrets() -> None:
    blueprint = {
        "kind": "BackupBlueprint",
        "metadata": {"name": "daily"},
        "spec": {
            "backend": {
                "s3": {"bucket": "backups", "prefix": "${TARGET_NAMESPACE}/${TARGET_NAME}"},
                "storageSecretName": "s3-secret",
            },
            "schedule": "0 2 * * *",
            "retentionPolicy": {"name": "keep", "keepLast": 3},
        },
    }
    generated = {
        "kind": "BackupConfiguration",
        "metadata": {"name": "deployment-web", "namespace": "team-a"},
        "spec": {"target": {"ref": {"kind": "Deployment", "name": "web"}}},
        "status": {"phase": "Ready"},
    }
    text = describe_blueprint(blueprint, [generated])
    assert "s3 backups/${TARGET_NAMESPACE}/${TARGET_NAME}" in text
    assert "s3-secret (in each target's namespace)" in text
    assert "0 2 * * *" in text
    assert "team-a/deployment-web for Deployment/web: Ready" in text
    assert "nothing yet" in describe_blueprint(blueprint, [])
