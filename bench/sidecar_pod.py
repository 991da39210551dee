"""Benchmark the idle sidecar on a real pod: its container's cgroup memory beside a floor's.
Run: .venv/bin/python bench/sidecar_pod.py

The dev cluster with its node (containerd, runc, kubelet; the project's image), the webhook and
the operator; a BackupBatch over Deployment web whose namespace keeps ``--history`` finished
BackupSessions. The Deployment's pod gets the ``stash`` sidecar from the webhook, and carries
one more container of the same image, the floor: a Python program that does only what an idle
sidecar must — read its service-account token, LIST and then WATCH the namespace's
BackupSessions over TLS with urllib3. Once both print that they watch and ``--idle`` seconds
have passed, each container's memory cgroup (cgroup v1 on this machine) is read: ``rss``
(anonymous memory: the process's own), ``usage_in_bytes`` (with the page cache it touched),
and the CPU each used while idle (its processes' user and system time). Target: the sidecar
at 35 MB or less.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from api.objects import JSON

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from api import constants as c  # noqa: E402
from bench.controller import install_stash  # noqa: E402
from bench.history import fill_history  # noqa: E402
from bench.measure import cpu_seconds  # noqa: E402
from devcluster import ControlPlane, ensure_binaries  # noqa: E402
from devcluster.images import Builder  # noqa: E402
from devcluster.node import Node  # noqa: E402
from kube import Client, KubeError  # noqa: E402
from kube.types import BACKUP_BATCHES, BACKUP_SESSIONS, PODS  # noqa: E402
from tests.factories import batch, member  # noqa: E402
from tests.integration.helpers import WebhookProcess, running_operator, shared_dir  # noqa: E402
from tests.integration.objects import (  # noqa: E402
    PASSWORD,
    local_repository,
    rolled_out,
    workload,
)

NAMESPACE = "bench"
TARGET_MB = 35.0
FLOOR = r"""
import json, os, ssl, urllib3
account = "/var/run/secrets/kubernetes.io/serviceaccount"
token = open(f"{account}/token").read().strip()
namespace = open(f"{account}/namespace").read().strip()
ctx = ssl.create_default_context(cafile=f"{account}/ca.crt")
pool = urllib3.HTTPSConnectionPool(os.environ["KUBERNETES_SERVICE_HOST"],
                                   int(os.environ["KUBERNETES_SERVICE_PORT"]), ssl_context=ctx,
                                   headers={"Authorization": f"Bearer {token}"})
path = f"/apis/stash.appscode.com/v1beta1/namespaces/{namespace}/backupsessions"
listed = json.loads(pool.request("GET", path).data)
version = listed["metadata"]["resourceVersion"]
del listed
watch = pool.request("GET", f"{path}?watch=1&resourceVersion={version}&timeoutSeconds=3600",
                     preload_content=False)
print("watching", flush=True)
for line in watch.stream():
    pass
"""


def _log(client: Client, pod: str, container: str) -> str:
    path = f"/api/v1/namespaces/{NAMESPACE}/pods/{pod}/log"
    try:
        data = client.request("GET", path, query={"container": container}, accept="*/*", raw=True)
    except KubeError:  # not started yet
        return ""
    return bytes(data).decode(errors="replace")


def _watching_pod(client: Client, timeout: float = 180.0) -> JSON:
    """The web pod, once its sidecar and the floor both say that they watch."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for pod in client.list(PODS, NAMESPACE, label_selector="app=web")["items"]:
            if pod["metadata"].get("deletionTimestamp"):
                continue
            name = pod["metadata"]["name"]
            statuses = (pod.get("status") or {}).get("containerStatuses") or []
            names = {s["name"] for s in statuses if s.get("ready")}
            if {c.SIDECAR_CONTAINER, "floor"} <= names and all(
                "watching" in _log(client, name, container)
                for container in (c.SIDECAR_CONTAINER, "floor")
            ):
                return dict(pod)
        time.sleep(0.5)
    raise SystemExit("the web pod's sidecar and floor did not both watch within 3 minutes")


def _task_pids(node: Node) -> dict[str, int]:
    """Container id -> the PID of its first process (containerd's tasks)."""
    pids = {}
    for line in node.ctr("task", "ls").splitlines()[1:]:
        fields = line.split()
        if len(fields) >= 2 and fields[1].isdigit():
            pids[fields[0]] = int(fields[1])
    return pids


def _memory_cgroup(pid: int) -> Path:
    """The memory cgroup (v1) directory of process ``pid``."""
    for line in Path(f"/proc/{pid}/cgroup").read_text().splitlines():
        _, controllers, path = line.split(":", 2)
        if "memory" in controllers.split(","):
            return Path("/sys/fs/cgroup/memory") / path.lstrip("/")
    raise SystemExit(f"process {pid} has no memory cgroup")


def _container_ids(pod: JSON) -> dict[str, str]:
    return {
        s["name"]: s["containerID"].split("://", 1)[1]
        for s in pod["status"]["containerStatuses"]
        if s.get("containerID")
    }


