"""A long backup and a long restore say how far they are, in real Jobs on the node: one
progress Event per host on the session, updated in place from restic's own status lines.
(The report interval is shortened through the member's runtimeSettings env, as a user may.)"""

from __future__ import annotations

import os
import re
from pathlib import Path

from api.objects import JSON
from controller.operator import Operator
from engine.progress import INTERVAL_ENV
from kube import Client
from kube.sessions import create_session
from kube.types import BACKUP_BATCHES, BACKUP_SESSIONS, EVENTS, JOBS, RESTORE_SESSIONS
from tests.factories import batch, member, restore_member, restore_session
from tests.integration.helpers import give_to_pods, job_steps, shared_dir
from tests.integration.objects import pvc, repository
from tests.waiting import eventually

FAST = {"container": {"env": [{"name": INTERVAL_ENV, "value": "0.2"}]}}
PROGRESS = re.compile(
    r"^PersistentVolumeClaim/shared host host-0: \d+% \([\d.]+ [KMG]?i?B of [\d.]+ [KMG]?i?B, "
    r"\d+ of \d+ files\)"
)


def _big_tree(root: Path) -> Path:
    """200 MB that does not compress: long enough for restic to report as it goes."""
    shared_dir(root)
    for i in range(8):
        with (root / f"part-{i}.bin").open("wb") as out:
            for _ in range(25):
                out.write(os.urandom(1024 * 1024))
    return give_to_pods(root)


def _progress_events(kube: Client, namespace: str, kind: str, name: str) -> list[JSON]:
    selector = f"involvedObject.name={name},involvedObject.kind={kind}"
    return [
        e
        for e in kube.list(EVENTS, namespace, field_selector=selector)["items"]
        if str(e.get("reason", "")).endswith("Progress")
    ]


def test_a_long_backup_and_restore_report_their_progress_on_the_session(
    operator: Operator, kube: Client, namespace: str, tmp_path: Path
) -> None:
    data = _big_tree(tmp_path / "big")
    repository(kube, namespace, tmp_path / "repo")
    pvc(kube, namespace, "shared", data)
    shared = member("PersistentVolumeClaim", "shared", mounts=(("shared", str(data)),))
    shared["task"] = {"name": "pvc-backup"}
    shared["runtimeSettings"] = FAST
    kube.create(batch("nightly", namespace, shared), namespace)
    eventually(
        lambda: (
            (kube.get(BACKUP_BATCHES, "nightly", namespace).get("status") or {}).get("phase")
            == "Ready"
        ),
        30,
        "the BackupBatch to be Ready",
    )
    name = create_session(kube, "BackupBatch", "nightly", namespace)["metadata"]["name"]
    job = eventually(
        lambda: next(
            (
                j["metadata"]["name"]
                for j in kube.list(JOBS, namespace)["items"]
                if j["metadata"]["name"].startswith(f"stash-backup-{name}")
            ),
            None,
        ),
        60,
        "the backup Job",
    )
    runs = job_steps(kube, namespace, job, timeout=300)
    assert [r.returncode for r in runs] == [0, 0], [r.output for r in runs]
    eventually(
        lambda: (
            (kube.get(BACKUP_SESSIONS, name, namespace).get("status") or {}).get("phase")
            == "Succeeded"
        ),
        60,
        "the session to succeed",
    )
    (event,) = _progress_events(kube, namespace, "BackupSession", name)  # one per host
    assert event["reason"] == "BackupProgress"
    assert PROGRESS.match(str(event["message"])), event["message"]
    uid = kube.get(BACKUP_SESSIONS, name, namespace)["metadata"]["uid"]
    assert event["involvedObject"]["uid"] == uid  # kubectl describe finds it

    # The restore of the same 200 MB says so too.
    for part in data.glob("part-*.bin"):
        part.unlink()
    target = restore_member(name="shared", mount=str(data))
    target["runtimeSettings"] = FAST
    kube.create(restore_session("back", namespace, target), namespace)
    eventually(
        lambda: (
            (kube.get(RESTORE_SESSIONS, "back", namespace).get("status") or {}).get("phase")
            in ("Succeeded", "Failed")
        ),
        300,
        "the restore to end",
    )
    status = kube.get(RESTORE_SESSIONS, "back", namespace)["status"]
    assert status["phase"] == "Succeeded", status
    (restored,) = _progress_events(kube, namespace, "RestoreSession", "back")
    assert restored["reason"] == "RestoreProgress"
    assert PROGRESS.match(str(restored["message"])), restored["message"]
    assert len(list(data.glob("part-*.bin"))) == 8
