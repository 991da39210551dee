"""What one host's backup produced, and how it is written into ``BackupSession.status``.

``HostResult`` is built by whoever ran restic (the sidecar, a Job step) and turned into Stash's
``HostBackupStats`` (human sizes, Go durations) for the session; the operator reads it back from
there (``from_status``) for the host's metrics. It also travels between the two steps of a
backup Job as a JSON file in the output directory.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from api.objects import JSON
from api.units import go_duration, human_size, parse_duration, parse_size

if TYPE_CHECKING:
    from engine.restic import BackupSummary

RESULT_FILE = "result.json"


def read_text(value: object, limit: int | None = None) -> str:
    """A string written by a pod (a status, a termination log), whatever it is: "" when it is
    not one; at most ``limit`` characters."""
    return value[:limit] if isinstance(value, str) else ""


def read_count(value: object) -> int:
    """A count written by a pod, whatever it is: 0 when it is not a non-negative integer."""
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else 0


@dataclass(frozen=True)
class SnapshotResult:
    snapshot_id: str
    path: str
    total_bytes: int
    uploaded_bytes: int
    duration: float
    files_total: int
    files_new: int
    files_modified: int
    files_unmodified: int

    @classmethod
    def from_summary(cls, path: str, summary: BackupSummary) -> SnapshotResult:
        return cls(
            snapshot_id=summary.snapshot_id,
            path=path,
            total_bytes=summary.total_bytes,
            uploaded_bytes=summary.data_added,
            duration=summary.duration,
            files_total=summary.total_files,
            files_new=summary.files_new,
            files_modified=summary.files_changed,
            files_unmodified=summary.files_unmodified,
        )

    @classmethod
    def from_status(cls, doc: object) -> SnapshotResult:
        """``to_status`` read back, whatever its shape (a pod wrote it): sizes to within the
        three decimals Stash's format keeps, anything unreadable as zero."""
        snap = doc if isinstance(doc, dict) else {}
        files = snap.get("fileStats")
        files = files if isinstance(files, dict) else {}
        return cls(
            snapshot_id=read_text(snap.get("name")),
            path=read_text(snap.get("path")),
            total_bytes=parse_size(read_text(snap.get("totalSize"))),
            uploaded_bytes=parse_size(read_text(snap.get("uploaded"))),
            duration=parse_duration(read_text(snap.get("processingTime"))).total_seconds(),
            files_total=read_count(files.get("totalFiles")),
            files_new=read_count(files.get("newFiles")),
            files_modified=read_count(files.get("modifiedFiles")),
            files_unmodified=read_count(files.get("unmodifiedFiles")),
        )

    def to_status(self) -> JSON:
        return {
            "name": self.snapshot_id,
            "path": self.path,
            "totalSize": human_size(self.total_bytes),
            "uploaded": human_size(self.uploaded_bytes),
            "processingTime": go_duration(self.duration),
            "fileStats": {
                "totalFiles": self.files_total,
                "newFiles": self.files_new,
                "modifiedFiles": self.files_modified,
                "unmodifiedFiles": self.files_unmodified,
            },
        }


@dataclass(frozen=True)
class HookOutcome:
    """How a member's ``preBackup`` / ``postBackup`` (``preRestore`` / ``postRestore``) hook
    went on one host."""

    kind: Literal["preBackup", "postBackup", "preRestore", "postRestore"]
    ok: bool
    message: str


@dataclass(frozen=True)
class HostResult:
    hostname: str
    phase: Literal["Succeeded", "Failed"]
    duration: float
    snapshots: tuple[SnapshotResult, ...] = field(default=())
    error: str = ""
    hooks: tuple[HookOutcome, ...] = field(default=())

    @property
    def succeeded(self) -> bool:
        return self.phase == "Succeeded"

    @classmethod
    def from_status(cls, doc: object) -> HostResult:
        """A host's entry of ``status.targets[].stats`` (or a restore's ``stats``) read back,
        whatever its shape: a phase other than Succeeded reads as Failed."""
        stats = doc if isinstance(doc, dict) else {}
        snapshots = stats.get("snapshots")
        return cls(
            hostname=read_text(stats.get("hostname")),
            phase="Succeeded" if stats.get("phase") == "Succeeded" else "Failed",
            duration=parse_duration(read_text(stats.get("duration"))).total_seconds(),
            snapshots=tuple(
                SnapshotResult.from_status(s)
                for s in (snapshots if isinstance(snapshots, list) else [])
            ),
            error=read_text(stats.get("error")),
        )

    def to_status(self) -> JSON:
        stats: JSON = {
            "hostname": self.hostname,
            "phase": self.phase,
            "duration": go_duration(self.duration),
        }
        if self.snapshots:
            stats["snapshots"] = [s.to_status() for s in self.snapshots]
        if self.error:
            stats["error"] = self.error
        return stats

    def totals(self) -> SnapshotResult:
        """All snapshots summed (a host may back up several paths as one snapshot or more)."""
        return SnapshotResult(
            snapshot_id=",".join(s.snapshot_id for s in self.snapshots),
            path=",".join(s.path for s in self.snapshots),
            total_bytes=sum(s.total_bytes for s in self.snapshots),
            uploaded_bytes=sum(s.uploaded_bytes for s in self.snapshots),
            duration=sum(s.duration for s in self.snapshots),
            files_total=sum(s.files_total for s in self.snapshots),
            files_new=sum(s.files_new for s in self.snapshots),
            files_modified=sum(s.files_modified for s in self.snapshots),
            files_unmodified=sum(s.files_unmodified for s in self.snapshots),
        )

    def save(self, directory: Path) -> Path:
        """Write to ``directory/result.json`` atomically (the next Job step reads it)."""
        directory.mkdir(parents=True, exist_ok=True)
        path = directory / RESULT_FILE
        partial = path.with_suffix(".partial")
        partial.write_text(json.dumps(asdict(self)))
        os.replace(partial, path)
        return path

    @classmethod
    def load(cls, directory: Path) -> HostResult:
        doc = json.loads((directory / RESULT_FILE).read_text())
        snapshots = tuple(SnapshotResult(**s) for s in doc.pop("snapshots", []))
        hooks = tuple(HookOutcome(**h) for h in doc.pop("hooks", []))
        return cls(**doc, snapshots=snapshots, hooks=hooks)


@dataclass(frozen=True)
class RepositoryFigures:
    """What the last host of a session learnt about the repository."""

    integrity: bool
    size_bytes: int
    snapshot_count: int
    snapshots_removed: int
