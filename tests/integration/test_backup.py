"""Backups end to end on the dev cluster's real node: the operator, the webhook injecting the
`stash` sidecar into real pods, backup Jobs run by the kubelet from the project's image, real
restic, a real Pushgateway and a real PostgreSQL server."""

from __future__ import annotations

import contextlib
import functools
import http.server
import os
import threading
import urllib.request
from pathlib import Path
from typing import Any

from api import constants as c
from api.conditions import has_condition, is_true
from api.naming import hook_job_name
from api.objects import JSON
from controller.operator import Operator
from devcluster import ControlPlane, services
from devcluster.images import Images
from devcluster.services import Postgres, Service
from engine.backend import BackendConfig
from engine.restic import Restic
from kube import Client, NotFound, ResourceType
from kube.sessions import create_session
from kube.types import (
    BACKUP_BATCHES,
    BACKUP_SESSIONS,
    EVENTS,
    JOBS,
    PODS,
    REPOSITORIES,
    RESTORE_BATCHES,
    RESTORE_SESSIONS,
)
from tests.factories import batch, member, restore_batch, restore_session
from tests.integration.helpers import (
    WebhookProcess,
    eventually,
    give_to_pods,
    invoker_ready,
    job_steps,
    running_operator,
    shared_dir,
    wait_until_injected,
)
from tests.integration.objects import (
    PASSWORD,
    backend_repository,
    pvc,
    repository,
    restic_of,
    rolled_out,
    workload,
)
from tests.integration.test_restic import make_data, tree
from tests.manifests import load_all
from tests.prometheus import metric_value


def _ready(kube: Client, namespace: str, obj: JSON) -> JSON:
    kube.create(obj, namespace)
    name = obj["metadata"]["name"]
    return eventually(
        lambda: (
            got
            if ((got := kube.get(BACKUP_BATCHES, name, namespace)).get("status") or {}).get("phase")
            == "Ready"
            else None
        ),
        30,
        f"BackupBatch {name} to be Ready",
    )


def _phase(obj: JSON) -> str:
    return str((obj.get("status") or {}).get("phase", ""))


def _session(kube: Client, namespace: str, name: str) -> JSON:
    return kube.get(BACKUP_SESSIONS, name, namespace)


def _finished(kube: Client, namespace: str, name: str) -> JSON | None:
    """The session once it has ended and its follow-ups are recorded: the phase is written
    first, history cleaning and the metrics push (off the worker) in the passes after it."""
    session = _session(kube, namespace, name)
    status = session.get("status") or {}
    if status.get("phase") not in ("Succeeded", "Failed"):
        return None
    conditions = status.get("conditions")
    if not (
        is_true(conditions, c.BACKUP_HISTORY_CLEANED)
        and has_condition(conditions, c.METRICS_PUSHED)
    ):
        return None
    return session


def _job(kube: Client, namespace: str, session: str, index: int) -> JSON:
    return eventually(
        lambda: next(
            (
                j
                for j in kube.list(JOBS, namespace)["items"]
                if j["metadata"]["name"] == f"stash-backup-{session}-{index}"
            ),
            None,
        ),
        30,
        f"the backup Job of member {index}",
    )


def _stats(session: JSON, kind: str) -> list[JSON]:
    target = next(t for t in session["status"]["targets"] if t["ref"]["kind"] == kind)
    return list(target.get("stats") or [])


def _opted_in_pod(kind: str, name: str) -> JSON:
    owner = "ReplicaSet" if kind == "Deployment" else kind
    owner_name = f"{name}-5d8f7b9c4" if kind == "Deployment" else name
    labels = {c.BACKUP_LABEL: c.BACKUP_LABEL_VALUE, "pod-template-hash": "5d8f7b9c4"}
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "generateName": "probe-",
            "labels": labels,
            "ownerReferences": [
                {
                    "apiVersion": "apps/v1",
                    "kind": owner,
                    "name": owner_name,
                    "uid": "00000000-0000-0000-0000-000000000000",
                    "controller": True,
                }
            ],
        },
        "spec": {"containers": [{"name": "app", "image": "probe"}]},
    }


def _running_sidecars(kube: Client, namespace: str, app: str, count: int) -> list[JSON] | None:
    pods = [
        p
        for p in kube.list(PODS, namespace, label_selector=f"app={app}")["items"]
        if not p["metadata"].get("deletionTimestamp")
        and any(ct["name"] == c.SIDECAR_CONTAINER for ct in p["spec"]["containers"])
        and all(s.get("ready") for s in (p.get("status") or {}).get("containerStatuses") or [{}])
    ]
    return pods if len(pods) == count else None


