"""Declarative restore on the dev cluster's real node: RestoreSessions and RestoreBatches turned
by the operator into restore Jobs, run by the kubelet from the project's image with real restic,
restoring what a real backup made, checked file by file (content, mode, mtime, symlinks, hard
links, sparse files), with the phases, per-host stats, Events and metrics they report."""

from __future__ import annotations

import functools
import json
import os
import time
import urllib.request
from pathlib import Path

import pytest

from api import constants as c
from api.conditions import get_condition, is_true
from api.objects import JSON
from api.tags import invoker_tag, namespace_tag, session_tag, target_tag
from controller.invokers.grants import grant_name
from controller.jobs.claims import RESTORED_BY
from controller.operator import Operator
from controller.sessions.restore_status import RESTORE_FAILED
from devcluster import services
from devcluster.cluster import ControlPlane
from devcluster.images import Images
from devcluster.services import Service
from engine.backend import BackendConfig
from engine.restic import Restic
from kube import Client, NotFound
from kube.sessions import create_session
from kube.types import (
    BACKUP_BATCHES,
    BACKUP_SESSIONS,
    EVENTS,
    JOBS,
    NODES,
    PODS,
    PVCS,
    REPOSITORIES,
    RESTORE_INVOKER_TYPES,
    ROLES,
)
from tests.factories import batch, member, restore_batch, restore_member, restore_session
from tests.integration.helpers import (
    WebhookProcess,
    container_names,
    events_of,
    eventually,
    exists,
    fresh_namespace,
    give_to_pods,
    invoker_ready,
    pod_logs,
    running_operator,
    shared_dir,
    wait_until_injected,
)
from tests.integration.objects import (
    PASSWORD,
    allow_host_path,
    backend_repository,
    persistent_volume,
    pvc,
    repository,
    workload,
)
from tests.integration.test_backup import _opted_in_pod, _running_sidecars, restic_processes_with
from tests.prometheus import metric_value

MiB = 1024 * 1024


def rich_tree(root: Path) -> Path:
    """Files of several sizes and modes, a symlink, a hard link, a sparse file, nesting."""
    (root / "sub" / "deeper").mkdir(parents=True)
    (root / "a.txt").write_text("alpha\n")
    (root / "secret.key").write_bytes(os.urandom(64))
    (root / "secret.key").chmod(0o600)
    (root / "run.sh").write_text("#!/bin/sh\necho hi\n")
    (root / "run.sh").chmod(0o755)
    (root / "sub" / "b.bin").write_bytes(os.urandom(300_000))
    (root / "sub" / "deeper" / "c.txt").write_text("gamma\n" * 1000)
    (root / "link-to-a").symlink_to("a.txt")
    os.link(root / "sub" / "b.bin", root / "sub" / "b-again.bin")
    with (root / "sparse.img").open("wb") as sparse:
        sparse.seek(64 * MiB)
        sparse.write(b"end")
    os.utime(root / "a.txt", ns=(1_600_000_000_123_456_789, 1_600_000_000_123_456_789))
    return root


def fidelity(root: Path) -> JSON:
    """What a restore must bring back: per path its type, mode, mtime (ns) and content or link
    target; which paths are one file (hard links); which files are sparse."""
    entries: JSON = {}
    inodes: dict[int, list[str]] = {}
    for path in sorted(root.rglob("*")):
        rel = str(path.relative_to(root))
        st = path.lstat()
        if path.is_symlink():
            entries[rel] = ("link", os.readlink(path))
        elif path.is_dir():
            entries[rel] = ("dir", oct(st.st_mode & 0o7777))
        else:
            entries[rel] = ("file", oct(st.st_mode & 0o7777), st.st_mtime_ns, path.read_bytes())
            inodes.setdefault(st.st_ino, []).append(rel)
            if st.st_blocks * 512 < st.st_size // 2:
                entries[rel] += ("sparse",)
    links = sorted(tuple(group) for group in inodes.values() if len(group) > 1)
    return {"entries": entries, "hard links": links}


def damage(root: Path) -> None:
    (root / "a.txt").unlink()
    (root / "sub" / "b.bin").write_bytes(b"overwritten")
    for path in sorted((root / "sub" / "deeper").iterdir()):
        path.unlink()
    (root / "sub" / "deeper").rmdir()
    (root / "sparse.img").unlink()


