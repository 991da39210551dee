"""The webhook's memory under hostile AdmissionReviews.

Run: .venv/bin/python bench/webhook_memory.py

One server process per variant (the real app on uvicorn; the index holds one invoker), sent
the same N requests: well-formed reviews, 1,000-deep nesting, bodies of up to 3 MiB, reviews
with thousands of annotations, garbage and huge uids. Prints the server's RSS at start and after
each thousand, with and without ``webhook.server.bound_heap`` (glibc's default, adaptive mmap
threshold). Target: the bounded server grows by at most 5 MB over the run.
"""

from __future__ import annotations

import argparse
import http.client
import json
import random
import socket
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.measure import memory_mb  # noqa: E402
from tests.factories import pod, review  # noqa: E402

SERVER = """
import sys, uvicorn
from pods.invokers import SidecarIndex
from pods.sidecar import SidecarSettings
from tests.factories import batch
from webhook.app import create_app
from webhook.server import bound_heap
if sys.argv[2] == "bounded":
    assert bound_heap()
index = SidecarIndex()
index.upsert(batch())
uvicorn.run(create_app(index, SidecarSettings(image="x")), host="127.0.0.1",
            port=int(sys.argv[1]), log_level="warning", access_log=False)
"""
GROWTH_LIMIT_MB = 5


def _body(i: int, rng: random.Random) -> bytes:
    kind = i % 6
    if kind == 0:
        return json.dumps(review(pod())).encode()
    if kind == 1:
        return b'{"apiVersion": ' + b"[" * 1000 + b"]" * 1000 + b"}"
    if kind == 2:
        return b"{" + b" " * rng.randint(1, 3_000_000) + b"}"
    if kind == 3:
        doc = review(pod())
        doc["request"]["object"]["metadata"]["annotations"] = {
            f"k{j}": "v" * rng.randint(1, 1000) for j in range(rng.randint(1, 2000))
        }
        return json.dumps(doc).encode()
    if kind == 4:
        return b"x" * rng.randint(1, 100_000)
    doc = review(pod())
    doc["request"]["uid"] = "u" * rng.randint(1, 2_000_000)
    return json.dumps(doc).encode()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def run_variant(variant: str, requests: int) -> list[int]:
    port = _free_port()
    server = subprocess.Popen([sys.executable, "-c", SERVER, str(port), variant], cwd=ROOT)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline or server.poll() is not None:
                    raise RuntimeError(f"the {variant} server did not start") from None
                time.sleep(0.1)
        rng = random.Random(1)  # noqa: S311 - the same requests for both variants
        samples = [int(memory_mb(server.pid)[0])]
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        for i in range(requests):
            try:
                conn.request("POST", "/mutate/pods", body=_body(i, rng))
                response = conn.getresponse()
                response.read()
                if response.getheader("connection") == "close":
                    conn.close()
            except (OSError, http.client.HTTPException):
                conn.close()
            if i % 1000 == 999:
                samples.append(int(memory_mb(server.pid)[0]))
        return samples
    finally:
        server.terminate()
        server.wait(10)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--requests", type=int, default=6000)
    args = parser.parse_args()
    results = {v: run_variant(v, args.requests) for v in ("default", "bounded")}
    print("| server | RSS at start (MB) | RSS after each 1,000 (MB) | growth | target |")
    print("|---|---:|---|---:|---|")
    for variant, samples in results.items():
        growth = samples[-1] - samples[0]
        target = f"≤ {GROWTH_LIMIT_MB} MB" if variant == "bounded" else "(glibc default)"
        after = " / ".join(str(s) for s in samples[1:])
        print(f"| {variant} | {samples[0]} | {after} | +{growth} MB | {target} |")
    bounded = results["bounded"]
    return 0 if bounded[-1] - bounded[0] <= GROWTH_LIMIT_MB else 1


if __name__ == "__main__":
    sys.exit(main())
