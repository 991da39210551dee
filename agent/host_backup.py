"""One host's backup for one BackupSession, shared by the sidecar and the backup Job's steps:
open the Repository with its Secret, back up (paths, or a dump on stdin), record the result in
the session (the operator derives the metrics from it), and, when this host was the last one,
apply retention, check the repository and publish its figures.

Each snapshot is tagged with its session and its target, so a host never backs up a session
twice (a snapshot already tagged for it is reported instead of made again) and retention applies
per target even when several targets share a repository and a hostname.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import logging
import os
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path

from pydantic import ValidationError

from agent.hooks import around
from api import constants as c
from api.backup import BackupMember
from api.common import BackupHooks, RetentionPolicy
from api.naming import label_value, repository_init_lease
from api.objects import JSON
from api.pod_members import member_documents
from api.repository import Repository
from api.tags import (
    SnapshotOwner,
    invoker_tag,
    namespace_tag,
    session_tag,
    target_tag,
)
from engine import retention
from engine.backend import BackendError, backend_config
from engine.locks import Holders, clear_stale_locks, holders_of
from engine.reporting import ConditionUpdate, SessionReporter, update_repository
from engine.restic import (
    BackupSummary,
    Cancel,
    CheckResult,
    Progress,
    RepoStats,
    Restic,
    ResticError,
)
from engine.results import HostResult, RepositoryFigures, SnapshotResult
from kube import Client
from kube.errors import KubeError, NotFound
from kube.events import EventRecorder
from kube.mutex import LeaseMutex, pod_gone, pod_holder
from kube.types import BACKUP_SESSIONS, INVOKER_TYPES, REPOSITORIES, SECRETS

log = logging.getLogger(__name__)


class SetupError(RuntimeError):
    """The backup cannot start: a missing Repository, Secret or invoker; says which."""


InitGuard = Callable[[], AbstractContextManager[object]]


def init_guard(client: Client, setup: Setup, namespace: str, what: str) -> InitGuard:
    """A mutex (a Lease beside the Repository) around initialising the repository, held in
    this pod's name (``what`` outside a pod): a host of ``namespace`` waiting for it takes it
    over at once when the pod that holds it is gone, instead of waiting out its ttl."""
    meta = setup.repository.metadata
    name = repository_init_lease(meta.name or "")
    pod = os.environ.get("POD_NAME", "")
    holder = pod_holder(namespace, pod) if pod else what
    gone = pod_gone(client, namespace)
    return lambda: LeaseMutex(client, meta.namespace or "default", name, holder, holder_gone=gone)


@dataclass(frozen=True)
class HostJob:
    """Who backs up what, for which session."""

    namespace: str
    session: str
    invoker_kind: str
    invoker_name: str
    target_kind: str
    target_name: str
    hostname: str

    def owner(self, repository_namespace: str) -> SnapshotOwner:
        """Whose snapshots this host's work writes and selects (``api.tags``)."""
        return SnapshotOwner(
            self.namespace, repository_namespace, f"{self.invoker_kind}/{self.invoker_name}"
        )

    @property
    def tags(self) -> tuple[str, ...]:
        """The snapshot's tags: its namespace, invoker, target and session."""
        return (
            namespace_tag(self.namespace),
            invoker_tag(self.invoker_kind, self.invoker_name),
            target_tag(self.target_kind, self.target_name),
            session_tag(self.session),
        )

    def describe(self) -> str:
        return f"{self.target_kind}/{self.target_name} host {self.hostname}"


@dataclass(frozen=True)
class Setup:
    invoker: JSON
    repository: Repository
    secret: dict[str, str]

    @property
    def retention(self) -> RetentionPolicy:
        return RetentionPolicy.model_validate((self.invoker.get("spec") or {})["retentionPolicy"])


def load_setup(client: Client, job: HostJob) -> Setup:
    return load_invoker_setup(client, job.namespace, job.invoker_kind, job.invoker_name)


