"""How the demo waits and shows progress: a probe polled until it answers, and a session (a
BackupSession, a RestoreBatch) followed phase by phase, one line per change, until it ends and
its Jobs have finished."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from api.objects import JSON
from kube import KubeError

Say = Callable[[str], None]


class TimedOut(RuntimeError):
    """What was awaited did not come in time; says what."""


def wait_for(probe: Callable[[], Any], timeout: float, what: str) -> Any:
    """``probe()``'s first truthy answer (an API error counts as none yet)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            found = probe()
        except KubeError:
            found = None
        if found:
            return found
        time.sleep(0.5)
    raise TimedOut(f"timed out waiting for {what}")


def _job_line(jobs: list[JSON]) -> str:
    return ", ".join(
        f"Job {j['metadata']['name']} "
        f"{'Complete' if (j.get('status') or {}).get('succeeded') else 'running'}"
        for j in jobs
    )


def _finished(jobs: list[JSON]) -> bool:
    return all(
        (j.get("status") or {}).get("completionTime") or (j.get("status") or {}).get("failed")
        for j in jobs
    )


def progress_line(status: JSON, entries: str, jobs: list[JSON]) -> str:
    """``Running: Deployment/web Running (0/1 hosts), …; Job … Complete``."""
    parts = []
    for entry in status.get(entries) or []:
        ref = entry.get("ref") or {}
        part = f"{ref.get('kind')}/{ref.get('name')} {entry.get('phase', '?')}"
        if "totalHosts" in entry:
            part += f" ({len(entry.get('stats') or [])}/{entry['totalHosts']} hosts)"
        parts.append(part)
    job_line = _job_line(jobs)
    return f"   {status.get('phase', 'Pending')}: {', '.join(parts)}" + (
        f"; {job_line}" if job_line else ""
    )


def follow(
    say: Say,
    timeout: float,
    fetch: Callable[[], JSON],
    jobs: Callable[[], list[JSON]],
    *,
    entries: str,
    final: tuple[str, ...],
) -> JSON:
    """The object ``fetch`` returns, once its phase is one of ``final`` and its Jobs have
    finished, saying each change of its progress (its ``entries``: targets or members)."""
    last = ""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        obj = fetch()
        status = obj.get("status") or {}
        line = progress_line(status, entries, jobs())
        if line != last:
            say(line)
            last = line
        if status.get("phase") in final:
            wait_for(lambda: _finished(jobs()), max(1.0, deadline - time.monotonic()), "its Jobs")
            return obj
        time.sleep(1)
    raise TimedOut(f"it did not finish in {timeout:.0f}s")
