"""BackupSessions on the real control plane: Jobs for Job-model members, skipping, deadlines,
success from host stats, and an operator killed mid-session."""

from __future__ import annotations

import re
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from api import constants as c
from api.conditions import is_true, now_rfc3339, parse_rfc3339
from api.naming import session_name
from controller.operator import Operator, OperatorOptions
from controller.runtime.caches import FUNCTIONS, JOBS, TASKS
from devcluster import ControlPlane, services
from devcluster.cluster import free_port
from kube import Client
from kube.sessions import create_session
from kube.types import BACKUP_BATCHES as BATCHES
from kube.types import BACKUP_SESSIONS as SESSIONS
from kube.types import CLUSTER_ROLES, DEPLOYMENTS, PODS, REPOSITORIES
from tests.factories import batch, member
from tests.integration.helpers import eventually
from tests.integration.test_operator import _setup
from tests.prometheus import metric_value


def _start(
    kubeconfig: Path, **options: Any
) -> tuple[Operator, threading.Event, threading.Thread, Client]:
    client = Client.from_kubeconfig(str(kubeconfig))
    settings = OperatorOptions(image="stash-py:test", leader_elect=False, **options)
    operator = Operator(client, settings)
    stop = threading.Event()
    thread = threading.Thread(target=operator.run, args=(stop,), daemon=True)
    thread.start()
    eventually(operator.caches.synced, 30, "the operator's caches")
    return operator, stop, thread, client


@pytest.fixture
def operator(control_plane: ControlPlane) -> Iterator[Operator]:
    op, stop, thread, client = _start(control_plane.kubeconfig)
    yield op
    stop.set()
    thread.join(15)
    client.close()


def _ready_batch(kube: Client, namespace: str, *members: dict[str, Any], **spec: Any) -> None:
    _setup(kube, namespace)
    obj = batch("nightly", namespace, *members, **spec)
    obj["spec"]["repository"] = {"name": "repo"}
    kube.create(obj, namespace)
    eventually(
        lambda: (
            (kube.get(BATCHES, "nightly", namespace).get("status") or {}).get("phase") == "Ready"
        ),
        30,
        "the batch to be Ready",
    )


def _session(kube: Client, namespace: str, name: str) -> dict[str, Any]:
    return kube.get(SESSIONS, name, namespace)


def _phase(kube: Client, namespace: str, name: str) -> str:
    return str((_session(kube, namespace, name).get("status") or {}).get("phase", ""))


def test_the_operator_installs_the_builtin_tasks(operator: Operator, kube: Client) -> None:
    task = eventually(lambda: operator.caches.get(TASKS, "", "pvc-backup"), 30, "Task pvc-backup")
    assert [s["name"] for s in task["spec"]["steps"]] == ["pvc-backup", "update-status"]
    assert kube.get(FUNCTIONS, "pvc-restore")["spec"]["image"] == "stash-py:test"


def test_a_pvc_member_gets_its_job_and_a_second_session_is_skipped(
    operator: Operator, kube: Client, namespace: str
) -> None:
    _ready_batch(
        kube,
        namespace,
        member("Deployment", "web"),
        member("PersistentVolumeClaim", "shared", task="pvc-backup"),
    )
    eventually(lambda: operator.caches.get(TASKS, "", "pvc-backup"), 30, "the built-in Task")
    first = create_session(kube, "BackupBatch", "nightly", namespace, unix_seconds=1700000000)
    name = first["metadata"]["name"]
    eventually(lambda: _phase(kube, namespace, name) == "Running", 30, "the session to run")
    job = eventually(
        lambda: next(iter(kube.list(JOBS, namespace)["items"]), None), 30, "the backup Job"
    )
    assert job["metadata"]["name"] == f"stash-backup-{name}-1"
    assert job["metadata"]["ownerReferences"][0]["name"] == name
    pod = job["spec"]["template"]["spec"]
    claims = [
        v["persistentVolumeClaim"]["claimName"]
        for v in pod["volumes"]
        if "persistentVolumeClaim" in v
    ]
    assert claims == ["shared"]
    assert pod["initContainers"][0]["args"][:2] == ["backup-pvc", f"--namespace={namespace}"]
    assert f"--backupsession={name}" in pod["initContainers"][0]["args"]
    status = _session(kube, namespace, name)["status"]
    assert [t["phase"] for t in status["targets"]] == ["Running", "Running"]

    second = create_session(kube, "BackupBatch", "nightly", namespace, unix_seconds=1700000060)
    second_name = second["metadata"]["name"]
    eventually(lambda: _phase(kube, namespace, second_name) == "Skipped", 30, "Skipped")
    assert is_true(_session(kube, namespace, second_name)["status"]["conditions"], c.BACKUP_SKIPPED)
    assert len(kube.list(JOBS, namespace)["items"]) == 1


