"""The restic wrapper against real restic, on local, REST (rclone) and S3 (rclone) backends."""

from __future__ import annotations

import hashlib
import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from agent.host_backup import BackupOptions, HostJob, back_up_paths
from api.repository import Repository
from devcluster.build import RESTIC_VERSION
from devcluster.cluster import free_port
from devcluster.services import Service
from engine.backend import backend_config
from engine.restic import Restic, ResticError
from tests.integration.conftest import REST_PASSWORD, REST_USER, S3_ACCESS_KEY, S3_SECRET_KEY

PASSWORD = "restic-pw-5e1c"


def repository(backend: dict[str, Any]) -> Repository:
    return Repository.model_validate(
        {
            "apiVersion": "stash.appscode.com/v1alpha1",
            "kind": "Repository",
            "metadata": {"name": "repo", "namespace": "demo"},
            "spec": {"backend": {"storageSecretName": "creds", **backend}},
        }
    )


def tree(root: Path) -> dict[str, str]:
    """Relative path -> sha256 of every file under ``root``."""
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def make_data(root: Path) -> Path:
    (root / "sub" / "deeper").mkdir(parents=True)
    (root / "a.txt").write_text("alpha\n")
    (root / "sub" / "b.bin").write_bytes(os.urandom(200_000))
    (root / "sub" / "deeper" / "c.txt").write_text("gamma\n" * 1000)
    return root


@pytest.fixture(params=["local", "rest", "s3"])
def restic(
    request: pytest.FixtureRequest, tmp_path: Path, rest_server: Service, s3_server: Service
) -> Iterator[Restic]:
    secret = {"RESTIC_PASSWORD": PASSWORD}
    if request.param == "local":
        repo = repository({"local": {"mountPath": str(tmp_path / "repo"), "hostPath": {}}})
    elif request.param == "rest":
        url = f"{rest_server.url}/{tmp_path.name}/"
        repo = repository({"rest": {"url": url}})
        secret.update(REST_SERVER_USERNAME=REST_USER, REST_SERVER_PASSWORD=REST_PASSWORD)
    else:
        repo = repository(
            {"s3": {"endpoint": s3_server.url, "bucket": "backups", "prefix": tmp_path.name}}
        )
        secret.update(AWS_ACCESS_KEY_ID=S3_ACCESS_KEY, AWS_SECRET_ACCESS_KEY=S3_SECRET_KEY)
    with Restic(backend_config(repo, secret), cache_dir=tmp_path / "cache") as wrapper:
        yield wrapper


def test_a_tree_backed_up_to_each_backend_restores_byte_identical(
    restic: Restic, tmp_path: Path
) -> None:
    data = make_data(tmp_path / "data")
    assert restic.init_if_missing() is True
    assert restic.init_if_missing() is False
    summary = restic.backup([str(data)], host="host-0", tags=["session:s1"])
    assert summary.total_files == 3
    assert summary.files_new == 3
    snapshots = restic.snapshots(host="host-0", tags=["session:s1"])
    assert [s.id[:8] for s in snapshots] == [summary.snapshot_id[:8]]
    assert snapshots[0].paths == (str(data),)

    again = restic.backup([str(data)], host="host-0")
    assert again.files_unmodified == 3
    assert again.data_added < 5_000

    restic.restore(summary.snapshot_id, str(tmp_path / "restored"))
    assert tree(tmp_path / "restored" / data.relative_to("/")) == tree(data)
    stats = restic.stats()
    assert stats.snapshot_count == 2
    assert stats.total_size > 200_000
    assert restic.check().ok


def test_a_wrong_password_is_a_clear_error_without_any_secret(
    tmp_path: Path, rest_server: Service
) -> None:
    url = f"{rest_server.url}/{tmp_path.name}/"
    repo = repository({"rest": {"url": url}})
    good = {
        "RESTIC_PASSWORD": PASSWORD,
        "REST_SERVER_USERNAME": REST_USER,
        "REST_SERVER_PASSWORD": REST_PASSWORD,
    }
    with Restic(backend_config(repo, good)) as restic:
        restic.init_if_missing()
    bad = {**good, "RESTIC_PASSWORD": "not-the-password-0000"}
    with Restic(backend_config(repo, bad)) as restic, pytest.raises(ResticError) as caught:
        restic.init_if_missing()  # must not re-initialise over a repository it cannot open
    message = str(caught.value)
    assert "wrong password" in message
    for secret in (*good.values(), *bad.values()):
        assert secret not in message
        assert secret not in repr(caught.value)


