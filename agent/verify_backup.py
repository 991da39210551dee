"""``stash verify-backup``: the verification Job's program (``controller.jobs.verify_job``), in
the invoker's namespace under its backup Jobs' service account.

For each host that one Succeeded BackupSession says backed up, it restores that host's snapshot
of the session into scratch space, chosen in the same restic run by its tags (the invoker's
``namespace:`` and ``invoker:``, the session's, the target's) and host name, never by an id a
status names (statuses are written by pods). A snapshot that fits what is left of the byte budget
is restored whole and held against restic's own count of its tree; a larger one is listed and a
sample of its files (``engine.verification.choose``) restored and compared with the listing.
restic reads every restored file back against its tree (``restore --verify``). Then ``restic
check`` reads the rest of the budget from random packs. The verdict goes to the termination log,
where the operator reads it. It writes nothing else, anywhere: a failed verification changes no
snapshot, no status, no repository.
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
from api.objects import JSON
from api.tags import TARGET_PREFIX, SnapshotOwner, session_tag
from api.views import Obj
from engine.restic import CheckResult, Restic, ResticError, tail
from engine.results import HostResult
from engine.verification import (
    SnapshotVerdict,
    Verdict,
    choose,
    compare,
    copy_size,
    listed_entries,
    listed_snapshot_id,
    restore_problems,
    restore_summary,
    summary_problems,
)
from kube import Client
from kube.errors import KubeError, NotFound
from kube.types import BACKUP_SESSIONS

log = logging.getLogger(__name__)

CHECK_READ_LIMIT = 256 << 20  # bytes of random packs the check reads, at most


@dataclass(frozen=True)
class VerifyRequest:
    namespace: str
    invoker_kind: str
    invoker_name: str
    session: str
    max_bytes: int  # what the restores may read in all
    scratch: Path  # where the snapshots are restored (emptied after each)
    cache_dir: Path | None = None


@dataclass(frozen=True)
class HostSnapshot:
    """A host the session says Succeeded, and what the session recorded of its snapshot."""

    target: str  # Kind/name
    host: str
    recorded_id: str = ""  # the snapshot id the session recorded ("" if none)
    recorded_bytes: int = 0  # its size as recorded (to within the three decimals kept)

    @property
    def name(self) -> str:
        return self.recorded_id[:8] or "-"


def expected_hosts(session: JSON) -> list[HostSnapshot]:
    """Every host of the session whose status says Succeeded."""
    found = []
    for entry in Obj(session).status.targets:
        ref = entry.ref
        for host in entry.stats:
            if host.phase != "Succeeded" or not host.hostname:
                continue
            result = HostResult.from_status(host.raw)
            found.append(
                HostSnapshot(
                    f"{ref.kind}/{ref.name}",
                    host.hostname,
                    ",".join(s.snapshot_id for s in result.snapshots),
                    sum(s.total_bytes for s in result.snapshots),
                )
            )
    return found


def _no_snapshot(stderr: Sequence[str]) -> bool:
    return any("no snapshot found" in line for line in stderr)


NO_SNAPSHOT = "the session says this host succeeded, but the repository holds no snapshot of it"


def _empty(scratch: Path) -> None:
    shutil.rmtree(scratch, ignore_errors=True)
    scratch.mkdir(parents=True, exist_ok=True)


@dataclass(frozen=True)
class Pick:
    """How restic is told which snapshot: ``latest`` with the owner's tags and the host (chosen
    in the same run), or an id an owner-filtered listing gave."""

    snapshot: str = "latest"
    tags: tuple[str, ...] = ()
    host: str | None = None


def prove_whole(
    restic: Restic, host: HostSnapshot, pick: Pick, scratch: Path, name: str = ""
) -> SnapshotVerdict:
    """Restore the host's snapshot of the session whole into ``scratch``, restic reading every
    file back against its tree, and hold the copy against restic's own count of the tree."""
    base = SnapshotVerdict(host.target, host.host, name or host.name)
    _empty(scratch)
    try:
        code, stdout, stderr = restic.restore_verified(
            pick.snapshot, str(scratch), tags=pick.tags, host=pick.host
        )
        said = restore_problems(stderr)
        if code != 0 and not said:
            error = (
                NO_SNAPSHOT if _no_snapshot(stderr) else f"restic restore failed: {tail(stderr)}"
            )
            return replace(base, error=error)
        summary = restore_summary(stdout)
        copy = copy_size(scratch)
        problems = said or summary_problems(summary, copy)  # restic's words name the files
        return replace(
            base,
            files=copy.files,
            bytes=copy.bytes,
            total_files=copy.files,
            total_bytes=summary.total_bytes if summary else copy.bytes,
            problems=tuple(problems),
        )
    except ResticError as exc:
        return replace(base, error=str(exc))
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def prove_sample(
    restic: Restic,
    host: HostSnapshot,
    pick: Pick,
    scratch: Path,
    *,
    budget: int,
    seed: str,
) -> SnapshotVerdict:
    """A snapshot larger than what is left of the budget: list it, restore the files
    ``choose`` picks, and compare them with the listing."""
    base = SnapshotVerdict(host.target, host.host, host.name)
    try:
        lines = restic.list_files(pick.snapshot, tags=pick.tags, host=pick.host)
    except ResticError as exc:
        return replace(base, error=NO_SNAPSHOT if "no snapshot found" in exc.detail else str(exc))
    snapshot_id = listed_snapshot_id(lines)
    chosen = choose(listed_entries(lines), budget, seed)
    base = replace(
        base,
        snapshot=snapshot_id[:8] or base.snapshot,
        files=chosen.files,
        bytes=chosen.bytes,
        total_files=chosen.total_files,
        total_bytes=chosen.total_bytes,
    )
    if chosen.files == 0 and not chosen.whole:
        return replace(
            base,
            error=f"no file of it fits the {budget} bytes left of the budget; raise "
            "stash.appscode.com/verify-max-bytes",
        )
    _empty(scratch)
    include_file = scratch.parent / "verify-includes"
    include_file.write_text("".join(f"{p}\n" for p in chosen.includes()))
    try:
        # by the id the tag-filtered listing gave: the same snapshot, the same owner
        code, _, stderr = restic.restore_verified(
            snapshot_id, str(scratch), include_file=str(include_file)
        )
        said = restore_problems(stderr)
        if code != 0 and not said:
            return replace(base, error=f"restic restore failed: {tail(stderr)}")
        problems = said + [p for p in compare(chosen.entries, scratch) if not _named(p, said)]
        return replace(base, problems=tuple(problems))
    except ResticError as exc:
        return replace(base, error=str(exc))
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
        include_file.unlink(missing_ok=True)


