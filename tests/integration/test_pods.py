"""What only real pods show: the trigger CronJob firing on the node, and a `stash` sidecar
killed in the middle of a backup (its container restarted by the kubelet) still finishing the
session, with one snapshot for it and no lock left behind."""

from __future__ import annotations

import os
from pathlib import Path

from api import constants as c
from api.objects import JSON
from controller.operator import Operator
from devcluster.images import Images
from devcluster.node import Node
from kube import Client
from kube.sessions import create_session
from kube.types import BACKUP_SESSIONS, PODS
from tests.factories import batch, member
from tests.integration.helpers import (
    WebhookProcess,
    eventually,
    invoker_ready,
    shared_dir,
)
from tests.integration.objects import (
    PASSWORD,
    pvc,
    repository,
    restic_of,
    rolled_out,
    workload,
)
from tests.integration.test_restic import make_data


def _phase(obj: JSON) -> str:
    return str((obj.get("status") or {}).get("phase", ""))


def _sessions(kube: Client, namespace: str) -> list[JSON]:
    items: list[JSON] = kube.list(BACKUP_SESSIONS, namespace)["items"]
    return items


def test_the_trigger_cronjob_fires_on_the_node_and_creates_the_slots_session(
    operator: Operator, kube: Client, namespace: str, tmp_path: Path
) -> None:
    repository(kube, namespace, tmp_path / "repo")
    data = make_data(tmp_path / "pvc")
    pvc(kube, namespace, "shared", data)
    target = member(
        "PersistentVolumeClaim", "shared", mounts=(("shared", str(data)),), task="pvc-backup"
    )
    kube.create(batch("nightly", namespace, target, schedule="* * * * *"), namespace)
    # The CronJob's own pod (its image, its service account that may only create sessions)
    # creates the session of the minute's slot.
    session = eventually(lambda: next(iter(_sessions(kube, namespace)), None), 120, "a slot")
    assert session["metadata"]["name"].startswith("nightly-")
    assert session["metadata"]["labels"][c.INVOKER_NAME_LABEL] == "nightly"
    done = eventually(
        lambda: next(
            (
                p
                for p in kube.list(PODS, namespace)["items"]
                if p["metadata"]["name"].startswith("stash-trigger-nightly-")
                and _phase(p) == "Succeeded"
            ),
            None,
        ),
        60,
        "the trigger pod to complete",
    )
    assert done["spec"]["serviceAccountName"] == "stash-trigger-nightly"
    # ...and the slot's session is carried out by the node too.
    finished = eventually(
        lambda: (
            s
            if _phase(s := kube.get(BACKUP_SESSIONS, session["metadata"]["name"], namespace))
            in ("Succeeded", "Failed")
            else None
        ),
        180,
        "the slot's session to end",
    )
    assert _phase(finished) == "Succeeded", finished["status"]


def _sidecar_of(kube: Client, namespace: str) -> JSON | None:
    for pod in kube.list(PODS, namespace, label_selector="app=web")["items"]:
        statuses = (pod.get("status") or {}).get("containerStatuses") or []
        stash = next((s for s in statuses if s["name"] == c.SIDECAR_CONTAINER), None)
        if not pod["metadata"].get("deletionTimestamp") and stash and stash.get("ready"):
            found: JSON = pod
            return found
    return None


def _log(kube: Client, namespace: str, pod: str) -> str:
    path = f"/api/v1/namespaces/{namespace}/pods/{pod}/log"
    data = kube.request(
        "GET", path, query={"container": c.SIDECAR_CONTAINER}, accept="*/*", raw=True
    )
    return bytes(data).decode(errors="replace")


def test_a_sidecar_killed_mid_backup_is_restarted_and_still_finishes_the_session(
    operator: Operator,
    injecting_webhook: WebhookProcess,
    cluster: Node,
    kube: Client,
    namespace: str,
    images: Images,
    tmp_path: Path,
) -> None:
    data = shared_dir(tmp_path / "web-data")
    for index in range(8):  # enough that the backup takes a while
        (data / f"blob-{index}.bin").write_bytes(os.urandom(24 * 1024 * 1024))
    repo_dir = tmp_path / "repo"
    repository(kube, namespace, repo_dir)
    kube.create(
        batch("nightly", namespace, member("Deployment", "web", mounts=(("data", str(data)),)))
    )
    kube.create(workload("Deployment", "web", 1, data, images.app.name), namespace)
    invoker_ready(kube, namespace, "nightly")
    eventually(lambda: rolled_out(kube, namespace, "Deployment", "web"), 180, "web's rollout")
    pod = eventually(lambda: _sidecar_of(kube, namespace), 120, "the sidecar to run")
    name = create_session(kube, "BackupBatch", "nightly", namespace)["metadata"]["name"]
    pod_name = pod["metadata"]["name"]
    eventually(
        lambda: f"session {name}: backing up" in _log(kube, namespace, pod_name),
        60,
        "the sidecar to start backing up",
    )
    stash = next(
        s
        for s in kube.get(PODS, pod_name, namespace)["status"]["containerStatuses"]
        if s["name"] == c.SIDECAR_CONTAINER
    )
    container_id = stash["containerID"].split("://", 1)[1]
    cluster.ctr("tasks", "kill", "--signal", "SIGKILL", container_id)

    def restarted() -> bool:
        statuses = kube.get(PODS, pod_name, namespace)["status"]["containerStatuses"]
        current = next(s for s in statuses if s["name"] == c.SIDECAR_CONTAINER)
        return int(current.get("restartCount", 0)) >= 1 and bool(current.get("ready"))

    eventually(restarted, 120, "the kubelet to restart the stash container")
    session = eventually(
        lambda: (
            s
            if _phase(s := kube.get(BACKUP_SESSIONS, name, namespace)) in ("Succeeded", "Failed")
            else None
        ),
        240,
        "the session to end",
    )
    assert _phase(session) == "Succeeded", [
        h.get("error") for t in session["status"]["targets"] for h in t.get("stats") or []
    ]
    with restic_of(repo_dir) as restic:
        snapshots = [s for s in restic.snapshots() if f"session:{name}" in s.tags]
        assert len(snapshots) == 1
        assert restic.locks() == []
    assert PASSWORD not in _log(kube, namespace, pod_name)
