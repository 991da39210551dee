"""The ``stash`` sidecar (``stash run-backup``): watches the BackupSessions of its namespace and
backs up its workload's paths for every session whose invoker targets it, once the operator has
started that target.

Who backs up: every StatefulSet pod as ``host-<ordinal>``, every DaemonSet pod as its node; of a
Deployment's (or ReplicaSet's) pods only the holder of the Lease ``stash-sidecar-<kind>-<name>``
backs up, as ``host-0`` (or the member's alias), so one pod does and another takes over if it
dies. A host backs up a session at most once: it skips sessions whose stats already name it,
and restic snapshots are tagged with the session (see ``host_backup``).

Everything is read from informers (list + watch, resumed after API server restarts and watch
expiry); every relist, invoker change and won leadership looks at all cached sessions again, and
an attempt the API server turned away is tried again after ``RETRY_SECONDS``. Idle, the sidecar
only waits: no timer, no polling, and none of the backup's imports (restic, the pydantic models,
hooks, metrics) until the first backup (issue 15).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import queue
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from api import constants as c
from api.conditions import get_condition
from api.hooks import is_final_attempt
from api.hosts import Identity
from api.objects import JSON
from api.pod_members import pod_members
from engine.logfields import log_fields
from engine.reporting import (
    SessionReporter,
    deadline_passed,
    host_reported,
    target_index,
    why_ended,
    with_host,
)
from engine.results import HostResult
from kube import Client, KubeError, NotFound
from kube.events import EventRecorder
from kube.informer import Informer
from kube.leader import LeaderElector
from kube.mutex import pod_holder
from kube.status import StatusError
from kube.types import BACKUP_BATCHES, BACKUP_CONFIGURATIONS, BACKUP_SESSIONS

# What a backup needs (restic, the pydantic models, hooks, metrics) is imported when the first
# backup starts: an idle sidecar, in every opted-in pod, only watches (issue 15).
if TYPE_CHECKING:
    from agent.host_backup import HostJob, Setup
    from api.backup import BackupMember
    from engine.restic import Cancel, Restic

log = logging.getLogger(__name__)
RETRY_SECONDS = 30.0  # a session whose attempt met an unavailable API server
SYNC_TIMEOUT = 30.0


@dataclass(frozen=True)
class Work:
    session: str
    invoker: JSON
    member_index: int
    hostname: str

    def member(self) -> BackupMember | None:
        """The member this host backs up, validated (None: the invoker does not parse)."""
        from pydantic import ValidationError  # noqa: PLC0415 - see the imports above

        from api.backup import BackupBatch, BackupConfiguration  # noqa: PLC0415

        try:
            if self.invoker.get("kind") == "BackupBatch":
                members = BackupBatch.from_dict(self.invoker).spec.members or []
                return members[self.member_index] if self.member_index < len(members) else None
            return BackupConfiguration.from_dict(self.invoker).spec
        except ValidationError:
            return None


def pending_work(
    session: JSON, invoker: JSON | None, me: Identity, now: dt.datetime | None = None
) -> Work | None:
    """What this host must back up for ``session`` now, or None (not ours, not started yet,
    already done, finished, or past its deadline: a backup nobody would count is not made).
    Reads the objects as stored: nothing is validated here."""
    status = session.get("status") or {}
    if invoker is None or status.get("phase") != "Running":
        return None
    if deadline_passed(status, now or dt.datetime.now(dt.UTC)):
        return None
    ref = (session.get("spec") or {}).get("invoker") or {}
    if (ref.get("kind"), ref.get("name")) != (invoker.get("kind"), invoker["metadata"]["name"]):
        return None
    mine = [m for m in pod_members(invoker) if (m.kind, m.name) == (me.target_kind, me.target_name)]
    index = target_index(status, me.target_kind, me.target_name)
    if not mine or index is None or status["targets"][index].get("phase") != "Running":
        return None  # not ours, not started (executionOrder: Sequential) or already settled
    hostname = me.hostname(mine[0].alias or None)
    if host_reported(status, me.target_kind, me.target_name, hostname):
        return None
    return Work(session["metadata"]["name"], invoker, mine[0].index, hostname)


def orphaned_claim(session: JSON, invoker: JSON | None, me: Identity) -> bool:
    """Whether ``session``'s repository work (retention, the check) was claimed in this pod's
    name and is not recorded: an earlier container of this sidecar claimed it and died (it
    restarted in a pod that lives, which the operator cannot tell from a pod at work). This
    container never leaves a claim of its own behind when it looks again: it claims and does
    the work in one go."""
    status = session.get("status") or {}
    if invoker is None or status.get("phase") != "Running" or not me.pod_name:
        return False
    claimed = get_condition(status.get("conditions"), c.REPOSITORY_WORK_CLAIMED) or {}
    if claimed.get("message") != pod_holder(me.namespace, me.pod_name):
        return False
    done = {cond.get("type") for cond in status.get("conditions") or []}
    return not {c.RETENTION_POLICY_APPLIED, c.REPOSITORY_INTEGRITY_VERIFIED} <= done


@dataclass(frozen=True)
class FinishClaimed:
    """Do the repository work this pod claimed for ``session`` and did not record."""

    session: str


def sidecar_step(
    session: JSON,
    invoker: JSON | None,
    me: Identity,
    *,
    leading: bool,
    now: dt.datetime | None = None,
) -> Work | FinishClaimed | None:
    """What this sidecar does for ``session`` now. A claim made in this pod's name is taken up
    whether or not this pod still leads its Deployment's election: a restarted container may
    have lost it meanwhile, and nobody else would do the work (the operator sees this pod
    alive). Backing up is the leader's alone."""
    if orphaned_claim(session, invoker, me):
        return FinishClaimed(session["metadata"]["name"])
    if not leading:
        return None
    return pending_work(session, invoker, me, now)


