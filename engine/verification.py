"""What a verified restore checks, as pure functions over restic's own words.

A verification restores a snapshot into scratch space and proves the copy. restic reads every
restored file back and hashes it against the blobs its tree names (``restore --verify``); what
it could not restore or verify it names, file by file (``restore_problems``). A snapshot restored
whole is then held against restic's own count of its tree (``restore_summary``, ``copy_size``,
``summary_problems``); one larger than the budget is listed (``listed_entries``), a sample of its
files chosen (``choose``) and each compared with the listing (``compare``). The verdict a
verification Job leaves in its termination log for the operator is written and read here
(``Verdict``), bounded to what a termination log holds and tolerant of anything else found
there.
"""

from __future__ import annotations

import hashlib
import json
import os
import stat
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from engine.restic import json_line, json_lines
from engine.results import read_count, read_text

TERMINATION_LIMIT = 3900  # bytes: the kubelet keeps 4096 of a termination message
PROBLEMS_KEPT = 20  # per snapshot, in a verdict; the rest are counted
TEXT_LIMIT = 300  # characters of any one string read back from a termination log


@dataclass(frozen=True)
class ListedEntry:
    """One entry of a snapshot, as ``restic ls --json`` lists it."""

    path: str
    kind: str  # file, dir, symlink, dev, chardev, fifo, socket
    size: int = 0


def listed_entries(lines: Iterable[str]) -> list[ListedEntry]:
    """The entries of ``restic ls --json`` output (its first line describes the snapshot)."""
    found: list[ListedEntry] = []
    for doc in json_lines(lines):
        if doc.get("struct_type", "node") != "node":
            continue
        path, kind = doc.get("path"), doc.get("type")
        if not isinstance(path, str) or not isinstance(kind, str):
            continue
        size = doc.get("size")
        found.append(ListedEntry(path, kind, size if isinstance(size, int) else 0))
    return found


def listed_snapshot_id(lines: Iterable[str]) -> str:
    """The snapshot's id, from the first line of ``restic ls --json``."""
    for doc in json_lines(lines):
        if doc.get("struct_type") == "snapshot":
            return str(doc.get("id") or "")
    return ""


@dataclass(frozen=True)
class Selection:
    """What a verification reads of a snapshot."""

    entries: tuple[ListedEntry, ...]  # what is restored and compared
    bytes: int  # the files' bytes among them
    total_files: int
    total_bytes: int

    @property
    def files(self) -> int:
        return sum(1 for e in self.entries if e.kind == "file")

    @property
    def whole(self) -> bool:
        return self.files == self.total_files

    def includes(self) -> list[str]:
        """restic ``--include`` patterns for a partial selection: each chosen file by its
        exact path (restic's patterns treat ``*``, ``?``, ``[`` and ``\\`` specially)."""
        return [_literal(e.path) for e in self.entries if e.kind == "file"]


def _literal(path: str) -> str:
    return "".join(f"[{ch}]" if ch in "*?[" else ("\\\\" if ch == "\\" else ch) for ch in path)


def choose(entries: Sequence[ListedEntry], budget: int, seed: str) -> Selection:
    """All of a snapshot when its files fit ``budget`` bytes; otherwise files picked in an
    order that ``seed`` (the day, say) shuffles, each one that still fits, so that successive
    verifications read different parts of a large snapshot."""
    files = [e for e in entries if e.kind == "file"]
    total = sum(e.size for e in files)
    if total <= budget:
        return Selection(tuple(entries), total, len(files), total)

    def order(entry: ListedEntry) -> str:
        return hashlib.sha256(f"{seed}\0{entry.path}".encode()).hexdigest()

    chosen: list[ListedEntry] = []
    used = 0
    for entry in sorted(files, key=order):
        if used + entry.size <= budget:
            chosen.append(entry)
            used += entry.size
    chosen.sort(key=lambda e: e.path)
    return Selection(tuple(chosen), used, len(files), total)


@dataclass(frozen=True)
class RestoreSummary:
    """restic's count of what a restore covered (``{"message_type": "summary"}``): entries
    (files and folders) and bytes of the snapshot's tree, and how many of them it restored."""

    total_files: int
    files_restored: int
    total_bytes: int
    bytes_restored: int


def restore_summary(lines: Iterable[str]) -> RestoreSummary | None:
    """The summary among a ``restic restore --json`` run's output lines."""
    for doc in json_lines(line for line in lines if '"summary"' in line):
        if doc.get("message_type") == "summary":
            return RestoreSummary(
                read_count(doc.get("total_files")),
                read_count(doc.get("files_restored")),
                read_count(doc.get("total_bytes")),
                read_count(doc.get("bytes_restored")),
            )
    return None


@dataclass(frozen=True)
class CopySize:
    """What a restored copy holds: its entries (files, folders, links…) and its files' bytes."""

    entries: int
    files: int
    bytes: int


