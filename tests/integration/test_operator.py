"""The operator on the real control plane: invokers become CronJobs with least-privilege RBAC,
their status says what is wrong until it is fixed, and two replicas elect one leader."""

from __future__ import annotations

import base64
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from api import constants as c
from api.conditions import get_condition
from api.naming import cronjob_name
from controller.operator import Operator, OperatorOptions
from controller.runtime.caches import CRONJOBS, ROLES, TASKS
from devcluster import ControlPlane
from kube import Client, Forbidden, NotFound
from kube.sessions import create_session
from kube.types import BACKUP_BATCHES as BATCHES
from kube.types import BACKUP_SESSIONS as SESSIONS
from kube.types import LEASES, ROLE_BINDINGS
from tests.factories import batch, member
from tests.integration.helpers import eventually
from tests.integration.objects import local_repository


def _run_operator(kubeconfig: Path, **options: Any) -> tuple[Operator, threading.Event, Client]:
    client = Client.from_kubeconfig(str(kubeconfig))
    operator = Operator(client, OperatorOptions(image="stash-py:test", **options))
    stop = threading.Event()
    threading.Thread(target=operator.run, args=(stop,), daemon=True).start()
    return operator, stop, client


@pytest.fixture
def operator(control_plane: ControlPlane) -> Iterator[Operator]:
    op, stop, client = _run_operator(control_plane.kubeconfig, leader_elect=False)
    eventually(op.caches.synced, 30, "the operator's caches")
    yield op
    stop.set()
    op.stopped.wait(15)
    client.close()


def _setup(kube: Client, namespace: str) -> None:
    local_repository(kube, namespace, "/repo", "/tmp/r", "not-a-real-password")
    kube.create(
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": "web"},
            "spec": {
                "replicas": 1,
                "selector": {"matchLabels": {"app": "web"}},
                "template": {
                    "metadata": {"labels": {"app": "web"}},
                    "spec": {
                        "containers": [{"name": "app", "image": "nginx"}],
                        "volumes": [{"name": "data", "emptyDir": {}}],
                    },
                },
            },
        },
        namespace,
    )
    kube.create(
        {
            "apiVersion": "v1",
            "kind": "PersistentVolumeClaim",
            "metadata": {"name": "shared"},
            "spec": {
                "accessModes": ["ReadWriteOnce"],
                "resources": {"requests": {"storage": "1Gi"}},
            },
        },
        namespace,
    )


def _batch(namespace: str, **spec: Any) -> dict[str, Any]:
    obj = batch(
        "nightly",
        namespace,
        member("Deployment", "web"),
        member("PersistentVolumeClaim", "shared", task="pvc-backup"),
        **spec,
    )
    obj["spec"]["repository"] = {"name": "repo"}
    return obj


def _status(kube: Client, namespace: str, name: str = "nightly") -> dict[str, Any]:
    status: dict[str, Any] = kube.get(BATCHES, name, namespace).get("status") or {}
    return status


def test_a_valid_batch_gets_its_cronjob_rbac_and_ready_status(
    operator: Operator, kube: Client, namespace: str
) -> None:
    _setup(kube, namespace)
    kube.create(_batch(namespace), namespace)
    eventually(lambda: _status(kube, namespace).get("phase") == "Ready", 30, "phase Ready")
    cron = kube.get(CRONJOBS, "stash-trigger-nightly", namespace)
    assert cron["spec"]["schedule"] == "0 * * * *"
    assert cron["spec"]["suspend"] is False
    assert cron["spec"]["concurrencyPolicy"] == "Forbid"
    assert cron["metadata"]["ownerReferences"][0]["kind"] == "BackupBatch"
    status = _status(kube, namespace)
    members = status["memberConditions"]
    assert [m["target"]["name"] for m in members] == ["web", "shared"]
    web = {cond["type"]: cond["status"] for cond in members[0]["conditions"]}
    assert web[c.BACKUP_TARGET_FOUND] == "True"
    # The sidecar's permissions, granted by the operator: stash-sidecar to the service account
    # the workload's pods run as, in this namespace only.
    binding = eventually(
        lambda: next(
            (
                b
                for b in kube.list(ROLE_BINDINGS, namespace)["items"]
                if b["metadata"]["name"] == "stash-sidecar-nightly"
            ),
            None,
        ),
        30,
        "the sidecar's RoleBinding",
    )
    assert binding["roleRef"] == {
        "apiGroup": "rbac.authorization.k8s.io",
        "kind": "ClusterRole",
        "name": "stash-sidecar",
    }
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": "default", "namespace": namespace}
    ]
    assert binding["metadata"]["ownerReferences"][0]["name"] == "nightly"

    # The sidecar member's workload gets opted in; its member condition follows.
    eventually(
        lambda: any(
            cond["type"] == c.STASH_SIDECAR_INJECTED and cond["status"] == "True"
            for cond in _status(kube, namespace)["memberConditions"][0]["conditions"]
        ),
        30,
        "StashSidecarInjected",
    )
    # Converged: nothing is written any more.
    time.sleep(1.0)
    writes = operator.writes_in(namespace)
    version = kube.get(BATCHES, "nightly", namespace)["metadata"]["resourceVersion"]
    operator.controllers[0].enqueue(("BackupBatch", namespace, "nightly"))
    time.sleep(1.5)
    assert operator.writes_in(namespace) == writes
    assert kube.get(BATCHES, "nightly", namespace)["metadata"]["resourceVersion"] == version