def test_a_job_the_cache_has_not_seen_yet_is_asked_for_not_taken_for_deleted(
    operator: Operator, kube: Client, namespace: str
) -> None:
    _ready_batch(kube, namespace, member("PersistentVolumeClaim", "shared", task="pvc-backup"))
    eventually(lambda: operator.caches.get(TASKS, "", "pvc-backup"), 30, "the built-in Task")
    name = create_session(kube, "BackupBatch", "nightly", namespace)["metadata"]["name"]
    job = f"stash-backup-{name}-0"

    def job_made() -> bool:
        targets = (_session(kube, namespace, name).get("status") or {}).get("targets") or [{}]
        return is_true(targets[0].get("conditions"), c.BACKUP_EXECUTOR_ENSURED)

    eventually(job_made, 30, "the Job made")
    # A watch lagging behind: the cache loses the Job it has (as if its ADDED had not come).
    jobs = operator.caches.informer(JOBS)
    with jobs._lock:
        jobs._store.pop((namespace, job), None)
    assert operator.caches.get(JOBS, namespace, job) is None
    operator.sessions.reconcile((namespace, name))
    target = _session(kube, namespace, name)["status"]["targets"][0]
    assert target["phase"] == "Running", target
    assert kube.get(JOBS, job, namespace)["metadata"]["name"] == job  # and nothing recreated it

    # Really deleted: now the target fails, saying so.
    kube.delete(JOBS, job, namespace)
    eventually(lambda: _phase(kube, namespace, name) == "Failed", 30, "the target to fail")
    assert "deleted before it finished" in str(_session(kube, namespace, name)["status"])


def test_a_sidecar_target_succeeds_when_its_host_reports(
    operator: Operator, kube: Client, namespace: str
) -> None:
    _ready_batch(kube, namespace, member("Deployment", "web"))
    name = create_session(kube, "BackupBatch", "nightly", namespace)["metadata"]["name"]
    eventually(lambda: _phase(kube, namespace, name) == "Running", 30, "the session to run")
    # What the sidecar of host-0 writes when its backup is done.
    status = _session(kube, namespace, name)["status"]
    status["targets"][0]["stats"] = [{"hostname": "host-0", "phase": "Succeeded", "duration": "2s"}]
    status["conditions"] = [*status.get("conditions", []), *_repository_done()]
    kube.patch(SESSIONS, name, {"status": status}, namespace=namespace, subresource="status")
    eventually(lambda: _phase(kube, namespace, name) == "Succeeded", 30, "Succeeded")
    final = _session(kube, namespace, name)["status"]
    assert final["targets"][0]["phase"] == "Succeeded"
    assert final["sessionDuration"].endswith("s")


def test_an_operator_killed_mid_session_restarts_without_duplicates_and_the_session_ends(
    control_plane: ControlPlane, kube: Client, namespace: str
) -> None:
    first, stop, thread, client = _start(control_plane.kubeconfig)
    try:
        _ready_batch(
            kube,
            namespace,
            member("PersistentVolumeClaim", "shared", task="pvc-backup"),
            timeOut="20s",
        )
        eventually(lambda: first.caches.get(TASKS, "", "pvc-backup"), 30, "the built-in Task")
        name = create_session(kube, "BackupBatch", "nightly", namespace)["metadata"]["name"]
        eventually(lambda: kube.list(JOBS, namespace)["items"], 30, "the backup Job")
        before = eventually(
            lambda: (
                (s := _session(kube, namespace, name).get("status") or {}).get("targets")
                and is_true(s["targets"][0].get("conditions"), c.BACKUP_EXECUTOR_ENSURED)
                and s
            ),
            30,
            "the status recording the Job",
        )
    finally:
        stop.set()  # the operator goes away mid-session
        thread.join(15)
        client.close()
    second, stop2, thread2, client2 = _start(control_plane.kubeconfig)
    try:
        eventually(second.leading.is_set, 10, "leading")
        assert len(kube.list(JOBS, namespace)["items"]) == 1
        assert _session(kube, namespace, name)["status"]["targets"] == before["targets"]
        # No kubelet runs the Job: the session's deadline ends it.
        eventually(lambda: _phase(kube, namespace, name) == "Failed", 60, "the deadline")
        final = _session(kube, namespace, name)["status"]
        assert is_true(final["conditions"], c.DEADLINE_EXCEEDED)
        # the Job that never ran is stopped with it, and none was made again
        eventually(lambda: not kube.list(JOBS, namespace)["items"], 30, "the Job stopped")
        assert second.sessions.jobs_created == 0
    finally:
        stop2.set()
        thread2.join(15)
        client2.close()


