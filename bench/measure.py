"""What the benchmarks read of a running process and of the API server: a process's memory and
CPU time, and the API server's own request counters."""

from __future__ import annotations

import os
import re
from pathlib import Path

from kube import Client


def memory_mb(pid: int) -> tuple[float, float]:
    """(RSS, peak RSS) of process ``pid`` in MB, from /proc."""
    status = Path(f"/proc/{pid}/status").read_text()
    found = dict(re.findall(r"^(VmRSS|VmHWM):\s+(\d+)", status, re.M))
    return float(found.get("VmRSS", 0)) / 1024, float(found.get("VmHWM", 0)) / 1024


def cpu_seconds(pid: int) -> float:
    """User + system CPU time process ``pid`` has used, from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def request_counts(client: Client) -> dict[tuple[str, str, str], float]:
    """apiserver_request_total summed by (verb, resource, subresource)."""
    text = client.request("GET", "/metrics", accept="text/plain", raw=True).decode()
    counts: dict[tuple[str, str, str], float] = {}
    for line in text.splitlines():
        if not line.startswith("apiserver_request_total{"):
            continue
        labels = dict(re.findall(r'(\w+)="([^"]*)"', line))
        key = (labels.get("verb", ""), labels.get("resource", ""), labels.get("subresource", ""))
        counts[key] = counts.get(key, 0.0) + float(line.rsplit(" ", 1)[1])
    return counts