def test_a_batch_of_a_deployment_a_statefulset_and_a_pvc_backs_up_and_restores(
    operator: Operator,
    injecting_webhook: WebhookProcess,
    kube: Client,
    namespace: str,
    images: Images,
    pushgateway: Service,
    tmp_path: Path,
) -> None:
    web_data = shared_dir(make_data(tmp_path / "web-data"))
    db_data = make_data(tmp_path / "db-data")
    pvc_data = make_data(tmp_path / "pvc")
    repo_dir = tmp_path / "repo"
    repository(kube, namespace, repo_dir)
    pvc(kube, namespace, "shared", pvc_data)
    web_member = member("Deployment", "web", mounts=(("data", str(web_data)),))
    # The application flushes before the backup: the snapshot must contain what the hook wrote.
    flush = f"echo flushed > {web_data}/flushed-by-hook"
    web_member["hooks"] = {"preBackup": {"exec": {"command": ["sh", "-c", flush]}}}
    # A Job-model member's hooks run in its Job, where the volume is mounted.
    pvc_member = member(
        "PersistentVolumeClaim", "shared", mounts=(("shared", str(pvc_data)),), task="pvc-backup"
    )
    pvc_member["hooks"] = {
        "preBackup": {"exec": {"command": ["sh", "-c", f"test -d {pvc_data}"]}},
        "postBackup": {"exec": {"command": ["true"]}, "executionPolicy": "OnSuccess"},
    }
    kube.create(
        batch(
            "nightly",
            namespace,
            web_member,
            member("StatefulSet", "db", mounts=(("data", str(db_data)),)),
            pvc_member,
        ),
    )
    # The webhook has seen the batch before the workloads' pods are created: they get the
    # sidecar at creation. Two pods of the Deployment (only the Lease holder backs up), both
    # StatefulSet ordinals.
    for kind, name in (("Deployment", "web"), ("StatefulSet", "db")):
        wait_until_injected(kube, namespace, _opted_in_pod(kind, name))
    kube.create(workload("Deployment", "web", 2, web_data, images.app.name), namespace)
    kube.create(workload("StatefulSet", "db", 2, db_data, images.app.name), namespace)
    invoker_ready(kube, namespace, "nightly")
    for kind, name in (("Deployment", "web"), ("StatefulSet", "db")):
        rollout = functools.partial(rolled_out, kube, namespace, kind, name)
        eventually(rollout, 180, f"{name}'s rollout")
    pods = [
        *eventually(lambda: _running_sidecars(kube, namespace, "web", 2), 120, "web's sidecars"),
        *eventually(lambda: _running_sidecars(kube, namespace, "db", 2), 120, "db's sidecars"),
    ]
    name = create_session(kube, "BackupBatch", "nightly", namespace)["metadata"]["name"]
    runs = job_steps(kube, namespace, _job(kube, namespace, name, 2)["metadata"]["name"])
    outcome = [(r.name, r.returncode) for r in runs]
    assert outcome == [("pvc-backup", 0), ("update-status", 0)], [r.output for r in runs]
    session = eventually(lambda: _finished(kube, namespace, name), 120, "the session to end")
    logs = []
    for pod in pods + kube.list(PODS, namespace)["items"]:
        if c.SIDECAR_CONTAINER not in {ct["name"] for ct in pod["spec"]["containers"]}:
            continue
        with contextlib.suppress(NotFound):  # the opt-in's rollout may have replaced it
            logs.append(
                kube.request(
                    "GET",
                    f"/api/v1/namespaces/{namespace}/pods/{pod['metadata']['name']}/log",
                    query={"container": c.SIDECAR_CONTAINER},
                    accept="*/*",
                    raw=True,
                ).decode()
            )
    assert logs

    status = session["status"]
    errors = [
        (t["ref"]["name"], h["hostname"], h.get("error"))
        for t in status["targets"]
        for h in t.get("stats") or []
    ]
    assert status["phase"] == "Succeeded", (errors, status.get("conditions"))
    assert [t["phase"] for t in status["targets"]] == ["Succeeded"] * 3
    assert [s["hostname"] for s in _stats(session, "Deployment")] == ["host-0"]
    assert [s["hostname"] for s in _stats(session, "StatefulSet")] == ["host-0", "host-1"]
    pvc_stats = _stats(session, "PersistentVolumeClaim")
    assert [s["hostname"] for s in pvc_stats] == ["host-0"]
    assert pvc_stats[0]["snapshots"][0]["fileStats"]["totalFiles"] == 3
    pvc_target = next(t for t in status["targets"] if t["ref"]["kind"] == "PersistentVolumeClaim")
    assert is_true(pvc_target["conditions"], c.PRE_BACKUP_HOOK_SUCCEEDED), pvc_target
    assert is_true(pvc_target["conditions"], c.POST_BACKUP_HOOK_SUCCEEDED), pvc_target
    web_target = next(t for t in status["targets"] if t["ref"]["kind"] == "Deployment")
    assert is_true(web_target["conditions"], c.PRE_BACKUP_HOOK_SUCCEEDED), web_target
    for kind in (c.RETENTION_POLICY_APPLIED, c.REPOSITORY_INTEGRITY_VERIFIED, c.METRICS_PUSHED):
        assert is_true(status["conditions"], kind), kind
    assert status["sessionDuration"]

    repo_status = kube.get(REPOSITORIES, "repo", namespace)["status"]
    assert repo_status["snapshotCount"] == 4
    assert repo_status["integrity"] is True
    assert repo_status["lastBackupTime"]
    assert repo_status["totalSize"].endswith("iB")

    with restic_of(repo_dir) as restic:
        snapshots = restic.snapshots()
        hosts = sorted(
            (s.hostname, next(t for t in s.tags if t.startswith("target:"))) for s in snapshots
        )
        assert hosts == [
            ("host-0", "target:Deployment/web"),
            ("host-0", "target:PersistentVolumeClaim/shared"),
            ("host-0", "target:StatefulSet/db"),
            ("host-1", "target:StatefulSet/db"),
        ]
        for snap in snapshots:
            assert f"session:{name}" in snap.tags
            # whose it is: a shared repository keeps tenants apart by these (api.tags)
            assert f"namespace:{namespace}" in snap.tags
            assert "invoker:BackupBatch/nightly" in snap.tags
        for data in (web_data, pvc_data):
            snap = next(s for s in snapshots if s.paths == (str(data),))
            restic.restore(snap.id, str(tmp_path / "restored"))
            assert tree(tmp_path / "restored" / data.relative_to("/")) == tree(data)
        restored_web = tmp_path / "restored" / web_data.relative_to("/")
        assert (restored_web / "flushed-by-hook").read_text() == "flushed\n"

    with urllib.request.urlopen(f"{pushgateway.url}/metrics", timeout=5) as response:  # noqa: S310
        text = response.read().decode()
    job_name = f"backupbatch-{namespace}-nightly"
    common = {
        "job": job_name,
        "invoker_kind": "BackupBatch",
        "invoker_name": "nightly",
        "namespace": namespace,
        "repository": "repo",
    }
    assert (
        metric_value(
            text,
            "stash_backup_host_backup_success",
            **common,
            kind="StatefulSet",
            name="db",
            hostname="host-1",
        )
        == 1
    )
    assert (
        metric_value(
            text,
            "stash_backup_host_files_total",
            **common,
            kind="Deployment",
            name="web",
            hostname="host-0",
        )
        == 4  # three files and the one the preBackup hook wrote
    )
    assert metric_value(text, "stash_backup_session_success", **common) == 1
    assert (
        metric_value(
            text,
            "stash_backup_target_success",
            **common,
            kind="PersistentVolumeClaim",
            name="shared",
        )
        == 1
    )
    assert metric_value(text, "stash_repository_snapshot_count", **common) == 4
    assert metric_value(text, "stash_repository_integrity", **common) == 1
    assert metric_value(text, "stash_backup_last_success_time_seconds", **common)
    for log in logs:
        assert PASSWORD not in log