def _memory(group: Path) -> tuple[float, float]:
    """(rss, usage) of a container's memory cgroup in MB."""
    stat = dict(line.split() for line in (group / "memory.stat").read_text().splitlines())
    usage = int((group / "memory.usage_in_bytes").read_text())
    return int(stat["total_rss"]) / 2**20, usage / 2**20


def _cpu(group: Path) -> float:
    """CPU seconds the processes of a container's cgroup have used."""
    return sum(cpu_seconds(int(pid)) for pid in (group / "cgroup.procs").read_text().split())


def _deployment(data: Path, images: Any) -> JSON:
    web = workload("Deployment", "web", 1, data, images.app.name)
    web["spec"]["template"]["spec"]["containers"].append(
        {"name": "floor", "image": images.stash.name, "command": ["python3", "-c", FLOOR]}
    )
    return web


def _run(client: Client, node: Node, images: Any, work: Path, args: Any) -> None:
    # The history first, as the operator leaves it (kept by backupHistoryLimit), then the
    # webhook, the operator and the pod.
    client.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NAMESPACE}})
    repo = shared_dir(work / "repo")
    local_repository(client, NAMESPACE, str(repo), str(repo), PASSWORD)
    data = shared_dir(work / "data")
    target = member("Deployment", "web", mounts=(("data", str(data)),))
    client.create(batch("nightly", NAMESPACE, target, backupHistoryLimit=100_000), NAMESPACE)
    uid = client.get(BACKUP_BATCHES, "nightly", NAMESPACE)["metadata"]["uid"]
    fill_history(client, NAMESPACE, "nightly", uid, args.history)
    (work / "webhook").mkdir()
    kubeconfig = node.plane.kubeconfig
    hook = WebhookProcess.start(kubeconfig, work / "webhook", image=images.stash.name)
    try:
        with running_operator(kubeconfig, image=images.stash.name):
            client.create(_deployment(data, images), NAMESPACE)
            # the operator's opt-in rolls the pods once: the pod measured is the one after
            deadline = time.monotonic() + 180
            while not rolled_out(client, NAMESPACE, "Deployment", "web"):
                if time.monotonic() > deadline:
                    raise SystemExit("Deployment web did not roll out within 3 minutes")
                time.sleep(0.5)
            pod = _watching_pod(client)
            pids = _task_pids(node)
            ids = _container_ids(pod)
            if not set(ids.values()) <= set(pids):
                raise SystemExit(f"containers {ids} are not among containerd's tasks {pids}")
            groups = {name: _memory_cgroup(pids[cid]) for name, cid in ids.items()}
            time.sleep(2)  # the start-up's requests land
            cpu_before = {name: _cpu(group) for name, group in groups.items()}
            time.sleep(args.idle)
            cpu = {name: _cpu(group) - cpu_before[name] for name, group in groups.items()}
            memory = {name: _memory(group) for name, group in groups.items()}
            kept = len(client.list(BACKUP_SESSIONS, NAMESPACE)["items"])
    finally:
        hook.stop()
    if kept < args.history:
        raise SystemExit(f"only {kept} of {args.history} finished sessions were kept")
    _print_table(args, memory, cpu)


def _print_table(args: Any, memory: dict[str, tuple[float, float]], cpu: dict[str, float]) -> None:
    stash, floor = memory[c.SIDECAR_CONTAINER], memory["floor"]
    print(f"\n## Idle sidecar on a real pod, {args.history} finished sessions in the namespace\n")
    print("| measure (container cgroup) | sidecar | floor | ratio | target |")
    print("|---|---:|---:|---:|---|")
    print(f"| memory rss (MB) | {stash[0]:.1f} | {floor[0]:.1f} | {stash[0] / floor[0]:.2f}x "
          f"| <= {TARGET_MB:.0f} |")  # fmt: skip
    print(f"| memory usage incl. page cache (MB) | {stash[1]:.1f} | {floor[1]:.1f} | "
          f"{stash[1] / floor[1]:.2f}x | |")  # fmt: skip
    print(f"| CPU in {args.idle:.0f} s idle (s) | {cpu[c.SIDECAR_CONTAINER]:.3f} | "
          f"{cpu['floor']:.3f} | | 0 |")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--idle", type=float, default=20.0, help="seconds of idleness measured")
    parser.add_argument("--history", type=int, default=1000, help="finished sessions kept")
    args = parser.parse_args()

    images = Builder(progress=lambda msg: print(msg, flush=True)).all()
    work = Path(tempfile.mkdtemp(prefix="stash-bench-sidecar-pod-"))
    plane = ControlPlane(work / "cp", ensure_binaries(), progress=lambda _: None)
    plane.start()
    node = Node(plane, images, progress=lambda msg: print(msg, flush=True))
    try:
        client = Client.from_kubeconfig(str(plane.kubeconfig))
        install_stash(client)
        node.start()
        _run(client, node, images, work, args)
    finally:
        node.stop()
        plane.stop()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
