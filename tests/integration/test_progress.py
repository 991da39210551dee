"""A long backup and a long restore say how far they are, in real Jobs on the node: one
progress Event per host on the session, updated in place from restic's own status lines.
(The report interval is shortened through the member's runtimeSettings env, as a user may.)"""

from __future__ import annotations

import datetime as dt
import os
import re
from collections.abc import Iterator
from functools import partial
from pathlib import Path

import pytest

from api import constants as c
from api.conditions import get_condition, has_condition, parse_rfc3339
from api.objects import JSON
from api.units import parse_duration
from controller.operator import Operator
from controller.runtime.caches import FUNCTIONS, TASKS
from controller.sessions.targets import DefaultDeadline
from devcluster import ControlPlane
from devcluster.images import Images
from devcluster.services import Service
from engine.progress import INTERVAL_ENV
from kube import Client
from kube.sessions import create_session
from kube.types import BACKUP_BATCHES, BACKUP_SESSIONS, EVENTS, JOBS, RESTORE_SESSIONS
from tests.factories import batch, member, restore_member, restore_session
from tests.integration.helpers import give_to_pods, job_steps, running_operator, shared_dir
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


@pytest.fixture
def stream_task(kube: Client, images: Images) -> Iterator[str]:
    """A Task whose one Function streams what ``${source}`` (a shell line) writes into restic,
    as a database's dump Task does."""
    args = [
        "backup-dump",
        "--namespace=${NAMESPACE}",
        "--backupsession=${BACKUP_SESSION}",
        "--invoker-kind=${INVOKER_KIND}",
        "--invoker-name=${INVOKER_NAME}",
        "--target-kind=${TARGET_KIND}",
        "--target-name=${TARGET_NAME}",
        "--hostname=${HOSTNAME:=host-0}",
        "--output-dir=${outputDir:=/tmp/output}",
        "--filename=stream.bin",
        "--dump-command=sh -c '${source}'",
    ]
    kube.apply(
        {
            "apiVersion": c.V1BETA1,
            "kind": "Function",
            "metadata": {"name": "stream-backup"},
            "spec": {"image": images.stash.name, "args": args},
        },
        field_manager="stash-tests",
    )
    kube.apply(
        {
            "apiVersion": c.V1BETA1,
            "kind": "Task",
            "metadata": {"name": "stream-backup"},
            "spec": {"steps": [{"name": "stream-backup"}, {"name": "update-status"}]},
        },
        field_manager="stash-tests",
    )
    yield "stream-backup"
    kube.delete(TASKS, "stream-backup", missing_ok=True)
    kube.delete(FUNCTIONS, "stream-backup", missing_ok=True)


def _stream_member(name: str, source: str) -> JSON:
    return {
        "target": {"ref": {"apiVersion": "v1", "kind": "Service", "name": name}},
        "task": {"name": "stream-backup", "params": [{"name": "source", "value": source}]},
        "runtimeSettings": FAST,
    }


def _ready(kube: Client, namespace: str, name: str) -> bool:
    return (kube.get(BACKUP_BATCHES, name, namespace).get("status") or {}).get("phase") == "Ready"


def _ended(kube: Client, namespace: str, name: str) -> JSON | None:
    status = kube.get(BACKUP_SESSIONS, name, namespace).get("status") or {}
    return status if status.get("phase") in ("Succeeded", "Failed") else None


def test_past_the_default_deadline_a_moving_backup_goes_on_and_a_stalled_one_fails_saying_so(
    control_plane: ControlPlane,
    kube: Client,
    namespace: str,
    tmp_path: Path,
    pushgateway: Service,
    images: Images,
    stream_task: str,
) -> None:
    """The operator's default deadline made 10 s (24 h as installed): a stream that keeps
    coming for 25 s outlives it; one that stops after its first megabyte fails as stalled."""
    repository(kube, namespace, tmp_path / "repo")
    for name in ("moving", "stuck"):
        kube.create(
            {
                "apiVersion": "v1",
                "kind": "Service",
                "metadata": {"name": name},
                "spec": {"ports": [{"port": 1}]},
            },
            namespace,
        )
    moving = "for n in $(seq 25); do head -c 1000000 /dev/urandom; sleep 1; done"
    stuck = "head -c 1000000 /dev/urandom; sleep 300"
    kube.create(batch("moving", namespace, _stream_member("moving", moving)), namespace)
    kube.create(batch("stuck", namespace, _stream_member("stuck", stuck)), namespace)
    default = DefaultDeadline(after="10s", stall_after=15.0)
    with running_operator(
        control_plane.kubeconfig,
        pushgateway_url=pushgateway.url,
        image=images.stash.name,
        default_deadline=default,
    ) as operator:
        for name in ("moving", "stuck"):
            eventually(partial(_ready, kube, namespace, name), 30, f"{name} Ready")
        eventually(lambda: operator.caches.get(TASKS, "", stream_task), 30, "the Task")
        sessions = {
            name: create_session(kube, "BackupBatch", name, namespace)["metadata"]["name"]
            for name in ("moving", "stuck")
        }
        stalled = eventually(
            lambda: _ended(kube, namespace, sessions["stuck"]), 120, "the stalled one to end"
        )
        done = eventually(
            lambda: _ended(kube, namespace, sessions["moving"]), 180, "the moving one to end"
        )
    moved = kube.get(BACKUP_SESSIONS, sessions["moving"], namespace)
    assert done["phase"] == "Succeeded", done
    host = done["targets"][0]["stats"][0]
    assert host["phase"] == "Succeeded"
    # it finished well past its deadline: the default one gave way to progress
    created = parse_rfc3339(moved["metadata"]["creationTimestamp"])
    assert parse_rfc3339(done["sessionDeadline"]) == created + dt.timedelta(seconds=10)
    assert parse_duration(done["sessionDuration"]) > dt.timedelta(seconds=15)
    assert not has_condition(done.get("conditions"), c.DEADLINE_EXCEEDED)

    assert stalled["phase"] == "Failed", stalled
    cond = get_condition(stalled["conditions"], c.DEADLINE_EXCEEDED)
    assert cond is not None
    assert cond["reason"] == "Stalled"
    assert re.search(
        r"^the backup stalled: no progress for over 15s past its default deadline \S+ \(last, "
        r"at \S+: Service/stuck host host-0: [\d.]+ [KM]?i?B read so far\)",
        cond["message"],
    ) or cond["message"].startswith("no host of the backup reported progress"), cond["message"]
    # its Job is stopped: a stalled restic holds no lock on the repository for the next one
    stuck_job = f"stash-backup-{sessions['stuck']}-0"
    eventually(
        lambda: (
            not any(j["metadata"]["name"] == stuck_job for j in kube.list(JOBS, namespace)["items"])
        ),
        60,
        "the stalled session's Job to be stopped",
    )
    assert stalled["targets"][0]["phase"] == "Failed"
