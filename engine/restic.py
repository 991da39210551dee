"""A typed wrapper over the restic CLI: every command with ``--json`` where restic has it, results
as dataclasses, failures as ``ResticError`` carrying restic's own last lines with every secret
value redacted.

Three traps of restic are closed here rather than left to callers: a path that does not exist
is only a warning to restic (exit 0, nothing backed up), so ``backup`` refuses missing paths up
front; exit code 3 (some files could not be read) is a failure listing those files, never a
success; and restic (0.17+) retries a failing backend request for up to 15 minutes, so a wrong
key, a missing bucket or an unreachable server is given up on here (``BackendWatch``): at once
when restic's error is one no retry can mend, else after ``BACKEND_RETRY_LIMIT`` seconds of
failures with no success between them. A slow but healthy backend reports no failures and is
never cut short. A database dump piped into ``backup --stdin`` that fails half-way fails the
backup and the partial snapshot is forgotten. Work nobody will count any more (its session
ended) is stopped from another thread through a ``Cancel``: the running restic is terminated
the way a backend given up on is, and no further command starts.
"""

from __future__ import annotations

import collections
import contextlib
import datetime as dt
import json
import logging
import os
import re
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from engine.backend import BackendConfig, materialize

if TYPE_CHECKING:
    from api.common import RetentionPolicy

log = logging.getLogger(__name__)
EXIT_PARTIAL = 3  # restic: "snapshot created, but some source files could not be read"
_MISSING_REPO = (
    "Is there a repository at the following location?",
    "unable to open config file",
    "repository does not exist",
    "The specified bucket does not exist",  # restic init creates the bucket
)
_TAIL_LINES = 6
# restic's stderr kept per command (one line per unreadable file, say): the first lines and the
# last few; the rest only counted. A backup of millions of files cannot grow the sidecar by it.
STDERR_LINES = 1000


@dataclass(frozen=True)
class HostProgress:
    """Where a running backup or restore is, from restic's own ``--json`` status lines."""

    fraction: float  # 0..1
    bytes_done: int
    total_bytes: int
    files_done: int
    total_files: int
    seconds_remaining: int | None = None  # restic's estimate (backups only)


Progress = Callable[[HostProgress], None]

# How long a backend may keep failing (restic retrying, no success in between) before the
# command is stopped and fails with restic's own words. Documented in docs/backup.md.
BACKEND_RETRY_LIMIT = 60.0
# A request that moves no data for this long is retried by restic (its default: 5 minutes);
# the retries then count against BACKEND_RETRY_LIMIT.
STUCK_REQUEST_TIMEOUT = "60s"
# How long a command waits for a conflicting lock (another host's prune, say) to go.
RETRY_LOCK = "2m"
_RETRYING = " returned error, retrying after "
_RECOVERED = " operation successful after "
# Backend answers that no retry mends: wrong credentials, no such bucket, no permission.
PERMANENT_BACKEND_ERRORS = (
    "The Access Key Id you provided does not exist",
    "InvalidAccessKeyId",
    "SignatureDoesNotMatch",
    "The request signature we calculated does not match",
    "The specified bucket does not exist",
    "NoSuchBucket",
    "Access Denied",
    "AccessDenied",
    "AuthorizationFailed",
    "AuthenticationFailed",
    "401 Unauthorized",
    "403 Forbidden",
)
# The oldest restic this code drives: --retry-lock and --stuck-request-timeout appeared in 0.16
# and 0.18. The image, the demo and the tests run 0.18.1; a person's machine may have another.
MIN_VERSION = (0, 18, 0)
_VERSION = re.compile(r"^restic (\d+)\.(\d+)\.(\d+)")
_STOP_GRACE = 10.0  # after SIGTERM (restic then removes its lock), before SIGKILL


@dataclass(frozen=True)
class BackupSummary:
    snapshot_id: str
    files_new: int
    files_changed: int
    files_unmodified: int
    total_files: int
    total_bytes: int
    data_added: int
    duration: float

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> BackupSummary:
        return cls(
            snapshot_id=str(doc.get("snapshot_id", "")),
            files_new=int(doc.get("files_new", 0)),
            files_changed=int(doc.get("files_changed", 0)),
            files_unmodified=int(doc.get("files_unmodified", 0)),
            total_files=int(doc.get("total_files_processed", 0)),
            total_bytes=int(doc.get("total_bytes_processed", 0)),
            data_added=int(doc.get("data_added", 0)),
            duration=float(doc.get("total_duration", 0.0)),
        )


