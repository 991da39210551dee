"""Benchmark the operator beside its floor (DESIGN.md section 6, issue 15 part 3).
Run: .venv/bin/python bench/controller.py

On a fresh local control plane: 1,000 BackupBatches x 3 members (two Deployments in sidecar
mode, one PVC through pvc-backup) across 10 namespaces, created before the operator starts.
Measures the time from operator start until every trigger CronJob exists, every targeted
Deployment's pod template carries the opt-in label and every batch says Ready; the operator's
memory (RSS, and its peak); the API requests it makes in 30 s once nothing changes (from the
API server's own apiserver_request_total). Then, with the operator stopped, the floor: the
same writes for a second set of the same objects, made by a bare client with 16 threads
(``_floor``), its convergence polled the same way; both sides' writes are listed by kind.
Targets: convergence <= 1.5x the floor, RSS <= 100 MB, no writes and no reads when idle.
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

import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from api import constants as c  # noqa: E402
from api.crd import all_crds  # noqa: E402
from api.repository import Repository  # noqa: E402
from api.tenancy import HOST_PATH, PRIVILEGES_ANNOTATION  # noqa: E402
from bench.measure import cpu_seconds, memory_mb, request_counts  # noqa: E402
from controller.invokers.trigger import cronjob, rbac_objects, sidecar_binding  # noqa: E402
from controller.runtime.caches import BACKUP_BATCHES, CRONJOBS, DEPLOYMENTS  # noqa: E402
from devcluster import ControlPlane, ensure_binaries  # noqa: E402
from kube import Client  # noqa: E402
from kube.crds import install_crds  # noqa: E402
from kube.events import EventRecorder  # noqa: E402
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
WRITE_VERBS = {"APPLY", "PATCH", "POST", "PUT", "DELETE", "CREATE", "UPDATE"}
FLOOR_WORKERS = 16
Counts = dict[tuple[str, str, str], float]


def repository_objects(namespace: str) -> list[dict[str, Any]]:
    """A namespace's Secret and Repository ``repo`` (a local backend nobody writes to)."""
    return [
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": "repo-secret", "namespace": namespace},
            "stringData": {"RESTIC_PASSWORD": "bench-only"},
        },
        {
            "apiVersion": c.V1ALPHA1,
            "kind": "Repository",
            "metadata": {"name": "repo", "namespace": namespace},
            "spec": {
                "backend": {
                    "local": {"mountPath": "/r", "hostPath": {"path": "/r"}},
                    "storageSecretName": "repo-secret",
                }
            },
        },
    ]


def namespace_objects(prefix: str) -> list[dict[str, Any]]:
    """The benchmark's namespaces ``<prefix>-0`` … and, after them all, each one's Secret and
    Repository."""
    objs: list[dict[str, Any]] = [
        {
            "apiVersion": "v1",
            "kind": "Namespace",
            # the local Repository is on the node: as an admin allows it (api.tenancy)
            "metadata": {
                "name": f"{prefix}-{i}",
                "annotations": {PRIVILEGES_ANNOTATION: HOST_PATH},
            },
        }
        for i in range(NAMESPACES)
    ]
    for ns_index in range(NAMESPACES):
        objs += repository_objects(f"{prefix}-{ns_index}")
    return objs


def _objects(count: int, prefix: str = "bench") -> list[dict[str, Any]]:
    objs = namespace_objects(prefix)
    for i in range(count):
        objs += batch_objects(str(i), f"{prefix}-{i % NAMESPACES}")
    return objs