def test_a_wrong_password_fails_the_host_clearly_and_no_secret_leaks(
    operator: Operator, kube: Client, namespace: str, control_plane: ControlPlane, tmp_path: Path
) -> None:
    repo_dir = tmp_path / "repo"
    with restic_of(repo_dir) as restic:
        restic.init_if_missing()
    give_to_pods(repo_dir)
    wrong = "wrong-pw-a8d2f61b"
    repository(kube, namespace, repo_dir, password=wrong)
    data = make_data(tmp_path / "pvc")
    pvc(kube, namespace, "shared", data)
    _ready(
        kube,
        namespace,
        batch(
            "nightly",
            namespace,
            member(
                "PersistentVolumeClaim",
                "shared",
                mounts=(("shared", str(data)),),
                task="pvc-backup",
            ),
        ),
    )
    name = create_session(kube, "BackupBatch", "nightly", namespace)["metadata"]["name"]
    runs = job_steps(kube, namespace, _job(kube, namespace, name, 0)["metadata"]["name"])
    assert [(r.name, r.returncode) for r in runs] == [("pvc-backup", 0), ("update-status", 1)], [
        r.output for r in runs
    ]
    session = eventually(lambda: _finished(kube, namespace, name), 60, "the session to end")
    status = session["status"]
    assert status["phase"] == "Failed"
    (host,) = status["targets"][0]["stats"]
    assert host["phase"] == "Failed"
    assert "PersistentVolumeClaim/shared host host-0" in host["error"]
    assert "wrong password" in host["error"]
    events = [
        e["message"]
        for e in kube.list(EVENTS, namespace)["items"]
        if e["involvedObject"]["name"] == name
    ]
    assert any("wrong password" in e for e in events), events
    everything = repr(status) + repr(events) + "".join(r.output for r in runs)
    assert wrong not in everything
    assert PASSWORD not in everything