def test_a_missing_path_fails_instead_of_backing_up_nothing(restic: Restic, tmp_path: Path) -> None:
    data = make_data(tmp_path / "data")
    restic.init_if_missing()
    with pytest.raises(ResticError, match=r"does not exist: .*/gone"):
        restic.backup([str(data), str(tmp_path / "gone")], host="host-0")
    assert restic.snapshots() == []


def test_a_failing_dump_command_fails_the_backup_and_leaves_no_snapshot(
    restic: Restic,
) -> None:
    restic.init_if_missing()
    producer = ["sh", "-c", "echo partial-dump; echo 'pg_dump: connection refused' >&2; exit 2"]
    with pytest.raises(ResticError, match="exited with 2: pg_dump: connection refused"):
        restic.backup_stdin(producer, filename="db.sql", host="host-0")
    assert restic.snapshots() == []
    good = restic.backup_stdin(["printf", "SELECT 1;\n"], filename="db.sql", host="host-0")
    with restic.dump(good.snapshot_id, "/db.sql") as stream:
        assert stream.read() == b"SELECT 1;\n"


def _holding_backup(restic: Restic) -> subprocess.Popen[bytes]:
    """A restic backup that holds its lock until killed: it waits on stdin forever."""
    proc = subprocess.Popen(
        restic._command(["backup", "--stdin", "--host", "host-9"]),
        stdin=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=restic._environ(),
    )
    deadline = time.monotonic() + 20
    while not restic.locks():
        assert time.monotonic() < deadline, "restic never took its lock"
        time.sleep(0.1)
    return proc


def test_a_killed_backup_leaves_a_lock_that_the_next_backup_removes(
    restic: Restic, tmp_path: Path
) -> None:
    data = make_data(tmp_path / "data")
    restic.init_if_missing()
    killed = _holding_backup(restic)
    killed.send_signal(signal.SIGKILL)
    killed.wait()
    assert len(restic.locks()) == 1, "a killed restic leaves its lock behind"

    job = HostJob("demo", "s-1", "BackupBatch", "nightly", "Deployment", "web", "host-0")
    result = back_up_paths(restic, job, [str(data)])
    assert result.succeeded, result.error
    assert restic.locks() == []


def test_a_live_lock_of_a_running_backup_is_kept(restic: Restic, tmp_path: Path) -> None:
    data = make_data(tmp_path / "data")
    restic.init_if_missing()
    running = _holding_backup(restic)
    try:
        lock = restic.locks()
        assert restic.unlock_stale() in (0, None)  # None: a remote backend does not count
        job = HostJob("demo", "s-2", "BackupBatch", "nightly", "Deployment", "web", "host-0")
        result = back_up_paths(restic, job, [str(data)])
        assert result.succeeded, result.error
        assert restic.locks() == lock, "the running backup's lock must survive"
    finally:
        running.kill()
        running.wait()


def test_an_unreadable_file_fails_the_host_and_names_the_path(tmp_path: Path) -> None:
    # As root every file is readable: run restic as nobody, as a pod's runAsUser would.
    shared = Path(tempfile.mkdtemp(prefix="stash-unreadable-"))
    shared.chmod(0o755)
    data = make_data(shared / "data")
    secret_file = data / "sub" / "secret.key"
    secret_file.write_text("top secret")
    secret_file.chmod(0)
    repo_dir = shared / "repo"
    repo_dir.mkdir(mode=0o777)
    repo_dir.chmod(0o777)
    # The pinned restic lives under root's home, which nobody cannot enter: a copy beside.
    binary = shared / "restic"
    shutil.copy(shutil.which("restic") or "restic", binary)
    binary.chmod(0o755)
    wrapper = shared / "restic-as-nobody"
    wrapper.write_text(
        f'#!/bin/sh\nexec setpriv --reuid=65534 --regid=65534 --clear-groups {binary} "$@"\n'
    )
    wrapper.chmod(0o755)
    config = backend_config(
        repository({"local": {"mountPath": str(repo_dir)}}), {"RESTIC_PASSWORD": PASSWORD}
    )
    try:
        with Restic(config, binary=str(wrapper)) as restic:
            restic.init_if_missing()
            job = HostJob("demo", "s-3", "BackupBatch", "nightly", "Deployment", "web", "host-0")
            result = back_up_paths(restic, job, [str(data)])
    finally:
        shutil.rmtree(shared, ignore_errors=True)
    assert result.phase == "Failed"
    assert f"could not read {secret_file} (permission denied)" in result.error
    assert "Deployment/web host host-0" in result.error