def batch_objects(n: str, ns: str) -> list[dict[str, Any]]:
    """One BackupBatch ``b-<n>`` of namespace ``ns`` and what it targets: Deployments
    ``web-<n>`` and ``api-<n>`` (by sidecar, no replicas) and PVC ``data-<n>`` (pvc-backup)."""
    objs: list[dict[str, Any]] = []
    for role in ("web", "api"):
        objs.append(
            {
                "apiVersion": "apps/v1",
                "kind": "Deployment",
                "metadata": {"name": f"{role}-{n}", "namespace": ns},
                "spec": {
                    "replicas": 0,
                    "selector": {"matchLabels": {"app": f"{role}-{n}"}},
                    "template": {
                        "metadata": {"labels": {"app": f"{role}-{n}"}},
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
            "metadata": {"name": f"data-{n}", "namespace": ns},
            "spec": {
                "accessModes": ["ReadWriteOnce"],
                "resources": {"requests": {"storage": "1Gi"}},
            },
        }
    )
    obj = batch(
        f"b-{n}",
        ns,
        member("Deployment", f"web-{n}"),
        member("Deployment", f"api-{n}"),
        member("PersistentVolumeClaim", f"data-{n}", task="pvc-backup"),
    )
    obj["spec"]["repository"] = {"name": "repo"}
    objs.append(obj)
    return objs


def start_operator(plane: ControlPlane, work: Path, *args: str) -> subprocess.Popen[bytes]:
    """``stash operator`` as a process on ``plane`` (one replica, warnings only), its log in
    ``work``/operator.log."""
    env = {**os.environ, "KUBECONFIG": str(plane.kubeconfig), "STASH_LOG_LEVEL": "WARNING"}
    log = (work / "operator.log").open("wb")
    command = ["operator", "--no-leader-elect", "--image", "stash-py:bench", *args]
    return subprocess.Popen(
        [sys.executable, "-m", "cli.main", *command],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )


def install_stash(client: Client) -> None:
    """The CRDs and the ClusterRoles of manifests/rbac that the operator binds (the sidecar's,
    the Jobs'), as an installation has them: without the roles every sidecar is refused, which
    the operator reports and re-checks every 30 s."""
    install_crds(client, all_crds(), field_manager="bench")
    for path in sorted((ROOT / "manifests" / "rbac").glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if doc and doc.get("kind") == "ClusterRole":
                client.apply(doc, field_manager="bench")


def _wait_converged(client: Client, batches: int, prefix: str = "bench") -> tuple[int, int, int]:
    """Poll until every CronJob and opt-in label is in place and every batch says Ready (or
    10 minutes passed): the same polling, and the same load it puts on the API server, for the
    operator and for the floor."""
    deadline = time.monotonic() + 600
    cronjobs = labelled = ready = 0
    while time.monotonic() < deadline:
        cronjobs = sum(
            len(client.list(CRONJOBS, f"{prefix}-{i}")["items"]) for i in range(NAMESPACES)
        )
        labelled = sum(
            1
            for i in range(NAMESPACES)
            for d in client.list(DEPLOYMENTS, f"{prefix}-{i}")["items"]
            if (d["spec"]["template"]["metadata"].get("labels") or {}).get(c.BACKUP_LABEL)
        )
        ready = sum(
            1
            for i in range(NAMESPACES)
            for b in client.list(BACKUP_BATCHES, f"{prefix}-{i}")["items"]
            if (b.get("status") or {}).get("phase") == "Ready"
        )
        if cronjobs >= batches and labelled >= 2 * batches and ready >= batches:
            break
        time.sleep(1.0)
    return cronjobs, labelled, ready


def _writes(before: Counts, after: Counts) -> Counts:
    """The write requests between two readings, by (verb, resource, subresource)."""
    return {
        k: v - before.get(k, 0.0)
        for k, v in after.items()
        if k[0] in WRITE_VERBS and v - before.get(k, 0.0) > 0
    }


def _floor(client: Client, count: int, image: str) -> tuple[float, float, Counts]:
    """The writes the operator makes for ``count`` batches, made by a bare client on a second
    set of the same objects (namespaces floor-*) as fast as the API server takes them: per
    batch its CronJob and RBAC objects (server-side apply), the sidecar RoleBinding, the opt-in
    patch of its two Deployments, its status and its Ready Event; the status and the patches
    are copies of what the operator wrote for the matching bench-* batch."""
    objs = _objects(count, prefix="floor")
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(client.create, objs))
    statuses = {}
    templates = {}
    for i in range(NAMESPACES):
        for b in client.list(BACKUP_BATCHES, f"bench-{i}")["items"]:
            statuses[b["metadata"]["name"]] = b["status"]
        for d in client.list(DEPLOYMENTS, f"bench-{i}")["items"]:
            templates[d["metadata"]["name"]] = (
                d["metadata"].get("annotations") or {},
                d["spec"]["template"]["metadata"],
            )
    invokers = [o for o in objs if o["kind"] == "BackupBatch"]
    for invoker in invokers:  # as the informer delivers it: with its uid
        invoker["metadata"]["uid"] = client.get(
            BACKUP_BATCHES, invoker["metadata"]["name"], invoker["metadata"]["namespace"]
        )["metadata"]["uid"]
    events = EventRecorder(client, "stash-operator")
    cpu: list[float] = []  # each converge's own CPU (the poller's is not the floor's)

    def converge(invoker: dict[str, Any]) -> None:
        started = time.thread_time()
        meta = invoker["metadata"]
        name, namespace = meta["name"], meta["namespace"]
        n = name.removeprefix("b-")
        sidecars = [("Deployment", f"{role}-{n}", "default") for role in ("web", "api")]
        repo = Repository.model_validate(repository_objects(namespace)[1])
        for obj in [*rbac_objects(invoker), *sidecar_binding(invoker, sidecars, repo)]:
            client.apply(obj, field_manager="bench-floor")
        for role in ("web", "api"):
            workload = f"{role}-{name.removeprefix('b-')}"
            annotations, template = templates[workload]
            patch = {
                "metadata": {"annotations": annotations},
                "spec": {"template": {"metadata": template}},
            }
            client.patch(DEPLOYMENTS, workload, patch, namespace=namespace)
        client.apply(cronjob(invoker, image), field_manager="bench-floor")
        client.patch(
            BACKUP_BATCHES, name, {"status": statuses[name]}, namespace=namespace,
            subresource="status",
        )  # fmt: skip
        events.record(invoker, "Normal", "Ready", "the invoker is ready to back up")
        cpu.append(time.thread_time() - started)

    before = request_counts(client)
    started = time.monotonic()
    with ThreadPoolExecutor(1) as poller, ThreadPoolExecutor(FLOOR_WORKERS) as pool:
        converged = poller.submit(_wait_converged, client, count, "floor")
        list(pool.map(converge, invokers))
        converged.result()
    took = time.monotonic() - started
    return took, sum(cpu), _writes(before, request_counts(client))


def _print_table(
    args: argparse.Namespace,
    *,
    converged: float,
    floor: float,
    cpu: tuple[float, float],
    counts: tuple[int, int, int],
    memory: tuple[float, float, float],
    idle: tuple[float, float],
    writes_made: tuple[Counts, Counts],
) -> None:
    cronjobs, labelled, ready = counts
    rss, rss_idle, peak = memory
    writes, reads = idle
    operator_writes, floor_writes = writes_made
    print(f"\n## Operator: {args.batches} BackupBatches x 3 members, {NAMESPACES} namespaces\n")
    print("| measure | operator | floor | ratio | target |")
    print("|---|---:|---:|---:|---|")
    print(
        f"| start -> every CronJob, opt-in label and Ready status in place | "
        f"{converged:.1f} s | {floor:.1f} s | {converged / floor:.2f}x | <= 1.5x |"
    )
    print(f"| CPU used by the operator process / the floor's client (s) | {cpu[0]:.1f} s | "
          f"{cpu[1]:.1f} s | {cpu[0] / cpu[1]:.2f}x | |")  # fmt: skip
    print(f"| CronJobs / labelled Deployments / batches Ready | {cronjobs} / {labelled} / "
          f"{ready} | | | {args.batches} / {2 * args.batches} / {args.batches} |")  # fmt: skip
    print(
        f"| operator RSS after converging / after idling / peak | {rss:.0f} / "
        f"{rss_idle:.0f} / {peak:.0f} MB | | | <= 100 MB |"
    )
    print(f"| API writes in {args.idle} s with nothing changing | {int(writes)} | | | 0 |")
    print(f"| reads (GET Secret, LIST) in that window | {int(reads)} | | | 0 |")
    print("\nwrites made (verb resource/subresource: operator, floor):")
    for key in sorted(set(operator_writes) | set(floor_writes)):
        what = f"{key[0]} {key[1]}" + (f"/{key[2]}" if key[2] else "")
        print(f"  {what}: {operator_writes.get(key, 0):.0f}, {floor_writes.get(key, 0):.0f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--batches", type=int, default=1000)
    parser.add_argument("--idle", type=int, default=30, help="seconds of idleness to watch")
    parser.add_argument("--workers", type=int, help="the operator's --workers (its default)")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="stash-bench-ctl-"))
    plane = ControlPlane(work / "cp", ensure_binaries(), progress=lambda _: None)
    plane.start()
    operator: subprocess.Popen[bytes] | None = None
    try:
        client = Client.from_kubeconfig(str(plane.kubeconfig))
        install_stash(client)
        objs = _objects(args.batches)
        started = time.monotonic()
        for namespace in objs[:NAMESPACES]:
            client.create(namespace)
        with ThreadPoolExecutor(8) as pool:
            list(pool.map(client.create, objs[NAMESPACES:]))
        print(f"created {len(objs)} objects in {time.monotonic() - started:.1f}s", flush=True)

        at_start = request_counts(client)
        t0 = time.monotonic()
        workers = ["--workers", str(args.workers)] if args.workers else []
        operator = start_operator(plane, work, *workers)
        cronjobs, labelled, ready = _wait_converged(client, args.batches)
        converged = time.monotonic() - t0
        operator_cpu = cpu_seconds(operator.pid)
        time.sleep(5)  # let the last writes land
        rss, peak = memory_mb(operator.pid)
        before = request_counts(client)
        operator_writes = _writes(at_start, before)
        time.sleep(args.idle)
        after = request_counts(client)
        rss_idle, peak = memory_mb(operator.pid)
        delta = {key: after.get(key, 0) - before.get(key, 0) for key in after}
        writes = sum(v for k, v in delta.items() if k in OPERATOR_WRITES)
        reads = sum(v for k, v in delta.items() if k in OPERATOR_READS)
        operator.terminate()
        operator.wait(30)
        operator = None

        floor, floor_cpu, floor_writes = _floor(client, args.batches, "stash-py:bench")

        _print_table(
            args,
            converged=converged,
            floor=floor,
            cpu=(operator_cpu, floor_cpu),
            counts=(cronjobs, labelled, ready),
            memory=(rss, rss_idle, peak),
            idle=(writes, reads),
            writes_made=(operator_writes, floor_writes),
        )
    finally:
        if operator is not None:
            operator.terminate()
            operator.wait(30)
        plane.stop()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
