"""Benchmark the operator (DESIGN.md section 6). Run: .venv/bin/python bench/controller.py

On a fresh local control plane: 1,000 BackupBatches x 3 members (two Deployments in sidecar
mode, one PVC through pvc-backup) across 10 namespaces, created before the operator starts.
Measures the time from operator start until every trigger CronJob exists and every targeted
Deployment's pod template carries the opt-in label, the operator's memory (RSS, and its peak),
and the API requests it makes in 30 s once nothing changes (from the API server's own
apiserver_request_total). Targets: within 60 s, RSS under 150 MB, zero writes when idle.
"""

from __future__ import annotations

import argparse
import os
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

from api import constants as c  # noqa: E402
from api.crd import all_crds  # noqa: E402
from bench.measure import memory_mb, request_counts  # noqa: E402
from controller.caches import BACKUP_BATCHES, CRONJOBS, DEPLOYMENTS  # noqa: E402
from devcluster import ControlPlane, ensure_binaries  # noqa: E402
from kube import Client  # noqa: E402
from kube.crds import install_crds  # noqa: E402
from tests.factories import batch, member  # noqa: E402

NAMESPACES = 10
# Requests only the operator makes here (kube-controller-manager also writes Deployments, but
# their status; the operator runs without leader election in this benchmark).
OPERATOR_WRITES = {
    ("APPLY", "cronjobs", ""),
    ("APPLY", "roles", ""),
    ("APPLY", "rolebindings", ""),
    ("APPLY", "serviceaccounts", ""),
    ("APPLY", "tasks", ""),
    ("APPLY", "functions", ""),
    ("PATCH", "deployments", ""),
    ("PATCH", "backupbatches", "status"),
    ("PATCH", "backupsessions", "status"),
    ("POST", "jobs", ""),
    ("POST", "backupsessions", ""),
}
OPERATOR_READS = {("GET", "secrets", ""), ("LIST", "backupbatches", "")}


def _objects(count: int) -> list[dict[str, Any]]:
    objs: list[dict[str, Any]] = []
    for ns_index in range(NAMESPACES):
        ns = f"bench-{ns_index}"
        objs.append(
            {
                "apiVersion": "v1",
                "kind": "Secret",
                "metadata": {"name": "repo-secret", "namespace": ns},
                "stringData": {"RESTIC_PASSWORD": "bench-only"},
            }
        )
        objs.append(
            {
                "apiVersion": c.V1ALPHA1,
                "kind": "Repository",
                "metadata": {"name": "repo", "namespace": ns},
                "spec": {
                    "backend": {
                        "local": {"mountPath": "/r", "hostPath": {"path": "/r"}},
                        "storageSecretName": "repo-secret",
                    }
                },
            }
        )
    for i in range(count):
        ns = f"bench-{i % NAMESPACES}"
        for role in ("web", "api"):
            objs.append(
                {
                    "apiVersion": "apps/v1",
                    "kind": "Deployment",
                    "metadata": {"name": f"{role}-{i}", "namespace": ns},
                    "spec": {
                        "replicas": 0,
                        "selector": {"matchLabels": {"app": f"{role}-{i}"}},
                        "template": {
                            "metadata": {"labels": {"app": f"{role}-{i}"}},
                            "spec": {
                                "containers": [{"name": "c", "image": "nginx"}],
                                "volumes": [{"name": "data", "emptyDir": {}}],
                            },
                        },
                    },
                }
            )
        objs.append(
            {
                "apiVersion": "v1",
                "kind": "PersistentVolumeClaim",
                "metadata": {"name": f"data-{i}", "namespace": ns},
                "spec": {
                    "accessModes": ["ReadWriteOnce"],
                    "resources": {"requests": {"storage": "1Gi"}},
                },
            }
        )
        obj = batch(
            f"b-{i}",
            ns,
            member("Deployment", f"web-{i}"),
            member("Deployment", f"api-{i}"),
            member("PersistentVolumeClaim", f"data-{i}", task="pvc-backup"),
        )
        obj["spec"]["repository"] = {"name": "repo"}
        objs.append(obj)
    return objs