def test_pausing_suspends_the_cronjob(operator: Operator, kube: Client, namespace: str) -> None:
    _setup(kube, namespace)
    kube.create(_batch(namespace), namespace)
    eventually(lambda: _status(kube, namespace).get("phase") == "Ready", 30, "phase Ready")
    kube.patch(BATCHES, "nightly", {"spec": {"paused": True}}, namespace=namespace)
    eventually(
        lambda: kube.get(CRONJOBS, "stash-trigger-nightly", namespace)["spec"]["suspend"],
        30,
        "the CronJob to be suspended",
    )


def test_a_batch_waiting_for_a_builtin_task_is_ready_once_the_operator_installs_it(
    control_plane: ControlPlane, kube: Client, namespace: str
) -> None:
    # The Task is missing until the operator, starting, installs it: what the operator judges
    # first must come from caches that have listed, and the Task's arrival must reach it.
    kube.delete(TASKS, "pvc-backup", missing_ok=True)
    eventually(lambda: not _task_exists(kube, "pvc-backup"), 30, "the Task to be gone")
    _setup(kube, namespace)
    kube.create(_batch(namespace), namespace)
    op, stop, client = _run_operator(control_plane.kubeconfig, leader_elect=False)
    try:
        eventually(lambda: _status(kube, namespace).get("phase") == "Ready", 30, "phase Ready")
    finally:
        stop.set()
        op.stopped.wait(15)
        client.close()


def _task_exists(kube: Client, name: str) -> bool:
    try:
        kube.get(TASKS, name)
    except NotFound:
        return False
    return True


def test_a_trigger_changed_or_deleted_by_someone_else_is_put_back_and_its_status_is_not(
    operator: Operator, kube: Client, namespace: str
) -> None:
    _setup(kube, namespace)
    kube.create(_batch(namespace), namespace)
    eventually(lambda: _status(kube, namespace).get("phase") == "Ready", 30, "phase Ready")
    name = "stash-trigger-nightly"
    kube.patch(CRONJOBS, name, {"spec": {"schedule": "5 5 * * *"}}, namespace=namespace)
    eventually(
        lambda: kube.get(CRONJOBS, name, namespace)["spec"]["schedule"] == "0 * * * *",
        30,
        "the CronJob's schedule to be the batch's again",
    )
    # A status of the CronJob's own (its controller's field) is no change of the trigger.
    stamp = "2026-01-01T00:00:00Z"
    kube.patch(
        CRONJOBS, name, {"status": {"lastScheduleTime": stamp}}, namespace=namespace,
        subresource="status",
    )  # fmt: skip
    before = kube.get(CRONJOBS, name, namespace)["metadata"]["uid"]
    kube.delete(CRONJOBS, name, namespace)

    def made_again() -> dict[str, Any] | None:
        try:
            found = kube.get(CRONJOBS, name, namespace)
        except NotFound:
            return None
        return found if found["metadata"]["uid"] != before else None

    again = eventually(made_again, 30, "the CronJob to be made again")
    assert again["spec"]["schedule"] == "0 * * * *"