def load_invoker_setup(client: Client, namespace: str, kind: str, name: str) -> Setup:
    """A backup invoker, its Repository and the Repository's Secret."""
    try:
        invoker = client.get(INVOKER_TYPES[kind], name, namespace)
    except NotFound:
        raise SetupError(f"{kind} {namespace}/{name} not found") from None
    ref = (invoker.get("spec") or {}).get("repository") or {}
    repository, secret = load_repository(
        client, str(ref.get("name", "")), ref.get("namespace") or namespace
    )
    return Setup(invoker, repository, secret)


def load_repository(client: Client, name: str, namespace: str) -> tuple[Repository, dict[str, str]]:
    """The Repository and its storage Secret's data (decoded)."""
    try:
        repository = Repository.model_validate(client.get(REPOSITORIES, name, namespace))
    except NotFound:
        raise SetupError(f"Repository {namespace}/{name} not found") from None
    return repository, storage_secret(client, repository, namespace)


def storage_secret(client: Client, repository: Repository, namespace: str) -> dict[str, str]:
    """The decoded data of the Repository's storage Secret (in ``namespace``, the
    Repository's own)."""
    secret_name = repository.spec.backend.storage_secret_name
    if not secret_name:
        raise SetupError(
            f"Repository {namespace}/{repository.metadata.name} has no storageSecretName"
        )
    try:
        secret = client.get(SECRETS, secret_name, namespace)
    except NotFound:
        raise SetupError(f"storage Secret {namespace}/{secret_name} not found") from None
    return {
        key: base64.b64decode(value).decode() for key, value in (secret.get("data") or {}).items()
    }


def open_restic(setup: Setup, cache_dir: Path | None, cancel: Cancel | None = None) -> Restic:
    return open_repository(setup.repository, setup.secret, cache_dir, cancel=cancel)


def open_repository(
    repository: Repository,
    secret: dict[str, str],
    cache_dir: Path | None,
    binary: str = "restic",
    cancel: Cancel | None = None,
) -> Restic:
    try:
        return Restic(
            backend_config(repository, secret), cache_dir=cache_dir, binary=binary, cancel=cancel
        )
    except BackendError as exc:
        raise SetupError(f"Repository {repository.metadata.name}: {exc}") from None


def _failed(job: HostJob, started: float, message: str) -> HostResult:
    log.error("backup of %s failed: %s", job.describe(), message)
    return HostResult(job.hostname, "Failed", time.monotonic() - started, error=message)


@dataclass(frozen=True)
class BackupOptions:
    """How a host backs up, beyond what and where."""

    guard: InitGuard | None = None  # serialises initialising a new repository
    attempts_dir: Path | None = None  # survives container restarts (the sidecar's tmp-dir)
    progress: Progress | None = None
    # Where the target's last snapshot is recorded when attempts_dir does not remember it
    # (a Job's fresh pod, a new sidecar): the invoker's earlier sessions, say.
    parent_hint: Callable[[str], str | None] | None = None
    # Who may hold the repository's locks (in a pod); None: restic's own staleness rule.
    holders: Holders | None = None


def parent_in_sessions(sessions: Iterable[JSON], job: HostJob, path: str) -> str | None:
    """The snapshot of ``path`` this target's host made last, as the invoker's earlier sessions
    record it (newest first): the parent its next backup compares against."""
    ordered = sorted(
        sessions, key=lambda s: s["metadata"].get("creationTimestamp") or "", reverse=True
    )
    for session in ordered:
        invoker = (session.get("spec") or {}).get("invoker") or {}
        if session["metadata"].get("name") == job.session or (
            invoker.get("kind"),
            invoker.get("name"),
        ) != (job.invoker_kind, job.invoker_name):
            continue
        for target in (session.get("status") or {}).get("targets") or []:
            ref = target.get("ref") or {}
            if (ref.get("kind"), ref.get("name")) != (job.target_kind, job.target_name):
                continue
            for stats in target.get("stats") or []:
                if stats.get("hostname") != job.hostname:
                    continue
                for snap in stats.get("snapshots") or []:
                    if snap.get("path") == path and snap.get("name"):
                        return str(snap["name"])
    return None


