"""Backup speed: the sidecar's path vs plain ``restic backup`` of the same data, in one run.

    .venv/bin/python -m bench.backup [--size-mb 500] [--rounds 3]

Writes ``--size-mb`` of incompressible files, then per round and in alternating order: a fresh
local repository for each side (initialised untimed, as a repository is once), a first backup,
and an unchanged re-backup. "plain" is ``restic backup`` with a cache, as a user would run it;
"sidecar" is exactly what the sidecar runs per session (``agent.host_backup.back_up_paths``:
stale-lock check, the backup with session/target tags, the result). Prints medians and the
ratios DESIGN.md section 6 sets targets for (first <= 1.10x, unchanged <= restic + 0.5 s).
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

from agent.host_backup import BackupOptions, HostJob, back_up_paths
from api.repository import Repository
from devcluster.build import use_pinned_restic
from engine.backend import backend_config
from engine.restic import Restic

PASSWORD = "bench-password"  # noqa: S105 - a throwaway benchmark repository


def write_data(root: Path, size_mb: int) -> None:
    root.mkdir(parents=True)
    per_file = 5
    for index in range(max(1, size_mb // per_file)):
        sub = root / f"dir-{index % 10}"
        sub.mkdir(exist_ok=True)
        (sub / f"file-{index}.bin").write_bytes(os.urandom(per_file * 2**20))


def plain(repo: Path, cache: Path, data: Path) -> float:
    env = {**os.environ, "RESTIC_REPOSITORY": str(repo), "RESTIC_PASSWORD": PASSWORD}
    started = time.perf_counter()
    subprocess.run(
        [
            "restic",
            "backup",
            "--host",
            "host-0",
            "--cache-dir",
            str(cache),
            "--json",
            "-q",
            str(data),
        ],
        env=env,
        check=True,
        stdout=subprocess.DEVNULL,
    )
    return time.perf_counter() - started


def init(repo: Path) -> None:
    env = {**os.environ, "RESTIC_REPOSITORY": str(repo), "RESTIC_PASSWORD": PASSWORD}
    subprocess.run(["restic", "init"], env=env, check=True, stdout=subprocess.DEVNULL)


def sidecar(repo: Path, cache: Path, state: Path, data: Path, session: str) -> float:
    repository = Repository.model_validate(
        {
            "apiVersion": "stash.appscode.com/v1alpha1",
            "kind": "Repository",
            "metadata": {"name": "bench"},
            "spec": {"backend": {"local": {"mountPath": str(repo)}}},
        }
    )
    job = HostJob("bench", session, "BackupBatch", "bench", "Deployment", "web", "host-0")
    with Restic(backend_config(repository, {"RESTIC_PASSWORD": PASSWORD}), cache_dir=cache) as r:
        started = time.perf_counter()
        result = back_up_paths(r, job, [str(data)], options=BackupOptions(attempts_dir=state))
        elapsed = time.perf_counter() - started
    if not result.succeeded:
        raise SystemExit(f"sidecar backup failed: {result.error}")
    return elapsed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mb", type=int, default=500)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    binary = use_pinned_restic(progress=lambda msg: print(msg, file=sys.stderr, flush=True))
    version = subprocess.run([binary, "version"], capture_output=True, text=True, check=True)
    print(version.stdout.strip(), file=sys.stderr)
    work = Path(tempfile.mkdtemp(prefix="stash-bench-backup-"))
    try:
        data = work / "data"
        print(f"writing {args.size_mb} MB of random data ...", file=sys.stderr, flush=True)
        write_data(data, args.size_mb)
        times: dict[tuple[str, str], list[float]] = {}
        for rnd in range(args.rounds):
            order = ["plain", "sidecar"] if rnd % 2 == 0 else ["sidecar", "plain"]
            for side in order:
                repo, cache, state = (
                    work / f"{side}-{rnd}-{x}" for x in ("repo", "cache", "state")
                )
                init(repo)
                for kind in ("first", "unchanged"):
                    if side == "plain":
                        elapsed = plain(repo, cache, data)
                    else:
                        elapsed = sidecar(repo, cache, state, data, f"bench-{rnd}-{kind}")
                    times.setdefault((side, kind), []).append(elapsed)
                    print(f"  round {rnd + 1} {side:8} {kind:10} {elapsed:6.2f} s", file=sys.stderr)
                shutil.rmtree(repo)
        median = {key: statistics.median(values) for key, values in times.items()}
        print(f"\n{args.size_mb} MB, {args.rounds} rounds, medians (seconds)\n")
        print(f"{'backup':12} {'plain restic':>13} {'sidecar path':>13} {'ratio':>7} {'delta':>7}")
        for kind in ("first", "unchanged"):
            p, s = median[("plain", kind)], median[("sidecar", kind)]
            print(f"{kind:12} {p:13.2f} {s:13.2f} {s / p:7.3f} {s - p:+7.2f}")
        first = median[("sidecar", "first")] / median[("plain", "first")]
        delta = median[("sidecar", "unchanged")] - median[("plain", "unchanged")]
        print(
            f"\ntargets: first <= 1.10x: {'met' if first <= 1.10 else 'MISSED'} ({first:.3f}x); "
            f"unchanged <= restic + 0.5 s: {'met' if delta <= 0.5 else 'MISSED'} ({delta:+.2f} s)"
        )
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