def _wait_converged(client: Client, batches: int) -> tuple[int, int]:
    """Poll until every CronJob and opt-in label is in place (or 10 minutes passed)."""
    deadline = time.monotonic() + 600
    cronjobs = labelled = 0
    while time.monotonic() < deadline:
        cronjobs = sum(len(client.list(CRONJOBS, f"bench-{i}")["items"]) for i in range(NAMESPACES))
        labelled = sum(
            1
            for i in range(NAMESPACES)
            for d in client.list(DEPLOYMENTS, f"bench-{i}")["items"]
            if (d["spec"]["template"]["metadata"].get("labels") or {}).get(c.BACKUP_LABEL)
        )
        if cronjobs >= batches and labelled >= 2 * batches:
            break
        time.sleep(1.0)
    return cronjobs, labelled


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--batches", type=int, default=1000)
    parser.add_argument("--idle", type=int, default=30, help="seconds of idleness to watch")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="stash-bench-ctl-"))
    plane = ControlPlane(work / "cp", ensure_binaries(), progress=lambda _: None)
    plane.start()
    operator: subprocess.Popen[bytes] | None = None
    try:
        client = Client.from_kubeconfig(str(plane.kubeconfig))
        install_crds(client, all_crds(), field_manager="bench")
        for i in range(NAMESPACES):
            client.create(
                {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": f"bench-{i}"}}
            )
        objs = _objects(args.batches)
        started = time.monotonic()
        with ThreadPoolExecutor(8) as pool:
            list(pool.map(client.create, objs))
        print(f"created {len(objs)} objects in {time.monotonic() - started:.1f}s", flush=True)

        log = (work / "operator.log").open("wb")
        env = {**os.environ, "KUBECONFIG": str(plane.kubeconfig), "STASH_LOG_LEVEL": "WARNING"}
        t0 = time.monotonic()
        operator = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "cli.main",
                "operator",
                "--no-leader-elect",
                "--image",
                "stash-py:bench",
            ],
            cwd=ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        cronjobs, labelled = _wait_converged(client, args.batches)
        converged = time.monotonic() - t0
        ready = sum(
            1
            for i in range(NAMESPACES)
            for b in client.list(BACKUP_BATCHES, f"bench-{i}")["items"]
            if (b.get("status") or {}).get("phase") == "Ready"
        )
        time.sleep(5)  # let the last status writes land
        rss, peak = memory_mb(operator.pid)
        before = request_counts(client)
        time.sleep(args.idle)
        after = request_counts(client)
        rss_idle, peak = memory_mb(operator.pid)
        delta = {key: after.get(key, 0) - before.get(key, 0) for key in after}
        writes = sum(v for k, v in delta.items() if k in OPERATOR_WRITES)
        reads = sum(v for k, v in delta.items() if k in OPERATOR_READS)

        print(f"\n## Operator: {args.batches} BackupBatches x 3 members, {NAMESPACES} namespaces\n")
        print("| measure | value | target |")
        print("|---|---:|---|")
        print(
            f"| operator start -> all CronJobs and opt-in labels in place | {converged:.1f} s "
            f"({cronjobs} CronJobs, {labelled} labelled Deployments) | <= 60 s |"
        )
        print(f"| BackupBatches Ready | {ready} / {args.batches} | all |")
        print(
            f"| operator RSS after converging / after idling / peak | {rss:.0f} / "
            f"{rss_idle:.0f} / {peak:.0f} MB | < 150 MB |"
        )
        print(f"| operator API writes in {args.idle} s with nothing changing | {int(writes)} | 0 |")
        print(f"| operator reads (GET Secret, LIST) in that window | {int(reads)} | no polling |")
    finally:
        if operator is not None:
            operator.terminate()
            operator.wait(30)
        plane.stop()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