def test_a_repository_another_user_left_unreadable_is_named_a_permission_problem_not_damage() -> (
    None
):
    # A Job running as root made the repository; a pod running as nobody checks it.
    shared = Path(tempfile.mkdtemp(prefix="stash-denied-"))
    shared.chmod(0o755)
    repo_dir = shared / "repo"
    binary = shared / "restic"
    shutil.copy(shutil.which("restic") or "restic", binary)
    binary.chmod(0o755)
    wrapper = shared / "restic-as-nobody"
    wrapper.write_text(
        f'#!/bin/sh\nexec setpriv --reuid=65534 --regid=65534 --clear-groups {binary} "$@"\n'
    )
    wrapper.chmod(0o755)
    config = backend_config(
        repository({"local": {"mountPath": str(repo_dir)}}), {"RESTIC_PASSWORD": PASSWORD}
    )
    try:
        with Restic(config) as as_root:  # the root Job's own repository: fine for root
            as_root.init_if_missing()
            assert as_root.check().ok
        with Restic(config, binary=str(wrapper)) as as_nobody:
            check = as_nobody.check()
        words = check.says()
    finally:
        shutil.rmtree(shared, ignore_errors=True)
    assert not check.ok
    assert check.denied, check.message
    assert all(path.startswith(str(repo_dir)) for path in check.denied)
    assert "permission denied on " + str(repo_dir) in words
    assert "owner 0:0" in words
    assert "not known to be damaged" in words
    assert "is damaged" not in words


def test_a_host_restarted_mid_session_reports_its_snapshot_instead_of_making_another(
    tmp_path: Path,
) -> None:
    data = make_data(tmp_path / "data")
    config = backend_config(
        repository({"local": {"mountPath": str(tmp_path / "repo")}}), {"RESTIC_PASSWORD": PASSWORD}
    )
    options = BackupOptions(attempts_dir=tmp_path / "state")
    job = HostJob("demo", "s-4", "BackupBatch", "nightly", "StatefulSet", "db", "host-1")
    with Restic(config) as restic:
        first = back_up_paths(restic, job, [str(data)], options=options)
        # The container restarts before it could write the session's status: same session again.
        again = back_up_paths(restic, job, [str(data)], options=options)
        assert again.succeeded
        assert again.snapshots[0].snapshot_id == first.snapshots[0].snapshot_id[:8]
        assert len(restic.snapshots()) == 1


def _local(tmp_path: Path) -> Restic:
    config = backend_config(
        repository({"local": {"mountPath": str(tmp_path / "repo")}}), {"RESTIC_PASSWORD": PASSWORD}
    )
    restic = Restic(config)
    restic.init_if_missing()
    return restic


def test_two_targets_with_the_same_host_and_path_each_compare_against_their_own_history(
    tmp_path: Path,
) -> None:
    """Two PVC members both mounted at one path on host-0 (Stash's default /stash-data): each
    backup's parent is its own target's last snapshot, so the counts are that target's."""
    data = tmp_path / "stash-data"
    data.mkdir()
    path = str(data)

    def job(name: str, session: str) -> HostJob:
        return HostJob(
            "demo", session, "BackupBatch", "nightly", "PersistentVolumeClaim", name, "host-0"
        )

    def own(name: str) -> BackupOptions:  # each target's own pod state, as each sidecar has
        return BackupOptions(attempts_dir=tmp_path / f"state-{name}")

    with _local(tmp_path) as restic:
        (data / "a.txt").write_text("a\n")
        first_a = back_up_paths(restic, job("a", "s-1"), [path], options=own("a"))
        (data / "a.txt").unlink()
        for i in range(3):
            (data / f"b{i}.txt").write_text(f"b{i}\n")
        # b has no history of its own: restic must not take a's snapshot (same host, same path)
        first_b = back_up_paths(restic, job("b", "s-1"), [path], options=own("b"))
        assert first_b.snapshots[0].files_new == 3, "b compared against a's snapshot"

        for i in range(3):
            (data / f"b{i}.txt").unlink()
        (data / "a.txt").write_text("a\n")
        (data / "a2.txt").write_text("a2\n")
        second_a = back_up_paths(restic, job("a", "s-2"), [path], options=own("a"))
        stats = second_a.snapshots[0]
        # Against a's own snapshot: a.txt (rewritten) changed, a2 new. Against b's: both new.
        assert (stats.files_new, stats.files_modified) == (1, 1), "a's parent was not a's own"

        # A fresh pod (nothing remembered) finds the parent in the sessions' record.
        recorded = second_a.snapshots[0].snapshot_id
        (data / "a3.txt").write_text("a3\n")
        fresh = BackupOptions(parent_hint=lambda p: recorded if p == path else None)
        third_a = back_up_paths(restic, job("a", "s-3"), [path], options=fresh)
        assert (third_a.snapshots[0].files_new, third_a.snapshots[0].files_unmodified) == (1, 2)

        # A remembered parent that retention removed: backed up without one, not failed.
        restic.forget_ids(first_a.snapshots[0].snapshot_id)
        gone = BackupOptions(parent_hint=lambda p: first_a.snapshots[0].snapshot_id)
        fourth_a = back_up_paths(restic, job("a", "s-4"), [path], options=gone)
        assert fourth_a.succeeded, fourth_a.error
        assert fourth_a.snapshots[0].files_new == 3


