"""Benchmark a new session's reconcile beside a long history (DESIGN.md section 6, issue 15).
Run: .venv/bin/python bench/history.py

On a fresh local control plane, two namespaces with the same BackupBatch (one PVC member
through pvc-backup, a schedule that does not fire during the run): ``history`` also holds
10,000 finished BackupSessions of that batch (kept by ``backupHistoryLimit``), ``fresh`` none.
The operator runs as its own process over both. Then, alternating between the namespaces, a
new BackupSession is created, the time until the operator has created its backup Job is
measured (from a watch on Jobs), and the session is deleted so that the next one is not
skipped behind it. The operator's own ``controller_runtime_reconcile_time_seconds`` for the
sessions controller is read before and after each namespace's rounds. The floor is the fresh
namespace in the same run: the target is a history namespace no slower than it.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from api.objects import JSON

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from api import constants as c  # noqa: E402
from api.tenancy import HOST_PATH, PRIVILEGES_ANNOTATION  # noqa: E402
from bench.controller import install_stash, repository_objects  # noqa: E402
from bench.measure import memory_mb  # noqa: E402
from controller.runtime.caches import BACKUP_BATCHES, BACKUP_SESSIONS, JOBS  # noqa: E402
from devcluster import ControlPlane, ensure_binaries  # noqa: E402
from kube import Client, KubeError  # noqa: E402
from kube.sessions import new_session  # noqa: E402
from tests.factories import batch, member  # noqa: E402

NAMESPACES = ("fresh", "history")
BATCH = "nightly"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _setup(client: Client, namespace: str) -> str:
    """The namespace, its Secret, Repository, PVC and batch; the batch's uid."""
    client.create(
        {
            "apiVersion": "v1",
            "kind": "Namespace",
            # the local Repository is on the node: as an admin allows it (api.tenancy)
            "metadata": {"name": namespace, "annotations": {PRIVILEGES_ANNOTATION: HOST_PATH}},
        }
    )
    for obj in repository_objects(namespace):
        client.create(obj)
    client.create(
        {
            "apiVersion": "v1",
            "kind": "PersistentVolumeClaim",
            "metadata": {"name": "data", "namespace": namespace},
            "spec": {
                "accessModes": ["ReadWriteOnce"],
                "resources": {"requests": {"storage": "1Gi"}},
            },
        }
    )
    obj = batch(
        BATCH,
        namespace,
        member("PersistentVolumeClaim", "data", task="pvc-backup"),
        schedule="0 0 1 1 *",  # not during the run: only the benchmark's sessions
        backupHistoryLimit=100_000,  # the history stays
    )
    return str(client.create(obj)["metadata"]["uid"])


def finished_status(i: int) -> JSON:
    """A finished session's status as the operator leaves it: one target, one host's stats,
    the follow-up conditions."""
    when = f"2026-01-01T{i % 24:02}:00:00Z"

    def condition(kind: str, reason: str) -> JSON:
        return {"type": kind, "status": "True", "reason": reason, "message": reason,
                "lastTransitionTime": when}  # fmt: skip

    return {
        "phase": "Succeeded",
        "sessionDuration": "4.2s",
        "targets": [
            {
                "ref": {"apiVersion": "v1", "kind": "PersistentVolumeClaim", "name": "data"},
                "totalHosts": 1,
                "phase": "Succeeded",
                "stats": [
                    {
                        "hostname": "host-0",
                        "phase": "Succeeded",
                        "duration": "3.1s",
                        "snapshots": [
                            {
                                "name": f"{i:08x}",
                                "path": "/stash-data/data",
                                "totalSize": "12.3 MiB",
                                "uploaded": "1.1 MiB",
                                "processingTime": "0:01",
                                "fileStats": {
                                    "totalFiles": 120,
                                    "newFiles": 3,
                                    "modifiedFiles": 2,
                                    "unmodifiedFiles": 115,
                                },
                            }
                        ],
                    }
                ],
                "conditions": [
                    condition(c.BACKUP_EXECUTOR_ENSURED, "SuccessfullyEnsuredBackupExecutor")
                ],
            }
        ],
        "conditions": [
            condition(c.RETENTION_POLICY_APPLIED, "SuccessfullyAppliedRetentionPolicy"),
            condition(c.REPOSITORY_INTEGRITY_VERIFIED, "SuccessfullyVerifiedRepositoryIntegrity"),
            condition(c.BACKUP_HISTORY_CLEANED, "SuccessfullyCleanedBackupHistory"),
        ],
    }


