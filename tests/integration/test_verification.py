"""Verified restores on the dev cluster's real node: after a session succeeds, a verification Job
of the project's image restores its snapshots into scratch space in the invoker's namespace and
proves them; a pack damaged in the repository makes the next verification fail and name the
file, and changes nothing."""

from __future__ import annotations

import functools
import os
from pathlib import Path

from prometheus_client import generate_latest

from api import constants as c
from api.conditions import get_condition
from api.naming import verify_job_name
from api.objects import JSON
from controller.operator import Operator
from kube import Client
from kube.sessions import create_session
from kube.types import (
    BACKUP_BATCHES,
    BACKUP_SESSIONS,
    EVENTS,
    JOBS,
    PODS,
    PVCS,
    REPOSITORIES,
    SECRETS,
)
from tests.factories import batch, member
from tests.integration.helpers import (
    eventually,
    fresh_namespace,
    invoker_ready,
    job_steps,
    tenant,
)
from tests.integration.objects import allow_host_path, pvc, repository, restic_of
from tests.integration.test_restic import make_data


def _verified(kube: Client, namespace: str, session: str) -> JSON | None:
    """BackupVerified once it is about ``session``."""
    invoker = kube.get(BACKUP_BATCHES, "nightly", namespace)
    said = get_condition((invoker.get("status") or {}).get("conditions"), c.BACKUP_VERIFIED)
    if said is None or not str(said.get("message", "")).startswith(f"session {session}: "):
        return None
    return said


def _session(kube: Client, namespace: str, unix_seconds: int) -> str:
    """A session of ``nightly``, its backup Job's steps passed, once Succeeded."""
    created = create_session(kube, "BackupBatch", "nightly", namespace, unix_seconds=unix_seconds)
    name = str(created["metadata"]["name"])

    def backup_job() -> JSON | None:
        for job in kube.list(JOBS, namespace)["items"]:
            if job["metadata"]["name"].startswith(f"stash-backup-{name}-"):
                return dict(job)
        return None

    try:
        job = eventually(backup_job, 120, "the backup Job")
    except BaseException:
        print("session:", kube.get(BACKUP_SESSIONS, name, namespace).get("status"))
        print("invoker:", kube.get(BACKUP_BATCHES, "nightly", namespace).get("status"))
        print("claim:", kube.get(PVCS, "shared", namespace).get("status"))
        raise
    runs = job_steps(kube, namespace, job["metadata"]["name"])
    assert [r.returncode for r in runs] == [0, 0], [r.output for r in runs]

    def succeeded() -> bool:
        status = kube.get(BACKUP_SESSIONS, name, namespace).get("status") or {}
        return status.get("phase") == "Succeeded"

    eventually(succeeded, 90, f"session {name} to succeed")
    return name


def _damage_largest_pack(repo: Path) -> Path:
    """Flip bytes in the middle of the repository's largest pack (the big file's data)."""
    packs = [p for p in (repo / "data").rglob("*") if p.is_file()]
    pack = max(packs, key=lambda p: p.stat().st_size)
    raw = bytearray(pack.read_bytes())
    middle = len(raw) // 2
    raw[middle : middle + 64] = bytes(b ^ 0xFF for b in raw[middle : middle + 64])
    pack.chmod(0o644)
    pack.write_bytes(bytes(raw))
    return pack


def _events(kube: Client, namespace: str, reason: str) -> list[JSON]:
    return [
        e
        for e in kube.list(EVENTS, namespace)["items"]
        if e.get("reason") == reason and e["involvedObject"].get("name") == "nightly"
    ]