def copy_size(root: Path) -> CopySize:
    """Walk the restored copy under ``root`` (links are not followed)."""
    entries = files = size = 0
    for folder, dirs, names in os.walk(root):
        entries += len(dirs) + len(names)
        for name in names:
            info = os.lstat(os.path.join(folder, name))
            if stat.S_ISREG(info.st_mode):
                files += 1
                size += info.st_size
    return CopySize(entries, files, size)


def summary_problems(summary: RestoreSummary | None, copy: CopySize) -> list[str]:
    """Where the copy falls short of what restic's tree lists (restic said nothing of a file:
    the counts are all there is to go by)."""
    if summary is None:
        return ["restic's restore gave no summary: what it covered is unknown"]
    problems = []
    if summary.files_restored < summary.total_files or summary.bytes_restored < summary.total_bytes:
        problems.append(
            f"restic restored {summary.files_restored} of {summary.total_files} files and "
            f"folders, {summary.bytes_restored} of {summary.total_bytes} bytes"
        )
    if copy.entries != summary.total_files or copy.bytes != summary.total_bytes:
        problems.append(
            f"the restored copy holds {copy.entries} files and folders, {copy.bytes} bytes; "
            f"the snapshot's tree lists {summary.total_files}, {summary.total_bytes} bytes"
        )
    return problems


_KINDS = {
    "file": stat.S_ISREG,
    "dir": stat.S_ISDIR,
    "symlink": stat.S_ISLNK,
    "fifo": stat.S_ISFIFO,
    "socket": stat.S_ISSOCK,
    "dev": stat.S_ISBLK,
    "chardev": stat.S_ISCHR,
}


def compare(entries: Iterable[ListedEntry], root: Path) -> list[str]:
    """What differs between ``entries`` and their restored copies under ``root``: missing,
    of another type, or (a file) of another size."""
    problems: list[str] = []
    for entry in entries:
        at = root / entry.path.lstrip("/")
        try:
            info = at.lstat()
        except OSError:
            problems.append(f"{entry.path}: missing from the restored copy")
            continue
        is_kind = _KINDS.get(entry.kind)
        if is_kind is not None and not is_kind(info.st_mode):
            problems.append(
                f"{entry.path}: restored as another type than the snapshot's {entry.kind}"
            )
            continue
        if entry.kind == "file" and info.st_size != entry.size:
            problems.append(
                f"{entry.path}: {info.st_size} bytes restored, the snapshot lists {entry.size}"
            )
    return problems


def restore_problems(stderr: Sequence[str]) -> list[str]:
    """The files restic said it could not restore or whose content did not verify, in its own
    words: ``--json`` error lines (``{"message_type": "error", "item": "/data/a", "error":
    {"message": "decrypting blob <data/65…> from 06233b46 failed: ciphertext verification
    failed"}}``), or the plain lines of an older restic."""
    found: list[str] = []
    for line in stderr:
        text = line.strip()
        if text.startswith("{"):
            doc = json_line(text)
            if doc is None or doc.get("message_type") != "error":
                continue
            error = doc.get("error")
            message = error.get("message") if isinstance(error, dict) else None
            item = doc.get("item") or doc.get("during") or "restore"
            if not any(f.startswith(f"{item}: ") for f in found):  # its first words only
                found.append(f"{item}: restic: {message or 'error'}")
            continue
        for prefix in ("ignoring error for ", "error verifying ", "Error verifying "):
            if text.startswith(prefix):
                found.append(f"restic: {text}")
    return found


def verified_session(message: str) -> str:
    """The session a ``BackupVerified`` message is about (each begins ``session <name>: ``)."""
    head, sep, _ = message.partition(": ")
    return head.removeprefix("session ") if sep and head.startswith("session ") else ""


@dataclass(frozen=True)
class SnapshotVerdict:
    """What verifying one snapshot of one target's host found."""

    target: str  # Kind/name
    host: str
    snapshot: str  # short id
    files: int = 0  # files read
    bytes: int = 0  # bytes read
    total_files: int = 0
    total_bytes: int = 0
    problems: tuple[str, ...] = ()
    more_problems: int = 0  # beyond those kept
    error: str = ""  # it could not be verified at all (restic's words)

    @property
    def ok(self) -> bool:
        return not self.problems and not self.more_problems and not self.error

    def says(self) -> str:
        what = f"{self.target} host {self.host} snapshot {self.snapshot}"
        if self.error:
            return f"{what}: not verified: {self.error}"
        read = f"{self.files} files, {_size(self.bytes)}"
        if self.files != self.total_files or self.bytes != self.total_bytes:
            read = (
                f"{self.files} of {self.total_files} files, {_size(self.bytes)} of "
                f"{_size(self.total_bytes)}"
            )
        if self.ok:
            return f"{what}: {read} restored and identical"
        listed = "; ".join(self.problems)
        more = f"; and {self.more_problems} more" if self.more_problems else ""
        return f"{what}: {read} read, {self.differences} differ: {listed}{more}"

    @property
    def differences(self) -> int:
        return len(self.problems) + self.more_problems