def test_an_invalid_batch_says_why_and_recovers_when_fixed(
    operator: Operator, kube: Client, namespace: str
) -> None:
    kube.create(_batch(namespace, schedule="61 * * * *"), namespace)
    eventually(lambda: _status(kube, namespace).get("phase") == "Invalid", 30, "phase Invalid")
    validation = get_condition(_status(kube, namespace)["conditions"], c.VALIDATION_PASSED)
    assert validation is not None
    # The API server's own words for a CronJob's schedule (a dry-run CronJob asked it).
    assert "spec.schedule: end of range (61) above maximum (59): 61" in validation["message"]

    kube.patch(BATCHES, "nightly", {"spec": {"schedule": "*/10 * * * *"}}, namespace=namespace)
    eventually(lambda: _status(kube, namespace).get("phase") == "NotReady", 30, "NotReady")
    repo = get_condition(_status(kube, namespace)["conditions"], c.REPOSITORY_FOUND)
    assert repo is not None
    assert repo["message"] == f"Repository 'repo' not found in namespace {namespace}"

    _setup(kube, namespace)  # the Repository, its Secret and the targets appear
    eventually(lambda: _status(kube, namespace).get("phase") == "Ready", 30, "phase Ready")
    assert kube.get(CRONJOBS, "stash-trigger-nightly", namespace)["spec"]["schedule"] == (
        "*/10 * * * *"
    )


@pytest.mark.parametrize(
    ("schedule", "problem"),
    [
        ("0 0 * * 7", "spec.schedule: end of range (7) above maximum (6): 7"),
        ("0 0 31 2 *", "spec.schedule: no month it names has the day of month"),
        ("TZ=UTC 0 * * * *", "spec.schedule: "),
        ("@every 1h", None),
    ],
)
def test_a_schedule_is_judged_as_the_api_server_judges_a_cronjob(
    operator: Operator, kube: Client, namespace: str, schedule: str, problem: str | None
) -> None:
    _setup(kube, namespace)
    kube.create(_batch(namespace, schedule=schedule), namespace)
    phase = eventually(
        lambda: (
            _status(kube, namespace).get("phase") in ("Invalid", "Ready")
            and _status(kube, namespace)["phase"]
        ),
        30,
        "a verdict",
    )
    validation = get_condition(_status(kube, namespace)["conditions"], c.VALIDATION_PASSED)
    assert validation is not None
    if problem is None:
        assert phase == "Ready"
        assert kube.get(CRONJOBS, "stash-trigger-nightly", namespace)["spec"]["schedule"] == (
            schedule
        )
    else:
        assert phase == "Invalid"
        assert problem in validation["message"]
        assert not kube.list(CRONJOBS, namespace)["items"]


def test_a_missing_task_is_named_until_it_is_installed(
    operator: Operator, kube: Client, namespace: str
) -> None:
    _setup(kube, namespace)
    task = f"pvc-backup-{namespace}"
    obj = batch("nightly", namespace, member("PersistentVolumeClaim", "shared", task=task))
    obj["spec"]["repository"] = {"name": "repo"}
    kube.create(obj, namespace)
    eventually(lambda: _status(kube, namespace).get("phase") == "Invalid", 30, "Invalid")
    validation = get_condition(_status(kube, namespace)["conditions"], c.VALIDATION_PASSED)
    assert validation is not None
    assert f"spec.members[0].task.name: Task {task} not found" in validation["message"]
    builtin = kube.get(TASKS, "pvc-backup")
    copy = {"apiVersion": builtin["apiVersion"], "kind": "Task", "metadata": {"name": task}}
    kube.create({**copy, "spec": builtin["spec"]})
    try:
        eventually(lambda: _status(kube, namespace).get("phase") == "Ready", 30, "Ready")
    finally:
        kube.delete(TASKS, task, missing_ok=True)


def test_a_batch_with_the_longest_valid_name_gets_its_cronjob_and_sessions(
    operator: Operator, kube: Client, namespace: str
) -> None:
    _setup(kube, namespace)
    name = "b" * 240 + ".nightly-long"  # 253 characters, dots included
    obj = _batch(namespace)
    obj["metadata"]["name"] = name
    kube.create(obj, namespace)
    eventually(lambda: _status(kube, namespace, name).get("phase") == "Ready", 30, "Ready")
    cron = kube.get(CRONJOBS, cronjob_name(name), namespace)
    assert len(cron["metadata"]["name"]) <= 52
    assert cron["metadata"]["ownerReferences"][0]["name"] == name
    stamp = int(time.time())
    session = create_session(kube, "BackupBatch", name, namespace, unix_seconds=stamp)
    assert session["metadata"]["name"].endswith(f"-{stamp}")
    assert len(session["metadata"]["name"]) <= 253
    eventually(
        lambda: (
            (kube.get(SESSIONS, session["metadata"]["name"], namespace).get("status") or {}).get(
                "phase"
            )
            in ("Running", "Failed", "Succeeded")
        ),
        30,
        "the session started",
    )