def sessions_parent(client: Client, job: HostJob) -> Callable[[str], str | None]:
    """A ``parent_hint`` reading the invoker's sessions (one list call, only when asked)."""

    def hint(path: str) -> str | None:
        selector = f"{c.INVOKER_NAME_LABEL}={label_value(job.invoker_name)}"
        try:
            listed = client.list(BACKUP_SESSIONS, job.namespace, label_selector=selector)
        except KubeError as exc:
            log.info("%s: no parent from earlier sessions: %s", job.describe(), exc)
            return None
        return parent_in_sessions(listed.get("items") or [], job, path)

    return hint


def _parent_file(options: BackupOptions, job: HostJob, path: str) -> Path | None:
    if options.attempts_dir is None:
        return None
    key = hashlib.sha256(f"{job.target_kind}/{job.target_name}\0{job.hostname}\0{path}".encode())
    return options.attempts_dir / "parents" / key.hexdigest()[:32]


def _parent(options: BackupOptions, job: HostJob, path: str) -> str | None:
    remembered = _parent_file(options, job, path)
    if remembered is not None and remembered.is_file():
        return remembered.read_text().strip() or None
    return options.parent_hint(path) if options.parent_hint is not None else None


def _remember_parent(options: BackupOptions, job: HostJob, path: str, snapshot: str) -> None:
    remembered = _parent_file(options, job, path)
    if remembered is None:
        return
    try:
        remembered.parent.mkdir(parents=True, exist_ok=True)
        partial = remembered.with_suffix(".partial")
        partial.write_text(snapshot)
        partial.replace(remembered)
    except OSError as exc:  # only a lost shortcut: the next backup asks the sessions again
        log.info("%s: cannot remember snapshot %s: %s", job.describe(), snapshot, exc)


def _earlier(restic: Restic, job: HostJob, options: BackupOptions) -> HostResult | None:
    """The result of an earlier attempt of this host at this session, if it made a snapshot.
    Only asked when a marker says an attempt started here, so the usual run costs nothing."""
    if options.attempts_dir is None:
        return None
    marker = options.attempts_dir / f"{job.session}--{job.hostname}"
    if not marker.exists():
        options.attempts_dir.mkdir(parents=True, exist_ok=True)
        marker.touch()
        return None
    try:
        earlier = restic.snapshots(host=job.hostname, tags=job.tags)
    except ResticError as exc:
        if restic.missing_repository(exc):
            return None
        raise
    if not earlier:
        return None
    snap = earlier[-1]
    log.info("%s: session %s already has snapshot %s", job.describe(), job.session, snap.short_id)
    result = SnapshotResult(snap.short_id, ",".join(snap.paths), 0, 0, 0.0, 0, 0, 0, 0)
    return HostResult(job.hostname, "Succeeded", 0.0, (result,))


def _run(
    restic: Restic, options: BackupOptions, attempt: Callable[[], BackupSummary]
) -> BackupSummary:
    """One restic backup on the usual path; stale locks cleared first, a missing repository
    initialised and a lock conflict retried once, only when restic says so."""
    try:
        clear_stale_locks(restic, options.holders)
        return attempt()
    except ResticError as exc:
        if restic.missing_repository(exc):
            restic.init_if_missing(options.guard)
        elif restic.locked(exc):
            clear_stale_locks(restic, options.holders)
        else:
            raise
    return attempt()


def _host_backup(
    restic: Restic,
    job: HostJob,
    options: BackupOptions,
    *,
    source: str,
    snapshot_path: str,
    backup: Callable[[], BackupSummary],
) -> HostResult:
    """Run ``backup`` once for this host and session (or report the earlier snapshot); a restic
    failure is the host's failure, naming the host, ``source`` and restic's words."""
    started = time.monotonic()
    try:
        earlier = _earlier(restic, job, options)
        if earlier is not None:
            return earlier
        summary = backup()
    except ResticError as exc:
        return _failed(job, started, f"{job.describe()}, {source}: {exc}")
    log.info(
        "%s: snapshot %s, %d files, %d bytes added",
        job.describe(),
        summary.snapshot_id,
        summary.total_files,
        summary.data_added,
    )
    snapshot = SnapshotResult.from_summary(snapshot_path, summary)
    return HostResult(job.hostname, "Succeeded", time.monotonic() - started, (snapshot,))