def test_postgres_backs_up_through_the_example_task_and_restores_the_same_dump(
    operator: Operator,
    kube: Client,
    namespace: str,
    images: Images,
    postgres: Postgres,
    tmp_path: Path,
) -> None:
    database = f"shop_{namespace.replace('-', '_')}"
    postgres.psql(f"CREATE DATABASE {database}")
    postgres.psql(
        "CREATE TABLE items (id int PRIMARY KEY, name text, price numeric);"
        "INSERT INTO items SELECT g, 'item ' || g, g * 1.5 FROM generate_series(1, 500) g;",
        database,
    )
    original = postgres.psql(
        "SELECT md5(string_agg(t::text, ',' ORDER BY id)) FROM items t", database
    )
    for obj in load_all(Path("manifests/tasks/postgres.yaml")):
        if obj["kind"] == "Function":  # the image just built, as `kustomize edit set image`
            obj["spec"]["image"] = images.stash.name
        kube.apply(obj, field_manager="stash-tests")
    repository(kube, namespace, tmp_path / "repo")
    kube.create(
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": "pg"},
            "spec": {"ports": [{"port": 5432}]},
        },
        namespace,
    )
    params = [
        {"name": "host", "value": "127.0.0.1"},
        {"name": "port", "value": str(postgres.port)},
        {"name": "database", "value": database},
    ]
    db_member: JSON = {
        "target": {"ref": {"apiVersion": "v1", "kind": "Service", "name": "pg"}},
        "task": {"name": "postgres-backup", "params": params},
    }
    _ready(kube, namespace, batch("nightly", namespace, db_member))
    name = create_session(kube, "BackupBatch", "nightly", namespace)["metadata"]["name"]
    job = _job(kube, namespace, name, 0)
    dump_step = job["spec"]["template"]["spec"]["initContainers"][0]
    dump = f"pg_dump --clean --if-exists --no-owner -h 127.0.0.1 -p {postgres.port} -U postgres"
    assert f"--dump-command={dump} {database}" in dump_step["args"]
    runs = job_steps(kube, namespace, job["metadata"]["name"])
    assert [r.returncode for r in runs] == [0, 0], runs
    session = eventually(lambda: _finished(kube, namespace, name), 60, "the session to end")
    assert session["status"]["phase"] == "Succeeded", session["status"]

    # Lose the data, then restore it declaratively: a RestoreSession with the example's Task.
    postgres.psql("DROP TABLE items", database)
    target = {"ref": {"apiVersion": "v1", "kind": "Service", "name": "pg"}}
    kube.create(
        restore_session(
            "pg-back",
            namespace,
            {"target": target, "task": {"name": "postgres-restore", "params": params}},
        ),
        namespace,
    )
    restored = eventually(lambda: _restore_ended(kube, namespace, "pg-back"), 120, "the restore")
    assert restored["phase"] == "Succeeded", restored
    assert [(s["hostname"], s["phase"]) for s in restored["stats"]] == [("host-0", "Succeeded")]
    after = postgres.psql("SELECT md5(string_agg(t::text, ',' ORDER BY id)) FROM items t", database)
    assert after == original

    # As a RestoreBatch's member, the same.
    postgres.psql("DROP TABLE items", database)
    kube.create(
        restore_batch(
            "pg-all-back",
            namespace,
            {"target": target, "task": {"name": "postgres-restore", "params": params}},
        ),
        namespace,
    )
    by_batch = eventually(
        lambda: _restore_ended(kube, namespace, "pg-all-back", RESTORE_BATCHES), 120, "the batch"
    )
    assert by_batch["phase"] == "Succeeded", by_batch
    assert [(s["hostname"], s["phase"]) for s in by_batch["members"][0]["stats"]] == [
        ("host-0", "Succeeded")
    ]
    after = postgres.psql("SELECT md5(string_agg(t::text, ',' ORDER BY id)) FROM items t", database)
    assert after == original

    # A restore command that fails fails the restore, in its own words.
    bad = [p for p in params if p["name"] != "database"] + [{"name": "database", "value": "nope"}]
    kube.create(
        restore_session(
            "pg-bad",
            namespace,
            {"target": target, "task": {"name": "postgres-restore", "params": bad}},
        ),
        namespace,
    )
    failed = eventually(
        lambda: _restore_ended(kube, namespace, "pg-bad"), 120, "the failed restore"
    )
    assert failed["phase"] == "Failed"
    assert 'database "nope" does not exist' in failed["stats"][0]["error"], failed["stats"]