def _size(count: int) -> str:
    value = float(count)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{int(value)} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{count} B"


@dataclass(frozen=True)
class Verdict:
    """A verification's whole result: each snapshot's, and ``restic check``'s."""

    session: str
    snapshots: tuple[SnapshotVerdict, ...] = ()
    check: str = ""  # restic check's words
    check_ok: bool = True
    error: str = ""  # nothing could be verified (no Repository, no snapshot…)

    @property
    def ok(self) -> bool:
        return (
            not self.error
            and self.check_ok
            and bool(self.snapshots)
            and all(s.ok for s in self.snapshots)
        )

    @property
    def bytes(self) -> int:
        return sum(s.bytes for s in self.snapshots)

    @property
    def files(self) -> int:
        return sum(s.files for s in self.snapshots)

    def says(self) -> str:
        if self.error:
            return f"session {self.session}: not verified: {self.error}"
        parts = [s.says() for s in self.snapshots]
        if self.check:
            parts.append(self.check if not self.check_ok else f"restic check: {self.check}")
        return f"session {self.session}: " + "; ".join(parts)

    def to_termination(self) -> str:
        """The verdict as JSON within ``TERMINATION_LIMIT`` bytes: problems are cut (and
        counted) until it fits."""
        verdict = self
        keep = PROBLEMS_KEPT
        while True:
            text = json.dumps(_as_doc(verdict), separators=(",", ":"))
            if len(text.encode()) <= TERMINATION_LIMIT or keep == 0:
                break
            keep //= 2
            verdict = replace(verdict, snapshots=tuple(_cut(s, keep) for s in verdict.snapshots))
        if len(text.encode()) > TERMINATION_LIMIT:  # still too long: the words are cut
            text = json.dumps(_as_doc(_shortened(verdict)), separators=(",", ":"))
        return text

    @classmethod
    def from_termination(cls, text: str) -> Verdict | None:
        """A verdict read back from a termination log; None for anything that is not one."""
        try:
            doc = json.loads(text)
        except ValueError:
            return None
        if not isinstance(doc, dict) or not isinstance(doc.get("session"), str):
            return None
        snaps = doc.get("snapshots")
        return cls(
            session=_text(doc.get("session")),
            snapshots=tuple(
                _snapshot(s)
                for s in (snaps if isinstance(snaps, list) else [])[:100]
                if isinstance(s, dict)
            ),
            check=_text(doc.get("check")),
            check_ok=doc.get("check_ok") is not False,
            error=_text(doc.get("error")),
        )


def _cut(s: SnapshotVerdict, keep: int) -> SnapshotVerdict:
    if len(s.problems) <= keep:
        return s
    return replace(
        s, problems=s.problems[:keep], more_problems=s.more_problems + len(s.problems) - keep
    )


def _shortened(verdict: Verdict) -> Verdict:
    def short(text: str) -> str:
        return text if len(text) <= 120 else text[:117] + "..."

    return replace(
        verdict,
        check=short(verdict.check),
        error=short(verdict.error),
        snapshots=tuple(replace(s, error=short(s.error)) for s in verdict.snapshots[:10]),
    )


def _as_doc(verdict: Verdict) -> dict[str, Any]:
    doc: dict[str, Any] = {"session": verdict.session}
    if verdict.error:
        doc["error"] = verdict.error
    if verdict.check:
        doc["check"] = verdict.check
        doc["check_ok"] = verdict.check_ok
    doc["snapshots"] = [
        {
            key: value
            for key, value in (
                ("target", s.target),
                ("host", s.host),
                ("snapshot", s.snapshot),
                ("files", s.files),
                ("bytes", s.bytes),
                ("total_files", s.total_files),
                ("total_bytes", s.total_bytes),
                ("problems", list(s.problems)),
                ("more_problems", s.more_problems),
                ("error", s.error),
            )
            if value or key in ("target", "host", "snapshot")
        }
        for s in verdict.snapshots
    ]
    return doc


def _text(value: object) -> str:
    return read_text(value, TEXT_LIMIT)


def _snapshot(doc: dict[str, Any]) -> SnapshotVerdict:
    problems = doc.get("problems")
    listed = [_text(p) for p in (problems if isinstance(problems, list) else [])]
    return SnapshotVerdict(
        target=_text(doc.get("target")),
        host=_text(doc.get("host")),
        snapshot=_text(doc.get("snapshot")),
        files=read_count(doc.get("files")),
        bytes=read_count(doc.get("bytes")),
        total_files=read_count(doc.get("total_files")),
        total_bytes=read_count(doc.get("total_bytes")),
        problems=tuple(p for p in listed[:PROBLEMS_KEPT] if p),
        more_problems=read_count(doc.get("more_problems")) + max(len(listed) - PROBLEMS_KEPT, 0),
        error=_text(doc.get("error")),
    )
