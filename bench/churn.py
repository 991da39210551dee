"""Benchmark the operator's memory under churn (DESIGN.md section 6; the hostile-input issue).
Run: .venv/bin/python bench/churn.py [--rounds 12] [--batches 100]

On a fresh local control plane, with the operator running as a process: each round creates
``--batches`` BackupBatches (two Deployments by sidecar and one PVC through pvc-backup each,
spread over 10 namespaces), waits until every one is Ready, starts one BackupSession per
batch and waits until each is Running, then deletes all of it (batches, sessions, workloads,
claims) and waits until the operator's own children are gone. The operator's RSS is read after
each round, once things have settled.

The floor is the operator's own RSS after the first round (everything it loads, warmed up),
read in the same run. Targets: RSS <= 100 MB at every round, and bounded: the last round's RSS
at most 1.2x the floor, and the growth over the second half of the rounds under 1 MB per
1,000 objects churned (what an object leaves behind in memory once it is gone).
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.controller import (  # noqa: E402
    NAMESPACES,
    batch_objects,
    install_stash,
    namespace_objects,
    start_operator,
)
from bench.measure import memory_mb  # noqa: E402
from controller.runtime.caches import BACKUP_BATCHES, BACKUP_SESSIONS, CRONJOBS  # noqa: E402
from devcluster import ControlPlane, ensure_binaries  # noqa: E402
from kube import Client  # noqa: E402
from kube.sessions import create_session  # noqa: E402
from kube.types import DEPLOYMENTS, PVCS  # noqa: E402

PREFIX = "churn"
RSS_LIMIT = 100.0  # MB, at every round
BOUND = 1.2  # the last round's RSS over the first round's
GROWTH_LIMIT = 1.0  # MB per 1,000 objects churned, over the second half of the rounds
OBJECTS_PER_BATCH = 5  # the batch, two Deployments, a PVC, a session


def _namespace(i: int) -> str:
    return f"{PREFIX}-{i % NAMESPACES}"


def _round_objects(round_: int, count: int) -> list[dict[str, Any]]:
    objs: list[dict[str, Any]] = []
    for i in range(count):
        objs += batch_objects(f"{round_}-{i}", _namespace(i))
    return objs


def _count(client: Client, rt: Any, check: Any = None) -> int:
    return sum(
        1
        for i in range(NAMESPACES)
        for obj in client.list(rt, f"{PREFIX}-{i}")["items"]
        if check is None or check(obj)
    )


def _wait(what: str, done: Any, timeout: float = 600) -> None:
    deadline = time.monotonic() + timeout
    while not done():
        if time.monotonic() > deadline:
            raise SystemExit(f"churn: {what} did not happen within {timeout:.0f} s")
        time.sleep(0.5)


def _phase_is(*phases: str) -> Any:
    return lambda obj: (obj.get("status") or {}).get("phase") in phases


def _round(client: Client, pool: ThreadPoolExecutor, round_: int, count: int) -> None:
    objs = _round_objects(round_, count)
    list(pool.map(client.create, objs))
    _wait("every batch Ready", lambda: _count(client, BACKUP_BATCHES, _phase_is("Ready")) >= count)
    batches = [o for o in objs if o["kind"] == "BackupBatch"]
    list(
        pool.map(
            lambda b: create_session(
                client, "BackupBatch", b["metadata"]["name"], b["metadata"]["namespace"]
            ),
            batches,
        )
    )
    _wait(
        "every session Running",
        lambda: _count(client, BACKUP_SESSIONS, _phase_is("Running")) >= count,
    )

    def delete(obj: dict[str, Any]) -> None:
        rt = {"Deployment": DEPLOYMENTS, "PersistentVolumeClaim": PVCS}.get(obj["kind"])
        meta = obj["metadata"]
        client.delete(rt or BACKUP_BATCHES, meta["name"], meta["namespace"], missing_ok=True)

    list(pool.map(delete, objs))
    # the sessions and CronJobs go with their batch (owner references, the garbage collector)
    _wait(
        "the round's objects gone",
        lambda: _count(client, BACKUP_SESSIONS) == 0 and _count(client, CRONJOBS) == 0,
    )


def _growth_per_thousand(samples: list[float], per_round: int) -> float:
    """The least-squares slope of RSS over the second half of the rounds, per 1,000 objects."""
    half = samples[len(samples) // 2 :]
    xs = [float(i * per_round) for i in range(len(half))]
    mean_x, mean_y = sum(xs) / len(xs), sum(half) / len(half)
    var = sum((x - mean_x) ** 2 for x in xs)
    slope = sum((x - mean_x) * (y - mean_y) for x, y in zip(xs, half, strict=True)) / var
    return slope * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=12)
    parser.add_argument("--batches", type=int, default=100, help="batches per round")
    args = parser.parse_args()
    if args.rounds < 4:  # the first is the floor; the slope needs two rounds after half
        parser.error(
            "--rounds must be at least 4 (the first round is the floor, and the growth is a "
            "slope over the second half)"
        )

    work = Path(tempfile.mkdtemp(prefix="stash-bench-churn-"))
    plane = ControlPlane(work / "cp", ensure_binaries(), progress=lambda _: None)
    plane.start()
    operator: subprocess.Popen[bytes] | None = None
    try:
        client = Client.from_kubeconfig(str(plane.kubeconfig))
        install_stash(client)
        for obj in namespace_objects(PREFIX):
            client.create(obj)
        operator = start_operator(plane, work)
        per_round = args.batches * OBJECTS_PER_BATCH
        samples: list[float] = []
        started = time.monotonic()
        with ThreadPoolExecutor(8) as pool:
            for round_ in range(args.rounds):
                _round(client, pool, round_, args.batches)
                time.sleep(2)  # the last events of the deletions reach the operator
                rss, _ = memory_mb(operator.pid)
                samples.append(rss)
                print(
                    f"round {round_ + 1}/{args.rounds}: {per_round * (round_ + 1)} objects "
                    f"churned, operator RSS {rss:.1f} MB ({time.monotonic() - started:.0f} s)",
                    flush=True,
                )
        _, peak = memory_mb(operator.pid)
        if operator.poll() is not None:
            raise SystemExit(f"churn: the operator exited ({operator.returncode})")
    finally:
        if operator is not None:
            operator.terminate()
            operator.wait(30)
        plane.stop()
        shutil.rmtree(work, ignore_errors=True)

    floor, last = samples[0], samples[-1]
    growth = _growth_per_thousand(samples, per_round)
    total = per_round * args.rounds
    print(f"\n## Operator memory under churn: {args.rounds} rounds x {args.batches} batches\n")
    print(
        f"{total} objects created and deleted ({per_round} a round: batch, 2 Deployments, "
        "PVC, session)\n"
    )
    print("| measure | measured | floor (round 1) | ratio | target |")
    print("|---|---:|---:|---:|---|")
    print(
        f"| RSS after the last round (MB) | {last:.1f} | {floor:.1f} | {last / floor:.2f}x "
        f"| <= {BOUND}x |"
    )
    print(f"| peak RSS (MB) | {peak:.1f} | | | <= {RSS_LIMIT:.0f} |")
    print(
        f"| growth over the second half (MB per 1,000 objects) | {growth:.2f} | | | "
        f"< {GROWTH_LIMIT:.1f} |"
    )
    ok = last <= floor * BOUND and peak <= RSS_LIMIT and growth < GROWTH_LIMIT
    print(f"\n{'met' if ok else 'NOT met'}")


if __name__ == "__main__":
    main()
