"""``stash restore-preview``: the preview Job's program (``pods.preview``), made by ``kubectl stash
restore --preview`` in the user's namespace with the user's own rights.

It sees the live data the way the restore would (the target's volumes mounted where the restore
mounts them, read-only), picks the snapshot the restore would pick among the namespace's own
(its tags), and has restic dry-run the restore against that data: which files it would add,
overwrite and leave alone. It writes nothing: not the data (read-only mounts, ``--dry-run``),
not the repository (``--no-lock``), not the API (it has no token). Each file is a line of its
log; the counts and the first paths of each kind go to its termination log, where the plugin
reads them.
"""

from __future__ import annotations

import contextlib
import json
import logging
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from pydantic import ValidationError

from agent.host_backup import SetupError, open_repository
from api.repository import Repository
from api.tags import SnapshotOwner, target_tag
from engine.preview import Preview
from engine.restic import ResticError, Snapshot

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PreviewRequest:
    namespace: str  # whose snapshots (the restore's namespace)
    target_kind: str
    target_name: str
    host: str  # the restic host whose snapshot the restore would take
    snapshot: str = "latest"  # or an id
    paths: tuple[str, ...] = ()  # only these (the restore rule's paths)
    target_dir: str = "/"  # where the restore would write


def read_secret(folder: Path) -> dict[str, str]:
    """A Secret mounted as a volume: one file per key (Kubernetes' ``..data`` links skipped)."""
    return {
        path.name: path.read_text()
        for path in sorted(folder.iterdir())
        if not path.name.startswith("..") and path.is_file()
    }


def pick(snapshots: Sequence[Snapshot], owner: SnapshotOwner, wanted: str) -> Snapshot | None:
    """The snapshot the restore would take: the owner's newest, or the one named."""
    own = [s for s in snapshots if owner.owns(s.tags)]
    if wanted not in ("", "latest"):
        own = [s for s in own if wanted in (s.id, s.short_id)]
    return max(own, key=lambda s: s.time) if own else None


def preview(repository: Repository, secret: dict[str, str], request: PreviewRequest) -> Preview:
    """Dry-run the restore; every failure is said in the preview, never raised."""
    found = Preview(f"{request.target_kind}/{request.target_name}", request.host)
    owner = SnapshotOwner(request.namespace, repository.metadata.namespace or request.namespace)
    try:
        with open_repository(repository, secret, cache_dir=None) as restic:
            tag = target_tag(request.target_kind, request.target_name)
            snapshot = pick(
                restic.snapshots(host=request.host, tags=[tag], no_lock=True),
                owner,
                request.snapshot,
            )
            if snapshot is None:
                found.error = (
                    f"no snapshot {request.snapshot} of {found.target} host {request.host} "
                    f"in namespace {request.namespace}"
                )
                return found
            found.snapshot, found.snapshot_time = snapshot.short_id, snapshot.time[:19]

            def each(line: str) -> None:
                said = found.take(line)
                if said is not None:
                    print(said, flush=True)

            restic.restore_dry_run(
                snapshot.id, request.target_dir, each, include=list(request.paths)
            )
    except (SetupError, ResticError) as exc:
        found.error = str(exc)
    return found


def preview_in_pod(
    repository_json: str, secret_dir: Path, request: PreviewRequest, termination_log: str
) -> int:
    """0 when restic could say what the restore would do (said in the termination log)."""
    try:
        repository = Repository.model_validate(json.loads(repository_json))
        result = preview(repository, read_secret(secret_dir), request)
    except (ValueError, ValidationError, OSError) as exc:
        result = Preview(f"{request.target_kind}/{request.target_name}", request.host)
        result.error = f"cannot read the Repository or its Secret: {exc}"
    if result.error:
        log.error("preview of %s host %s: %s", result.target, result.host, result.error)
    else:
        print(
            f"would add {result.add.count}, overwrite {result.overwrite.count}, leave "
            f"{result.leave.count} alone",
            file=sys.stderr,
        )
    with contextlib.suppress(OSError):
        Path(termination_log).write_text(result.to_termination())
    return 1 if result.error else 0