def backed_up(
    kube: Client, namespace: str, *pvcs: tuple[str, Path], repository: JSON | None = None
) -> str:
    """Back the PVCs up with one BackupBatch session (the Job model) into ``repository``
    (default: ``repo`` of the namespace); the session's name."""
    members = [
        member(c.PVC_KIND, name, mounts=((name, str(data)),), task="pvc-backup")
        for name, data in pvcs
    ]
    kube.create(
        batch("nightly", namespace, *members, repository=repository or {"name": "repo"}),
        namespace,
    )
    invoker_ready(kube, namespace, "nightly")
    name = str(create_session(kube, "BackupBatch", "nightly", namespace)["metadata"]["name"])

    def succeeded() -> JSON | None:
        session = kube.get(BACKUP_SESSIONS, name, namespace)
        phase = (session.get("status") or {}).get("phase")
        assert phase != "Failed", session["status"]
        return session if phase == "Succeeded" else None

    eventually(succeeded, 180, "the backup to succeed")
    return name


def finished(kube: Client, namespace: str, kind: str, name: str, timeout: float = 180) -> JSON:
    """The restore once it ended and pushed its metrics; on a timeout, what it and the
    namespace's pods (their init containers) say."""
    last: JSON = {}
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        obj = kube.get(RESTORE_INVOKER_TYPES[kind], name, namespace)
        last = obj.get("status") or {}
        if last.get("phase") in ("Succeeded", "Failed") and has_metrics(last):
            return obj
        time.sleep(0.5)
    pods = {
        p["metadata"]["name"]: [
            (s.get("name"), s.get("state"))
            for s in (p.get("status") or {}).get("initContainerStatuses") or []
        ]
        for p in kube.list(PODS, namespace)["items"]
    }
    pytest.fail(f"{kind} {name} did not end in {timeout:.0f}s: {last}; pods: {pods}")


def reconciling_again_writes_nothing(operator: Operator, key: tuple[str, str, str]) -> bool:
    """Converged: one more reconcile of the restore makes no API write."""
    writes = operator.writes_in(key[1])
    operator.restores.reconcile(key)
    return operator.writes_in(key[1]) == writes


def has_metrics(status: JSON) -> bool:
    return get_condition(status.get("conditions"), c.METRICS_PUSHED) is not None


def pvc_data(tmp_path: Path, name: str) -> Path:
    return give_to_pods(rich_tree(shared_dir(tmp_path / name)))


def test_a_pvc_restored_by_a_restore_session_is_what_was_backed_up_file_for_file(
    operator: Operator, kube: Client, namespace: str, pushgateway: Service, tmp_path: Path
) -> None:
    data = pvc_data(tmp_path, "shared")
    expected = fidelity(data)
    assert expected["hard links"] == [("sub/b-again.bin", "sub/b.bin")]
    assert "sparse" in expected["entries"]["sparse.img"]
    repository(kube, namespace, tmp_path / "repo")
    pvc(kube, namespace, "shared", data)
    backed_up(kube, namespace, ("shared", data))
    damage(data)
    assert fidelity(data) != expected

    kube.create(
        restore_session("shared-back", namespace, restore_member(name="shared", mount=str(data))),
        namespace,
    )
    restored = finished(kube, namespace, "RestoreSession", "shared-back")
    status = restored["status"]
    assert status["phase"] == "Succeeded", (status.get("stats"), status.get("conditions"))
    assert fidelity(data) == expected
    assert status["totalHosts"] == 1
    assert [(s["hostname"], s["phase"]) for s in status["stats"]] == [("host-0", "Succeeded")]
    assert status["sessionDuration"]
    for kind in (
        c.RESTORE_TARGET_FOUND,
        c.RESTORE_JOB_CREATED,
        c.RESTORE_EXECUTOR_ENSURED,
        c.RESTORE_COMPLETED,
        c.METRICS_PUSHED,
    ):
        assert is_true(status["conditions"], kind), kind
    reasons = [reason for reason, _ in events_of(kube, namespace, "shared-back")]
    assert "RestoreJobCreated" in reasons
    assert "RestoreSessionSucceeded" in reasons

    with urllib.request.urlopen(f"{pushgateway.url}/metrics", timeout=5) as response:  # noqa: S310
        text = response.read().decode()
    labels = {
        "job": f"restoresession-{namespace}-shared-back",
        "invoker_kind": "RestoreSession",
        "invoker_name": "shared-back",
        "namespace": namespace,
        "repository": "repo",
    }
    assert metric_value(text, "stash_restore_session_success", **labels) == 1.0
    host = {**labels, "kind": c.PVC_KIND, "name": "shared", "hostname": "host-0"}
    assert metric_value(text, "stash_restore_host_restore_success", **host) == 1.0

    # Converged: reconciling again writes nothing.
    assert reconciling_again_writes_nothing(operator, ("RestoreSession", namespace, "shared-back"))