def back_up_paths(
    restic: Restic,
    job: HostJob,
    paths: Sequence[str],
    *,
    excludes: Sequence[str] = (),
    options: BackupOptions = BackupOptions(),
) -> HostResult:
    path = ",".join(paths)
    parent = _parent(options, job, path)

    def backup() -> BackupSummary:
        def run(parent: str | None) -> BackupSummary:
            return restic.backup(
                paths,
                host=job.hostname,
                tags=job.tags,
                excludes=excludes,
                progress=options.progress,
                parent=parent,
            )

        try:
            summary = run(parent)
        except ResticError as exc:
            if parent is None or not restic.missing_snapshot(exc):
                raise
            log.info("%s: parent snapshot %s is gone; none used", job.describe(), parent)
            summary = run(None)
        _remember_parent(options, job, path, summary.snapshot_id)
        return summary

    return _host_backup(
        restic,
        job,
        options,
        source=f"paths {', '.join(paths)}",
        snapshot_path=path,
        backup=lambda: _run(restic, options, backup),
    )


def back_up_stream(
    restic: Restic,
    job: HostJob,
    producer: Sequence[str],
    *,
    filename: str,
    env: dict[str, str] | None = None,
    options: BackupOptions = BackupOptions(),
) -> HostResult:
    def backup() -> BackupSummary:
        restic.init_if_missing(options.guard)  # a dump cannot be replayed into a retry
        clear_stale_locks(restic, options.holders)
        return restic.backup_stdin(
            producer,
            filename=filename,
            host=job.hostname,
            tags=job.tags,
            env=env,
            progress=options.progress,
        )

    return _host_backup(
        restic,
        job,
        options,
        source=f"stream {filename}",
        snapshot_path="/" + filename.lstrip("/"),
        backup=backup,
    )


def report(
    client: Client, job: HostJob, setup: Setup, restic: Restic | None, result: HostResult
) -> None:
    """Record ``result`` in the session; the last host finishes up. The host's metrics are
    the operator's to push, from this record (``controller.sessions.metric_groups``)."""
    reporter = SessionReporter(client, job.namespace, job.session)
    pod = os.environ.get("POD_NAME", "")
    holder = pod_holder(job.namespace, pod) if pod and restic is not None else ""
    last = reporter.record_host(job.target_kind, job.target_name, result, holder)
    if last and restic is not None:
        finish_session(client, job, setup, restic)


