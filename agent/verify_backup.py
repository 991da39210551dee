"""``stash verify-backup``: the verification Job's program (``controller.jobs.verify_job``), in
the invoker's namespace under its backup Jobs' service account.

For one Succeeded BackupSession it finds the session's snapshots by their tags (never by what a
status says: a status is written by pods), restores each into scratch space within a byte
budget (``engine.verification.choose``), has restic read every restored file back against its
own tree (``restore --verify``), compares what is there with what the snapshot lists, runs
``restic check`` reading the rest of the budget from random packs, and leaves the verdict in
the termination log, where the operator reads it. It writes nothing else, anywhere: a failed
verification changes no snapshot, no status, no repository.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import shutil
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from agent.host_backup import SetupError, load_invoker_setup, open_restic
from api.tags import SESSION_PREFIX, TARGET_PREFIX, SnapshotOwner, session_tag
from api.views import Obj
from engine.restic import Restic, ResticError, Snapshot, tail
from engine.verification import (
    SnapshotVerdict,
    Verdict,
    choose,
    compare,
    listed_entries,
    restore_problems,
)
from kube import Client
from kube.errors import KubeError, NotFound
from kube.types import BACKUP_SESSIONS

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class VerifyRequest:
    namespace: str
    invoker_kind: str
    invoker_name: str
    session: str
    max_bytes: int  # what the restores may read in all
    scratch: Path  # where the snapshots are restored (emptied after each)
    cache_dir: Path | None = None


def _target(tags: Sequence[str]) -> str:
    return next((t[len(TARGET_PREFIX) :] for t in tags if t.startswith(TARGET_PREFIX)), "?")


def expected_hosts(session: dict[str, object]) -> list[tuple[str, str]]:
    """(target Kind/name, host) of every host the session's status says Succeeded."""
    found = []
    for entry in Obj(session).status.targets:
        ref = entry.ref
        for host in entry.stats:
            if host.phase == "Succeeded" and host.hostname:
                found.append((f"{ref.kind}/{ref.name}", host.hostname))
    return found


def session_snapshots(
    restic: Restic, request: VerifyRequest, owner: SnapshotOwner
) -> list[Snapshot]:
    """The session's snapshots that belong to this invoker (its tags), oldest first."""
    found = restic.snapshots(tags=[session_tag(request.session)])
    own = [s for s in found if owner.owns(s.tags)]
    return sorted(own, key=lambda s: (s.time, s.id))


def verify_snapshot(
    restic: Restic, snapshot: Snapshot, budget: int, scratch: Path, seed: str
) -> SnapshotVerdict:
    """Restore ``snapshot`` (what ``budget`` lets one read of it) into ``scratch`` and prove it."""
    target, host = _target(snapshot.tags), snapshot.hostname
    base = SnapshotVerdict(target, host, snapshot.short_id)
    try:
        entries = listed_entries(restic.list_files(snapshot.id))
    except ResticError as exc:
        return _with(base, error=str(exc))
    chosen = choose(entries, budget, seed)
    shutil.rmtree(scratch, ignore_errors=True)
    scratch.mkdir(parents=True, exist_ok=True)
    include_file = None
    if not chosen.whole:
        include_file = scratch.parent / "verify-includes"
        include_file.write_text("".join(f"{p}\n" for p in chosen.includes()))
    counts = {
        "files": chosen.files,
        "bytes": chosen.bytes,
        "total_files": chosen.total_files,
        "total_bytes": chosen.total_bytes,
    }
    try:
        if chosen.files == 0 and not chosen.whole:
            return _with(
                base,
                **counts,
                error=f"no file of it fits the budget of {budget} bytes; raise "
                "stash.appscode.com/verify-max-bytes",
            )
        code, stderr = restic.restore_verified(
            snapshot.id, str(scratch), include_file=str(include_file) if include_file else None
        )
        said = restore_problems(stderr)
        if code != 0 and not said:
            return _with(base, **counts, error=f"restic restore failed: {tail(stderr)}")
        # Only what was restored is compared: a partial selection restores its files (and the
        # folders above them), not the rest of the snapshot.
        problems = said + [p for p in compare(chosen.entries, scratch) if not _named(p, said)]
        return _with(base, **counts, problems=tuple(problems))
    except ResticError as exc:
        return _with(base, **counts, error=str(exc))
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
        if include_file is not None:
            include_file.unlink(missing_ok=True)


def _named(problem: str, said: Sequence[str]) -> bool:
    """Whether restic already named the file this problem is about."""
    path = problem.partition(": ")[0]
    return any(path and path in line for line in said)


def _with(base: SnapshotVerdict, **fields: object) -> SnapshotVerdict:
    return replace(base, **fields)  # type: ignore[arg-type]


def verify(client: Client, request: VerifyRequest, now: dt.datetime) -> Verdict:
    """Verify the request's session; every failure is a verdict, never an exception."""
    try:
        session = client.get(BACKUP_SESSIONS, request.session, request.namespace)
    except NotFound:
        return Verdict(request.session, error=f"BackupSession {request.session} not found")
    except KubeError as exc:
        return Verdict(request.session, error=f"reading BackupSession {request.session}: {exc}")
    try:
        setup = load_invoker_setup(
            client, request.namespace, request.invoker_kind, request.invoker_name
        )
    except (SetupError, KubeError) as exc:
        return Verdict(request.session, error=str(exc))
    owner = SnapshotOwner(
        request.namespace,
        setup.repository.metadata.namespace or request.namespace,
        f"{request.invoker_kind}/{request.invoker_name}",
    )
    seed = now.date().isoformat()
    try:
        with open_restic(setup, request.cache_dir) as restic:
            snapshots = session_snapshots(restic, request, owner)
            verdicts: list[SnapshotVerdict] = []
            left = request.max_bytes
            for snapshot in snapshots:
                verdict = verify_snapshot(restic, snapshot, left, request.scratch, seed)
                left = max(left - verdict.bytes, 0)
                verdicts.append(verdict)
            verdicts += _missing(expected_hosts(session), snapshots)
            check = restic.check_data(left)
    except (SetupError, ResticError) as exc:
        return Verdict(request.session, error=str(exc))
    if not verdicts:
        return Verdict(
            request.session,
            error=f"the repository holds no snapshot of session {request.session} "
            f"({SESSION_PREFIX}{request.session}) for this invoker",
        )
    return Verdict(
        request.session,
        snapshots=tuple(verdicts),
        check=check.message if check.ok else check.says(),
        check_ok=check.ok,
    )


def _missing(
    expected: Sequence[tuple[str, str]], found: Sequence[Snapshot]
) -> list[SnapshotVerdict]:
    """A host the session says Succeeded whose snapshot the repository does not hold."""
    have = {(_target(s.tags), s.hostname) for s in found}
    return [
        SnapshotVerdict(
            target,
            host,
            "-",
            error="the session says this host succeeded, but the repository holds no snapshot "
            "of it",
        )
        for target, host in expected
        if (target, host) not in have
    ]


def verify_in_pod(client: Client, request: VerifyRequest, termination_log: str) -> int:
    """Run the verification and leave its verdict in ``termination_log``. 0: verified;
    1: something differs or could not be verified (the verdict says which)."""
    verdict = verify(client, request, dt.datetime.now(dt.UTC))
    (log.info if verdict.ok else log.error)("verification: %s", verdict.says())
    with contextlib.suppress(OSError):
        Path(termination_log).write_text(verdict.to_termination())
    return 0 if verdict.ok else 1