def test_a_restore_batch_restores_each_member_one_after_another(
    operator: Operator, kube: Client, namespace: str, tmp_path: Path
) -> None:
    first, second = pvc_data(tmp_path, "first"), pvc_data(tmp_path, "second")
    expected = {"first": fidelity(first), "second": fidelity(second)}
    repository(kube, namespace, tmp_path / "repo")
    pvc(kube, namespace, "first", first)
    pvc(kube, namespace, "second", second)
    backed_up(kube, namespace, ("first", first), ("second", second))
    damage(first)
    damage(second)

    # Only part of the second: the newest snapshot holding that path; then its own hook, in
    # its restore Job (where the volume is mounted); the batch's own hook first, in a hook Job.
    second_member = restore_member(
        name="second", mount=str(second), rules=[{"paths": [f"{second}/sub"]}]
    )
    marker = f"touch {second}/restored-by-hook"
    second_member["hooks"] = {"postRestore": {"exec": {"command": ["sh", "-c", marker]}}}
    kube.create(
        restore_batch(
            "all-back",
            namespace,
            restore_member(name="first", mount=str(first)),
            second_member,
            executionOrder="Sequential",
            hooks={"preRestore": {"exec": {"command": ["sh", "-c", "echo before the restore"]}}},
        ),
        namespace,
    )
    restored = finished(kube, namespace, "RestoreBatch", "all-back")
    status = restored["status"]
    assert status["phase"] == "Succeeded", (status.get("stats"), status.get("conditions"))
    assert [m["phase"] for m in status["members"]] == ["Succeeded", "Succeeded"]
    assert [len(m["stats"]) for m in status["members"]] == [1, 1]
    assert fidelity(first) == expected["first"]
    after = fidelity(second)["entries"]
    wanted = expected["second"]["entries"]
    for rel in ("sub/b.bin", "sub/deeper/c.txt", "sub/b-again.bin"):
        assert after[rel] == wanted[rel], rel
    assert "a.txt" not in after  # outside the rule's path: not restored
    assert (second / "restored-by-hook").exists()
    assert is_true(status["conditions"], c.GLOBAL_PRE_RESTORE_HOOK_SUCCEEDED)
    assert is_true(status["members"][1]["conditions"], c.POST_RESTORE_HOOK_SUCCEEDED)
    first_job, second_job = (
        get_condition(m["conditions"], c.RESTORE_JOB_CREATED) for m in status["members"]
    )
    assert first_job is not None
    assert second_job is not None
    assert first_job["lastTransitionTime"] <= second_job["lastTransitionTime"]


def test_a_restore_that_cannot_succeed_fails_in_restics_own_words(
    operator: Operator, kube: Client, namespace: str, tmp_path: Path
) -> None:
    data = pvc_data(tmp_path, "shared")
    repository(kube, namespace, tmp_path / "repo")
    pvc(kube, namespace, "shared", data)
    backed_up(kube, namespace, ("shared", data))

    # No snapshot matches the rule.
    missing = restore_member(name="shared", mount=str(data), rules=[{"snapshots": ["deadbeef"]}])
    kube.create(restore_session("no-such", namespace, missing), namespace)
    status = finished(kube, namespace, "RestoreSession", "no-such")["status"]
    assert status["phase"] == "Failed"
    assert status["stats"][0]["phase"] == "Failed"
    assert "no snapshot deadbeef in the repository" in status["stats"][0]["error"]
    failed = [m for r, m in events_of(kube, namespace, "no-such") if r == "RestoreSessionFailed"]
    assert failed
    assert "no snapshot deadbeef" in failed[0]

    # The wrong password: the same repository under another Secret.
    wrong = "not-" + PASSWORD
    kube.create(
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": "wrong-secret"},
            "stringData": {"RESTIC_PASSWORD": wrong},
        },
        namespace,
    )
    repo = kube.get(REPOSITORIES, "repo", namespace)
    repo_copy = {
        "apiVersion": repo["apiVersion"],
        "kind": "Repository",
        "metadata": {"name": "wrong-repo"},
        "spec": {
            **repo["spec"],
            "backend": {**repo["spec"]["backend"], "storageSecretName": "wrong-secret"},
        },
    }
    kube.create(repo_copy, namespace)
    kube.create(
        restore_session(
            "wrong-password",
            namespace,
            restore_member(name="shared", mount=str(data)),
            repository={"name": "wrong-repo"},
        ),
        namespace,
    )
    status = finished(kube, namespace, "RestoreSession", "wrong-password")["status"]
    assert status["phase"] == "Failed"
    error = status["stats"][0]["error"]
    assert "wrong password" in error, error
    assert wrong not in str(status)
    assert PASSWORD not in str(status)

    # A Job the API server refuses (here: a resource limit that is no quantity) fails the
    # restore in the API server's words, instead of being retried for ever.
    refused = restore_member(name="shared", mount=str(data))
    refused["runtimeSettings"] = {"container": {"resources": {"limits": {"cpu": "lots"}}}}
    kube.create(restore_session("refused-job", namespace, refused), namespace)
    status = finished(kube, namespace, "RestoreSession", "refused-job")["status"]
    assert status["phase"] == "Failed"
    reason = get_condition(status["conditions"], RESTORE_FAILED)
    assert reason is not None
    assert "the API server refused Job stash-restore-refused-job-0" in reason["message"], reason
    assert "quantities must match" in reason["message"], reason