EVENTS = ("v1", "Event")


def _events_about(kube: Client, namespace: str, name: str) -> list[dict[str, Any]]:
    rt = kube.resource_type(*EVENTS)
    return [e for e in kube.list(rt, namespace)["items"] if e["involvedObject"]["name"] == name]


def _repository_done() -> list[dict[str, str]]:
    """The conditions the last host writes after retention and the integrity check."""
    return [
        {"type": kind, "status": "True", "reason": "Done", "lastTransitionTime": now_rfc3339()}
        for kind in (c.RETENTION_POLICY_APPLIED, c.REPOSITORY_INTEGRITY_VERIFIED)
    ]


def _finish_sidecar_session(kube: Client, namespace: str, name: str) -> None:
    eventually(lambda: _phase(kube, namespace, name) == "Running", 30, f"{name} to run")
    status = _session(kube, namespace, name)["status"]
    status["targets"][0]["stats"] = [{"hostname": "host-0", "phase": "Succeeded"}]
    status["conditions"] = [*status.get("conditions", []), *_repository_done()]
    kube.patch(SESSIONS, name, {"status": status}, namespace=namespace, subresource="status")
    eventually(lambda: _phase(kube, namespace, name) == "Succeeded", 30, f"{name} to succeed")


def test_a_failed_session_is_retried_once_after_its_delay_and_events_say_so(
    operator: Operator, kube: Client, namespace: str
) -> None:
    _ready_batch(
        kube,
        namespace,
        member("PersistentVolumeClaim", "shared", task="pvc-backup"),
        timeOut="4s",
        retryConfig={"maxRetry": 1, "delay": "2s"},
        backupHistoryLimit=5,
    )
    eventually(lambda: operator.caches.get(TASKS, "", "pvc-backup"), 30, "the built-in Task")
    first = create_session(kube, "BackupBatch", "nightly", namespace)["metadata"]["name"]
    eventually(lambda: _phase(kube, namespace, first) == "Failed", 30, "the first to fail")
    eventually(
        lambda: _session(kube, namespace, first)["status"].get("retried") is True, 30, "the retry"
    )
    sessions = {s["metadata"]["name"]: s for s in kube.list(SESSIONS, namespace)["items"]}
    (retry,) = [s for n, s in sessions.items() if n != first]
    assert retry["spec"]["retryLeft"] == 0
    name = retry["metadata"]["name"]
    # Named from the retry time written before it was made: a lost write cannot make a second.
    due = parse_rfc3339(_session(kube, namespace, first)["status"]["nextRetry"])
    assert name == session_name("nightly", int(due.timestamp()))
    eventually(lambda: _phase(kube, namespace, name) == "Failed", 30, "the retry to fail")
    eventually(
        lambda: _session(kube, namespace, name)["status"].get("retried") is False,
        30,
        "no retry left",
    )
    assert len(kube.list(SESSIONS, namespace)["items"]) == 2
    reasons = {e["reason"]: e for e in _events_about(kube, namespace, first)}
    assert reasons["BackupSessionFailed"]["type"] == "Warning"
    assert "deadline" in reasons["BackupSessionFailed"]["message"]
    assert "BackupJobCreated" in reasons
    assert "BackupRetried" in reasons


