"""Benchmark the idle sidecar (DESIGN.md section 6, issue 15 part 1) beside its floor.

Run: .venv/bin/python bench/sidecar.py

On a fresh local control plane with one BackupBatch over Deployment web and ``--history``
finished BackupSessions (1,000; as the operator leaves them), each variant runs as a process on
this machine, alternately, ``--runs`` times:

- ``stash run-backup`` (the sidecar, as the webhook injects it: POD_NAME/POD_NAMESPACE set);
- the floor: a Python program that does only what an idle sidecar must — load the kubeconfig's
  client certificate, LIST and then WATCH the namespace's BackupSessions over TLS with urllib3.

For each: the time from exec until it watches (the sidecar's log line "watching"; the floor's
print), its RSS once it has been idle for ``--idle`` seconds, the CPU it used while idle, and
the API requests it made while idle other than its watches and its Lease (from the API server's
own apiserver_request_total). Targets: RSS <= 35 MB, watching <= 0.3 s, no CPU or requests idle.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from api.crd import all_crds  # noqa: E402
from bench.history import fill_history  # noqa: E402
from bench.measure import cpu_seconds, memory_mb, request_counts  # noqa: E402
from controller.runtime.caches import BACKUP_BATCHES  # noqa: E402
from devcluster import ControlPlane, ensure_binaries  # noqa: E402
from kube import Client  # noqa: E402
from kube.crds import install_crds  # noqa: E402
from tests.factories import batch, member  # noqa: E402

NAMESPACE = "bench"
TARGET_RSS_MB = 35.0
TARGET_WATCHING_S = 0.3
FLOOR = r"""
import json, ssl, sys, urllib3
server, ca, cert, key, namespace = sys.argv[1:6]
ctx = ssl.create_default_context(cafile=ca)
ctx.load_cert_chain(cert, key)
pool = urllib3.HTTPSConnectionPool(server.split("//")[1].split(":")[0],
                                   int(server.rsplit(":", 1)[1]), ssl_context=ctx)
path = f"/apis/stash.appscode.com/v1beta1/namespaces/{namespace}/backupsessions"
listed = json.loads(pool.request("GET", path).data)
version = listed["metadata"]["resourceVersion"]
watch = pool.request("GET", f"{path}?watch=1&resourceVersion={version}&timeoutSeconds=300",
                     preload_content=False)
print("watching", flush=True)
for line in watch.stream():
    pass
"""


def _requests(client: Client) -> dict[tuple[str, str, str], float]:
    """The API server's request counts for the backup kinds a sidecar reads, watches left out
    (other clients, kube-controller-manager, share the API server)."""
    return {
        k: v
        for k, v in request_counts(client).items()
        if k[0] != "WATCH" and k[1].startswith("backup")
    }


def _measure(
    command: list[str], env: dict[str, str], client: Client, idle: float, log: Path
) -> tuple[float, float, float, float]:
    """(seconds until watching, RSS MB after idle, CPU s while idle, requests while idle)."""
    with log.open("wb") as out:
        started = time.monotonic()
        proc = subprocess.Popen(command, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
        try:
            while b"watching" not in log.read_bytes():
                if proc.poll() is not None or time.monotonic() - started > 60:
                    raise RuntimeError(f"{command[:4]} never watched: {log.read_text()[-2000:]}")
                time.sleep(0.005)
            watching = time.monotonic() - started
            time.sleep(2)  # the start-up's own requests and the Lease's first round land
            before, cpu = _requests(client), cpu_seconds(proc.pid)
            time.sleep(idle)
            after = _requests(client)
            rss = memory_mb(proc.pid)[0]
            cpu = cpu_seconds(proc.pid) - cpu
        finally:
            proc.terminate()
            proc.wait(15)
    return watching, rss, cpu, sum(v - before.get(k, 0.0) for k, v in after.items())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--idle", type=float, default=20.0, help="seconds of idleness measured")
    parser.add_argument("--history", type=int, default=1000, help="finished sessions kept")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="stash-bench-sidecar-"))
    plane = ControlPlane(work / "cp", ensure_binaries(), progress=lambda _: None)
    plane.start()
    try:
        client = Client.from_kubeconfig(str(plane.kubeconfig))
        install_crds(client, all_crds(), field_manager="bench")
        client.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NAMESPACE}})
        client.create(batch("nightly", NAMESPACE, member("Deployment", "web")))
        uid = client.get(BACKUP_BATCHES, "nightly", NAMESPACE)["metadata"]["uid"]
        fill_history(client, NAMESPACE, "nightly", uid, args.history)
        env = {
            **os.environ,
            "KUBECONFIG": str(plane.kubeconfig),
            "POD_NAME": "web-5d4f8b9c7-abcde",
            "POD_NAMESPACE": NAMESPACE,
            "STASH_LOG_LEVEL": "INFO",
        }
        sidecar = [
            sys.executable,
            "-m",
            "cli.main",
            "run-backup",
            "--target-kind=Deployment",
            "--target-name=web",
            f"--state-dir={work / 'state'}",
        ]
        pki = plane.workdir / "pki"
        floor = [
            sys.executable,
            "-c",
            FLOOR,
            plane.server,
            str(pki / "ca.crt"),
            str(pki / "admin.crt"),
            str(pki / "admin.key"),
            NAMESPACE,
        ]
        results: dict[str, list[tuple[float, float, float, float]]] = {"sidecar": [], "floor": []}
        for run in range(args.runs):
            for name, command in (("sidecar", sidecar), ("floor", floor)):
                got = _measure(command, env, client, args.idle, work / f"{name}-{run}.log")
                results[name].append(got)
                print(
                    f"run {run + 1} {name}: watching after {got[0]:.2f}s, RSS {got[1]:.1f} MB, "
                    f"CPU {got[2]:.2f}s and {got[3]:.0f} requests in {args.idle:.0f}s idle",
                    flush=True,
                )
        client.close()
    finally:
        plane.stop()

    def median(name: str, i: int) -> float:
        return statistics.median(r[i] for r in results[name])

    print()
    print(f"| measure (median of {args.runs}) | sidecar | floor | ratio | target |")
    print("|---|---:|---:|---:|---|")
    rows = (
        ("start-up to watching (s)", 0, f"<= {TARGET_WATCHING_S}"),
        ("RSS idle (MB)", 1, f"<= {TARGET_RSS_MB:.0f}"),
        (f"CPU in {args.idle:.0f} s idle (s)", 2, "0"),
        (f"API requests in {args.idle:.0f} s idle", 3, "0"),
    )
    for label, i, target in rows:
        ours, base = median("sidecar", i), median("floor", i)
        ratio = f"{ours / base:.2f}x" if base else "-"
        print(f"| {label} | {ours:.2f} | {base:.2f} | {ratio} | {target} |")


if __name__ == "__main__":
    main()