def _restore_ended(
    kube: Client, namespace: str, name: str, rt: ResourceType = RESTORE_SESSIONS
) -> JSON | None:
    status = kube.get(rt, name, namespace).get("status") or {}
    return status if status.get("phase") in ("Succeeded", "Failed") else None


def _pvc_batch(kube: Client, namespace: str, tmp_path: Path, retention: JSON) -> tuple[Path, Path]:
    """BackupBatch ``nightly`` of PVC ``shared`` (through pvc-backup) into a local Repository,
    with ``retention``, Ready; the repository's directory and the data's."""
    repo_dir = tmp_path / "repo"
    repository(kube, namespace, repo_dir)
    data = make_data(tmp_path / "pvc")
    pvc(kube, namespace, "shared", data)
    pvc_member = member(
        "PersistentVolumeClaim", "shared", mounts=(("shared", str(data)),), task="pvc-backup"
    )
    _ready(kube, namespace, batch("nightly", namespace, pvc_member, retentionPolicy=retention))
    return repo_dir, data


def _pvc_session(kube: Client, namespace: str, unix_seconds: int) -> JSON:
    """A session of ``nightly`` at ``unix_seconds``, its Job's steps all passed, once ended."""
    created = create_session(kube, "BackupBatch", "nightly", namespace, unix_seconds=unix_seconds)
    name = created["metadata"]["name"]
    runs = job_steps(kube, namespace, _job(kube, namespace, name, 0)["metadata"]["name"])
    assert [r.returncode for r in runs] == [0, 0], [r.output for r in runs]
    return eventually(functools.partial(_finished, kube, namespace, name), 60, name)


def test_retention_after_three_sessions_keeps_the_last_two_and_reports_the_cleanup(
    operator: Operator, kube: Client, namespace: str, control_plane: ControlPlane, tmp_path: Path
) -> None:
    repo_dir, data = _pvc_batch(
        kube, namespace, tmp_path, {"name": "keep-last-2", "keepLast": 2, "prune": True}
    )
    sessions = []
    for index in range(3):
        (data / "a.txt").write_text(f"version {index}\n")
        sessions.append(_pvc_session(kube, namespace, 1_800_000_000 + index))
    assert [s["status"]["phase"] for s in sessions] == ["Succeeded"] * 3
    retention = next(
        cond
        for cond in sessions[-1]["status"]["conditions"]
        if cond["type"] == c.RETENTION_POLICY_APPLIED
    )
    assert retention["message"] == (
        "policy keep-last-2: removed 1 snapshot(s) (PersistentVolumeClaim/shared 1)"
    )
    repo_status = kube.get(REPOSITORIES, "repo", namespace)["status"]
    assert repo_status["snapshotCount"] == 2
    assert repo_status["snapshotsRemovedOnLastCleanup"] == 1
    with restic_of(repo_dir) as restic:
        kept = {t for s in restic.snapshots() for t in s.tags if t.startswith("session:")}
    assert kept == {f"session:{s['metadata']['name']}" for s in sessions[1:]}