def test_only_backup_history_limit_sessions_are_kept(
    operator: Operator, kube: Client, namespace: str
) -> None:
    _ready_batch(kube, namespace, member("Deployment", "web"), backupHistoryLimit=1)
    first = create_session(kube, "BackupBatch", "nightly", namespace, unix_seconds=1700000000)
    _finish_sidecar_session(kube, namespace, first["metadata"]["name"])
    second = create_session(kube, "BackupBatch", "nightly", namespace, unix_seconds=1700000100)
    _finish_sidecar_session(kube, namespace, second["metadata"]["name"])
    eventually(
        lambda: (
            [s["metadata"]["name"] for s in kube.list(SESSIONS, namespace)["items"]]
            == [second["metadata"]["name"]]
        ),
        30,
        "the older session to be cleaned",
    )
    status = _session(kube, namespace, second["metadata"]["name"])["status"]
    assert is_true(status["conditions"], c.BACKUP_HISTORY_CLEANED)


def test_a_repository_lists_the_invokers_using_it(
    operator: Operator, kube: Client, namespace: str
) -> None:
    _ready_batch(kube, namespace, member("Deployment", "web"))
    repositories = kube.resource_type(c.V1ALPHA1, "Repository")
    eventually(
        lambda: (
            (kube.get(repositories, "repo", namespace).get("status") or {}).get("references")
            == [
                {
                    "apiGroup": c.GROUP,
                    "kind": "BackupBatch",
                    "namespace": namespace,
                    "name": "nightly",
                }
            ]
        ),
        30,
        "the Repository's references",
    )
    kube.delete(BATCHES, "nightly", namespace)
    eventually(
        lambda: (
            not (kube.get(repositories, "repo", namespace).get("status") or {}).get("references")
        ),
        30,
        "the reference to go",
    )


@pytest.fixture
def impatient_operator(control_plane: ControlPlane) -> Iterator[Operator]:
    """An operator that gives a sidecar target 2 s to have a ready pod carrying the sidecar."""
    op, stop, thread, client = _start(control_plane.kubeconfig, sidecar_grace=2.0)
    yield op
    stop.set()
    thread.join(15)
    client.close()


def _target_failure(kube: Client, namespace: str, name: str) -> str:
    def failed() -> str | None:
        status = _session(kube, namespace, name).get("status") or {}
        targets = status.get("targets") or []
        if status.get("phase") != "Failed" or not targets:
            return None
        conditions = targets[0].get("conditions") or []
        return next((str(x["message"]) for x in conditions if x["type"] == "BackupFailed"), None)

    return eventually(failed, 60, f"session {name} to fail")


def _pods_of_web(kube: Client, namespace: str) -> list[dict[str, Any]]:
    return list(kube.list(PODS, namespace, label_selector="app=web")["items"])


def test_a_sidecar_target_no_sidecar_can_carry_out_fails_after_the_grace_saying_why(
    impatient_operator: Operator, kube: Client, namespace: str
) -> None:
    # No timeOut: without this the session would stay Running for the 24 h default deadline.
    _ready_batch(kube, namespace, member("Deployment", "web"))
    eventually(lambda: _pods_of_web(kube, namespace), 60, "web's pod")
    # Its pod was made without the webhook here: it runs without the sidecar.
    first = create_session(kube, "BackupBatch", "nightly", namespace)["metadata"]["name"]
    message = _target_failure(kube, namespace, first)
    # (one or two: the opt-in label rolls the Deployment, and no webhook injects here)
    assert re.search(rf"^\d pod\(s\) of Deployment {namespace}/web run without the stash", message)
    assert "kubectl rollout restart deployment/web" in message

    kube.patch(DEPLOYMENTS, "web", {"spec": {"replicas": 0}}, namespace=namespace)
    eventually(lambda: not _pods_of_web(kube, namespace), 60, "web scaled to 0")
    later = int(time.time()) + 1
    made = create_session(kube, "BackupBatch", "nightly", namespace, unix_seconds=later)
    second = str(made["metadata"]["name"])
    message = _target_failure(kube, namespace, second)
    assert message == (
        f"Deployment {namespace}/web has no pods (scaled to 0?): "
        "no stash sidecar runs to back it up"
    )