def test_a_sparse_file_is_restored_sparse(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    sparse = data / "disk.img"
    with sparse.open("wb") as handle:
        handle.write(b"start")
        handle.seek(200 * 1024 * 1024)
        handle.write(b"end")
    assert sparse.stat().st_blocks * 512 < 1024 * 1024
    with _local(tmp_path) as restic:
        job = HostJob("demo", "s-1", "BackupBatch", "nightly", "Deployment", "vm", "host-0")
        result = back_up_paths(restic, job, [str(data)])
        assert result.succeeded, result.error
        restic.restore(result.snapshots[0].snapshot_id, str(tmp_path / "restored"))
    restored = tmp_path / "restored" / data.relative_to("/") / "disk.img"
    assert restored.stat().st_size == sparse.stat().st_size
    assert restored.read_bytes()[:5] == b"start"
    # 200 MB of holes stay holes: the volume restored into is not filled by them.
    assert restored.stat().st_blocks * 512 < 16 * 1024 * 1024


def test_an_unreachable_backend_fails_within_the_bound_in_restics_words(tmp_path: Path) -> None:
    port = free_port()  # nothing listens there
    secret = {"RESTIC_PASSWORD": PASSWORD}
    repo = repository({"rest": {"url": f"http://127.0.0.1:{port}/repo/"}})
    started = time.monotonic()
    with Restic(backend_config(repo, secret), backend_retry_limit=5) as restic:
        job = HostJob("demo", "s-1", "BackupBatch", "nightly", "Deployment", "web", "host-0")
        result = back_up_paths(restic, job, [str(make_data(tmp_path / "data"))])
    assert time.monotonic() - started < 30
    assert result.phase == "Failed"
    assert "Deployment/web host host-0" in result.error
    assert "the backend kept failing for 5s" in result.error
    assert "connection refused" in result.error


def test_wrong_s3_credentials_fail_at_once_in_restics_words(
    tmp_path: Path, s3_server: Service
) -> None:
    secret = {
        "RESTIC_PASSWORD": PASSWORD,
        "AWS_ACCESS_KEY_ID": "not-a-key",
        "AWS_SECRET_ACCESS_KEY": "not-a-secret-5a1",
    }
    repo = repository({"s3": {"endpoint": s3_server.url, "bucket": "backups", "prefix": "x"}})
    started = time.monotonic()
    with Restic(backend_config(repo, secret)) as restic:
        job = HostJob("demo", "s-1", "BackupBatch", "nightly", "Deployment", "web", "host-0")
        result = back_up_paths(restic, job, [str(make_data(tmp_path / "data"))])
    assert time.monotonic() - started < 20
    assert result.phase == "Failed"
    assert "The Access Key Id you provided does not exist" in result.error
    assert "not-a-secret-5a1" not in result.error


def test_the_tests_run_the_pinned_restic() -> None:
    printed = subprocess.run(["restic", "version"], capture_output=True, text=True, check=True)
    assert printed.stdout.startswith(f"restic {RESTIC_VERSION.removeprefix('v')} ")