def legacy_pick(
    restic: Restic, host: HostSnapshot, session: str, owner: SnapshotOwner
) -> tuple[Pick, str] | None:
    """The host's snapshot of the session as a version before the owner's tags wrote it
    (``session:`` and ``target:`` only; it belongs to the Repository's namespace): found by
    listing, kept only if the owner owns it."""
    tags = [session_tag(session), f"{TARGET_PREFIX}{host.target}"]
    own = [s for s in restic.snapshots(host=host.host, tags=tags) if owner.owns(s.tags)]
    if not own:
        return None
    newest = max(own, key=lambda s: s.time)
    return Pick(newest.id), newest.short_id


def prove(
    restic: Restic,
    host: HostSnapshot,
    owner: SnapshotOwner,
    session: str,
    *,
    budget: int,
    scratch: Path,
    seed: str,
) -> SnapshotVerdict:
    """Prove the host's snapshot of ``session`` (whole when it fits ``budget``, else a sample),
    chosen by the owner's tags; a snapshot an older version wrote, without them, by listing."""
    tags = (*owner.tags, session_tag(session), f"{TARGET_PREFIX}{host.target}")
    pick, name = Pick("latest", tags, host.host), ""
    for _ in range(2):
        if host.recorded_bytes <= budget:
            verdict = prove_whole(restic, host, pick, scratch, name)
        else:
            verdict = prove_sample(restic, host, pick, scratch, budget=budget, seed=seed)
        if verdict.error != NO_SNAPSHOT or pick.tags != tags:
            return verdict
        try:
            legacy = legacy_pick(restic, host, session, owner)
        except ResticError as exc:
            return replace(verdict, error=str(exc))
        if legacy is None:
            return verdict
        pick, name = legacy
    return verdict


def verify_hosts(
    restic: Restic,
    hosts: Sequence[HostSnapshot],
    owner: SnapshotOwner,
    *,
    session: str,
    budget: int,
    scratch: Path,
    seed: str,
) -> tuple[list[SnapshotVerdict], CheckResult]:
    """Prove each host's snapshot of ``session`` within ``budget`` bytes (whole when it fits
    what is left, else a sample), then run ``restic check`` reading from random packs what
    the restores left of the budget, at most ``CHECK_READ_LIMIT`` (restic's check holds the
    repository's exclusive lock: the backups that start meanwhile wait for it)."""
    verdicts: list[SnapshotVerdict] = []
    left = budget
    for host in hosts:
        verdict = prove(restic, host, owner, session, budget=left, scratch=scratch, seed=seed)
        left = max(left - verdict.bytes, 0)
        verdicts.append(verdict)
    return verdicts, restic.check_data(min(left, CHECK_READ_LIMIT))


def _named(problem: str, said: Sequence[str]) -> bool:
    """Whether restic already named the file this problem is about."""
    path = problem.partition(": ")[0]
    return any(path and path in line for line in said)


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
    hosts = expected_hosts(session)
    if not hosts:
        return Verdict(request.session, error="the session records no host that succeeded")
    try:
        with open_restic(setup, request.cache_dir) as restic:
            verdicts, check = verify_hosts(
                restic,
                hosts,
                owner,
                session=request.session,
                budget=request.max_bytes,
                scratch=request.scratch,
                seed=now.date().isoformat(),
            )
    except (SetupError, ResticError) as exc:
        return Verdict(request.session, error=str(exc))
    return Verdict(
        request.session,
        snapshots=tuple(verdicts),
        check=check.message if check.ok else check.says(),
        check_ok=check.ok,
    )


def verify_in_pod(client: Client, request: VerifyRequest, termination_log: str) -> int:
    """Run the verification and leave its verdict in ``termination_log``. 0: verified;
    1: something differs or could not be verified (the verdict says which)."""
    verdict = verify(client, request, dt.datetime.now(dt.UTC))
    (log.info if verdict.ok else log.error)("verification: %s", verdict.says())
    with contextlib.suppress(OSError):
        Path(termination_log).write_text(verdict.to_termination())
    return 0 if verdict.ok else 1
