"""How far a running backup or restore of one host has come, said where a person looks.

restic's status lines arrive up to once a second; ``ProgressReport`` turns them into one Event
per host on the session (reason ``BackupProgress`` / ``RestoreProgress``), updated in place at a
bounded rate: nothing for a host done within ``first_after`` seconds, then at most one update
every ``every`` seconds, and a log line each time. ``kubectl describe`` and
``kubectl stash describe`` show that Event beside the hosts still running.

The Event moves only when the work did (bytes or files done, or the totals of a scan still
counting): its ``lastTimestamp`` is when the host last advanced, which the operator reads to
tell a long backup that is still making progress from a stalled one
(``controller.sessions.liveness``).
"""

from __future__ import annotations

import hashlib
import logging
import os
import time
from collections.abc import Callable, Iterable

from api.objects import JSON
from engine.restic import HostProgress
from kube.events import EventRecorder

log = logging.getLogger(__name__)
FIRST_AFTER = 10.0
EVERY = 30.0
# For tests and impatient people: how often progress is reported (the first one too).
INTERVAL_ENV = "STASH_PROGRESS_INTERVAL"
REASONS = {"backup": "BackupProgress", "restore": "RestoreProgress"}
_HOST = " host "


def _size(count: int) -> str:
    value = float(count)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")  # pragma: no cover


def _duration(seconds: int) -> str:
    hours, rest = divmod(max(0, seconds), 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h{minutes:02d}m"
    return f"{minutes}m{secs:02d}s" if minutes else f"{secs}s"


def progress_of(messages: Iterable[str]) -> dict[tuple[str, str], str]:
    """Progress messages (``progress_message``'s, naming the host as the host jobs'
    ``describe()`` does: ``Kind/name host H``) by (target, host): where each host is."""
    found = {}
    for message in messages:
        head, sep, rest = message.partition(": ")
        target, marker, host = head.partition(_HOST)
        if sep and marker:
            found[(target, host)] = rest
    return found


def progress_message(what: str, progress: HostProgress) -> str:
    """``PersistentVolumeClaim/data host host-0: 42% (1.2 GiB of 2.9 GiB, 1200 of 5000
    files), about 1m30s left`` (``what``: the host job's ``describe()``)."""
    if not progress.total_bytes:  # a stream (a database dump): no total to compare with
        return f"{what}: {_size(progress.bytes_done)} read so far"
    parts = [f"{_size(progress.bytes_done)} of {_size(progress.total_bytes)}"]
    if progress.total_files:
        parts.append(f"{progress.files_done} of {progress.total_files} files")
    text = f"{what}: {progress.fraction * 100:.0f}% ({', '.join(parts)})"
    if progress.seconds_remaining is not None and progress.fraction < 1.0:
        text += f", about {_duration(progress.seconds_remaining)} left"
    return text


def event_name(session: str, what: str) -> str:
    """The one progress Event of a host (``what``) in a session (a valid, bounded name)."""
    digest = hashlib.sha256(what.encode()).hexdigest()[:10]
    return f"{session[:200]}.progress-{digest}"


class ProgressReport:
    """A ``Progress`` callback for restic: the host's progress Event on the session that
    ``session()`` returns (None: only the log line)."""

    def __init__(
        self,
        events: EventRecorder,
        session: Callable[[], JSON | None],
        *,
        operation: str,
        what: str,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        interval = os.environ.get(INTERVAL_ENV)
        self.first_after = float(interval) if interval else FIRST_AFTER
        self.every = float(interval) if interval else EVERY
        self.events = events
        self.session = session  # read at the first report only: a short run reads nothing
        self.reason = REASONS[operation]
        self.what = what
        self.clock = clock
        self.started = clock()
        self.last: float | None = None
        self._counts: tuple[int, int, int, int] | None = None  # at the last report
        self._session: JSON | None = None

    def __call__(self, progress: HostProgress) -> None:
        now = self.clock()
        if self.last is None and now - self.started < self.first_after:
            return
        if self.last is not None and now - self.last < self.every:
            return
        counts = (
            progress.bytes_done,
            progress.files_done,
            progress.total_bytes,
            progress.total_files,
        )
        if counts == self._counts:
            return  # nothing moved: the Event keeps the time the host last advanced
        self._counts = counts
        self.last = now
        message = progress_message(self.what, progress)
        log.info("%s", message)
        if self._session is None:
            self._session = self.session()
        if self._session:
            name = event_name(str(self._session["metadata"]["name"]), self.what)
            self.events.record(self._session, "Normal", self.reason, message, name=name)