@dataclass(frozen=True)
class Snapshot:
    id: str
    short_id: str
    time: str
    hostname: str
    paths: tuple[str, ...]
    tags: tuple[str, ...]

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> Snapshot:
        return cls(
            id=str(doc["id"]),
            short_id=str(doc.get("short_id") or doc["id"][:8]),
            time=str(doc.get("time", "")),
            hostname=str(doc.get("hostname", "")),
            paths=tuple(doc.get("paths") or ()),
            tags=tuple(doc.get("tags") or ()),
        )


@dataclass(frozen=True)
class RepoStats:
    total_size: int
    snapshot_count: int


@dataclass(frozen=True)
class LockInfo:
    """One restic lock: who took it (restic's host name and PID) and when it was last
    refreshed (restic refreshes a live lock every 5 minutes)."""

    id: str
    hostname: str
    pid: int
    time: dt.datetime
    exclusive: bool

    @classmethod
    def from_json(cls, lock_id: str, doc: dict[str, Any]) -> LockInfo:
        return cls(
            id=lock_id,
            hostname=str(doc.get("hostname", "")),
            pid=int(doc.get("pid") or 0),
            time=parse_restic_time(str(doc.get("time", ""))),
            exclusive=bool(doc.get("exclusive")),
        )


def parse_restic_time(text: str) -> dt.datetime:
    """restic's RFC 3339 times carry nanoseconds ("...:18.726162119Z") and any offset. A time
    that cannot be read is taken as the far future: a lock of unknown age is never stale."""
    match = re.match(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(\.\d+)?(Z|[+-]\d\d:\d\d)$", text)
    if not match:
        return dt.datetime(9000, 1, 1, tzinfo=dt.UTC)
    fraction = (match[2] or ".0")[:7]
    offset = "+00:00" if match[3] == "Z" else match[3]
    return dt.datetime.fromisoformat(match[1] + fraction + offset)


@dataclass(frozen=True)
class CheckResult:
    ok: bool
    message: str
    # what restic was refused (permission denied): the data is not known to be damaged
    denied: tuple[str, ...] = ()

    def says(self) -> str:
        """The failure in words a user can act on: a permission problem named as one (which
        files, whose they are, who this pod is), else restic's own words."""
        if not self.denied:
            return f"restic check: {self.message}"
        listed = "; ".join(describe_path(path) for path in self.denied)
        return (
            f"restic check could not read the repository: permission denied on {listed}; "
            f"this pod runs as {os.getuid()}:{os.getgid()}. The data is not known to be "
            "damaged: give these files back to the user the backups run as (another writer, "
            "such as a Job running as another user, made them), then check again"
        )


_DENIED = re.compile(
    r"(?:open|lstat|stat|mkdir|remove|rename|unlink|readdirent|openat)\s+"
    r"(\S+?):\s+permission denied",
    re.IGNORECASE,
)
DENIED_LISTED = 5


def denied_paths(detail: str) -> tuple[str, ...]:
    """The paths restic's words say it was refused (``open /repo/data/ab/c: permission
    denied``), each once, at most ``DENIED_LISTED``."""
    found: list[str] = []
    for match in _DENIED.finditer(detail):
        path = match.group(1)
        if path not in found:
            found.append(path)
    return tuple(found[:DENIED_LISTED])


def describe_path(path: str) -> str:
    """``path (owner uid:gid, mode 0600)``, or, when it cannot be looked at, the nearest
    directory above it that can (the one that shuts it away)."""
    at = Path(path)
    for place in (at, *at.parents):
        try:
            info = place.stat()
        except OSError:
            continue
        mode = oct(info.st_mode & 0o7777).replace("0o", "0")
        whose = f"owner {info.st_uid}:{info.st_gid}, mode {mode}"
        return f"{path} ({whose})" if place == at else f"{path} (under {place}: {whose})"
    return path


@dataclass
class ResticError(Exception):
    """A restic command failed. ``detail`` is restic's own last lines, secrets redacted."""

    operation: str
    exit_code: int
    detail: str
    unreadable: tuple[str, ...] = field(default=())
    unreadable_more: int = 0  # beyond those listed in ``unreadable`` (restic's lines not kept)

    def __str__(self) -> str:
        if self.unreadable:
            listed = ", ".join(self.unreadable[:10])
            extra = max(len(self.unreadable) - 10, 0) + self.unreadable_more
            more = f" and {extra} more" if extra else ""
            return f"restic {self.operation}: could not read {listed}{more}"
        return f"restic {self.operation} failed (exit {self.exit_code}): {self.detail}"


class OutputLines:
    """The lines of one stream, bounded: the first ``limit`` and the last few; the rest are
    only counted (``dropped``)."""

    def __init__(self, limit: int = STDERR_LINES) -> None:
        self.limit = limit
        self.head: list[str] = []
        self.last: collections.deque[str] = collections.deque(maxlen=_TAIL_LINES)
        self.dropped = 0

    def append(self, line: str) -> None:
        if len(self.head) < self.limit:
            self.head.append(line)
            return
        if len(self.last) == self.last.maxlen:
            self.dropped += 1
        self.last.append(line)

    def lines(self) -> list[str]:
        return [*self.head, *self.last]


class BackendWatch:
    """Reads restic's stderr for its backend retries and says when to give up: at once on an
    error no retry mends, else once failures went on for ``limit`` seconds with no success
    reported in between. ``clock`` is injectable for tests."""

    def __init__(
        self, limit: float = BACKEND_RETRY_LIMIT, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.limit = limit
        self.clock = clock
        self.failing_since: float | None = None
        self.last_error = ""  # restic's words for the failing request, without the backoff
        self.permanent = False

    def seen(self, line: str) -> None:
        if _RECOVERED in line:
            self.failing_since = None
            return
        if _RETRYING not in line:
            return
        request, _, rest = line.partition(_RETRYING)
        error = rest.partition(": ")[2] or rest
        self.last_error = f"{request.strip()}: {error.strip()}"
        if self.failing_since is None:
            self.failing_since = self.clock()
        if any(marker in error for marker in PERMANENT_BACKEND_ERRORS):
            self.permanent = True

    def give_up(self) -> bool:
        if self.permanent:
            return True
        return self.failing_since is not None and self.clock() - self.failing_since >= self.limit

    def reason(self) -> str:
        if self.permanent:
            return f"the backend refused: {self.last_error}"
        return f"the backend kept failing for {self.limit:.0f}s: {self.last_error}"


class Cancel:
    """A reason to stop a ``Restic``'s work midway, given from another thread (the session the
    work was for ended). The first reason given is the one kept."""

    def __init__(self) -> None:
        self._reason: str | None = None
        self._lock = threading.Lock()

    def stop(self, reason: str) -> None:
        with self._lock:
            if self._reason is None:
                self._reason = reason

    @property
    def reason(self) -> str | None:
        return self._reason


class Redactor:
    """Replaces every secret value (longest first) in text with ``***``."""

    def __init__(self, secrets: Sequence[str]) -> None:
        self._secrets = sorted({s for s in secrets if s}, key=len, reverse=True)

    def __call__(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, "***")
        return text


def retention_flags(policy: RetentionPolicy) -> list[str]:
    """``restic forget`` flags for a Stash RetentionPolicy."""
    flags: list[str] = []
    for key in ("last", "hourly", "daily", "weekly", "monthly", "yearly"):
        value = getattr(policy, f"keep_{key}")
        if value:
            flags += [f"--keep-{key}", str(value)]
    for tag in policy.keep_tags or []:
        flags += ["--keep-tag", tag]
    if policy.prune:
        flags.append("--prune")
    if policy.dry_run:
        flags.append("--dry-run")
    return flags


def json_line(line: str) -> dict[str, Any] | None:
    """One line of restic's ``--json`` output as its object; None for any other line."""
    if not line.startswith("{"):
        return None
    try:
        doc = json.loads(line)
    except ValueError:
        return None
    return doc if isinstance(doc, dict) else None


def json_lines(lines: Iterable[str]) -> Iterator[dict[str, Any]]:
    """The objects among restic's ``--json`` output lines (anything else skipped)."""
    for line in lines:
        doc = json_line(line)
        if doc is not None:
            yield doc


def _words(line: str) -> str:
    """restic's words in a line: ``--json`` wraps a fatal error as an ``exit_error`` object."""
    doc = json_line(line)
    if doc is not None:
        if doc.get("message_type") == "exit_error":
            return " ".join(str(doc.get("message", "")).split())
        if doc.get("message_type") == "error":
            error = doc.get("error") or {}
            words = error.get("message") if isinstance(error, dict) else error
            return f"{doc.get('item') or doc.get('during') or 'error'}: {words}"
    return line


def tail(lines: Sequence[str], count: int = _TAIL_LINES) -> str:
    """The last meaningful lines of restic's output, joined for a message."""
    kept = [_words(line.strip()) for line in lines if line.strip() and not line.startswith("[")]
    return " | ".join(kept[-count:]) or "no output"


def unreadable_items(stderr_lines: Sequence[str]) -> tuple[str, ...]:
    """The paths restic reported it could not read (``--json`` error messages on stderr)."""
    items: list[str] = []
    for doc in json_lines(stderr_lines):
        if doc.get("message_type") == "error" and doc.get("item"):
            items.append(_unreadable(str(doc["item"]), doc.get("error") or {}))
    return tuple(items)


def _unreadable(item: str, error: dict[str, Any]) -> str:
    """``item (reason)``: restic 0.18 says ``{"message": "open /x: permission denied"}``."""
    message = str(error.get("message") or "")
    reason = message.rpartition(": ")[2] if message else ""
    if not reason and isinstance(error.get("Err"), int):  # restic before 0.17: an errno
        reason = os.strerror(error["Err"])
    return f"{item} ({reason})" if reason else item


def check_binary(binary: str = "restic") -> None:
    """A ValueError saying what to install when ``binary`` is missing or older than
    ``MIN_VERSION``; nothing when it will do."""
    needed = ".".join(map(str, MIN_VERSION))
    try:
        done = subprocess.run(
            [binary, "version"], capture_output=True, text=True, timeout=30, check=False
        )
    except OSError:
        raise ValueError(f"{binary} not found: install restic {needed} or later") from None
    match = _VERSION.match(done.stdout.strip())
    if match is None:
        raise ValueError(f"{binary} version says {done.stdout.strip()!r}, not restic's version")
    found = tuple(int(g) for g in match.groups())
    if found < MIN_VERSION:
        have = ".".join(map(str, found))
        raise ValueError(
            f"{binary} is restic {have}; {needed} or later is needed (give --restic PATH, or put "
            "a newer restic first on the PATH)"
        )


class Restic:
    """One repository, opened with one backend config. Not thread-safe per instance."""

    def __init__(
        self,
        config: BackendConfig,
        *,
        cache_dir: Path | None = None,
        binary: str = "restic",
        backend_retry_limit: float = BACKEND_RETRY_LIMIT,
        cancel: Cancel | None = None,
    ) -> None:
        self.config = config
        self.cancel = cancel or Cancel()
        self.binary = binary
        self.backend_retry_limit = backend_retry_limit
        self.stderr_dropped = 0  # of the last command: stderr lines counted, not kept
        self.cache_dir = cache_dir
        self.redact = Redactor(config.secrets)
        self._files_dir = Path(tempfile.mkdtemp(prefix="stash-restic-"))
        self._env, self._flags = materialize(config, self._files_dir)

    def close(self) -> None:
        for path in self._files_dir.glob("*"):
            path.unlink(missing_ok=True)
        with contextlib.suppress(OSError):
            self._files_dir.rmdir()

    def __enter__(self) -> Restic:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- running ----------------------------------------------------------------------------

    def _command(self, args: Sequence[str]) -> list[str]:
        cache = ["--cache-dir", str(self.cache_dir)] if self.cache_dir else ["--no-cache"]
        waits = ["--retry-lock", RETRY_LOCK, "--stuck-request-timeout", STUCK_REQUEST_TIMEOUT]
        return [self.binary, *args, *cache, *waits, *self._flags]

    def _environ(self) -> dict[str, str]:
        keep = ("PATH", "HOME", "TMPDIR", "LANG", "LC_ALL", "TZ", "SSL_CERT_FILE", "SSL_CERT_DIR")
        env = {k: os.environ[k] for k in keep if k in os.environ}
        env.update(self._env)
        env["RESTIC_REPOSITORY"] = self.config.repository
        env.setdefault("HOME", str(self._files_dir))
        return env

    def _run(
        self,
        operation: str,
        args: Sequence[str],
        *,
        ok: Sequence[int] = (0,),
        stdin: IO[bytes] | None = None,
        on_line: Callable[[str], None] | None = None,
    ) -> tuple[list[str], list[str], int]:
        command = self._command(args)
        self._refuse_if_cancelled(operation)
        log.debug("restic %s on %s", operation, self.config.display)
        try:
            proc = subprocess.Popen(
                command,
                stdin=stdin if stdin is not None else subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                env=self._environ(),
            )
        except OSError as exc:
            raise ResticError(operation, -1, f"cannot run {self.binary}: {exc.strerror}") from None
        collected = OutputLines()
        watch = BackendWatch(self.backend_retry_limit)
        reader = threading.Thread(target=_drain, args=(proc.stderr, collected, watch), daemon=True)
        reader.start()
        supervisor = _Supervisor(proc, watch, self.cancel)
        stdout: list[str] = []
        for raw in proc.stdout or ():
            line = raw.decode(errors="replace").rstrip("\n")
            if line.startswith(('{"message_type":"status"', '{"message_type":"verbose_status"')):
                # Progress, up to 60 a second, and -vv's line per file: handed on, never kept
                # (memory would grow with the backup's length).
                if on_line is not None:
                    on_line(line)
                continue
            stdout.append(line)
        code = proc.wait()
        reader.join()
        supervisor.stop()
        self.stderr_dropped = collected.dropped
        stderr = [self.redact(line) for line in collected.lines()]
        if code not in ok:
            if supervisor.stopped:
                raise ResticError(operation, code, self.redact(supervisor.reason()))
            raise ResticError(operation, code, tail(stderr or [self.redact(s) for s in stdout]))
        return stdout, stderr, code

    def _refuse_if_cancelled(self, operation: str) -> None:
        reason = self.cancel.reason
        if reason is not None:
            raise ResticError(operation, -1, f"not started: {reason}")

    def _json(self, operation: str, args: Sequence[str]) -> Any:
        stdout, _, _ = self._run(operation, [*args, "--json"])
        text = "\n".join(line for line in stdout if line.strip())
        try:
            return json.loads(text or "null")
        except ValueError:
            raise ResticError(operation, 0, f"unexpected output: {tail(stdout)}") from None

    # -- repository ---------------------------------------------------------------------------

    def exists(self) -> bool:
        """Whether the repository exists; a wrong password or an unreachable backend raises."""
        try:
            self._run("cat config", ["cat", "config"])
            return True
        except ResticError as exc:
            if not self.missing_repository(exc):
                raise
        return False

    def init_if_missing(
        self, guard: Callable[[], AbstractContextManager[object]] | None = None
    ) -> bool:
        """Create the repository unless it exists; True when it was created. A wrong password or
        an unreachable backend raises instead of initialising over it. ``guard`` (a mutex shared
        by every host of the repository) makes concurrent first backups safe: restic's ``init``
        is not, two of them leave a config and a key that do not match."""
        if self.exists():
            return False
        with guard() if guard is not None else contextlib.nullcontext():
            if self.exists():
                return False
            self._run("init", ["init"])
        log.info("initialised restic repository %s", self.config.display)
        return True

    def snapshots(
        self, host: str | None = None, tags: Sequence[str] = (), *, no_lock: bool = False
    ) -> list[Snapshot]:
        args = ["snapshots", *(["--no-lock"] if no_lock else [])]
        if host:
            args += ["--host", host]
        if tags:
            args += ["--tag", ",".join(tags)]
        docs = self._json("snapshots", args) or []
        return [Snapshot.from_json(doc) for doc in docs]

    def stats(self) -> RepoStats:
        doc = self._json("stats", ["stats", "--mode", "raw-data"]) or {}
        count = doc.get("snapshots_count")
        if count is None:
            count = len(self.snapshots())
        return RepoStats(int(doc.get("total_size", 0)), int(count))

    def check(self) -> CheckResult:
        try:
            stdout, _, _ = self._run("check", ["check"])
        except ResticError as exc:
            return CheckResult(False, exc.detail, denied_paths(exc.detail))
        return CheckResult(True, tail(stdout, 1))

    def locks(self) -> list[str]:
        stdout, _, _ = self._run("list locks", ["list", "locks", "--no-lock"])
        return [line.strip() for line in stdout if line.strip()]

    def lock(self, lock_id: str) -> LockInfo | None:
        """Who holds lock ``lock_id`` (None: it went meanwhile)."""
        try:
            doc = self._json("cat lock", ["cat", "lock", lock_id, "--no-lock"])
        except ResticError as exc:
            if "not found" in exc.detail or "no such file" in exc.detail:
                return None
            raise
        return LockInfo.from_json(lock_id, doc or {})

    def remove_lock(self, lock_id: str) -> bool:
        """Remove one lock by id; only a local repository's can be (restic has no command for
        one lock): False for the others."""
        if not self.config.repository.startswith("/"):
            return False
        with contextlib.suppress(FileNotFoundError):
            os.unlink(os.path.join(self.config.repository, "locks", lock_id))
        return True

    def remove_all_locks(self) -> None:
        self._run("unlock", ["unlock", "--remove-all"])

    def local_lock_count(self) -> int | None:
        """Lock files of a local repository, counted without starting restic (None: remote)."""
        if not self.config.repository.startswith("/"):
            return None
        try:
            return sum(1 for _ in os.scandir(os.path.join(self.config.repository, "locks")))
        except FileNotFoundError:
            return 0
        except OSError:
            # Unreadable here (another user's repository, say): unknown, and restic itself
            # then says what is wrong in its own words.
            return None

    def unlock_stale(self) -> int | None:
        """Remove locks whose holder is gone (restic's own staleness test: the process is not
        running on this host, or the lock was not refreshed for 30 minutes); live locks stay.
        Returns how many were removed (None: unknown, for remote backends). Free for a local
        repository without locks; one restic run otherwise."""
        before = self.local_lock_count()
        if before == 0:
            return 0
        self._run("unlock", ["unlock"])
        after = self.local_lock_count()
        removed = None if before is None or after is None else before - after
        if removed:
            log.info("removed %d stale lock(s) from %s", removed, self.config.display)
        return removed

    @staticmethod
    def missing_repository(exc: ResticError) -> bool:
        return any(marker in exc.detail for marker in _MISSING_REPO)

    @staticmethod
    def missing_snapshot(exc: ResticError) -> bool:
        """restic could not find or load the snapshot it was given (removed by retention, say);
        a caller can go on without it."""
        return "no matching ID found" in exc.detail or "failed to load snapshot" in exc.detail

    @staticmethod
    def locked(exc: ResticError) -> bool:
        return "repository is already locked" in exc.detail

    def forget_ids(self, *ids: str, prune: bool = False) -> None:
        """Remove these snapshots (and, with ``prune``, the data only they used). One that
        is already gone (another invoker's retention) is not an error."""
        try:
            self._run("forget", ["forget", *(["--prune"] if prune else []), *ids])
        except ResticError as exc:
            if not self.missing_snapshot(exc):
                raise

    # -- data ---------------------------------------------------------------------------------

    def backup(
        self,
        paths: Sequence[str],
        *,
        host: str,
        tags: Sequence[str] = (),
        excludes: Sequence[str] = (),
        progress: Progress | None = None,
        parent: str | None = None,
    ) -> BackupSummary:
        """Back up ``paths`` against ``parent`` (the target's own last snapshot), or against
        none. restic's own choice of parent (the latest snapshot of the same host and paths)
        is never used: another target with the same host name and paths is not this one."""
        missing = [p for p in paths if not os.path.lexists(p)]
        if missing:
            raise ResticError("backup", 0, "path does not exist: " + ", ".join(missing))
        if not paths:
            raise ResticError("backup", 0, "no paths to back up")
        args = ["backup", "--json", "--host", host, *_parent_flags(parent), *paths]
        for tag in tags:
            args += ["--tag", tag]
        for pattern in excludes:
            args += ["--exclude", pattern]
        stdout, stderr, code = self._run(
            "backup", args, ok=(0, EXIT_PARTIAL), on_line=_progress_reader(progress)
        )
        summary = _summary(stdout)
        if code == EXIT_PARTIAL:
            unreadable = unreadable_items(stderr) or (tail(stderr),)
            raise ResticError("backup", code, tail(stderr), unreadable, self.stderr_dropped)
        if summary is None:
            raise ResticError("backup", code, f"no summary in restic's output: {tail(stderr)}")
        return summary

    def backup_stdin(
        self,
        producer: Sequence[str],
        *,
        filename: str,
        host: str,
        tags: Sequence[str] = (),
        env: dict[str, str] | None = None,
        progress: Progress | None = None,
    ) -> BackupSummary:
        """Back up what ``producer`` (e.g. pg_dump) writes to stdout. If the producer fails, the
        backup fails with its last stderr lines and the partial snapshot is forgotten.
        ``progress``: how much has been read so far (a stream has no total)."""
        try:
            source = subprocess.Popen(
                list(producer),
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                env={**os.environ, **(env or {})},
            )
        except OSError as exc:
            raise ResticError("backup", -1, f"cannot run {producer[0]}: {exc.strerror}") from None
        source_err = OutputLines()
        reader = threading.Thread(target=_drain, args=(source.stderr, source_err), daemon=True)
        reader.start()
        args = ["backup", "--json", "--host", host, "--stdin", "--stdin-filename", filename]
        args += _parent_flags(None)
        for tag in tags:
            args += ["--tag", tag]
        try:
            stdout, stderr, _ = self._run(
                "backup", args, stdin=source.stdout, on_line=_progress_reader(progress)
            )
        except ResticError:
            if source.poll() is None:  # restic is gone: a producer that waits would wait for ever
                source.terminate()
            raise
        finally:
            if source.stdout is not None:
                source.stdout.close()
            code = source.wait()
            reader.join()
        summary = _summary(stdout)
        if code != 0:
            if summary is not None:
                self.forget_ids(summary.snapshot_id)
            detail = tail([self.redact(line) for line in source_err.lines()])
            raise ResticError("backup", code, f"{producer[0]} exited with {code}: {detail}")
        if summary is None:
            raise ResticError("backup", 0, f"no summary in restic's output: {tail(stderr)}")
        return summary

    def restore(
        self,
        snapshot: str,
        target: str,
        *,
        host: str | None = None,
        include: Sequence[str] = (),
        exclude: Sequence[str] = (),
        progress: Progress | None = None,
    ) -> None:
        # --sparse: a file's holes stay holes (a 200 MB sparse file does not take 200 MB of the
        # volume it is restored into).
        args = ["restore", snapshot, "--target", target, "--sparse"]
        if progress is not None:
            args.append("--json")  # status lines; a failure's words come on stderr still
        if host:
            args += ["--host", host]
        for path in include:
            args += ["--include", path]
        for pattern in exclude:
            args += ["--exclude", pattern]
        self._run("restore", args, on_line=_progress_reader(progress))

    def list_files(
        self, snapshot: str, *, tags: Sequence[str] = (), host: str | None = None
    ) -> list[str]:
        """``restic ls --json`` of a snapshot (``latest`` with ``tags`` and ``host``: the newest
        carrying all of them): its description, then one line per entry."""
        args = ["ls", snapshot, "--json", "--no-lock"]
        if tags:
            args += ["--tag", ",".join(tags)]
        if host:
            args += ["--host", host]
        stdout, _, _ = self._run("ls", args)
        return stdout

    def restore_verified(
        self,
        snapshot: str,
        target: str,
        *,
        include_file: str | None = None,
        tags: Sequence[str] = (),
        host: str | None = None,
    ) -> tuple[int, list[str], list[str]]:
        """Restore ``snapshot`` (``latest`` with ``tags`` and ``host``: the newest snapshot
        carrying all of them) into ``target`` and read every restored file back against the
        blobs its tree names (``--verify``). Unlike ``restore``, a restore that could not
        restore or verify some files is an answer, not an error: restic's exit code (0 or 1),
        its output (the summary) and its error lines, which name the files. Anything else
        raises."""
        args = ["restore", snapshot, "--target", target, "--sparse", "--verify", "--json"]
        if include_file:
            args += ["--include-file", include_file]
        if tags:
            args += ["--tag", ",".join(tags)]
        if host:
            args += ["--host", host]
        stdout, stderr, code = self._run("restore", args, ok=(0, 1))
        return code, stdout, stderr

    def restore_dry_run(
        self,
        snapshot: str,
        target: str,
        on_line: Callable[[str], None],
        *,
        include: Sequence[str] = (),
    ) -> None:
        """What restoring ``snapshot`` into ``target`` would do to what is there, written
        nowhere (``--dry-run``, ``--no-lock``: not even a lock in the repository); restic's
        line per file (``-vv``) goes to ``on_line``."""
        args = ["restore", snapshot, "--target", target, "--dry-run", "--json", "-vv"]
        args += ["--no-lock", *[a for path in include for a in ("--include", path)]]
        self._run("restore", args, on_line=on_line)

    def check_data(self, read_bytes: int) -> CheckResult:
        """``restic check``, reading a random ``read_bytes`` of the repository's packs too
        (none when 0)."""
        args = ["check"]
        if read_bytes > 0:
            args.append(f"--read-data-subset={max(read_bytes // 1024, 1)}K")
        try:
            stdout, _, _ = self._run("check", args)
        except ResticError as exc:
            return CheckResult(False, exc.detail, denied_paths(exc.detail))
        return CheckResult(True, tail(stdout, 1))

    @contextlib.contextmanager
    def dump(self, snapshot: str, filename: str, *, host: str | None = None) -> Iterator[IO[bytes]]:
        """A stream of one file of a snapshot (for restoring a stdin backup)."""
        args = ["dump", snapshot, filename, *(["--host", host] if host else [])]
        self._refuse_if_cancelled("dump")
        proc = subprocess.Popen(
            self._command(args),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=self._environ(),
        )
        errors = OutputLines()
        watch = BackendWatch(self.backend_retry_limit)
        reader = threading.Thread(target=_drain, args=(proc.stderr, errors, watch), daemon=True)
        reader.start()
        supervisor = _Supervisor(proc, watch, self.cancel)
        stream = proc.stdout
        if stream is None:  # pragma: no cover - PIPE always gives a stream
            raise ResticError("dump", -1, "no output stream")
        try:
            yield stream
        finally:
            stream.close()
            code = proc.wait()
            reader.join()
            supervisor.stop()
        if code != 0 and supervisor.stopped:
            raise ResticError("dump", code, self.redact(supervisor.reason()))
        if code != 0:
            raise ResticError("dump", code, tail([self.redact(line) for line in errors.lines()]))


def _drain(stream: IO[bytes] | None, into: OutputLines, watch: BackendWatch | None = None) -> None:
    if stream is None:
        return
    for raw in stream:
        line = raw.decode(errors="replace").rstrip("\n")
        into.append(line)
        if watch is not None:
            watch.seen(line)


class _Supervisor:
    """Stops a restic process once its ``BackendWatch`` gives up or its work is cancelled:
    SIGTERM first (restic then removes its lock), SIGKILL if it has not gone after a grace
    period."""

    def __init__(self, proc: subprocess.Popen[bytes], watch: BackendWatch, cancel: Cancel) -> None:
        self.proc = proc
        self.watch = watch
        self.cancel = cancel
        self.stopped = False
        self._cancelled: str | None = None
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)
        self._thread.start()

    def _watch(self) -> None:
        while not self._done.wait(0.5):
            if self.proc.poll() is not None:
                return
            self._cancelled = self.cancel.reason
            if self._cancelled is not None or self.watch.give_up():
                self.stopped = True
                self.proc.terminate()
                try:
                    self.proc.wait(_STOP_GRACE)
                except subprocess.TimeoutExpired:
                    self.proc.kill()
                return

    def stop(self) -> None:
        self._done.set()
        self._thread.join()

    def reason(self) -> str:
        """Why the process was stopped, in words for the host's error."""
        if self._cancelled is not None:
            return f"stopped: {self._cancelled}"
        return self.watch.reason()


def _parent_flags(parent: str | None) -> list[str]:
    if parent:
        return ["--parent", parent]
    # Grouped by tags too, restic finds a parent only among snapshots with all of this backup's
    # tags: the session's own (an earlier attempt of this very host), never another target's.
    return ["--group-by", "host,paths,tags"]


def _summary(stdout: Sequence[str]) -> BackupSummary | None:
    for line in reversed(stdout):
        if '"message_type":"summary"' in line:
            return BackupSummary.from_json(json.loads(line))
    return None


def _progress_reader(progress: Progress | None) -> Callable[[str], None] | None:
    if progress is None:
        return None
    last = [0.0]

    def on_line(line: str) -> None:
        now = time.monotonic()
        if now - last[0] < 1.0:
            return
        last[0] = now
        found = parse_progress(line)
        if found is not None:
            progress(found)

    return on_line


def parse_progress(line: str) -> HostProgress | None:
    """A ``status`` line of ``restic backup --json`` or ``restic restore --json``."""
    doc = json_line(line)
    if doc is None or doc.get("message_type") != "status":
        return None
    remaining = doc.get("seconds_remaining")
    bytes_done = doc.get("bytes_done", doc.get("bytes_restored")) or 0
    files_done = doc.get("files_done", doc.get("files_restored")) or 0
    try:
        return HostProgress(
            fraction=min(1.0, max(0.0, float(doc.get("percent_done") or 0.0))),
            bytes_done=int(bytes_done),
            total_bytes=int(doc.get("total_bytes") or 0),
            files_done=int(files_done),
            total_files=int(doc.get("total_files") or 0),
            seconds_remaining=int(remaining) if remaining is not None else None,
        )
    except (TypeError, ValueError):
        return None