def test_a_policy_that_would_remove_most_of_a_history_is_held_until_confirmed(
    operator: Operator, kube: Client, namespace: str, tmp_path: Path
) -> None:
    repo_dir, _ = _pvc_batch(kube, namespace, tmp_path, {"name": "p", "keepLast": 10})
    slot = iter(range(1_800_000_000, 1_800_000_100))

    def session() -> JSON:
        return _pvc_session(kube, namespace, next(slot))

    for _ in range(3):
        session()
    # A typo: keep one, on a history of three (four with the next snapshot).
    typo = {"spec": {"retentionPolicy": {"keepLast": 1}}}
    kube.patch(BACKUP_BATCHES, "nightly", typo, namespace=namespace)
    invoker_ready(kube, namespace, "nightly")
    held = session()
    assert held["status"]["phase"] == "Succeeded"  # the backup is good; nothing was removed
    condition = next(
        cond for cond in held["status"]["conditions"] if cond["type"] == c.RETENTION_POLICY_APPLIED
    )
    assert (condition["status"], condition["reason"]) == ("False", c.RETENTION_HELD)
    assert (
        "PersistentVolumeClaim/shared would remove 3 of its 4 snapshots at once, more than 50% "
        "of them" in condition["message"]
    ), condition
    confirm = condition["message"].rsplit("confirm this policy: ", 1)[1]
    assert confirm.startswith(
        "kubectl annotate backupbatch nightly --overwrite stash.appscode.com/confirm-retention="
    )
    events = [
        e["message"]
        for e in kube.list(EVENTS, namespace)["items"]
        if e["involvedObject"]["name"] == held["metadata"]["name"]
        and e["reason"] == "RetentionHeld"
    ]
    assert events == [condition["message"]]
    with restic_of(repo_dir) as restic:
        assert len(restic.snapshots()) == 4

    # The admin confirms this policy, as the message says: the next forget goes ahead.
    key, mark = confirm.rsplit(" ", 1)[1].split("=")
    confirmed = {"metadata": {"annotations": {key: mark}}}
    kube.patch(BACKUP_BATCHES, "nightly", confirmed, namespace=namespace)
    applied = session()
    condition = next(
        cond
        for cond in applied["status"]["conditions"]
        if cond["type"] == c.RETENTION_POLICY_APPLIED
    )
    assert condition["status"] == "True", condition
    # Whatever the policy says, the last good copy stays: the held session's, the last that
    # succeeded before this one.
    assert condition["message"].endswith(
        f"kept 1 snapshot(s) the policy would remove: those of {held['metadata']['name']}, "
        "the last session that succeeded (the last good backup is never removed)"
    ), condition
    with restic_of(repo_dir) as restic:
        left = {t for s in restic.snapshots() for t in s.tags if t.startswith("session:")}
    assert left == {f"session:{held['metadata']['name']}", f"session:{applied['metadata']['name']}"}


class _HookServer(http.server.BaseHTTPRequestHandler):
    calls: list[str] = []  # noqa: RUF012 - shared with the test

    def do_POST(self) -> None:
        self.calls.append(self.path)
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


