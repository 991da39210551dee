"""The BackupSession reconciler: the session machine's decision (``controller.sessions.machine``)
turned into Jobs and a status write.

Keys are (namespace, name) of sessions; a session's Jobs and the sessions of the same invoker
lead back to it. Jobs have deterministic names and the session as owner, so a restarted
operator finds the Jobs it created (AlreadyExists is success) and never duplicates one.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable

from pydantic import ValidationError

from api import constants as c
from api.conditions import (
    false_message,
    has_condition,
    is_true,
    now_rfc3339,
    parse_rfc3339,
    set_condition,
)
from api.hooks import retries_left
from api.naming import backup_job_name, finish_job_name
from api.objects import JSON
from api.repository import Repository
from api.tenancy import member_of
from api.units import parse_duration
from api.views import Obj, Status, message_of, text
from controller.invokers.evaluation import InvokerFacts, MemberView, members_of
from controller.invokers.tenancy import judge_boundary
from controller.jobs.outcome import PODS_RECHECK, troubles
from controller.runtime.caches import (
    BACKUP_SESSIONS,
    DAEMONSETS,
    FUNCTIONS,
    INVOKER_TYPES,
    JOBS,
    REPOSITORIES,
    STATEFULSETS,
    TASKS,
    WORKLOAD_TYPES,
    session_invoker,
)
from controller.runtime.defaults import SIDECAR_GRACE
from controller.runtime.loop import Controller, Result
from controller.runtime.owned import find_job, stop_job
from controller.sessions import metric_groups
from controller.sessions.backup_status import (
    BACKUP,
    TERMINAL,
    awaits_repository_work,
    history_to_delete,
)
from controller.sessions.effects import SessionSide, Wiring
from controller.sessions.machine import Decision, Observed, all_jobs
from controller.sessions.sidecar_presence import why_absent
from controller.sessions.target_use import USE_RECHECK
from controller.sessions.targets import (
    deadline,
    next_deadline_look,
)
from engine import metrics
from kube import NotFound
from kube.informer import ObjectKey
from kube.mutex import pod_gone
from kube.sessions import create_session

log = logging.getLogger(__name__)

# How long a sidecar target may go without any ready pod carrying the sidecar before it fails
# (a rollout that brings the sidecar in takes a while), and how often it is looked at after.
SIDECAR_RECHECK = 30.0
UNFINISHED = "unfinished"  # the sessions index of those not yet ended: <namespace>/<invoker name>


class BackupSide(SessionSide):
    """A BackupSession, for the session reconciler (``controller.sessions.reconciler``)."""

    def __init__(self, wiring: Wiring, *, sidecar_grace: float = SIDECAR_GRACE) -> None:
        resources = {"BackupSession": BACKUP_SESSIONS}
        super().__init__(wiring, resources=resources, pushes="metrics-push")
        self.sidecar_grace = sidecar_grace
        self._enqueue: Callable[[ObjectKey], None] = lambda key: None

    def register(self, controller: Controller[ObjectKey]) -> None:
        self._enqueue = controller.enqueue
        self.effects.enqueue = controller.enqueue
        sessions = self.caches.sessions()  # indexed by invoker
        # Whether an older session still runs is asked on every reconcile of a new one: it
        # looks among the few unfinished sessions, not the invoker's whole history.
        sessions.add_index(UNFINISHED, _unfinished_index)
        sessions.subscribe(
            on_replace=controller.replace_handler(_session_key),
            on_upsert=controller.handler(_session_key),
            # A finished session may let a waiting one of the same invoker go on.
            on_delete=lambda o: self._siblings(o, controller),
        )
        self.caches.informer(JOBS).subscribe(
            on_upsert=controller.handler(_job_session_key),
            on_delete=controller.handler(_job_session_key),
        )
        # An invoker changed while its sessions run (its Repository, its members): they are
        # judged again by the tenant boundary at once, not at their next Job event.
        for rt in INVOKER_TYPES.values():
            self.caches.informer(rt).subscribe(on_upsert=lambda o: self._running_of(o, controller))
        for rt in (TASKS, FUNCTIONS, REPOSITORIES, STATEFULSETS, DAEMONSETS):
            self.caches.informer(rt)

    def _running_of(self, invoker: JSON, controller: Controller[ObjectKey]) -> None:
        meta = Obj(invoker).meta
        for session in self._sessions_of(meta.namespace, meta.name, unfinished=True):
            controller.enqueue(_session_key(session))

    def _siblings(self, obj: JSON, controller: Controller[ObjectKey]) -> None:
        session = Obj(obj)
        for other in self._sessions_of(
            session.namespace, session.spec.invoker.name, unfinished=True
        ):
            controller.enqueue(_session_key(other))

    def _sessions_of(self, namespace: str, invoker: str, *, unfinished: bool = False) -> list[JSON]:
        """An invoker's cached sessions (``unfinished``: only those in no terminal phase)."""
        if not unfinished:
            return self.caches.sessions_of(namespace, invoker)
        return self.caches.sessions().by_index(UNFINISHED, f"{namespace}/{invoker}")

    # -- observing ---------------------------------------------------------------------------

    def _job(self, session: JSON, index: int) -> JSON | None:
        """The member's Job: from the cache, or, when the cache lacks a Job the session already
        made (a watch lagging behind its creation), from the API server; None only when the
        API server says it is gone."""
        namespace, name = Obj(session).key
        targets = Obj(session).status.targets
        made = index < len(targets) and is_true(
            targets[index].conditions, c.BACKUP_EXECUTOR_ENSURED
        )
        job = backup_job_name(name, index)
        return find_job(self.client, self.caches, namespace, job, made=made)

    def _repository(self, invoker: JSON | None) -> Repository | None:
        if invoker is None:
            return None
        try:
            return self.reader.repository_of(invoker)
        except ValidationError:
            return None  # the Job's builder says what is wrong with it

    def _repository_work(self, session: JSON) -> tuple[bool, JSON | None]:
        """While a session awaits its repository work: whether the pod that claimed it is gone
        (its pods send no event: asked on each look), and the operator's finish Job for it."""
        view = Obj(session)
        if not awaits_repository_work(view.status.raw):
            return False, None
        namespace, name = view.key
        job = self.caches.get(JOBS, namespace, finish_job_name(name))
        holder = message_of(view.status.conditions, c.REPOSITORY_WORK_CLAIMED)
        if not holder or not pod_gone(self.client, namespace)(holder):
            return False, job
        # A Job's pod ends right after recording the work: a cache that has not seen that
        # record yet is not believed. Asked of the API server, once the pod is gone.
        try:
            fresh = self.client.get(BACKUP_SESSIONS, name, namespace)
        except NotFound:
            return False, job
        return awaits_repository_work(Obj(fresh).status.raw), job

    def _refused(
        self, invoker: JSON | None, members: list[MemberView], repo: Repository | None
    ) -> dict[int, str]:
        """Members the tenant boundary refuses now (judged on every pass, as the invoker is):
        the invoker is Invalid or NotReady for them, and a session that runs fails them without
        touching the other namespace. What is the invoker's own (its Repository, its
        settings) refuses every member."""
        if invoker is None:
            return {}
        subject, found = judge_boundary(
            self.caches, self.operator_namespace, invoker, members, repo
        )
        refused: dict[int, list[str]] = {}
        for refusal in found:
            owner = member_of(refusal, subject.members)
            for view in members:
                if owner is None or owner.where == view.where:
                    refused.setdefault(view.index, []).append(str(refusal))
        return {index: "refused: " + "; ".join(why) for index, why in refused.items()}

    def _waiting_sidecars(self, session: JSON, members: list[MemberView]) -> list[MemberView]:
        """Sidecar members of the running session that not every host has reported on."""
        targets = Obj(session).status.targets
        waiting = []
        for view in members:
            if view.task is not None or view.kind not in WORKLOAD_TYPES:
                continue
            if view.index >= len(targets):
                continue
            target = targets[view.index]
            if target.phase in ("Pending", "Running") and target.reported < target.total_hosts:
                waiting.append(view)
        return waiting

    def _sidecar_absent(
        self, session: JSON, invoker: JSON | None, waiting: list[MemberView], now: dt.datetime
    ) -> dict[int, str]:
        """Why no sidecar can carry out each waiting member, once the grace period is over."""
        created = parse_rfc3339(Obj(session).meta.created)
        if not waiting or (now - created).total_seconds() < self.sidecar_grace:
            return {}
        refused = false_message(Obj(invoker).status.conditions, c.SIDECAR_AUTHORIZED)
        absent = {}
        for view in waiting:
            if refused and f"{view.kind} {view.name} (" in refused:
                absent[view.index] = refused
                continue
            pods = self.member_pods(view)
            where = (view.kind, view.target_namespace, view.name)
            why = why_absent(*where, pods) if isinstance(pods, list) else pods
            if why:
                absent[view.index] = why
        return absent

    def _busy(self, session: JSON, members: list[MemberView]) -> dict[int, str]:
        """The members not started whose target the product is restoring (they wait)."""
        view = Obj(session)
        if view.status.phase in TERMINAL:
            return {}
        targets = view.status.targets
        holder = f"BackupSession {view.namespace}/{view.name}"
        waiting = [
            v for v in members if v.index >= len(targets) or targets[v.index].phase == "Pending"
        ]
        return self.use.busy("backup", holder, waiting)

    def _other_running(self, session: JSON, invoker: JSON | None, now: dt.datetime) -> str | None:
        """An older unfinished session of the same invoker, which this one must not overlap.

        Older by (creationTimestamp, name): whichever worker looks first, two sessions created
        together never both start. One past its deadline does not count: it is failed, not
        waited for (after an outage longer than ``timeOut``, the first new slot runs) — unless
        the deadline is the default one and its targets are at work (it goes on while they make
        progress; its own pass fails it once they stall).
        """
        if invoker is None:
            return None
        mine = Obj(session).meta
        my_order = (mine.created, mine.name)
        time_out = Obj(invoker).spec.time_out
        for other in self._sessions_of(mine.namespace, Obj(invoker).name, unfinished=True):
            meta, status = Obj(other).meta, Obj(other).status
            if (meta.created, meta.name) >= my_order or status.phase in TERMINAL:
                continue
            ends = status.deadline or deadline(
                meta.created, time_out, self.effects.default_deadline
            )
            if now <= parse_rfc3339(ends) or (not time_out and _working(status)):
                return meta.name
            self._enqueue((meta.namespace, meta.name))  # to be failed, promptly
        return None

    # -- the session reconciler's side ------------------------------------------------------

    def read(self, key: ObjectKey) -> JSON | None:
        namespace, name = key
        session = self.caches.get(BACKUP_SESSIONS, namespace, name)
        if session is None or self._finished(session):
            return None
        return {"apiVersion": c.V1BETA1, "kind": "BackupSession", **session}

    def observe(self, key: ObjectKey, session: JSON, now: dt.datetime) -> Observed:
        namespace = key[0]
        ref = Obj(session).spec.invoker
        rt = INVOKER_TYPES.get(ref.kind)
        invoker = self.caches.get(rt, namespace, ref.name) if rt else None
        if invoker is not None:
            invoker = {"apiVersion": rt.api_version if rt else "", "kind": ref.kind, **invoker}
        members = members_of(invoker) if invoker else []
        waiting = self._waiting_sidecars(session, members)
        jobs = {v.index: [self._job(session, v.index)] for v in members if v.task is not None}
        repo = self._repository(invoker)
        holder_gone, finish_job = self._repository_work(session)
        return Observed(
            kind=BACKUP,
            invoker=invoker,
            facts=InvokerFacts(repository=repo),
            members=members,
            total_hosts={v.index: self.reader.total_hosts(v) for v in members},
            jobs=jobs,
            trouble=troubles(self.client, namespace, all_jobs(jobs), now),
            other_running=self._other_running(session, invoker, now),
            refused=self._refused(invoker, members, repo),
            absent=self._sidecar_absent(session, invoker, waiting, now),
            busy=self._busy(session, members),
            waiting=frozenset(v.index for v in waiting),
            work_holder_gone=holder_gone,
            finish_job=finish_job,
        )

    def invoker(self, obj: JSON, seen: Observed) -> JSON | None:
        return seen.invoker

    def before(self, key: ObjectKey, obj: JSON, decision: Decision, seen: Observed) -> None:
        for index in seen.refused:  # a refused member's Job that still runs is stopped
            for job in seen.jobs.get(index) or []:
                stop_job(self.client, self.writes, job, "the boundary refuses it")

    def create_job(self, obj: JSON, seen: Observed, member: int, at: int) -> str | None:
        return self.effects.create_member_job(obj, seen.invoker or {}, seen.members[member])

    def next_look(
        self, session: JSON, status: JSON, seen: Observed, now: dt.datetime
    ) -> Result | None:
        """When to look again without an event: by the deadline, and sooner for what sends no
        event here (sidecar pods coming and going, a restore ending, a Job's pod that cannot
        start)."""
        if not Status(status).deadline or Status(status).phase in TERMINAL:
            return None
        after = next_deadline_look(status, seen.liveness, now)
        if seen.waiting:
            age = (now - parse_rfc3339(Obj(session).meta.created)).total_seconds()
            after = min(after, max(self.sidecar_grace - age, SIDECAR_RECHECK))
        if seen.busy:
            after = min(after, USE_RECHECK)
        if awaits_repository_work(status) or any(job is not None for job in all_jobs(seen.jobs)):
            after = min(after, PODS_RECHECK)
        return Result(requeue_after=max(1.0, after))

    # -- what follows the end of a session (each step guarded, so none repeats) -------------------

    def _finished(self, session: JSON) -> bool:
        status = Obj(session).status
        if status.phase not in TERMINAL:
            return False
        if not is_true(status.conditions, c.BACKUP_HISTORY_CLEANED):
            return False
        if self.pushgateway_url and not has_condition(status.conditions, c.METRICS_PUSHED):
            return False
        return status.phase != "Failed" or status.retried is not None

    def follow_up(
        self, session: JSON, status: JSON, seen: Observed, now: dt.datetime
    ) -> Result | None:
        invoker = seen.invoker
        if invoker is None:
            return None
        namespace, name = Obj(session).key
        if not is_true(Status(status).conditions, c.BACKUP_HISTORY_CLEANED):
            removed = self._clean_history(
                namespace,
                Obj(invoker).name,
                Obj(invoker).spec.history_limit,
                name,
                Status(status).phase,
            )
            status["conditions"] = set_condition(
                Status(status).conditions,
                c.BACKUP_HISTORY_CLEANED,
                True,
                "SuccessfullyCleanedBackupHistory",
                f"removed {removed} older session(s)",
                now=now,
            )
        if self.pushgateway_url and not has_condition(Status(status).conditions, c.METRICS_PUSHED):
            self._push_metrics(session, status, invoker, now)
        return self._retry(session, status, invoker, now)

    def _retry(self, session: JSON, status: JSON, invoker: JSON, now: dt.datetime) -> Result | None:
        """A failed session with retries left makes its retry, once, after its delay."""
        retry = Obj(invoker).spec.retry
        if Status(status).phase != "Failed" or Status(status).retried is not None or not retry:
            return None
        left = retries_left(session, invoker)
        if left <= 0:
            status["retried"] = False
            return None
        if not Obj(session).status.next_retry:
            # The retry's time, and so its name, is written before the retry is made: a pass
            # whose later status write is lost finds the same retry again instead of a second.
            delay = parse_duration(text(retry, "delay", "0s"))
            status["nextRetry"] = now_rfc3339(now + delay)
            return None  # the write brings the session back
        due = parse_rfc3339(status["nextRetry"])
        if now < due:
            return Result(requeue_after=(due - now).total_seconds() + 0.5)
        who = Obj(invoker)
        retry_session = create_session(  # AlreadyExists: the same retry, found by its name
            self.client,
            who.kind,
            who.name,
            Obj(session).namespace,
            uid=who.meta.uid,
            unix_seconds=int(due.timestamp()),
            retry_left=left - 1,
        )
        status["retried"] = True
        self.events.record(
            session,
            "Normal",
            "BackupRetried",
            f"created {retry_session['metadata']['name']} ({left - 1} retries left)",
        )
        return None

    def _push_metrics(self, session: JSON, status: JSON, invoker: JSON, now: dt.datetime) -> None:
        """Push the session's groups once: the session, each host, and the repository's
        figures when the invoker may use it. The operator is the Pushgateway's only writer
        (``controller.sessions.metric_groups``)."""
        namespace, name = Obj(session).key
        inv = Obj(invoker)
        history = [s for s in self._sessions_of(namespace, inv.name) if Obj(s).name != name]
        repo_ref = inv.spec.repository
        who = metrics.Invoker(inv.kind, inv.name, namespace, repo_ref.name)
        groups = [
            metric_groups.session_group(who, status, history, now),
            *metric_groups.backup_host_groups(who, status),
        ]
        # Only a Repository the boundary lets the invoker use is read for its figures.
        usable = is_true(inv.status.conditions, c.REPOSITORY_FOUND)
        repo_namespace = repo_ref.namespace_or(namespace)
        client, url = self.client, self.pushgateway_url

        def push() -> bool:
            repository = None
            if usable and who.repository:
                try:  # read now, not from the cache: the last host updated it just before
                    repository = client.get(REPOSITORIES, who.repository, repo_namespace)
                except NotFound:
                    repository = None
            figures = metric_groups.repository_group(who, repository) if repository else None
            metric_groups.push_groups(url, who, groups + ([figures] if figures else []))
            return figures is not None

        self.effects.push_metrics((namespace, name), status, push, "session and host metrics", now)

    def _clean_history(
        self, namespace: str, invoker: str, limit: int, current: str, phase: str | None
    ) -> int:
        removed = 0
        for name in history_to_delete(self._sessions_of(namespace, invoker), limit, current, phase):
            try:
                self.client.delete(BACKUP_SESSIONS, name, namespace)
                removed += 1
            except NotFound:
                pass
        return removed

    def transition(self, session: JSON, old: JSON, status: JSON, problems: tuple[str, ...]) -> None:
        after = Status(status)
        if Status(old).phase == after.phase or after.phase not in TERMINAL:
            return
        if after.phase == "Succeeded":
            self.events.record(
                session,
                "Normal",
                "BackupSessionSucceeded",
                f"every target succeeded in {after.duration or '?'}",
            )
        elif after.phase == "Skipped":
            skipped = message_of(after.conditions, c.BACKUP_SKIPPED)
            self.events.record(session, "Normal", "BackupSkipped", skipped)
        else:
            failures = [
                f"{t.ref.kind} {t.ref.name}: "
                + message_of(list(reversed(t.conditions)), "BackupFailed", default="failed")
                for t in after.targets
                if t.phase == "Failed"
            ]
            self.events.record(
                session,
                "Warning",
                "BackupSessionFailed",
                "; ".join(failures) or "the session failed",
            )


def _unfinished_index(session: JSON) -> list[str]:
    """``<namespace>/<invoker name>`` of a session not yet Succeeded, Failed or Skipped."""
    if Obj(session).status.phase in TERMINAL:
        return []
    return session_invoker(session)


def _session_key(obj: JSON) -> ObjectKey:
    return Obj(obj).key


def _job_session_key(obj: JSON) -> ObjectKey | None:
    """The session that owns a backup Job (by owner reference: a label value may be cut)."""
    meta = Obj(obj).meta
    owner = meta.owner(("BackupSession",))
    return (meta.namespace, owner.name) if owner else None


def _working(status: Status) -> bool:
    """Whether a started session has a target at work (Running)."""
    return any(target.phase == "Running" for target in status.targets)