def fill_history(client: Client, namespace: str, invoker: str, uid: str, count: int) -> None:
    """``count`` finished sessions of BackupBatch ``invoker``, an hour apart, in the past."""
    base = int(time.time()) - 3600 * (count + 1)

    def one(i: int) -> None:
        body = new_session("BackupBatch", invoker, uid, namespace, unix_seconds=base + 3600 * i)
        made = client.create(body)
        client.patch(
            BACKUP_SESSIONS,
            made["metadata"]["name"],
            {"status": finished_status(i)},
            namespace=namespace,
            subresource="status",
        )

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(one, range(count)))


class _JobWatch:
    """When each backup Job appeared (a watch on Jobs of every namespace)."""

    def __init__(self, client: Client) -> None:
        self.seen: dict[str, float] = {}
        self.cond = threading.Condition()
        self._client = client
        threading.Thread(target=self._run, daemon=True).start()

    def _run(self) -> None:
        version = self._client.list(JOBS)["metadata"]["resourceVersion"]
        try:
            while True:
                watch = self._client.watch(JOBS, resource_version=version, timeout_seconds=600)
                for event in watch:
                    meta = event["object"]["metadata"]
                    version = meta.get("resourceVersion", version)
                    if event["type"] == "ADDED":
                        with self.cond:
                            self.seen.setdefault(meta["name"], time.monotonic())
                            self.cond.notify_all()
        except KubeError:  # the control plane stopped at the end of the run
            return

    def wait(self, name: str, timeout: float = 60.0) -> float | None:
        with self.cond:
            self.cond.wait_for(lambda: name in self.seen, timeout)
            return self.seen.get(name)