def test_the_batch_hooks_run_once_each_around_the_whole_backup(
    operator: Operator, kube: Client, namespace: str, control_plane: ControlPlane, tmp_path: Path
) -> None:
    server = http.server.HTTPServer(("127.0.0.1", 0), _HookServer)
    server.socket.setblocking(False)  # a connection gone before accept must not hang shutdown
    threading.Thread(target=server.serve_forever, daemon=True).start()
    _HookServer.calls = []
    port = server.server_address[1]
    repository(kube, namespace, tmp_path / "repo")
    data = make_data(tmp_path / "pvc")
    pvc(kube, namespace, "shared", data)
    # Both run in a hook Job's pod in the namespace, never in the operator: the exec hook's
    # command runs in that pod (and calls from there), the httpPost is sent from there.
    freeze = (
        "import urllib.request as u; "
        f"u.urlopen(u.Request('http://127.0.0.1:{port}/freeze', data=b'', method='POST'))"
    )
    hooks = {
        "preBackup": {"exec": {"command": ["python3", "-c", freeze]}},
        "postBackup": {"httpPost": {"host": "127.0.0.1", "port": port, "path": "/thaw"}},
    }
    obj = batch(
        "nightly",
        namespace,
        member(
            "PersistentVolumeClaim", "shared", mounts=(("shared", str(data)),), task="pvc-backup"
        ),
        hooks=hooks,
    )
    _ready(kube, namespace, obj)
    try:
        name = create_session(kube, "BackupBatch", "nightly", namespace)["metadata"]["name"]
        job = _job(kube, namespace, name, 0)
        assert _HookServer.calls == ["/freeze"], "the pre hook runs before the Job exists"
        runs = job_steps(kube, namespace, job["metadata"]["name"])
        assert [r.returncode for r in runs] == [0, 0], [r.output for r in runs]
        session = eventually(lambda: _finished(kube, namespace, name), 60, "the session to end")
    finally:
        server.shutdown()
    assert session["status"]["phase"] == "Succeeded", session["status"]
    assert _HookServer.calls == ["/freeze", "/thaw"]
    conditions = session["status"]["conditions"]
    assert is_true(conditions, c.GLOBAL_PRE_BACKUP_HOOK_SUCCEEDED)
    assert is_true(conditions, c.GLOBAL_POST_BACKUP_HOOK_SUCCEEDED)
    for kind in ("preBackup", "postBackup"):
        hook_job = kube.get(JOBS, hook_job_name(name, kind), namespace)
        pod = hook_job["spec"]["template"]["spec"]
        assert pod["serviceAccountName"] == "stash-backup-nightly"  # the tenant's, not ours
        assert pod["containers"][0]["args"][0] == "run-hook"


def test_the_repository_work_of_a_last_host_that_died_is_done_by_a_finish_job(
    control_plane: ControlPlane,
    pushgateway: Service,
    images: Images,
    kube: Client,
    namespace: str,
    tmp_path: Path,
) -> None:
    repo_dir = tmp_path / "repo"
    repository(kube, namespace, repo_dir)
    data = make_data(tmp_path / "pvc")
    pvc(kube, namespace, "shared", data)
    obj = batch(
        "nightly",
        namespace,
        member(
            "PersistentVolumeClaim", "shared", mounts=(("shared", str(data)),), task="pvc-backup"
        ),
        retentionPolicy={"name": "keep-last-1", "keepLast": 1, "prune": True},
    )
    options = {"pushgateway_url": pushgateway.url, "image": images.stash.name}
    slot = 1_800_000_000  # the first session's
    with running_operator(control_plane.kubeconfig, **options):
        _ready(kube, namespace, obj)
        first = create_session(kube, "BackupBatch", "nightly", namespace, unix_seconds=slot)
        name = first["metadata"]["name"]
        runs = job_steps(kube, namespace, _job(kube, namespace, name, 0)["metadata"]["name"])
        assert [r.returncode for r in runs] == [0, 0], [r.output for r in runs]
        done = eventually(functools.partial(_finished, kube, namespace, name), 60, name)
        assert done["status"]["phase"] == "Succeeded"
    # The operator is away: a second session whose only host reported and claimed the
    # repository work, then its pod died before recording it (as if its node went).
    second = create_session(kube, "BackupBatch", "nightly", namespace, unix_seconds=slot + 100)
    name = second["metadata"]["name"]
    stats = done["status"]["targets"][0]["stats"]
    dead = f"pod:{namespace}/stash-backup-{name}-0-ghost"
    kube.patch(
        BACKUP_SESSIONS,
        name,
        {
            "status": {
                "phase": "Running",
                "sessionDeadline": "2100-01-01T00:00:00Z",
                "targets": [{**done["status"]["targets"][0], "stats": stats}],
                "conditions": [
                    {
                        "type": c.REPOSITORY_WORK_CLAIMED,
                        "status": "True",
                        "reason": "RepositoryWorkClaimed",
                        "message": dead,
                        "lastTransitionTime": "2026-01-01T00:00:00Z",
                    }
                ],
            }
        },
        namespace=namespace,
        subresource="status",
    )
    with running_operator(control_plane.kubeconfig, **options):
        finish = eventually(
            lambda: next(
                (
                    j
                    for j in kube.list(JOBS, namespace)["items"]
                    if j["metadata"]["name"].startswith("stash-finish-")
                ),
                None,
            ),
            60,
            "the finish Job",
        )
        runs = job_steps(kube, namespace, finish["metadata"]["name"])
        assert [r.returncode for r in runs] == [0], [r.output for r in runs]
        ended = eventually(functools.partial(_finished, kube, namespace, name), 60, name)
    status = ended["status"]
    assert status["phase"] == "Succeeded", status.get("conditions")
    assert is_true(status["conditions"], c.RETENTION_POLICY_APPLIED)
    assert is_true(status["conditions"], c.REPOSITORY_INTEGRITY_VERIFIED)
    claimed = next(cd for cd in status["conditions"] if cd["type"] == c.REPOSITORY_WORK_CLAIMED)
    assert claimed["message"].startswith(f"pod:{namespace}/{finish['metadata']['name']}-")
    events = kube.list(EVENTS, namespace, field_selector=f"involvedObject.name={name}")["items"]
    assert "RepositoryWorkTakenOver" in {e["reason"] for e in events}
    assert kube.get(REPOSITORIES, "repo", namespace)["status"]["integrity"] is True