def test_a_sidecar_whose_service_account_may_not_read_its_sessions_is_said_on_the_invoker(
    impatient_operator: Operator, kube: Client, namespace: str
) -> None:
    """The sidecar's ClusterRole is not installed: the RoleBinding the operator makes grants
    nothing, and every call of the sidecar would be forbidden."""
    role = kube.get(CLUSTER_ROLES, "stash-sidecar")
    kube.delete(CLUSTER_ROLES, "stash-sidecar")
    try:
        _setup(kube, namespace)
        obj = batch("nightly", namespace, member("Deployment", "web"))
        obj["spec"]["repository"] = {"name": "repo"}
        kube.create(obj, namespace)

        def refused() -> str | None:
            status = kube.get(BATCHES, "nightly", namespace).get("status") or {}
            for cond in status.get("conditions") or []:
                if cond["type"] == c.SIDECAR_AUTHORIZED and cond["status"] == "False":
                    return str(cond["message"])
            return None

        message = eventually(refused, 30, "SidecarAuthorized=False")
        assert message.startswith(
            f"Deployment web (service account {namespace}/default) may not "
            "list backupsessions.stash.appscode.com, watch backupsessions.stash.appscode.com"
        )
        eventually(
            lambda: any(
                e["reason"] == "SidecarNotAuthorized" and e["message"] == message
                for e in _events_about(kube, namespace, "nightly")
            ),
            30,
            "a SidecarNotAuthorized Event",
        )
        name = create_session(kube, "BackupBatch", "nightly", namespace)["metadata"]["name"]
        assert _target_failure(kube, namespace, name) == message
    finally:
        role["metadata"] = {"name": "stash-sidecar"}
        kube.create(role)


def _operator_with_gateway(control_plane: ControlPlane, url: str) -> tuple[Operator, Any]:
    op, stop, thread, client = _start(
        control_plane.kubeconfig, pushgateway_url=url, metrics_check=2.0
    )

    def shut() -> None:
        stop.set()
        thread.join(30)
        client.close()
        assert not thread.is_alive(), "the operator did not stop"

    return op, shut


def _gateway_metrics(url: str) -> str:
    with urllib.request.urlopen(f"{url}/metrics", timeout=5) as response:  # noqa: S310
        return str(response.read().decode())


def test_metrics_lost_with_the_pushgateway_come_back_from_the_api_within_a_minute(
    control_plane: ControlPlane, kube: Client, namespace: str, tmp_path: Path
) -> None:
    first_gateway = services.pushgateway(tmp_path / "gateway-1")
    _, shut = _operator_with_gateway(control_plane, first_gateway.url)
    try:
        _ready_batch(kube, namespace, member("Deployment", "web"))
        name = create_session(kube, "BackupBatch", "nightly", namespace)["metadata"]["name"]
        eventually(lambda: _phase(kube, namespace, name) == "Running", 30, "the session to run")
        kube.patch(
            REPOSITORIES,
            "repo",
            {"status": {"integrity": True, "totalSize": "1.500 KiB", "snapshotCount": 3}},
            namespace=namespace,
            subresource="status",
        )
        status = _session(kube, namespace, name)["status"]
        status["targets"][0]["stats"] = [{"hostname": "host-0", "phase": "Succeeded"}]
        status["conditions"] = [*status.get("conditions", []), *_repository_done()]
        kube.patch(SESSIONS, name, {"status": status}, namespace=namespace, subresource="status")
        eventually(lambda: _phase(kube, namespace, name) == "Succeeded", 30, "Succeeded")
    finally:
        shut()  # the leader goes away with its Pushgateway, which held the session's metrics
        first_gateway.stop()

    labels = {"invoker_name": "nightly", "namespace": namespace}
    port = next(p for p in iter(free_port, None) if p != first_gateway.port)
    second_gateway = services.pushgateway(tmp_path / "gateway-2", port)  # the new leader's
    try:
        assert (
            metric_value(_gateway_metrics(second_gateway.url), "stash_backup_session_success")
            is None
        )
        started = time.monotonic()
        _, shut = _operator_with_gateway(control_plane, second_gateway.url)
        try:

            def restored() -> str | None:
                text = _gateway_metrics(second_gateway.url)
                wanted = ("stash_backup_session_success", "stash_repository_snapshot_count")
                return (
                    text
                    if all(metric_value(text, m, **labels) is not None for m in wanted)
                    else None
                )

            text = eventually(restored, 60, "the metrics back in the new Pushgateway")
            assert time.monotonic() - started < 60
            assert metric_value(text, "stash_backup_session_success", **labels) == 1.0
            assert metric_value(text, "stash_backup_target_success", **labels, name="web") == 1.0
            assert metric_value(text, "stash_backup_last_success_time_seconds", **labels)
            assert metric_value(text, "stash_repository_snapshot_count", **labels) == 3.0
            assert metric_value(text, "stash_repository_size_bytes", **labels) == 1536.0
            assert metric_value(text, "stash_repository_integrity", **labels) == 1.0
            host = {**labels, "kind": "Deployment", "name": "web", "hostname": "host-0"}
            assert metric_value(text, "stash_backup_host_backup_success", **host) == 1.0
        finally:
            shut()
    finally:
        second_gateway.stop()