def _reconcile_time(port: int) -> tuple[float, float]:
    """(sum of seconds, count) of the sessions controller's reconciles so far."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        text = response.read().decode()
    found = {}
    for kind in ("sum", "count"):
        pattern = (
            rf'^controller_runtime_reconcile_time_seconds_{kind}{{controller="sessions"}} (\S+)'
        )
        match = re.search(pattern, text, re.M)
        found[kind] = float(match.group(1)) if match else 0.0
    return found["sum"], found["count"]


def _wait_gone(client: Client, namespace: str, name: str) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        names = [s["metadata"]["name"] for s in client.list(BACKUP_SESSIONS, namespace)["items"]
                 if s["metadata"]["name"] == name]  # fmt: skip
        if not names:
            return
        time.sleep(0.05)


def _round(client: Client, jobs: _JobWatch, namespace: str, uid: str, second: int) -> float:
    """Create one session, wait for its Job, delete it; the seconds from create to Job."""
    body = new_session("BackupBatch", BATCH, uid, namespace, unix_seconds=second)
    name = body["metadata"]["name"]
    started = time.monotonic()
    client.create(body)
    appeared = jobs.wait(f"stash-backup-{name}-0")
    if appeared is None:
        raise SystemExit(f"no backup Job for {namespace}/{name} within 60 s")
    client.delete(BACKUP_SESSIONS, name, namespace)
    _wait_gone(client, namespace, name)
    return appeared - started


def _start_operator(plane: ControlPlane, work: Path, port: int) -> subprocess.Popen[bytes]:
    env = {**os.environ, "KUBECONFIG": str(plane.kubeconfig), "STASH_LOG_LEVEL": "WARNING"}
    log = (work / "operator.log").open("wb")
    return subprocess.Popen(
        [sys.executable, "-m", "cli.main", "operator", "--no-leader-elect",
         "--image", "stash-py:bench", "--health-port", str(port)],
        cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip


def _wait_ready(client: Client, operator: subprocess.Popen[bytes]) -> None:
    """Until the operator has listed its caches and judged both batches Ready."""
    while True:
        try:
            batches = [client.get(BACKUP_BATCHES, BATCH, ns) for ns in NAMESPACES]
            if all((b.get("status") or {}).get("phase") == "Ready" for b in batches):
                return
        except Exception:  # noqa: S110 - not there yet
            pass
        if operator.poll() is not None:
            raise SystemExit("the operator exited before the batches were Ready")
        time.sleep(0.1)


class _Measured:
    def __init__(self) -> None:
        self.latencies: dict[str, list[float]] = {ns: [] for ns in NAMESPACES}
        self.reconcile: dict[str, list[float]] = {ns: [0.0, 0.0] for ns in NAMESPACES}

    def p50_ms(self, ns: str) -> float:
        return statistics.median(self.latencies[ns]) * 1000

    def max_ms(self, ns: str) -> float:
        return max(self.latencies[ns]) * 1000

    def reconcile_ms(self, ns: str) -> float:
        total, count = self.reconcile[ns]
        return total / count * 1000 if count else 0.0


def _measure(client: Client, uids: dict[str, str], port: int, rounds: int) -> _Measured:
    jobs = _JobWatch(client)
    measured = _Measured()
    second = int(time.time()) + 10
    for i in range(rounds):
        for ns in NAMESPACES if i % 2 == 0 else reversed(NAMESPACES):
            before = _reconcile_time(port)
            second += 1
            measured.latencies[ns].append(_round(client, jobs, ns, uids[ns], second))
            after = _reconcile_time(port)
            measured.reconcile[ns][0] += after[0] - before[0]
            measured.reconcile[ns][1] += after[1] - before[1]
    return measured


def _print_table(args: argparse.Namespace, m: _Measured, ready: float, rss: float) -> None:
    print(f"\n## A new session beside {args.history} finished ones, {args.rounds} rounds\n")
    print("| measure | history | fresh (floor) | ratio | target |")
    print("|---|---:|---:|---:|---|")
    rows = (
        ("session created -> its backup Job created, p50 (ms)", m.p50_ms),
        ("sessions controller reconcile, mean (ms)", m.reconcile_ms),
    )
    for label, value in rows:
        hist, fresh = value("history"), value("fresh")
        print(f"| {label} | {hist:.2f} | {fresh:.2f} | {hist / fresh:.2f}x | independent |")
    print(f"| session created -> its backup Job created, max (ms) | {m.max_ms('history'):.2f} "
          f"| {m.max_ms('fresh'):.2f} | | |")  # fmt: skip
    print(f"\noperator: start -> both batches Ready {ready:.1f} s; RSS {rss:.0f} MB holding "
          f"{args.history} finished sessions")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--history", type=int, default=10_000, help="finished sessions kept")
    parser.add_argument("--rounds", type=int, default=20, help="new sessions per namespace")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="stash-bench-history-"))
    plane = ControlPlane(work / "cp", ensure_binaries(), progress=lambda _: None)
    plane.start()
    operator: subprocess.Popen[bytes] | None = None
    try:
        client = Client.from_kubeconfig(str(plane.kubeconfig))
        install_stash(client)
        uids = {ns: _setup(client, ns) for ns in NAMESPACES}
        started = time.monotonic()
        fill_history(client, "history", BATCH, uids["history"], args.history)
        print(f"{args.history} finished sessions in {time.monotonic() - started:.1f}s", flush=True)

        port = _free_port()
        t0 = time.monotonic()
        operator = _start_operator(plane, work, port)
        _wait_ready(client, operator)
        ready = time.monotonic() - t0
        # the start-up reconciles of the history drain
        while _reconcile_time(port)[1] < args.history:
            time.sleep(0.2)
        measured = _measure(client, uids, port, args.rounds)
        rss, _ = memory_mb(operator.pid)
        _print_table(args, measured, ready, rss)
    finally:
        if operator is not None:
            operator.terminate()
            operator.wait(30)
        plane.stop()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