def finish_session(client: Client, job: HostJob, setup: Setup, restic: Restic) -> None:
    """Retention for every target, an integrity check and Repository.status, each recorded as
    a session condition (the operator pushes the repository's metrics from that status). Runs
    once per session (the last host's job).

    restic starts: one listing, one ``forget`` of what the policy removes from all targets
    (none when it removes nothing), one ``check``, one ``stats`` — whatever the number of
    targets. The listing and the figures run side by side (both take restic's shared lock);
    ``forget`` and ``check`` take the exclusive one, each after them: restic waits at least 5 s
    for a lock it finds taken. With ``prune`` the figures follow the prune."""
    reporter = SessionReporter(client, job.namespace, job.session)
    session = reporter.get()
    status = session.get("status") or {}
    done = {cond.get("type") for cond in status.get("conditions") or []}
    if c.RETENTION_POLICY_APPLIED in done and c.REPOSITORY_INTEGRITY_VERIFIED in done:
        return
    policy = setup.retention
    # Another host's lock (an invoker sharing the repository) is waited for by restic itself
    # (--retry-lock); locks whose holder is gone are removed first.
    with contextlib.suppress(ResticError):
        clear_stale_locks(restic, holders_of(client, job.namespace, setup.repository))
    tags = [
        target_tag(str(ref.get("kind", "")), str(ref["name"]))
        for target in status.get("targets") or []
        if (ref := target.get("ref") or {}).get("name")
    ]
    after_prune = bool(policy.prune) and not policy.dry_run
    reads: dict[str, Callable[[], object]] = {"snapshots": restic.snapshots}
    if not after_prune:
        reads["stats"] = restic.stats
    answers = _side_by_side(reads)
    listing = answers["snapshots"]
    if isinstance(listing, list):  # only this invoker's: a shared repository's others are not
        owner = job.owner(setup.repository.metadata.namespace or job.namespace)
        listing = [snap for snap in listing if owner.owns(snap.tags)]
    good, unknown = _last_good(client, job)
    annotations = setup.invoker.get("metadata", {}).get("annotations") or {}
    guard = retention.guard_of(annotations, policy)
    confirm = (
        f"kubectl annotate {job.invoker_kind.lower()} {job.invoker_name} --overwrite "
        f"{c.CONFIRM_RETENTION_ANNOTATION}={retention.policy_mark(policy)}"
    )
    if unknown:  # which snapshots are the last good ones is not known: nothing is removed
        words = f"policy {policy.name}: removed nothing: {unknown}"
        applied = ConditionUpdate(c.RETENTION_POLICY_APPLIED, False, c.RETENTION_HELD, words)
        removed = 0
    else:
        applied, removed = _apply_retention(
            restic, policy, tags, listing, guard=guard, confirm=confirm, good=good
        )
    if applied.reason == c.RETENTION_HELD:
        EventRecorder(client, "stash-backup").record(
            {"apiVersion": c.V1BETA1, "kind": "BackupSession", **session},
            "Warning",
            c.RETENTION_HELD,
            applied.message,
        )
    check = restic.check()
    if after_prune:
        answers.update(_side_by_side({"stats": restic.stats}))
    updates = [
        applied,
        ConditionUpdate(
            c.REPOSITORY_INTEGRITY_VERIFIED,
            check.ok,
            "SuccessfullyVerifiedRepositoryIntegrity" if check.ok else _check_failed(check),
            "restic check found no errors" if check.ok else check.says(),
        ),
    ]
    stats = answers["stats"]
    if not isinstance(stats, RepoStats):
        log.error("repository stats: %s", stats)
        reporter.set_conditions(updates)
        return
    count = stats.snapshot_count - (0 if after_prune or policy.dry_run else removed)
    figures = RepositoryFigures(check.ok, stats.total_size, max(count, 0), removed)
    repo = setup.repository.metadata
    try:
        update_repository(client, repo.namespace or job.namespace, repo.name or "", figures)
    except KubeError as exc:
        log.error("updating Repository %s status: %s", repo.name, exc)
    reporter.set_conditions(updates)
    log.info(
        "session %s: %s snapshot(s) in the repository, %d removed, integrity %s",
        job.session,
        figures.snapshot_count,
        removed,
        "ok" if check.ok else "FAILED",
    )


def _last_good(client: Client, job: HostJob) -> tuple[retention.LastGood | None, str]:
    """The invoker's last good session and its snapshots (never removed), or why it cannot be
    told (then retention removes nothing this time)."""
    selector = f"{c.INVOKER_NAME_LABEL}={label_value(job.invoker_name)}"
    try:
        listed = client.list(BACKUP_SESSIONS, job.namespace, label_selector=selector)
    except KubeError as exc:
        return None, f"the invoker's sessions could not be listed ({exc})"
    found = retention.last_good(listed.get("items") or [], job.invoker_kind, job.invoker_name)
    return found, ""


def _check_failed(check: CheckResult) -> str:
    """The reason of a failed check: a repository restic may not read is not a damaged one."""
    return "RepositoryNotReadable" if check.denied else "RepositoryCorrupted"


def _side_by_side(reads: dict[str, Callable[[], object]]) -> dict[str, object]:
    """Run restic reads at the same time; each answer, or the ``ResticError`` it raised."""

    def attempt(read: Callable[[], object]) -> object:
        try:
            return read()
        except ResticError as exc:
            return exc

    if len(reads) == 1:
        return {name: attempt(read) for name, read in reads.items()}
    with ThreadPoolExecutor(max_workers=len(reads), thread_name_prefix="restic") as pool:
        futures = {name: pool.submit(attempt, read) for name, read in reads.items()}
        return {name: future.result() for name, future in futures.items()}


