"""What a restore would do, from restic's own dry run (``restic restore --dry-run --json -vv``):
which files it would add, overwrite, and leave alone, read against the live data.

restic says ``restored`` for a file it would create, ``updated`` for one it would overwrite,
``unchanged`` for one whose content already matches. A ``Preview`` keeps the counts and bytes of
each, and the first ``LISTED`` paths of each, so that what it says stays bounded however large
the snapshot; the whole list is the program's log. restic's lines do not tell a folder from an
empty file: entries of no bytes are not counted.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from engine.restic import json_line
from engine.results import read_count, read_text

LISTED = 25  # paths kept per kind, in the termination log
TEXT_LIMIT = 300
KINDS = {"restored": "add", "updated": "overwrite", "unchanged": "leave"}


@dataclass
class Group:
    """Files a restore would treat one way."""

    count: int = 0
    bytes: int = 0
    paths: list[str] = field(default_factory=list)

    def add(self, path: str, size: int) -> None:
        self.count += 1
        self.bytes += size
        if len(self.paths) < LISTED:
            self.paths.append(path)


@dataclass
class Preview:
    """What restoring one host's snapshot would do to the live data."""

    target: str = ""  # Kind/name
    host: str = ""
    snapshot: str = ""  # short id
    snapshot_time: str = ""
    add: Group = field(default_factory=Group)
    overwrite: Group = field(default_factory=Group)
    leave: Group = field(default_factory=Group)
    error: str = ""

    def take(self, line: str) -> str | None:
        """Account one line of restic's output; the line to log for it, if any."""
        if '"verbose_status"' not in line:
            return None
        doc = json_line(line)
        if doc is None or doc.get("message_type") != "verbose_status":
            return None
        kind = KINDS.get(str(doc.get("action")))
        item, size = doc.get("item"), doc.get("size")
        if kind is None or not isinstance(item, str) or item.endswith("/"):
            return None
        size = size if isinstance(size, int) and size >= 0 else 0
        if size == 0:  # a folder, or an empty file: restic's line does not say which
            return None
        getattr(self, kind).add(item, size)
        return f"{kind:9} {item} ({size} bytes)"

    def to_termination(self) -> str:
        return json.dumps(_doc(self), separators=(",", ":"))

    @classmethod
    def from_termination(cls, text: str) -> Preview | None:
        """A preview read back from a termination log; None for anything that is not one."""
        try:
            doc = json.loads(text)
        except ValueError:
            return None
        if not isinstance(doc, dict) or "target" not in doc:
            return None
        return cls(
            target=_text(doc.get("target")),
            host=_text(doc.get("host")),
            snapshot=_text(doc.get("snapshot")),
            snapshot_time=_text(doc.get("snapshot_time")),
            add=_group(doc.get("add")),
            overwrite=_group(doc.get("overwrite")),
            leave=_group(doc.get("leave")),
            error=_text(doc.get("error")),
        )


def preview_of(lines: Iterable[str], preview: Preview) -> Preview:
    for line in lines:
        preview.take(line)
    return preview


def _doc(preview: Preview) -> dict[str, Any]:
    def group(g: Group) -> dict[str, Any]:
        return {"count": g.count, "bytes": g.bytes, "paths": g.paths[:LISTED]}

    doc: dict[str, Any] = {
        "target": preview.target,
        "host": preview.host,
        "snapshot": preview.snapshot,
        "snapshot_time": preview.snapshot_time,
        "add": group(preview.add),
        "overwrite": group(preview.overwrite),
        "leave": group(preview.leave),
    }
    if preview.error:
        doc["error"] = preview.error[:1000]
    text = json.dumps(doc)
    while len(text.encode()) > 3900 and any(doc[k]["paths"] for k in KINDS.values()):
        for key in KINDS.values():
            doc[key]["paths"] = doc[key]["paths"][: len(doc[key]["paths"]) // 2]
        text = json.dumps(doc)
    return doc


def _text(value: object) -> str:
    return read_text(value, TEXT_LIMIT)


def _group(value: object) -> Group:
    doc = value if isinstance(value, dict) else {}
    paths = doc.get("paths")
    listed = [_text(p) for p in (paths if isinstance(paths, list) else [])[:LISTED]]
    return Group(
        read_count(doc.get("count")), read_count(doc.get("bytes")), [p for p in listed if p]
    )