def test_a_backup_is_verified_after_it_and_a_damaged_pack_fails_the_next_naming_the_file(
    operator: Operator, kube: Client, namespace: str, tmp_path: Path
) -> None:
    repo_dir = tmp_path / "repo"
    repository(kube, namespace, repo_dir)
    data = make_data(tmp_path / "pvc")
    (data / "big.bin").write_bytes(os.urandom(3 << 20))  # the largest pack: data, not trees
    pvc(kube, namespace, "shared", data)
    invoker = batch(
        "nightly",
        namespace,
        member(
            "PersistentVolumeClaim", "shared", mounts=(("shared", str(data)),), task="pvc-backup"
        ),
        retentionPolicy={"name": "keep", "keepLast": 10},
    )
    # The tests' operator verifies only the invokers that ask (--verify-backups=false).
    invoker["metadata"]["annotations"] = {c.VERIFY_ANNOTATION: "true"}
    kube.create(invoker, namespace)
    invoker_ready(kube, namespace, "nightly")

    first = _session(kube, namespace, 1_800_000_000)
    said = eventually(functools.partial(_verified, kube, namespace, first), 240, "verification")
    assert said["status"] == "True", said
    assert said["reason"] == "VerificationSucceeded"
    assert "PersistentVolumeClaim/shared host host-0 snapshot " in said["message"]
    assert ": 4 files, " in said["message"]
    assert "restored and identical" in said["message"]
    assert verify_job_name(first) in said["message"]
    assert _events(kube, namespace, "VerificationSucceeded")
    job = kube.get(JOBS, verify_job_name(first), namespace)
    pod = job["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == "stash-backup-nightly"  # the tenant's own privileges

    damaged = _damage_largest_pack(repo_dir)
    damaged_bytes = damaged.read_bytes()
    with restic_of(repo_dir) as restic:
        before = {s.id for s in restic.snapshots()}
    # The next backup finds big.bin unchanged and refers to the damaged pack again: it
    # succeeds (restic backup does not read old packs); its verification does not.
    second = _session(kube, namespace, 1_800_000_100)
    said = eventually(functools.partial(_verified, kube, namespace, second), 240, "verification")
    assert said["status"] == "False", said
    assert said["reason"] == "VerificationFailed"
    # The damaged pack holds blobs of the data's files: restic names each one it could not
    # restore, in its own words.
    damaged_files = [
        f for f in ("/big.bin", "/sub/b.bin", "/a.txt", "/deeper/c.txt") if f in said["message"]
    ]
    assert damaged_files, said["message"]
    assert "ciphertext verification failed" in said["message"]
    assert _events(kube, namespace, "VerificationFailed")
    # A failed verification changes nothing: every snapshot is there, the pack is as it was.
    with restic_of(repo_dir) as restic:
        after = {s.id for s in restic.snapshots()}
    assert before < after
    assert len(after) == 2
    assert damaged.read_bytes() == damaged_bytes
    # Only the newest verification Job is kept, as the record of when the last one ran.
    verify_jobs = eventually(
        lambda: (
            names
            if (
                names := sorted(
                    j["metadata"]["name"]
                    for j in kube.list(JOBS, namespace)["items"]
                    if j["metadata"]["name"].startswith("stash-verify-")
                )
            )
            == [verify_job_name(second)]
            else None
        ),
        60,
        "the older verification Job to go",
    )
    assert verify_jobs == [verify_job_name(second)]
    # Reconciled again, twice: nothing is written, no Job made or removed.
    key = ("BackupBatch", namespace, "nightly")
    version = kube.get(BACKUP_BATCHES, "nightly", namespace)["metadata"]["resourceVersion"]
    writes = operator.invokers.writes.in_namespace(namespace)
    for _ in range(2):
        operator.invokers.reconcile(key)
    assert operator.invokers.writes.in_namespace(namespace) == writes
    assert kube.get(BACKUP_BATCHES, "nightly", namespace)["metadata"]["resourceVersion"] == version
    assert sorted(
        j["metadata"]["name"]
        for j in kube.list(JOBS, namespace)["items"]
        if j["metadata"]["name"].startswith("stash-verify-")
    ) == [verify_job_name(second)]
    metrics = generate_latest(operator.metrics.registry).decode()
    assert (
        "stash_backup_verification_success{"
        f'invoker_kind="BackupBatch",invoker_name="nightly",namespace="{namespace}"}} 0.0'
    ) in metrics


def test_a_tenants_verification_in_a_shared_repository_reads_only_its_snapshots(
    operator: Operator, kube: Client, namespace: str, tmp_path: Path
) -> None:
    """The owner of ``namespace`` keeps a Repository every namespace may use, and backs up into
    it; a team with only ``stash-edit`` in its own namespace backs up into it and asks for
    verification. The verification runs in the team's namespace, restores only the team's
    snapshot, and leaves the owner's namespace and snapshots as they were."""
    repo_dir = tmp_path / "repo"
    repository(kube, namespace, repo_dir)
    kube.patch(
        REPOSITORIES,
        "repo",
        {"spec": {"usagePolicy": {"allowedNamespaces": {"from": "All"}}}},
        namespace=namespace,
    )
    owners_data = make_data(tmp_path / "owners")
    pvc(kube, namespace, "shared", owners_data)
    kube.create(
        batch(
            "nightly",
            namespace,
            member("PersistentVolumeClaim", "shared", mounts=(("shared", str(owners_data)),)),
        ),
        namespace,
    )
    invoker_ready(kube, namespace, "nightly")
    _session(kube, namespace, 1_800_000_000)
    with restic_of(repo_dir) as restic:
        owners_snapshots = {s.id for s in restic.snapshots()}
    with fresh_namespace(kube, "team") as team_ns:
        allow_host_path(kube, team_ns)  # the admin's decision: its pods mount the repository
        team_data = make_data(tmp_path / "team")
        (team_data / "team-only.txt").write_text("the team's\n")
        pvc(kube, team_ns, "shared", team_data)
        before = _namespace_state(kube, namespace)
        with tenant(kube, team_ns) as team:
            invoker = batch(
                "nightly",
                team_ns,
                member("PersistentVolumeClaim", "shared", mounts=(("shared", str(team_data)),)),
                repository={"name": "repo", "namespace": namespace},
            )
            invoker["metadata"]["annotations"] = {c.VERIFY_ANNOTATION: "true"}
            team.create(invoker, team_ns)
            invoker_ready(team, team_ns, "nightly")
            session = _session(team, team_ns, 1_800_000_100)
            said = eventually(
                functools.partial(_verified, team, team_ns, session), 240, "the verification"
            )
        assert said["status"] == "True", said
        # the team's four files (team-only.txt among them), none of the owner's
        assert ": 4 files, " in said["message"]
        verify_jobs = [
            j["metadata"]["name"]
            for ns in (namespace, team_ns)
            for j in kube.list(JOBS, ns)["items"]
            if j["metadata"]["name"].startswith("stash-verify-")
        ]
        assert verify_jobs == [verify_job_name(session)]
        assert kube.get(JOBS, verify_job_name(session), team_ns)["metadata"]["namespace"] == team_ns
        after = _namespace_state(kube, namespace)
        # The team's backup wrote the shared Repository's figures (the owner allowed it);
        # nothing else of the owner's namespace changed.
        before.pop("Repository/repo")
        after.pop("Repository/repo")
        assert after == before
        with restic_of(repo_dir) as restic:
            now = {s.id for s in restic.snapshots()}
        assert owners_snapshots < now
        assert len(now - owners_snapshots) == 1  # the team's one snapshot; the owner's untouched


def _namespace_state(kube: Client, namespace: str) -> dict[str, str]:
    """Every Stash object, Job and pod of ``namespace`` by kind/name, with its version."""
    state = {}
    for rt in (BACKUP_BATCHES, BACKUP_SESSIONS, REPOSITORIES, JOBS, PODS, SECRETS):
        for obj in kube.list(rt, namespace)["items"]:
            state[f"{rt.kind}/{obj['metadata']['name']}"] = obj["metadata"]["resourceVersion"]
    return state