UNFINISHED_SESSIONS = ",".join(f"status.phase!={phase}" for phase in c.SESSION_TERMINAL_PHASES)


def _unfinished(session: JSON) -> JSON | None:
    """A session the sidecar may still have work in, or None (a finished one, never kept)."""
    if (session.get("status") or {}).get("phase") in c.SESSION_TERMINAL_PHASES:
        return None
    return session


def ended_words(session: JSON) -> str:
    """Why a host's backup for ``session`` (as it is now) is stopped midway: the session ended
    (its verdict given, at its deadline say), so nobody would count the snapshot."""
    name = session["metadata"]["name"]
    status = session.get("status") or {}
    if status.get("phase") not in c.SESSION_TERMINAL_PHASES:
        return f"session {name} is no longer running"
    return why_ended(f"session {name}", status)


@dataclass(frozen=True)
class AgentOptions:
    cache_dir: Path | None = None
    state_dir: Path | None = None  # in the tmp-dir emptyDir: survives container restarts
    lease_duration: float = 15.0
    renew_deadline: float = 10.0
    retry_period: float = 2.0


class SidecarAgent:
    def __init__(self, client: Client, me: Identity, options: AgentOptions) -> None:
        self.client, self.me, self.options = client, me, options
        self._queue: queue.Queue[str | None] = queue.Queue()
        self._retry: dict[str, float] = {}  # session -> when to try again (monotonic)
        self._done: set[str] = set()
        self.backups = 0
        self.events = EventRecorder(client, "stash-sidecar")
        # Only sessions that may still run: a namespace's finished history (thousands, kept
        # by backupHistoryLimit) costs the sidecar neither memory nor a look. The API server
        # leaves the finished ones out (the CRD's selectable .status.phase); the transform
        # holds to it where the API server cannot.
        self.sessions = Informer(
            client,
            BACKUP_SESSIONS,
            namespace=me.namespace,
            transform=_unfinished,
            field_selector=UNFINISHED_SESSIONS,
        )
        self.invokers = {
            "BackupBatch": Informer(client, BACKUP_BATCHES, namespace=me.namespace),
            "BackupConfiguration": Informer(client, BACKUP_CONFIGURATIONS, namespace=me.namespace),
        }
        # session -> how to stop its restic: the work of a session that ended meanwhile (its
        # deadline passed, or it was deleted) is stopped, not finished for nobody.
        self._working: dict[str, Cancel] = {}
        self.sessions.subscribe(
            on_upsert=lambda obj: self._queue.put(obj["metadata"]["name"]),
            on_replace=self._relisted,
            on_delete=self._ended,
        )
        for informer in self.invokers.values():
            informer.subscribe(
                on_upsert=lambda obj: self._enqueue_all(),
                on_replace=lambda items: self._enqueue_all(),
            )
        self.elector: LeaderElector | None = None
        if me.elects:
            self.elector = LeaderElector(
                client,
                me.namespace,
                me.lease_name,
                me.pod_name,
                lease_duration=options.lease_duration,
                renew_deadline=options.renew_deadline,
                retry_period=options.retry_period,
            )

    def _enqueue_all(self) -> None:
        for session in self.sessions.items():
            self._queue.put(session["metadata"]["name"])

    def _relisted(self, items: Sequence[JSON]) -> None:
        if self._working:  # the listing is decoded only when a backup runs
            listed = {item["metadata"]["name"] for item in items}
            for name in [n for n in self._working if n not in listed]:
                self._stop_work(name, f"session {name} is no longer running")
        self._enqueue_all()

    def _ended(self, session: JSON) -> None:
        """The session finished or was deleted (the watch no longer keeps it). A watch that
        selects the unfinished sessions tells both apart only by a look: it says a session
        that stopped matching is DELETED, in the state it had before."""
        name = str(session["metadata"]["name"])
        if name not in self._working:
            return
        try:
            now = self.client.get(BACKUP_SESSIONS, name, self.me.namespace)
        except NotFound:
            self._stop_work(name, f"session {name} was deleted")
        except KubeError:
            self._stop_work(name, f"session {name} is no longer running")
        else:
            self._stop_work(name, ended_words(now))

    def _stop_work(self, name: str, reason: str) -> None:
        cancel = self._working.get(name)
        if cancel is not None and cancel.reason is None:
            log.warning("session %s: stopping this host's backup: %s", name, reason)
            cancel.stop(reason)

    def _campaign(self, stop: threading.Event) -> None:
        assert self.elector is not None  # noqa: S101 - only started when electing
        while not stop.is_set():
            self.elector.run(on_started=self._enqueue_all, on_stopped=lambda: None)

    def run(self, stop: threading.Event) -> None:
        informers = [self.sessions, *self.invokers.values()]
        for informer in informers:
            informer.start()
        if self.elector is not None:
            threading.Thread(target=self._campaign, args=(stop,), daemon=True).start()
        log.info(
            "sidecar for %s %s/%s in pod %s",
            self.me.target_kind,
            self.me.namespace,
            self.me.target_name,
            self.me.pod_name,
        )
        self._await_listed(informers, stop)
        # Idle means blocked: the queue is read without a timeout unless a failed attempt
        # waits for its retry; stopping puts a wake-up in the queue.
        threading.Thread(target=self._wake_on, args=(stop,), daemon=True).start()
        try:
            while not stop.is_set():
                due = min(self._retry.values(), default=None)
                timeout = None if due is None else max(0.0, due - time.monotonic())
                try:
                    name = self._queue.get(timeout=timeout)
                except queue.Empty:
                    name = None
                if name is None:  # a retry fell due (or the wake-up)
                    now = time.monotonic()
                    for again in [n for n, at in self._retry.items() if at <= now]:
                        del self._retry[again]
                        self._queue.put(again)
                    continue
                self.process(name)
        finally:
            if self.elector is not None:
                self.elector.stop()
            for informer in informers:
                informer.stop()

    def _await_listed(self, informers: list[Informer], stop: threading.Event) -> None:
        deadline = time.monotonic() + SYNC_TIMEOUT  # events meanwhile are queued, not lost
        while not all(i.synced.is_set() for i in informers) and time.monotonic() < deadline:
            if stop.wait(0.01):
                break
        if all(i.synced.is_set() for i in informers):
            log.info("watching %d session(s) of %s", len(self.sessions), self.me.namespace)
        elif not stop.is_set():
            log.warning("not all watches listed within %.0f s; going on", SYNC_TIMEOUT)

    def _wake_on(self, stop: threading.Event) -> None:
        stop.wait()
        self._queue.put(None)

    def process(self, name: str) -> None:
        if name in self._done:
            return
        session = self.sessions.get(self.me.namespace, name)
        if session is None:
            return
        ref = (session.get("spec") or {}).get("invoker") or {}
        informer = self.invokers.get(str(ref.get("kind")))
        invoker = informer.get(self.me.namespace, str(ref.get("name"))) if informer else None
        leading = self.elector is None or self.elector.is_leader.is_set()
        try:
            step = sidecar_step(session, invoker, self.me, leading=leading)
        except ValueError as exc:
            log.error("session %s: %s", name, exc)
            return
        if isinstance(step, FinishClaimed):
            self._attempt(name, lambda: self.finish(session, invoker))
        elif step is not None:
            work = step
            self._attempt(name, lambda: self.execute(work))

    def _attempt(self, name: str, run: Callable[[], object]) -> None:
        """Run a session's work; tried again later when the API server turned it away."""
        try:
            run()
            self._done.add(name)
            self._retry.pop(name, None)
        except (KubeError, StatusError) as exc:  # the API server is away: try again later
            log.warning("session %s: %s (will retry in %.0f s)", name, exc, RETRY_SECONDS)
            self._retry[name] = time.monotonic() + RETRY_SECONDS

    def finish(self, session: JSON, invoker: JSON | None) -> None:
        """Do the repository work an earlier container of this sidecar claimed and did not
        record (``orphaned_claim``), in its place."""
        from agent.host_backup import (  # noqa: PLC0415 - see the imports above
            HostJob,
            SetupError,
            finish_session,
            load_setup,
            open_restic,
        )

        assert invoker is not None  # noqa: S101 - orphaned_claim holds it
        job = HostJob(
            namespace=self.me.namespace,
            session=session["metadata"]["name"],
            invoker_kind=invoker["kind"],
            invoker_name=invoker["metadata"]["name"],
            target_kind=self.me.target_kind,
            target_name=self.me.target_name,
            hostname=self.me.hostname(None),
        )
        log.warning(
            "session %s: an earlier container of this pod claimed its repository work and did "
            "not record it; doing it now",
            job.session,
        )
        try:
            setup = load_setup(self.client, job)
        except SetupError as exc:  # the operator's finish Job cannot do better: said, left
            log.error("session %s: cannot do its repository work: %s", job.session, exc)
            return
        with open_restic(setup, self.options.cache_dir) as restic:
            finish_session(self.client, job, setup, restic)

    def execute(self, work: Work) -> HostResult:
        from agent.host_backup import HostJob  # noqa: PLC0415 - see the imports above

        invoker = work.invoker
        job = HostJob(
            namespace=self.me.namespace,
            session=work.session,
            invoker_kind=invoker["kind"],
            invoker_name=invoker["metadata"]["name"],
            target_kind=self.me.target_kind,
            target_name=self.me.target_name,
            hostname=work.hostname,
        )
        with log_fields(
            namespace=job.namespace,
            invoker=f"{job.invoker_kind}/{job.invoker_name}",
            session=job.session,
            target=f"{job.target_kind}/{job.target_name}",
            host=job.hostname,
        ):
            log.info("session %s: backing up %s", work.session, job.describe())
            result = self._execute(job, work)
            self._record(work, job, result)
            return result

    def _execute(self, job: HostJob, work: Work) -> HostResult:
        from agent.host_backup import SetupError, load_setup  # noqa: PLC0415

        started = time.monotonic()
        try:
            member = work.member()
            if member is None:
                raise SetupError(f"{job.invoker_kind} {job.invoker_name} does not validate")
            setup = load_setup(self.client, job)
            return self._back_up(job, setup, work, member)
        except SetupError as exc:  # no Repository, Secret or usable backend: the host failed
            result = HostResult(job.hostname, "Failed", time.monotonic() - started, error=str(exc))
            SessionReporter(self.client, job.namespace, job.session).update(
                lambda s: with_host(s, job.target_kind, job.target_name, result)
            )
            return result

    def _session_object(self, namespace: str, name: str) -> JSON:
        """The session (from the watch's cache) as an Event's involved object."""
        session = self.sessions.get(namespace, name) or {
            "metadata": {"name": name, "namespace": namespace}
        }
        return {"apiVersion": c.V1BETA1, "kind": "BackupSession", **session}

    def _record(self, work: Work, job: HostJob, result: HostResult) -> None:
        """An Event on the BackupSession for the host's result, where `kubectl describe`
        shows it."""
        session = self._session_object(job.namespace, work.session)
        what = job.describe()
        if result.succeeded:
            self.events.record(
                session,
                "Normal",
                "HostBackupSucceeded",
                f"backed up {what} in {result.duration:.1f}s",
            )
        else:
            self.events.record(
                session, "Warning", "HostBackupFailed", f"{what}: {result.error or 'failed'}"
            )

    def _back_up(self, job: HostJob, setup: Setup, work: Work, member: BackupMember) -> HostResult:
        from agent.host_backup import open_restic, report  # noqa: PLC0415 - see the imports above

        with (
            self.in_flight(work.session) as cancel,
            open_restic(setup, self.options.cache_dir, cancel) as restic,
        ):
            result = self._back_up_with(restic, job, setup, work, member)
            if cancel.reason is None:
                report(self.client, job, setup, restic, result)
            # else: the session's verdict is given; the host's words go in its Event
        self.backups += 1
        return result

    @contextlib.contextmanager
    def in_flight(self, name: str) -> Iterator[Cancel]:
        """While this host works for session ``name``: how that work is stopped once the
        session ends (or already has) before the work is done."""
        from engine.restic import Cancel  # noqa: PLC0415 - see the imports above

        cancel = self._working.setdefault(name, Cancel())
        if self.sessions.get(self.me.namespace, name) is None:  # ended before we began
            self._stop_work(name, f"session {name} is no longer running")
        try:
            yield cancel
        finally:
            self._working.pop(name, None)

    def _back_up_with(
        self, restic: Restic, job: HostJob, setup: Setup, work: Work, member: BackupMember
    ) -> HostResult:
        from agent.host_backup import (  # noqa: PLC0415 - see the imports above
            BackupOptions,
            back_up_paths,
            init_guard,
            sessions_parent,
            with_hooks,
        )
        from engine.locks import holders_of  # noqa: PLC0415
        from engine.progress import ProgressReport  # noqa: PLC0415

        target = member.target
        paths = list(target.paths or []) if target else []
        excludes = list(target.exclude or []) if target else []
        session = self.sessions.get(job.namespace, work.session) or {}

        def back_up() -> HostResult:
            options = BackupOptions(
                guard=init_guard(self.client, setup, job.namespace, job.describe()),
                attempts_dir=self.options.state_dir,
                parent_hint=sessions_parent(self.client, job),
                holders=holders_of(self.client, job.namespace, setup.repository),
                progress=ProgressReport(
                    self.events,
                    lambda: self._session_object(job.namespace, work.session),
                    operation="backup",
                    what=job.describe(),
                ),
            )
            return back_up_paths(restic, job, paths, excludes=excludes, options=options)

        return with_hooks(
            job,
            member.hooks,
            back_up,
            own_container=c.SIDECAR_CONTAINER,
            final_attempt=is_final_attempt(session, work.invoker),
        )
