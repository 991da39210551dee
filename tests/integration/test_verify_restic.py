"""The verification's restic work against a real repository (no cluster): a whole snapshot and a
sample proven, a snapshot chosen only among its owner's (also one an older version wrote without
the owner's tags), and a damaged pack named by the file it held."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from agent.verify_backup import NO_SNAPSHOT, HostSnapshot, verify_hosts
from api.repository import Repository
from api.tags import SnapshotOwner
from engine.backend import backend_config
from engine.restic import Restic

PASSWORD = "verify-pw-5c1e"
OWNER = SnapshotOwner("demo", "demo", "BackupBatch/nightly")


def _restic(repo: Path, *args: str) -> str:
    env = {**os.environ, "RESTIC_REPOSITORY": str(repo), "RESTIC_PASSWORD": PASSWORD}
    done = subprocess.run(
        ["restic", *args, "--no-cache"], env=env, capture_output=True, text=True, check=True
    )
    return done.stdout


def _repository(repo: Path) -> Restic:
    model = Repository.model_validate(
        {
            "apiVersion": "stash.appscode.com/v1alpha1",
            "kind": "Repository",
            "metadata": {"name": "repo", "namespace": "demo"},
            "spec": {"backend": {"local": {"mountPath": str(repo)}}},
        }
    )
    return Restic(backend_config(model, {"RESTIC_PASSWORD": PASSWORD}))


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    repo = tmp_path / "repo"
    _restic(repo, "init")
    return repo


def _data(root: Path) -> Path:
    (root / "sub").mkdir(parents=True)
    (root / "a.txt").write_text("alpha\n")
    (root / "sub" / "big.bin").write_bytes(os.urandom(3 << 20))
    (root / "sub" / "small.bin").write_bytes(os.urandom(100_000))
    return root


def _back_up(repo: Path, data: Path, *tags: str) -> None:
    _restic(repo, "backup", "--host", "host-0", "--tag", ",".join(tags), str(data))


TAGS = (
    "namespace:demo",
    "invoker:BackupBatch/nightly",
    "target:PersistentVolumeClaim/data",
    "session:nightly-1",
)
HOST = HostSnapshot("PersistentVolumeClaim/data", "host-0", "", (3 << 20) + 100_006)


def _verify(repo: Path, tmp_path: Path, budget: int, owner: SnapshotOwner = OWNER) -> str:
    with _repository(repo) as restic:
        verdicts, check = verify_hosts(
            restic,
            [HOST],
            owner,
            session="nightly-1",
            budget=budget,
            scratch=tmp_path / "scratch" / "restored",
            seed="2026-12-07",
        )
    assert check.ok, check.message
    (verdict,) = verdicts
    return verdict.says() if verdict.ok else f"NOT OK {verdict.says()}"


def test_a_snapshot_is_proven_whole_or_by_a_sample_that_fits_the_budget(
    repo: Path, tmp_path: Path
) -> None:
    _back_up(repo, _data(tmp_path / "data"), *TAGS)
    whole = _verify(repo, tmp_path, 1 << 30)
    assert whole.endswith("3 files, 3.1 MiB restored and identical"), whole
    sampled = _verify(repo, tmp_path, 200_000)
    assert "2 of 3 files" in sampled, sampled  # a.txt and small.bin fit; big.bin does not
    assert sampled.endswith("restored and identical")
    assert not (tmp_path / "scratch" / "restored").exists()  # emptied after


def test_only_the_owners_snapshot_is_chosen_also_one_written_without_its_tags(
    repo: Path, tmp_path: Path
) -> None:
    data = _data(tmp_path / "data")
    # another namespace's backup with the same invoker, session, target and host names
    _back_up(repo, data, "namespace:other", *TAGS[1:])
    assert (
        _verify(repo, tmp_path, 1 << 30)
        == f"NOT OK PersistentVolumeClaim/data host host-0 snapshot -: not verified: {NO_SNAPSHOT}"
    )
    # an older version's snapshot: no namespace or invoker tag, the Repository's namespace's
    _back_up(repo, data, *TAGS[2:])
    legacy = _verify(repo, tmp_path, 1 << 30)
    assert legacy.endswith("restored and identical"), legacy
    elsewhere = SnapshotOwner("other-ns", "demo", "BackupBatch/nightly")
    assert _verify(repo, tmp_path, 1 << 30, elsewhere).startswith("NOT OK")


def test_a_damaged_pack_is_named_by_the_file_it_held(repo: Path, tmp_path: Path) -> None:
    _back_up(repo, _data(tmp_path / "data"), *TAGS)
    pack = max(
        (p for p in (repo / "data").rglob("*") if p.is_file()), key=lambda p: p.stat().st_size
    )
    raw = bytearray(pack.read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    pack.chmod(0o600)
    pack.write_bytes(bytes(raw))
    with _repository(repo) as restic:
        verdicts, check = verify_hosts(
            restic,
            [HOST],
            OWNER,
            session="nightly-1",
            budget=1 << 30,
            scratch=tmp_path / "scratch" / "restored",
            seed="x",
        )
    (verdict,) = verdicts
    assert not verdict.ok
    assert any("/sub/big.bin: restic: " in p for p in verdict.problems), verdict.problems
    assert not check.ok  # restic check reads that pack too (the budget leaves enough)
