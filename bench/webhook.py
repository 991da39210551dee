"""Benchmark the webhook (DESIGN.md section 6). Run: .venv/bin/python bench/webhook.py

1. Throughput and latency of POST /mutate/pods beside a no-op endpoint on the same stack
   (FastAPI + uvicorn, TLS, one server process, served as `stash webhook` serves it), driven
   by wrk from a second process at 4 connections. Target: >= 90% of the no-op's requests/s,
   p99 < 3 ms.
2. Pod-create latency through the real API server with and without the webhook in the path
   (labelled pods of a targeted Deployment, in a namespace the webhook sees vs one its
   namespaceSelector excludes). Target: the injection adds < 5 ms at p50.

Prints a table; copy it into docs/benchmarks.md. Needs wrk (installed with apt-get when
missing and run as root) and the control-plane binaries (scripts/setup).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import shutil
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import uvicorn  # noqa: E402
from fastapi import Request, Response  # noqa: E402

from api.constants import WEBHOOK_NAME  # noqa: E402
from api.crd import all_crds  # noqa: E402
from certs.files import CERT_FILE, KEY_FILE, ensure_local_files  # noqa: E402
from devcluster import ControlPlane, ensure_binaries  # noqa: E402
from devcluster.cluster import free_port  # noqa: E402
from kube import AlreadyExists, Client  # noqa: E402
from kube.crds import install_crds  # noqa: E402
from kube.types import WEBHOOK_CONFIGS  # noqa: E402
from pods.invokers import SidecarIndex  # noqa: E402
from pods.sidecar import SidecarSettings  # noqa: E402
from tests.factories import batch, member, pod, review  # noqa: E402
from tests.integration.helpers import WebhookProcess, wait_until_injected  # noqa: E402
from webhook import server  # noqa: E402
from webhook.app import create_app  # noqa: E402
from webhook.tls import CertificateReloader  # noqa: E402

INVOKERS = 200  # invokers in the index while measuring: a busy cluster's worth


# -- the server under test (run as a subprocess with --serve) ---------------------------------


def serve(port: int, cert_dir: Path) -> None:
    ensure_local_files(cert_dir)
    index = SidecarIndex()
    index.replace(
        [batch(f"b{i}", "demo", member("Deployment", f"app-{i}")) for i in range(INVOKERS)]
        + [batch("web-backup", "demo", member("Deployment", "web"))]
    )
    reloader = CertificateReloader(cert_dir / CERT_FILE, cert_dir / KEY_FILE)
    reloader.load()
    # as `stash webhook` builds and serves it (webhook.server), a no-op route beside it
    server.bound_heap()
    app = create_app(index, SidecarSettings(image="stash-py:bench"), reloader=reloader)
    noop_body = json.dumps(
        {
            "apiVersion": "admission.k8s.io/v1",
            "kind": "AdmissionReview",
            "response": {"uid": "x", "allowed": True},
        }
    ).encode()

    @app.site.post("/noop")
    async def noop(request: Request) -> Response:
        await request.body()
        return Response(noop_body, media_type="application/json")

    server.serve([uvicorn.Server(server.serving_config(app, "127.0.0.1", port, reloader))])


# -- wrk -----------------------------------------------------------------------------------


def ensure_wrk() -> str:
    found = shutil.which("wrk")
    if found:
        return found
    if os.geteuid() == 0 and shutil.which("apt-get"):
        print("installing wrk (apt-get)", flush=True)
        subprocess.run(["apt-get", "update", "-qq"], check=True)
        subprocess.run(["apt-get", "install", "-y", "-qq", "wrk"], check=True)
        return shutil.which("wrk") or "wrk"
    sys.exit("bench: wrk is needed (Debian: apt-get install wrk)")


UNIT = {"us": 1e-3, "ms": 1.0, "s": 1e3}


def _ms(text: str) -> float:
    match = re.match(r"([\d.]+)(us|ms|s)", text)
    if not match:
        raise ValueError(f"cannot read a latency from {text!r}")
    return float(match[1]) * UNIT[match[2]]


def run_wrk(wrk: str, url: str, body: Path, seconds: int, connections: int) -> dict[str, float]:
    script = body.with_suffix(".lua")
    script.write_text(
        'wrk.method = "POST"\n'
        'wrk.headers["Content-Type"] = "application/json"\n'
        f"local f = io.open({json.dumps(str(body))}, 'rb')\n"
        "wrk.body = f:read('*a')\nf:close()\n"
    )
    out = subprocess.run(
        [wrk, "-t", "1", "-c", str(connections), "-d", f"{seconds}s", "--latency",
         "-s", str(script), url],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out)[1])  # type: ignore[index]
    lat = dict(re.findall(r"^\s+(50|99)%\s+(\S+)", out, re.M))
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if errors:
        raise RuntimeError(f"{errors[1]} failed requests against {url}:\n{out}")
    return {"rps": rps, "p50": _ms(lat["50"]), "p99": _ms(lat["99"])}


def bench_endpoints(seconds: int, rounds: int) -> list[tuple[str, dict[str, float]]]:
    wrk = ensure_wrk()
    work = Path(tempfile.mkdtemp(prefix="stash-bench-"))
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, __file__, "--serve", str(port), "--cert-dir", str(work / "certs")],
        cwd=ROOT,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                ctx = ssl.create_default_context(cafile=str(work / "certs" / "ca.crt"))
                urllib.request.urlopen(f"https://127.0.0.1:{port}/healthz", context=ctx, timeout=1)
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
        target = pod(owner=("ReplicaSet", "web-5d4f8b9c7"), pod_hash="5d4f8b9c7")
        body = work / "review.json"
        body.write_text(json.dumps(review(target)))
        url = f"https://127.0.0.1:{port}"
        # Warm up both, then alternate so drift hits both alike.
        run_wrk(wrk, f"{url}/noop", body, 2, 4)
        run_wrk(wrk, f"{url}/mutate/pods", body, 2, 4)
        results: dict[str, list[dict[str, float]]] = {"noop": [], "mutate": []}
        for _ in range(rounds):
            results["noop"].append(run_wrk(wrk, f"{url}/noop", body, seconds, 4))
            results["mutate"].append(run_wrk(wrk, f"{url}/mutate/pods", body, seconds, 4))
    finally:
        server.terminate()
        server.wait()
        shutil.rmtree(work, ignore_errors=True)
    return [
        (name, {k: statistics.median(r[k] for r in runs) for k in ("rps", "p50", "p99")})
        for name, runs in results.items()
    ]


# -- pod creation through the API server ----------------------------------------------------


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def bench_pod_create(count: int) -> dict[str, list[float]]:
    work = Path(tempfile.mkdtemp(prefix="stash-bench-cp-"))
    plane = ControlPlane(work / "cp", ensure_binaries(), progress=lambda _: None)
    plane.start()
    timings: dict[str, list[float]] = {"without webhook": [], "with webhook": []}
    try:
        kube = Client.from_kubeconfig(str(plane.kubeconfig))
        install_crds(kube, all_crds(), field_manager="bench")
        for ns in ("bench", "stash-system"):
            with contextlib.suppress(AlreadyExists):
                kube.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}})
        hook = WebhookProcess.start(plane.kubeconfig, work)
        try:
            kube.create(batch("web-backup", "bench", member("Deployment", "web")), "bench")
            probe = pod(namespace="bench", owner=("ReplicaSet", "web-5d4f8b9c7"),
                        pod_hash="5d4f8b9c7")  # fmt: skip
            wait_until_injected(kube, "bench", probe)
            for i in range(count + 20):
                for ns, label in (("bench", "with webhook"), ("stash-system", "without webhook")):
                    obj = pod(namespace=ns, name=f"p-{i}", owner=("ReplicaSet", "web-5d4f8b9c7"),
                              pod_hash="5d4f8b9c7")  # fmt: skip
                    started = time.perf_counter()
                    created = kube.create(obj, ns)
                    elapsed = (time.perf_counter() - started) * 1000
                    injected = any(c["name"] == "stash" for c in created["spec"]["containers"])
                    assert injected == (ns == "bench"), f"unexpected injection in {ns}"
                    if i >= 20:  # warm-up
                        timings[label].append(elapsed)
        finally:
            hook.stop()
            kube.delete(WEBHOOK_CONFIGS, WEBHOOK_NAME, missing_ok=True)
    finally:
        plane.stop()
        shutil.rmtree(work, ignore_errors=True)
    return timings


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--serve", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--cert-dir", help=argparse.SUPPRESS)
    parser.add_argument("--seconds", type=int, default=10, help="per wrk run")
    parser.add_argument("--rounds", type=int, default=3, help="alternating wrk runs per endpoint")
    parser.add_argument("--pods", type=int, default=200, help="pods created per variant")
    args = parser.parse_args()
    if args.serve:
        serve(args.serve, Path(args.cert_dir))
        return

    endpoints = dict(bench_endpoints(args.seconds, args.rounds))
    ratio = endpoints["mutate"]["rps"] / endpoints["noop"]["rps"]
    print("\n## Webhook endpoint (wrk, 4 connections, TLS, one uvicorn process)\n")
    print("| endpoint | requests/s | p50 (ms) | p99 (ms) |")
    print("|---|---:|---:|---:|")
    for name, label in (("noop", "no-op FastAPI route"), ("mutate", "POST /mutate/pods")):
        r = endpoints[name]
        print(f"| {label} | {r['rps']:.0f} | {r['p50']:.2f} | {r['p99']:.2f} |")
    print(
        f"\n/mutate/pods reaches {ratio:.0%} of the no-op's requests/s "
        f"(target >= 90%); p99 {endpoints['mutate']['p99']:.2f} ms (target < 3 ms)."
    )

    timings = bench_pod_create(args.pods)
    print(f"\n## Pod create through the API server ({args.pods} pods each, interleaved)\n")
    print("| variant | p50 (ms) | p90 (ms) | p99 (ms) |")
    print("|---|---:|---:|---:|")
    for label, values in timings.items():
        print(
            f"| {label} | {_pct(values, 0.5):.2f} | {_pct(values, 0.9):.2f} | "
            f"{_pct(values, 0.99):.2f} |"
        )
    added = _pct(timings["with webhook"], 0.5) - _pct(timings["without webhook"], 0.5)
    print(f"\nThe webhook adds {added:.2f} ms at p50 (target < 5 ms).")


if __name__ == "__main__":
    main()