def restic_processes_with(word: str) -> list[str]:
    """The command lines of this machine's restic processes whose arguments or environment
    (its repository, say) name ``word`` (the node's containers are this machine's
    processes)."""
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            args = (proc / "cmdline").read_bytes().split(b"\0")
            if not args or not args[0].endswith(b"restic"):
                continue
            environ = (proc / "environ").read_bytes().split(b"\0")
            if any(word.encode() in a for a in (*args, *environ)):
                found.append(" ".join(a.decode(errors="replace") for a in args))
    return found


def test_a_sidecar_backup_still_uploading_when_its_session_ends_at_the_deadline_is_stopped(
    operator: Operator,
    injecting_webhook: WebhookProcess,
    kube: Client,
    namespace: str,
    images: Images,
    rclone_binary: Path,
    tmp_path: Path,
) -> None:
    """A backend slowed to 100 kB/s, 8 MB to upload, a 20 s timeOut: the session fails at its
    deadline while the sidecar's restic still uploads. The sidecar stops it (restic removes
    its lock) rather than finishing a snapshot nobody would count, and says so."""
    slow = services.rclone_rest(rclone_binary, tmp_path / "rest", tmp_path, bwlimit="100k")
    try:
        data = shared_dir(tmp_path / "web-data")
        (data / "big.bin").write_bytes(os.urandom(8 * 1024 * 1024))
        give_to_pods(data)
        url = f"{slow.url}/repo/"
        backend_repository(kube, namespace, {"rest": {"url": url}}, PASSWORD)
        kube.create(
            batch(
                "nightly",
                namespace,
                member("Deployment", "web", mounts=(("data", str(data)),)),
                timeOut="20s",
            )
        )
        wait_until_injected(kube, namespace, _opted_in_pod("Deployment", "web"))
        kube.create(workload("Deployment", "web", 1, data, images.app.name), namespace)
        invoker_ready(kube, namespace, "nightly")
        eventually(
            functools.partial(rolled_out, kube, namespace, "Deployment", "web"), 180, "rollout"
        )
        eventually(lambda: _running_sidecars(kube, namespace, "web", 1), 120, "web's sidecar")
        name = create_session(kube, "BackupBatch", "nightly", namespace)["metadata"]["name"]
        eventually(
            lambda: restic_processes_with(f"session:{name}"), 60, "the sidecar's restic backup"
        )

        session = eventually(lambda: _finished(kube, namespace, name), 90, "the session to end")
        status = session["status"]
        assert status["phase"] == "Failed"
        assert is_true(status.get("conditions"), c.DEADLINE_EXCEEDED), status.get("conditions")
        # the restic the sidecar ran for the session is gone soon after, not 80 s later
        eventually(lambda: not restic_processes_with(f"session:{name}"), 30, "restic to stop")
        said = eventually(
            lambda: [
                e["message"]
                for e in kube.list(EVENTS, namespace)["items"]
                if e["involvedObject"]["name"] == name and e["reason"] == "HostBackupFailed"
            ],
            30,
            "the host's Event",
        )
        assert any(f"stopped: session {name} ended Failed at its deadline" in m for m in said), said
        config = BackendConfig(repository=f"rest:{url}", env={"RESTIC_PASSWORD": PASSWORD})
        with Restic(config) as restic:
            assert restic.locks() == []  # restic removed its own lock when stopped
            assert restic.snapshots(tags=[f"session:{name}"]) == []
    finally:
        slow.stop()
