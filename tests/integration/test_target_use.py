"""One target, one job at a time, on the real node: a restore created while a backup of the same
PVC runs waits for it, and a backup session started while a restore of it runs waits for the
restore; both then succeed, and the backup holds the restored files, nothing torn
(``controller/sessions/target_use.py``). Each job is made slow by its member's own hook."""

from __future__ import annotations

import time
from pathlib import Path

from api import constants as c
from api.conditions import get_condition
from api.objects import JSON
from controller.operator import Operator
from kube import Client
from kube.sessions import create_session
from kube.types import BACKUP_BATCHES, BACKUP_SESSIONS, JOBS, RESTORE_SESSIONS
from tests.factories import restore_member, restore_session
from tests.integration.helpers import eventually
from tests.integration.objects import pvc, repository, restic_of
from tests.integration.test_restore import backed_up, damage, fidelity, finished, pvc_data

SLOW = ["sh", "-c", "sleep 12"]


def _phase(obj: JSON) -> str | None:
    return (obj.get("status") or {}).get("phase")


def _jobs(kube: Client, namespace: str, prefix: str) -> list[str]:
    return [
        j["metadata"]["name"]
        for j in kube.list(JOBS, namespace)["items"]
        if j["metadata"]["name"].startswith(prefix)
    ]


def _session_ended(kube: Client, namespace: str, name: str) -> JSON | None:
    session = kube.get(BACKUP_SESSIONS, name, namespace)
    return session if _phase(session) in ("Succeeded", "Failed") else None


def test_a_restore_waits_for_the_backup_running_on_its_target(
    operator: Operator, kube: Client, namespace: str, tmp_path: Path
) -> None:
    data = pvc_data(tmp_path, "shared")
    repository(kube, namespace, tmp_path / "repo")
    pvc(kube, namespace, "shared", data)
    backed_up(kube, namespace, ("shared", data))  # a snapshot to restore
    hooks = {"preBackup": {"exec": {"command": SLOW}}}
    kube.patch(
        BACKUP_BATCHES,
        "nightly",
        {"spec": {"members": [{**_member(kube, namespace), "hooks": hooks}]}},
        namespace=namespace,
    )
    name = create_session(kube, "BackupBatch", "nightly", namespace)["metadata"]["name"]
    eventually(lambda: _jobs(kube, namespace, f"stash-backup-{name}"), 60, "the backup Job")
    kube.create(
        restore_session("back", namespace, restore_member(name="shared", mount=str(data))),
        namespace,
    )
    # While the backup runs, the restore waits and says why; no restore Job exists.
    said = ""
    while _session_ended(kube, namespace, name) is None:
        restore = kube.get(RESTORE_SESSIONS, "back", namespace)
        assert _phase(restore) in (None, "Pending"), restore.get("status")
        assert not _jobs(kube, namespace, "stash-restore-back")
        cond = get_condition(
            (restore.get("status") or {}).get("conditions"), c.RESTORE_EXECUTOR_ENSURED
        )
        said = str((cond or {}).get("message") or said)
        time.sleep(0.5)
    assert said.startswith(f"BackupSession {namespace}/{name} is backing up PersistentVolumeClaim")
    assert _phase(kube.get(BACKUP_SESSIONS, name, namespace)) == "Succeeded"
    restored = finished(kube, namespace, "RestoreSession", "back")
    assert _phase(restored) == "Succeeded", restored.get("status")


def test_a_backup_waits_for_the_restore_of_its_target_and_holds_the_restored_files(
    operator: Operator, kube: Client, namespace: str, tmp_path: Path
) -> None:
    data = pvc_data(tmp_path, "shared")
    expected = fidelity(data)
    repository(kube, namespace, tmp_path / "repo")
    pvc(kube, namespace, "shared", data)
    backed_up(kube, namespace, ("shared", data))
    damage(data)
    slow = restore_member(name="shared", mount=str(data))
    slow["hooks"] = {"preRestore": {"exec": {"command": SLOW}}}
    kube.create(restore_session("back", namespace, slow), namespace)
    eventually(lambda: _jobs(kube, namespace, "stash-restore-back"), 60, "the restore Job")
    name = create_session(kube, "BackupBatch", "nightly", namespace)["metadata"]["name"]
    said = ""
    while _phase(kube.get(RESTORE_SESSIONS, "back", namespace)) not in ("Succeeded", "Failed"):
        session = kube.get(BACKUP_SESSIONS, name, namespace)
        targets = (session.get("status") or {}).get("targets") or [{}]
        assert targets[0].get("phase", "Pending") == "Pending", session.get("status")
        assert not _jobs(kube, namespace, f"stash-backup-{name}")
        cond = get_condition(targets[0].get("conditions"), c.BACKUP_EXECUTOR_ENSURED)
        said = str((cond or {}).get("message") or said)
        time.sleep(0.5)
    assert said.startswith(f"RestoreSession {namespace}/back is restoring PersistentVolumeClaim")
    assert fidelity(data) == expected
    session = eventually(lambda: _session_ended(kube, namespace, name), 120, "the backup")
    assert _phase(session) == "Succeeded", session.get("status")
    # The backup holds what the restore put back, file for file.
    with restic_of(tmp_path / "repo") as restic:
        snap = next(s for s in restic.snapshots() if f"session:{name}" in s.tags)
        restic.restore(snap.id, str(tmp_path / "again"))
    assert fidelity(tmp_path / "again" / data.relative_to("/")) == expected


def _member(kube: Client, namespace: str) -> JSON:
    spec = kube.get(BACKUP_BATCHES, "nightly", namespace)["spec"]
    return dict(spec["members"][0])
