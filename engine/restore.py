"""Restoring what a backup made: a target's files back into place (``stash restore``, the
``pvc-restore`` Function) or a dump streamed into a restore command (``stash restore-dump``, the
PostgreSQL example's restore). The snapshot is the newest of the host and target unless one is
named. A restore command that fails fails the restore, with its own last lines.
"""

from __future__ import annotations

import logging
import shlex
import subprocess
import threading
from collections.abc import Sequence
from dataclasses import dataclass

from engine.host_backup import target_tag
from engine.restic import Restic, ResticError, Snapshot, tail

log = logging.getLogger(__name__)
_CHUNK = 1 << 20


class RestoreError(RuntimeError):
    """Nothing to restore, or the restore failed; says what and why."""


@dataclass(frozen=True)
class RestoreTarget:
    target_kind: str
    target_name: str
    hostname: str
    snapshot: str = "latest"


def pick_snapshot(restic: Restic, what: RestoreTarget) -> Snapshot:
    snapshots = restic.snapshots(
        host=what.hostname, tags=[target_tag(what.target_kind, what.target_name)]
    )
    if what.snapshot != "latest":
        snapshots = [s for s in snapshots if what.snapshot in (s.id, s.short_id)]
    if not snapshots:
        raise RestoreError(
            f"no snapshot {what.snapshot} of {what.target_kind}/{what.target_name} "
            f"host {what.hostname}"
        )
    return max(snapshots, key=lambda s: s.time)


def restore_paths(
    restic: Restic, what: RestoreTarget, target_dir: str = "/", include: Sequence[str] = ()
) -> Snapshot:
    snapshot = pick_snapshot(restic, what)
    try:
        restic.restore(snapshot.id, target_dir, include=include)
    except ResticError as exc:
        raise RestoreError(f"restoring snapshot {snapshot.short_id}: {exc}") from None
    log.info(
        "restored snapshot %s (%s) into %s", snapshot.short_id, ",".join(snapshot.paths), target_dir
    )
    return snapshot


def restore_dump(restic: Restic, what: RestoreTarget, filename: str, command: str) -> Snapshot:
    """Stream the dump ``filename`` of the snapshot into ``command`` (e.g. psql)."""
    snapshot = pick_snapshot(restic, what)
    argv = shlex.split(command)
    try:
        sink = subprocess.Popen(
            argv, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
        )
    except OSError as exc:
        raise RestoreError(f"cannot run {argv[0]}: {exc.strerror}") from None
    errors: list[str] = []
    reader = threading.Thread(
        target=lambda: errors.extend(
            line.decode(errors="replace").rstrip() for line in sink.stderr or ()
        ),
        daemon=True,
    )
    reader.start()
    try:
        with restic.dump(snapshot.id, "/" + filename.lstrip("/")) as stream:
            assert sink.stdin is not None  # noqa: S101 - PIPE always gives a stream
            while chunk := stream.read(_CHUNK):
                sink.stdin.write(chunk)
    except (ResticError, BrokenPipeError) as exc:
        sink.kill()
        raise RestoreError(f"reading {filename} from snapshot {snapshot.short_id}: {exc}") from None
    finally:
        if sink.stdin is not None and not sink.stdin.closed:
            sink.stdin.close()
    code = sink.wait()
    reader.join()
    if code != 0:
        raise RestoreError(f"{argv[0]} exited with {code}: {tail(errors)}")
    return snapshot