def _apply_retention(
    restic: Restic,
    policy: RetentionPolicy,
    tags: Sequence[str],
    listing: object,
    *,
    guard: retention.Guard,
    confirm: str,
    good: retention.LastGood | None = None,
) -> tuple[ConditionUpdate, int]:
    """The RetentionPolicyApplied condition and how many snapshots went (or would go); the
    snapshots of the last good session (``good``) are kept whatever the policy says; a target
    whose share removed ``guard`` holds keeps all, and ``confirm`` says how to go on."""

    def failed(words: str) -> tuple[ConditionUpdate, int]:
        reason = "FailedToApplyRetentionPolicy"
        return ConditionUpdate(c.RETENTION_POLICY_APPLIED, False, reason, words), 0

    if not isinstance(listing, list):
        return failed(f"listing snapshots: {listing}")
    if not retention.keeps_anything(policy):
        return failed(f"retention policy {policy.name!r} keeps nothing")
    # The policy as written is judged by the guard; then the last good copy is spared.
    planned = retention.protect(
        retention.hold_large(retention.plan(listing, policy, tags), guard), good
    )
    doomed = [snap.id for target in planned for snap in target.removed]
    if doomed and not policy.dry_run:
        try:
            restic.forget_ids(*doomed, prune=bool(policy.prune))
        except ResticError as exc:
            return failed(f"forget {len(doomed)} snapshot(s): {exc}")
    verb = "would remove" if policy.dry_run else "removed"
    per_target = ", ".join(f"{t.tag.removeprefix('target:')} {len(t.removed)}" for t in planned)
    words = f"policy {policy.name}: {verb} {len(doomed)} snapshot(s)"
    if per_target:
        words += f" ({per_target})"
    spared = sum(t.protected for t in planned)
    if spared and good is not None:
        words += (
            f"; kept {spared} snapshot(s) the policy would remove: those of {good.session}, "
            "the last session that succeeded (the last good backup is never removed)"
        )
    refusals = [f"{t.tag.removeprefix('target:')}: {t.refused}" for t in planned if t.refused]
    if refusals:
        return failed(f"{words}; " + "; ".join(refusals))[0], len(doomed)
    held = [f"{t.tag.removeprefix('target:')} {t.held}" for t in planned if t.held]
    if held:
        words += (
            f"; held, nothing of it removed: {'; '.join(held)}. If that is what the policy "
            f"means, confirm this policy: {confirm}"
        )
        return ConditionUpdate(c.RETENTION_POLICY_APPLIED, False, c.RETENTION_HELD, words), len(
            doomed
        )
    reason = "SuccessfullyAppliedRetentionPolicy"
    return ConditionUpdate(c.RETENTION_POLICY_APPLIED, True, reason, words), len(doomed)


def with_hooks(
    job: HostJob,
    hooks: BackupHooks | None,
    back_up: Callable[[], HostResult],
    *,
    own_container: str,
    final_attempt: bool,
) -> HostResult:
    """A member's ``preBackup`` / ``postBackup`` hooks around its backup on this host
    (``agent.hooks.around``)."""
    return around(
        job.hostname,
        ("preBackup", hooks.pre_backup if hooks else None),
        ("postBackup", hooks.post_backup if hooks else None),
        back_up,
        own_container=own_container,
        final_attempt=final_attempt,
    )


def backup_member_for(invoker: JSON, kind: str, name: str) -> BackupMember | None:
    """The invoker's member that targets ``kind``/``name`` (a BackupConfiguration's own spec)."""
    for doc in member_documents(invoker):
        ref = ((doc or {}).get("target") or {}).get("ref") or {}
        if ref.get("kind") == kind and ref.get("name") == name:
            try:
                return BackupMember.model_validate(doc)
            except ValidationError:
                return None
    return None