@pytest.fixture
def broken_task(kube: Client) -> Iterator[str]:
    """A Task whose one Function's image is not an image name: its Job's pod never starts."""
    kube.create(
        {
            "apiVersion": c.V1BETA1,
            "kind": "Function",
            "metadata": {"name": "broken-image"},
            "spec": {"image": "Not/A-Valid:Image", "args": ["never"]},
        }
    )
    kube.create(
        {
            "apiVersion": c.V1BETA1,
            "kind": "Task",
            "metadata": {"name": "broken-image"},
            "spec": {"steps": [{"name": "broken-image"}]},
        }
    )
    yield "broken-image"
    kube.delete(TASKS, "broken-image", missing_ok=True)
    kube.delete(FUNCTIONS, "broken-image", missing_ok=True)


def test_a_job_whose_pod_cannot_start_fails_its_target_with_the_pods_own_reason(
    operator: Operator, kube: Client, namespace: str, broken_task: str
) -> None:
    """Not the session's deadline a day later: the kubelet's own words, within a minute."""
    eventually(lambda: operator.caches.get(TASKS, "", broken_task), 30, "the Task in the cache")
    service = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "db"}}
    kube.create({**service, "spec": {"ports": [{"port": 5432}]}}, namespace)
    db = {"target": {"ref": {"apiVersion": "v1", "kind": "Service", "name": "db"}}}
    _ready_batch(kube, namespace, {**db, "task": {"name": broken_task}})
    started = time.monotonic()
    name = create_session(kube, "BackupBatch", "nightly", namespace)["metadata"]["name"]
    message = _target_failure(kube, namespace, name)
    assert time.monotonic() - started < 60
    assert re.match(
        rf"the backup Job stash-backup-{name}-0's pod stash-backup-{name}-0-\w+ cannot start: "
        r"InvalidImageName",
        message,
    ), message


def test_after_an_outage_longer_than_time_out_the_next_slot_runs_and_the_expired_one_fails(
    control_plane: ControlPlane, kube: Client, namespace: str
) -> None:
    _, stop, thread, client = _start(control_plane.kubeconfig)
    try:
        _ready_batch(kube, namespace, member("Deployment", "web"), timeOut="10s")
    finally:
        stop.set()  # the operator goes away ...
        thread.join(15)
        client.close()
    made = create_session(kube, "BackupBatch", "nightly", namespace)["metadata"]
    expired = made["name"]
    past = parse_rfc3339(made["creationTimestamp"]).timestamp() + 11  # ... longer than timeOut
    eventually(lambda: time.time() > past, 30, "the expired session's deadline to pass")
    fresh = create_session(kube, "BackupBatch", "nightly", namespace)["metadata"]["name"]
    _, stop, thread, client = _start(control_plane.kubeconfig)  # ... and comes back
    try:
        eventually(lambda: _phase(kube, namespace, expired) == "Failed", 30, "the expired one")
        assert is_true(
            _session(kube, namespace, expired)["status"]["conditions"], c.DEADLINE_EXCEEDED
        )
        eventually(
            lambda: _phase(kube, namespace, fresh) not in ("", "Pending"), 30, "the new slot"
        )
        status = _session(kube, namespace, fresh)["status"]
        assert status["phase"] != "Skipped", status
        assert not is_true(status.get("conditions"), c.BACKUP_SKIPPED)
        assert status.get("targets"), "the new slot started its targets"
    finally:
        stop.set()
        thread.join(15)
        client.close()
