"""Verification's cost: what the verification Job runs vs ``restic restore`` + ``restic check``
of the same snapshot, run directly, in one run.

    .venv/bin/python -m bench.verify [--size-mb 500] [--rounds 3] [--budget-mb 1024]

Writes ``--size-mb`` of incompressible files, backs them up once (untimed, tagged as a session's
snapshot is), then per round and in alternating order, each side with a cold restic cache (a
Job's is an emptyDir) and an empty scratch folder:

- **plain**: ``restic restore <snapshot> --target <scratch>`` then ``restic check
  --read-data-subset=<what the budget leaves>``, as a user would check a backup by hand;
- **verify**: exactly the verification Job's work after its API reads
  (``agent.verify_backup.verify_hosts``: the host's snapshot of the session restored whole,
  chosen by its tags in the same run, with ``--verify``, the copy held against restic's count
  of the tree; then ``restic check`` reading what the budget leaves).

Prints medians and the ratio DESIGN.md section 6 sets a target for (verify <= 1.2x plain).
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from agent.verify_backup import CHECK_READ_LIMIT, HostSnapshot, verify_hosts
from api.repository import Repository
from api.tags import SnapshotOwner
from bench.backup import PASSWORD, init, write_data
from devcluster.build import use_pinned_restic
from engine.backend import backend_config
from engine.restic import Restic

TAGS = "namespace:bench,invoker:BackupBatch/bench,target:Deployment/web,session:bench-1"
TARGET = 1.2


def _env(repo: Path) -> dict[str, str]:
    return {**os.environ, "RESTIC_REPOSITORY": str(repo), "RESTIC_PASSWORD": PASSWORD}


def back_up(repo: Path, data: Path) -> str:
    """The snapshot to verify (untimed)."""
    done = subprocess.run(
        [
            "restic",
            "backup",
            "--host",
            "host-0",
            "--tag",
            TAGS,
            "--no-cache",
            "--json",
            "-q",
            str(data),
        ],
        env=_env(repo),
        check=True,
        capture_output=True,
        text=True,
    )
    for line in done.stdout.splitlines():
        if '"snapshot_id"' in line:
            return line.split('"snapshot_id":"')[1].split('"')[0]
    raise SystemExit(f"no snapshot in restic's output: {done.stdout[-300:]}")


def plain(repo: Path, snapshot: str, scratch: Path, cache: Path, check_bytes: int) -> float:
    started = time.perf_counter()
    subprocess.run(
        ["restic", "restore", snapshot, "--target", str(scratch), "--cache-dir", str(cache)],
        env=_env(repo),
        check=True,
        stdout=subprocess.DEVNULL,
    )
    check = ["restic", "check", "--cache-dir", str(cache)]
    if check_bytes > 0:
        check.append(f"--read-data-subset={max(check_bytes // 1024, 1)}K")
    subprocess.run(check, env=_env(repo), check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - started


def verified(  # noqa: PLR0917 - one side of the comparison, all it needs
    repo: Path, snapshot: str, size: int, scratch: Path, cache: Path, budget: int
) -> float:
    repository = Repository.model_validate(
        {
            "apiVersion": "stash.appscode.com/v1alpha1",
            "kind": "Repository",
            "metadata": {"name": "bench"},
            "spec": {"backend": {"local": {"mountPath": str(repo)}}},
        }
    )
    config = backend_config(repository, {"RESTIC_PASSWORD": PASSWORD})
    # what the session recorded of its one host: the snapshot and its size
    host = HostSnapshot("Deployment/web", "host-0", snapshot, size)
    with Restic(config, cache_dir=cache) as r:
        started = time.perf_counter()
        verdicts, check = verify_hosts(
            r,
            [host],
            SnapshotOwner("bench", "bench", "BackupBatch/bench"),
            session="bench-1",
            budget=budget,
            scratch=scratch,
            seed="bench",
        )
        elapsed = time.perf_counter() - started
    if not verdicts or not all(v.ok for v in verdicts) or not check.ok:
        raise SystemExit(f"verification failed: {[v.says() for v in verdicts]} / {check.message}")
    return elapsed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mb", type=int, default=500)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--budget-mb", type=int, default=1024, help="verify-max-bytes")
    args = parser.parse_args()
    binary = use_pinned_restic(progress=lambda msg: print(msg, file=sys.stderr, flush=True))
    version = subprocess.run([binary, "version"], capture_output=True, text=True, check=True)
    print(version.stdout.strip(), file=sys.stderr)
    work = Path(tempfile.mkdtemp(prefix="stash-bench-verify-"))
    budget = args.budget_mb << 20
    try:
        data, repo = work / "data", work / "repo"
        print(f"writing {args.size_mb} MB of random data ...", file=sys.stderr, flush=True)
        write_data(data, args.size_mb)
        init(repo)
        snapshot = back_up(repo, data)
        size = sum(p.stat().st_size for p in data.rglob("*") if p.is_file())
        # what the check reads, on both sides
        left = min(max(budget - size, 0), CHECK_READ_LIMIT)
        times: dict[str, list[float]] = {}
        for rnd in range(args.rounds):
            order = ["plain", "verify"] if rnd % 2 == 0 else ["verify", "plain"]
            for side in order:
                scratch, cache = work / f"{side}-{rnd}-scratch", work / f"{side}-{rnd}-cache"
                if side == "plain":
                    elapsed = plain(repo, snapshot, scratch, cache, left)
                else:
                    elapsed = verified(repo, snapshot, size, scratch, cache, budget)
                shutil.rmtree(scratch, ignore_errors=True)
                shutil.rmtree(cache, ignore_errors=True)
                times.setdefault(side, []).append(elapsed)
                print(f"  round {rnd + 1} {side:7} {elapsed:6.2f} s", file=sys.stderr, flush=True)
        p, v = statistics.median(times["plain"]), statistics.median(times["verify"])
        print(
            f"\n{args.size_mb} MB, budget {args.budget_mb} MiB (check reads {left >> 20} MiB), "
            f"{args.rounds} rounds, medians (seconds)\n"
        )
        print(f"{'restore + check (floor)':>24} {'verification':>13} {'ratio':>7}")
        print(f"{p:24.2f} {v:13.2f} {v / p:7.3f}")
        print(
            f"\ntarget: verification <= {TARGET}x restic restore + restic check: "
            f"{'met' if v / p <= TARGET else 'MISSED'} ({v / p:.3f}x)"
        )
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