def _statefulset(name: str, data: Path, image: str) -> JSON:
    """Two ordinals, each keeping its own subdirectory of ``data`` (``subPathExpr``)."""
    sts = workload("StatefulSet", name, 2, data, image)
    (app,) = sts["spec"]["template"]["spec"]["containers"]
    app["env"] = [{"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}]
    app["volumeMounts"] = [dict(m) for m in DB_MOUNTS]
    return sts


DB_PATH = "/var/lib/db"


def _init_names(pod: JSON) -> list[str]:
    return [ct["name"] for ct in pod["spec"].get("initContainers") or []]


def ordinal_trees(db: Path) -> JSON:
    """``db-0`` and ``db-1`` under ``db``, each ordinal's data its own; their fidelity."""
    for ordinal in (0, 1):
        tree = rich_tree(db / f"db-{ordinal}")
        (tree / "who").write_text(f"db-{ordinal}\n")
        give_to_pods(tree)
    expected = {f"db-{n}": fidelity(db / f"db-{n}") for n in (0, 1)}
    assert expected["db-0"] != expected["db-1"]
    return expected


DB_MOUNTS = [{"name": "data", "mountPath": DB_PATH, "subPathExpr": "$(POD_NAME)"}]


def backed_up_by_sidecars(
    kube: Client, namespace: str, members: list[JSON], workloads: list[tuple[JSON, int]]
) -> None:
    """One BackupBatch session of workload ``members``, by the sidecars of ``workloads``
    (each with its replica count), created once the webhook injects into their pods."""
    kube.create(batch("nightly", namespace, *members), namespace)
    for workload_obj, _ in workloads:
        probe = _opted_in_pod(workload_obj["kind"], workload_obj["metadata"]["name"])
        wait_until_injected(kube, namespace, probe)
    for workload_obj, _ in workloads:
        kube.create(workload_obj, namespace)
    invoker_ready(kube, namespace, "nightly")
    for workload_obj, replicas in workloads:
        app = workload_obj["metadata"]["name"]
        running = functools.partial(_running_sidecars, kube, namespace, app, replicas)
        eventually(running, 180, f"{app}'s sidecars")
    name = str(create_session(kube, "BackupBatch", "nightly", namespace)["metadata"]["name"])

    def backed_up_all() -> JSON | None:
        status = kube.get(BACKUP_SESSIONS, name, namespace).get("status") or {}
        assert status.get("phase") != "Failed", status
        return status if status.get("phase") == "Succeeded" else None

    eventually(backed_up_all, 180, "the backup")
    hosts = sum(
        len(t.get("stats") or [])
        for t in kube.get(BACKUP_SESSIONS, name, namespace)["status"]["targets"]
    )
    eventually(  # each sidecar says on the session how its host went
        lambda: (
            [r for r, _ in events_of(kube, namespace, name)].count("HostBackupSucceeded") == hosts
        ),
        30,
        "the sidecars' Events",
    )


def db_member() -> JSON:
    found = member("StatefulSet", "db", mounts=(("data", DB_PATH),))
    found["target"]["volumeMounts"] = DB_MOUNTS
    return found


def test_a_deployment_and_each_statefulset_ordinal_are_restored_by_stash_init_before_they_start(
    operator: Operator,
    injecting_webhook: WebhookProcess,
    kube: Client,
    namespace: str,
    images: Images,
    tmp_path: Path,
) -> None:
    web = pvc_data(tmp_path, "web")
    db = shared_dir(tmp_path / "db")
    expected = {"web": fidelity(web), **ordinal_trees(db)}
    repository(kube, namespace, tmp_path / "repo")
    backed_up_by_sidecars(
        kube,
        namespace,
        [member("Deployment", "web", mounts=(("data", str(web)),)), db_member()],
        [
            (workload("Deployment", "web", 1, web, images.app.name), 1),
            (_statefulset("db", db, images.app.name), 2),
        ],
    )
    for root in (web, db / "db-0", db / "db-1"):
        damage(root)

    web_restore = restore_member("Deployment", "web")
    web_restore["target"]["volumeMounts"] = [{"name": "data", "mountPath": str(web)}]
    db_restore = restore_member("StatefulSet", "db")
    db_restore["target"]["volumeMounts"] = DB_MOUNTS
    kube.create(restore_batch("back", namespace, web_restore, db_restore), namespace)
    restored = finished(kube, namespace, "RestoreBatch", "back", timeout=300)
    status = restored["status"]
    assert status["phase"] == "Succeeded", status
    web_status, db_status = status["members"]
    assert [s["hostname"] for s in web_status["stats"]] == ["host-0"]
    assert [s["hostname"] for s in db_status["stats"]] == ["host-0", "host-1"]
    assert db_status["totalHosts"] == 2
    for entry in (web_status, db_status):
        assert is_true(entry["conditions"], c.STASH_INIT_CONTAINER_INJECTED), entry
    assert fidelity(web) == expected["web"]
    assert fidelity(db / "db-0") == expected["db-0"]
    assert fidelity(db / "db-1") == expected["db-1"]
    assert (db / "db-1" / "who").read_text() == "db-1\n"  # host-1's own snapshot, not host-0's

    # The pods that restored carried stash-init; once the restore succeeded, new ones do not.
    wait_until_no_init = eventually(
        lambda: (
            probe
            if c.RESTORE_INIT_CONTAINER
            not in _init_names(
                probe := kube.create(_opted_in_pod("StatefulSet", "db"), namespace, dry_run=True)
            )
            else None
        ),
        30,
        "the webhook to stop injecting stash-init",
    )
    assert c.SIDECAR_CONTAINER in container_names(wait_until_no_init)  # still backed up
    old = kube.get(PODS, "db-1", namespace)
    assert c.RESTORE_INIT_CONTAINER in _init_names(old)
    kube.delete(PODS, "db-1", namespace)

    def recreated() -> JSON | None:
        try:  # one read: the old pod may go between a look and a second one
            pod = kube.get(PODS, "db-1", namespace)
        except NotFound:
            return None
        return pod if pod["metadata"]["uid"] != old["metadata"]["uid"] else None

    fresh = eventually(recreated, 60, "db-1 to be created again")
    assert c.RESTORE_INIT_CONTAINER not in _init_names(fresh)

    # The single-target form restores the StatefulSet the same way: rolled again, per ordinal.
    for root in (db / "db-0", db / "db-1"):
        damage(root)
    kube.create(restore_session("db-again", namespace, db_restore), namespace)
    again = finished(kube, namespace, "RestoreSession", "db-again", timeout=300)["status"]
    assert again["phase"] == "Succeeded", again
    assert again["totalHosts"] == 2
    assert [s["hostname"] for s in again["stats"]] == ["host-0", "host-1"]
    assert fidelity(db / "db-0") == expected["db-0"]
    assert fidelity(db / "db-1") == expected["db-1"]


def claim_template(name: str) -> JSON:
    return {
        "metadata": {"name": name},
        "spec": {
            "accessModes": ["ReadWriteOnce"],
            "storageClassName": "",
            "resources": {"requests": {"storage": "1Gi"}},
        },
    }


def test_a_statefulsets_ordinals_are_restored_into_new_pvcs_one_job_per_ordinal(
    operator: Operator,
    injecting_webhook: WebhookProcess,
    kube: Client,
    namespace: str,
    images: Images,
    tmp_path: Path,
) -> None:
    db = shared_dir(tmp_path / "db")
    expected = ordinal_trees(db)
    repository(kube, namespace, tmp_path / "repo")
    backed_up_by_sidecars(
        kube, namespace, [db_member()], [(_statefulset("db", db, images.app.name), 2)]
    )
    volumes = {name: shared_dir(tmp_path / name) for name in ("clone-0", "clone-1", "single")}
    for name, data in volumes.items():
        persistent_volume(kube, namespace, name, data)  # waits for the restore's PVC

    # Stash's clone workflow: no ref, no Task; each ordinal's new PVC gets its own host's data,
    # and a lone new PVC gets host-1's (sourceHost), all before any StatefulSet uses them.
    per_ordinal = {
        "target": {
            "replicas": 2,
            "volumeClaimTemplates": [claim_template("clone-${POD_ORDINAL}")],
            "volumeMounts": [{"name": "clone", "mountPath": DB_PATH}],
        }
    }
    single = {
        "target": {
            "volumeClaimTemplates": [claim_template("single")],
            "volumeMounts": [{"name": "single", "mountPath": DB_PATH}],
            "rules": [{"sourceHost": "host-1"}],
        }
    }
    kube.create(restore_batch("clone", namespace, per_ordinal, single), namespace)
    status = finished(kube, namespace, "RestoreBatch", "clone", timeout=300)["status"]
    assert status["phase"] == "Succeeded", status
    ordinals, lone = status["members"]
    assert ordinals["totalHosts"] == 2
    assert [(s["hostname"], s["phase"]) for s in ordinals["stats"]] == [
        ("host-0", "Succeeded"),
        ("host-1", "Succeeded"),
    ]
    assert [s["hostname"] for s in lone["stats"]] == ["host-0"]
    assert ordinals["ref"] == {
        "apiVersion": "v1",
        "kind": c.PVC_KIND,
        "name": "clone-${POD_ORDINAL}",
    }
    assert fidelity(volumes["clone-0"]) == expected["db-0"]
    assert fidelity(volumes["clone-1"]) == expected["db-1"]
    assert fidelity(volumes["single"]) == expected["db-1"]
    jobs = {j["metadata"]["name"] for j in kube.list(JOBS, namespace)["items"]}
    assert {"stash-restore-clone-0-0", "stash-restore-clone-0-1", "stash-restore-clone-1-0"} <= jobs
    for claim in ("clone-0", "clone-1", "single"):
        made = kube.get(PVCS, claim, namespace)
        assert made["metadata"]["annotations"][RESTORED_BY] == "RestoreBatch/clone"
        assert not made["metadata"].get("ownerReferences")  # the data outlives the restore
    reasons = [reason for reason, _ in events_of(kube, namespace, "clone")]
    assert reasons.count("RestorePVCCreated") == 3

    assert reconciling_again_writes_nothing(operator, ("RestoreBatch", namespace, "clone"))


def test_a_repository_of_another_namespace_that_allows_it_is_backed_up_to_and_restored_from(
    operator: Operator, kube: Client, namespace: str, tmp_path: Path
) -> None:
    # The Repository and its Secret live in `namespace` and allow every namespace; the PVC,
    # the BackupBatch and the RestoreSession live in another. Their pods run under their own
    # service accounts (real RBAC on the node): only what the operator grants in the
    # Repository's namespace lets them read it.
    repository(kube, namespace, tmp_path / "repo")
    repo = kube.get(REPOSITORIES, "repo", namespace)
    kube.create(  # the same backend, for its own namespace only (usagePolicy's default)
        {"apiVersion": repo["apiVersion"], "kind": "Repository", "metadata": {"name": "private"}}
        | {"spec": repo["spec"]},
        namespace,
    )
    kube.patch(
        REPOSITORIES,
        "repo",
        {"spec": {"usagePolicy": {"allowedNamespaces": {"from": "All"}}}},
        namespace=namespace,
    )
    with fresh_namespace(kube, "tenant") as tenant:
        # Its pods mount the shared Repository's host path: an admin allows that for it too.
        allow_host_path(kube, tenant)
        data = pvc_data(tmp_path, "shared")
        expected = fidelity(data)
        pvc(kube, tenant, "shared", data)
        remote = {"name": "repo", "namespace": namespace}
        backed_up(kube, tenant, ("shared", data), repository=remote)
        backup_grant = grant_name("BackupBatch", tenant, "nightly")
        role = kube.get(ROLES, backup_grant, namespace)
        assert {r["resources"][0]: r["resourceNames"] for r in role["rules"]} == {
            "repositories": ["repo"],
            "repositories/status": ["repo"],
            "secrets": ["repo-secret"],
        }
        eventually(  # written by the tenant's backup Job
            lambda: (
                (kube.get(REPOSITORIES, "repo", namespace).get("status") or {}).get("snapshotCount")
                == 1
            ),
            30,
            "the Repository's status from the tenant's backup",
        )
        damage(data)

        kube.create(
            restore_session(
                "back", tenant, restore_member(name="shared", mount=str(data)), repository=remote
            ),
            tenant,
        )
        restored = finished(kube, tenant, "RestoreSession", "back")["status"]
        assert restored["phase"] == "Succeeded", restored
        assert fidelity(data) == expected
        # The restore's grant lasts as long as the restore runs; the backup's as its invoker.
        restore_grant = grant_name("RestoreSession", tenant, "back")
        eventually(lambda: not exists(kube, ROLES, namespace, restore_grant), 30, "the grant to go")
        assert exists(kube, ROLES, namespace, backup_grant)
        kube.delete(BACKUP_BATCHES, "nightly", tenant)
        eventually(lambda: not exists(kube, ROLES, namespace, backup_grant), 30, "the grant to go")

        # A Repository that allows only its own namespace grants nothing and is not used.
        kube.create(
            restore_session(
                "refused",
                tenant,
                restore_member(name="shared", mount=str(data)),
                repository={"name": "private", "namespace": namespace},
            ),
            tenant,
        )

        def waiting() -> JSON | None:
            status = kube.get(RESTORE_INVOKER_TYPES["RestoreSession"], "refused", tenant)
            found = get_condition(
                (status.get("status") or {}).get("conditions"), c.REPOSITORY_FOUND
            )
            return found if found and found["status"] == "False" else None

        found = eventually(waiting, 30, "RepositoryFound False")
        assert found["reason"] == "RepositoryUsageNotAllowed"
        assert "only allows its own namespace" in found["message"]
        assert not exists(kube, ROLES, namespace, grant_name("RestoreSession", tenant, "refused"))


def test_a_daemonset_restores_its_nodes_host_and_two_replicas_restore_their_one_host_once(
    operator: Operator,
    injecting_webhook: WebhookProcess,
    kube: Client,
    namespace: str,
    images: Images,
    tmp_path: Path,
) -> None:
    web, logs = pvc_data(tmp_path, "web"), pvc_data(tmp_path, "logs")
    expected = {"web": fidelity(web), "logs": fidelity(logs)}
    repository(kube, namespace, tmp_path / "repo")
    # Recreate: both of web's pods are made at once when it is rolled for the restore, so both
    # get stash-init (a pod made after the restore succeeded would get none).
    web_deployment = workload("Deployment", "web", 2, web, images.app.name)
    web_deployment["spec"]["strategy"] = {"type": "Recreate"}
    backed_up_by_sidecars(
        kube,
        namespace,
        [
            member("Deployment", "web", mounts=(("data", str(web)),)),
            member("DaemonSet", "logs", mounts=(("data", str(logs)),)),
        ],
        [
            (web_deployment, 2),
            (workload("DaemonSet", "logs", 1, logs, images.app.name), 1),
        ],
    )
    node = kube.list(NODES)["items"][0]["metadata"]["name"]
    # The sidecars log JSON (as the webhook does, which told them to): each line parses, and
    # their backup's lines say which target, session and host they are about.
    (logs_pod,) = kube.list(PODS, namespace, label_selector="app=logs")["items"]
    text = pod_logs(kube, namespace, logs_pod["metadata"]["name"], c.SIDECAR_CONTAINER)
    lines = [json.loads(line) for line in text.splitlines() if line.strip()]
    about = [line for line in lines if line.get("host") == node]
    assert about, lines
    assert {line["target"] for line in about} == {"DaemonSet/logs"}
    assert all(line.get("session", "").startswith("nightly-") for line in about)
    webhook_lines = [
        json.loads(line) for line in injecting_webhook.log.read_text().splitlines() if line.strip()
    ]
    assert webhook_lines
    assert all("message" in line for line in webhook_lines)
    damage(web)
    damage(logs)

    # Each by a RestoreSession of its own (the single-target form).
    for name, kind, data in (("web-back", "Deployment", web), ("logs-back", "DaemonSet", logs)):
        target = restore_member(kind, name.removesuffix("-back"))
        target["target"]["volumeMounts"] = [{"name": "data", "mountPath": str(data)}]
        kube.create(restore_session(name, namespace, target), namespace)
    for name, host, data, wanted in (
        ("web-back", "host-0", web, expected["web"]),
        ("logs-back", node, logs, expected["logs"]),
    ):
        status = finished(kube, namespace, "RestoreSession", name, timeout=300)["status"]
        assert status["phase"] == "Succeeded", status
        assert status["totalHosts"] == 1
        assert [(s["hostname"], s["phase"]) for s in status["stats"]] == [(host, "Succeeded")]
        assert is_true(status["conditions"], c.STASH_INIT_CONTAINER_INJECTED)
        assert fidelity(data) == wanted, name

    # Both of web's new pods waited in stash-init; one restored host-0, under the Lease, the
    # other found it restored: one host's stats, both pods through their init container.
    def restored_pods() -> list[JSON] | None:
        pods = [
            p
            for p in kube.list(PODS, namespace, label_selector="app=web")["items"]
            if c.RESTORE_INIT_CONTAINER in _init_names(p)
            and not p["metadata"].get("deletionTimestamp")
        ]
        done = [
            p
            for p in pods
            if all(
                ((s.get("state") or {}).get("terminated") or {}).get("exitCode") == 0
                for s in (p.get("status") or {}).get("initContainerStatuses") or [{}]
            )
        ]
        return done if len(done) == 2 else None

    eventually(restored_pods, 120, "both of web's pods through stash-init")


def test_a_workload_whose_pods_never_get_stash_init_fails_saying_why(
    control_plane: ControlPlane, kube: Client, namespace: str, images: Images, tmp_path: Path
) -> None:
    # No webhook: the rolled pods start without stash-init (failurePolicy Ignore does the same
    # when it is down). The restore must not stay Running: after the grace it fails, saying so.
    web = pvc_data(tmp_path, "web")
    repository(kube, namespace, tmp_path / "repo")
    kube.create(workload("Deployment", "web", 1, web, images.app.name), namespace)
    target = restore_member("Deployment", "web")
    target["target"]["volumeMounts"] = [{"name": "data", "mountPath": str(web)}]
    with running_operator(control_plane.kubeconfig, image=images.stash.name, init_grace=10):
        kube.create(restore_session("web-back", namespace, target), namespace)

        def ended() -> JSON | None:
            status = kube.get(RESTORE_INVOKER_TYPES["RestoreSession"], "web-back", namespace)
            found = status.get("status") or {}
            return found if found.get("phase") in ("Succeeded", "Failed") else None

        status = eventually(ended, 120, "the restore to end")
    assert status["phase"] == "Failed"
    failed = get_condition(status["conditions"], RESTORE_FAILED)
    assert failed is not None
    # Its pod was made again once (the webhook may only have been late), and missed it again.
    assert "came up without the stash-init init container" in failed["message"], failed
    assert "also after it was re-created for host host-0" in failed["message"], failed
    assert "Deployment " + namespace + "/web" in failed["message"]
    recreated = [
        e
        for e in kube.list(EVENTS, namespace)["items"]
        if e.get("reason") == "PodRecreated" and e["involvedObject"]["name"] == "web-back"
    ]
    assert len(recreated) == 1, recreated


def test_stash_init_stops_restoring_when_its_restore_ends_at_the_deadline(
    operator: Operator,
    injecting_webhook: WebhookProcess,
    kube: Client,
    namespace: str,
    images: Images,
    rclone_binary: Path,
    tmp_path: Path,
) -> None:
    """A backend slowed to 100 kB/s, 8 MB to restore, a 20 s timeOut: the restore fails at its
    deadline while stash-init's restic still downloads. stash-init stops it, and exits 1:
    the application does not start on data half put back."""
    slow = services.rclone_rest(rclone_binary, tmp_path / "rest", tmp_path, bwlimit="100k")
    try:
        web = shared_dir(tmp_path / "web")
        (web / "big.bin").write_bytes(os.urandom(8 * MiB))
        give_to_pods(web)
        direct = BackendConfig(
            repository=str(tmp_path / "rest" / "repo"), env={"RESTIC_PASSWORD": PASSWORD}
        )
        tags = (
            namespace_tag(namespace),
            invoker_tag("BackupBatch", "nightly"),
            target_tag("Deployment", "web"),
            session_tag("nightly-1"),
        )
        with Restic(direct) as restic:  # the snapshot, made on the server's disk directly
            restic.init_if_missing()
            restic.backup([str(web)], host="host-0", tags=tags)
        (web / "big.bin").unlink()
        backend_repository(kube, namespace, {"rest": {"url": f"{slow.url}/repo/"}}, PASSWORD)
        # The Deployment opted in by a BackupBatch (none of its sessions runs here).
        web_member = member("Deployment", "web", mounts=(("data", str(web)),))
        kube.create(batch("nightly", namespace, web_member), namespace)
        wait_until_injected(kube, namespace, _opted_in_pod("Deployment", "web"))
        kube.create(workload("Deployment", "web", 1, web, images.app.name), namespace)
        invoker_ready(kube, namespace, "nightly")
        eventually(lambda: _running_sidecars(kube, namespace, "web", 1), 180, "web's sidecar")

        web_restore = restore_member("Deployment", "web")
        web_restore["target"]["volumeMounts"] = [{"name": "data", "mountPath": str(web)}]
        kube.create(restore_session("back", namespace, web_restore, timeOut="20s"), namespace)
        port = f":{slow.port}/"
        eventually(lambda: restic_processes_with(port), 120, "stash-init's restic restore")

        status = finished(kube, namespace, "RestoreSession", "back", timeout=120)["status"]
        assert status["phase"] == "Failed"
        assert is_true(status.get("conditions"), c.DEADLINE_EXCEEDED), status.get("conditions")
        # its restic is gone soon after, not 80 s later, and stash-init failed the pod's start
        eventually(lambda: not restic_processes_with(port), 30, "stash-init's restic to stop")

        def init_failed() -> JSON | None:
            for pod in kube.list(PODS, namespace, label_selector="app=web")["items"]:
                for init in (pod.get("status") or {}).get("initContainerStatuses") or []:
                    if init["name"] != c.RESTORE_INIT_CONTAINER:
                        continue
                    for state in (init.get("state") or {}, init.get("lastState") or {}):
                        if (state.get("terminated") or {}).get("exitCode") == 1:
                            found: JSON = pod
                            return found
            return None

        eventually(init_failed, 60, "stash-init to exit 1")
        with Restic(direct) as restic:
            assert restic.locks() == []  # restic removed its own lock when stopped
    finally:
        slow.stop()