def _token_kubeconfig(
    kube: Client, plane: ControlPlane, namespace: str, sa: str, out: Path
) -> Path:
    request = {
        "apiVersion": "authentication.k8s.io/v1",
        "kind": "TokenRequest",
        "spec": {"expirationSeconds": 600},
    }
    token = kube.request(
        "POST", f"/api/v1/namespaces/{namespace}/serviceaccounts/{sa}/token", body=request
    )["status"]["token"]
    ca = base64.b64encode((plane.pki / "ca.crt").read_bytes()).decode()
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "current-context": "sa",
        "clusters": [
            {"name": "c", "cluster": {"server": plane.server, "certificate-authority-data": ca}}
        ],
        "users": [{"name": "sa", "user": {"token": token}}],
        "contexts": [
            {"name": "sa", "context": {"cluster": "c", "user": "sa", "namespace": namespace}}
        ],
    }
    out.write_text(yaml.safe_dump(config))
    return out


def test_the_cronjobs_command_creates_a_session_with_only_its_own_permissions(
    operator: Operator, control_plane: ControlPlane, kube: Client, namespace: str, tmp_path: Path
) -> None:
    _setup(kube, namespace)
    kube.create(_batch(namespace), namespace)
    eventually(lambda: _status(kube, namespace).get("phase") == "Ready", 30, "phase Ready")
    cron = kube.get(CRONJOBS, "stash-trigger-nightly", namespace)
    pod = cron["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    kubeconfig = _token_kubeconfig(
        kube, control_plane, namespace, pod["serviceAccountName"], tmp_path / "kubeconfig"
    )
    # Run what the CronJob's pod runs, as a kubelet would: its args, its env, its identity.
    env = {**os.environ, "KUBECONFIG": str(kubeconfig), "POD_NAMESPACE": namespace}
    args = pod["containers"][0]["args"]
    done = subprocess.run(
        [sys.executable, "-m", "cli.main", *args, "--namespace", namespace],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    sessions = kube.list(SESSIONS, namespace)["items"]
    assert len(sessions) == 1
    session = sessions[0]
    assert session["metadata"]["name"].startswith("nightly-")
    assert session["metadata"]["labels"][c.INVOKER_NAME_LABEL] == "nightly"
    assert session["spec"]["invoker"]["kind"] == "BackupBatch"
    assert session["metadata"]["ownerReferences"][0]["name"] == "nightly"
    # That identity can do nothing else.
    limited = Client.from_kubeconfig(str(kubeconfig))
    with pytest.raises(Forbidden):
        limited.list(SESSIONS, namespace)
    with pytest.raises(Forbidden):
        limited.get(ROLES, "stash-trigger-nightly", namespace)
    limited.close()


def test_deleting_the_batch_takes_its_cronjob_with_it(
    operator: Operator, kube: Client, namespace: str
) -> None:
    _setup(kube, namespace)
    kube.create(_batch(namespace), namespace)
    eventually(lambda: _status(kube, namespace).get("phase") == "Ready", 30, "phase Ready")
    kube.delete(BATCHES, "nightly", namespace)
    eventually(
        lambda: not kube.list(CRONJOBS, namespace)["items"], 60, "garbage collection of the CronJob"
    )


def test_two_replicas_elect_one_leader_and_the_other_takes_over(
    control_plane: ControlPlane, kube: Client, namespace: str
) -> None:
    fast = {
        "namespace": namespace,
        "lease_duration": 3.0,
        "renew_deadline": 2.0,
        "retry_period": 0.5,
    }
    first, stop_first, client_first = _run_operator(control_plane.kubeconfig, identity="a", **fast)
    eventually(first.leading.is_set, 15, "a leader")
    second, stop_second, client_second = _run_operator(
        control_plane.kubeconfig, identity="b", **fast
    )
    try:
        eventually(second.caches.synced, 30, "the standby's caches")
        time.sleep(2.0)
        assert not second.leading.is_set()
        lease = kube.get(LEASES, "stash-operator", namespace)
        assert lease["spec"]["holderIdentity"] == "a"

        # The leader dies without releasing its Lease.
        assert first.elector is not None
        first.elector.stop(release=False)
        started = time.monotonic()
        eventually(second.leading.is_set, 15, "the standby to take over")
        assert time.monotonic() - started < 3.0 + 2.0  # within the lease duration (+ a retry)
        assert kube.get(LEASES, "stash-operator", namespace)["spec"]["holderIdentity"] == "b"

        # The new leader does the work.
        _setup(kube, namespace)
        kube.create(_batch(namespace), namespace)
        eventually(lambda: _status(kube, namespace).get("phase") == "Ready", 30, "phase Ready")
    finally:
        stop_first.set()
        stop_second.set()
        first.stopped.wait(15)
        second.stopped.wait(15)
        client_first.close()
        client_second.close()
