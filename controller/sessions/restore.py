"""The RestoreSession / RestoreBatch reconciler: the session machine's decision
(``controller.sessions.machine``) turned into restore Jobs, their service account, a status
write, Events and, once it ended, the restore's metrics.

Keys are (kind, namespace, name). A restore Job has a deterministic name
(``stash-restore-<invoker>-<index>``) and the invoker as owner, so a restarted operator finds the
Jobs it made (AlreadyExists is success) and never makes one twice. While it waits for its
Repository, Secret or target it is looked at again every ``WAITING_RECHECK`` seconds (a Secret
or a target of a kind nobody watches sends no event), and always by its deadline.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable

from pydantic import ValidationError

from api import constants as c
from api.base import first_error
from api.conditions import has_condition, is_true, parse_rfc3339, set_condition
from api.hosts import PER_POD_KINDS, Identity
from api.naming import restore_job_name, restore_service_account
from api.objects import JSON
from api.units import parse_duration
from api.views import Entry, Obj, Status, items, message_of, part, text
from controller.invokers.evaluation import RestoreView, usable_repository
from controller.invokers.grants import Grants, InvokerKey, repository_grant
from controller.invokers.trigger import restore_rbac_objects
from controller.jobs import claims
from controller.jobs.outcome import troubles
from controller.runtime.caches import (
    FUNCTIONS,
    JOBS,
    NAMESPACES,
    OWNED_TYPES,
    PVCS,
    REPOSITORIES,
    TASKS,
    WORKLOAD_TYPES,
)
from controller.runtime.loop import Controller, Result
from controller.runtime.owned import ensure, find_job, owned_by, stop_job
from controller.sessions import metric_groups
from controller.sessions.effects import SessionSide, Wiring
from controller.sessions.machine import Decision, Observed, all_jobs
from controller.sessions.restore_status import (
    FINISHED,
    RESTORE,
    RESTORE_FAILED,
    restore_members_of,
)
from controller.sessions.sidecar_presence import rolled_without_init, why_init_absent
from controller.sessions.targets import Liveness, next_deadline_look
from engine import metrics
from engine.reporting import member_entry
from kube import (
    AlreadyExists,
    BadRequest,
    Conflict,
    Forbidden,
    Invalid,
)
from kube.types import PODS, RESTORE_INVOKER_TYPES
from pods.sidecar import has_init

log = logging.getLogger(__name__)

WAITING_RECHECK = 10.0
# How long a workload member may go without any pod carrying stash-init before it fails (its
# rollout takes a while), and how often its pods are looked at while its hosts have not all
# reported (pods coming and going send this reconciler no event).
INIT_GRACE = 120.0
HOSTS_RECHECK = 30.0
LEFTOVER_RECHECK = 2.0


class RestoreSide(SessionSide):
    """A RestoreSession or RestoreBatch, for the session reconciler
    (``controller.sessions.reconciler``)."""

    def __init__(self, wiring: Wiring, *, init_grace: float = INIT_GRACE) -> None:
        resources = dict(RESTORE_INVOKER_TYPES)
        super().__init__(wiring, resources=resources, pushes="restore-metrics-push")
        self.init_grace = init_grace
        self.grants = Grants(self.client, self.caches, self.writes, RESTORE_INVOKER_TYPES)
        # (restore uid, member, host) -> when its pods missing stash-init were deleted (once)
        self._recreated: dict[tuple[str, int, str], dt.datetime] = {}

    # -- wiring --------------------------------------------------------------------------------

    def register(self, controller: Controller[InvokerKey]) -> None:
        self.effects.enqueue = controller.enqueue
        self.grants.watch(controller.enqueue)
        for kind, rt in RESTORE_INVOKER_TYPES.items():
            self.caches.informer(rt).subscribe(
                on_replace=controller.replace_handler(_keyer(kind)),
                on_upsert=controller.handler(_keyer(kind)),
            )
        self.caches.informer(JOBS).subscribe(
            on_upsert=controller.handler(_job_owner_key),
            on_delete=controller.handler(_job_owner_key),
        )
        # What a waiting restore waits for: its namespace's unfinished restores look again.
        for rt in (REPOSITORIES, PVCS, TASKS, FUNCTIONS, NAMESPACES, *WORKLOAD_TYPES.values()):
            self.caches.informer(rt).subscribe(
                on_upsert=lambda o: self._waiting_in(o, controller),
                on_delete=lambda o: self._waiting_in(o, controller),
            )
        for rt in OWNED_TYPES.values():
            self.caches.informer(rt)

    def _waiting_in(self, obj: JSON, controller: Controller[InvokerKey]) -> None:
        changed = Obj(obj)
        namespace = changed.namespace or (changed.name if changed.kind == "Namespace" else None)
        for kind, rt in RESTORE_INVOKER_TYPES.items():
            for invoker in map(Obj, self.caches.informer(rt).items()):
                if namespace and invoker.namespace != namespace:
                    continue
                if invoker.status.phase not in FINISHED:
                    controller.enqueue((kind, *invoker.key))

    # -- observing -----------------------------------------------------------------------------

    def _jobs(self, invoker: JSON, view: RestoreView, made: bool) -> list[JSON | None]:
        """The member's restore Jobs: from the cache, or from the API server when the status
        says they were made and the cache has not seen one yet; None for one that is gone. A
        Job of that name left by an earlier restore of the same name is not this one's."""
        meta = Obj(invoker).meta
        return [
            find_job(self.client, self.caches, meta.namespace, name, made=made, owner_uid=meta.uid)
            for name in _job_names(invoker, view)
        ]

    def _workload(self, view: RestoreView) -> JSON | None:
        return self.caches.get(WORKLOAD_TYPES[view.kind], view.target_namespace, view.name)

    def _leftovers(self, invoker: JSON, members: list[RestoreView]) -> list[int]:
        """Members whose Job name is still held by a Job of an earlier restore of the same
        name (deleted, its Jobs not yet collected): that Job is deleted, and the member waits
        for its name."""
        namespace = Obj(invoker).namespace
        held = []
        for view in members:
            if view.task is None:
                continue
            for name in _job_names(invoker, view):
                job = self.caches.get(JOBS, namespace, name)
                if job is None or _owned_by(job, invoker):
                    continue
                if view.index not in held:
                    held.append(view.index)
                if not Obj(job).meta.deleting:
                    log.info("deleting Job %s/%s of an earlier restore", namespace, name)
                    self.client.delete(JOBS, name, namespace, missing_ok=True)
        return held

    def _marked(self, invoker: JSON, view: RestoreView) -> bool:
        """Does the workload's pod template carry this restore (its pods rolled for it)?"""
        template = Obj(self._workload(view)).template
        marks = text(template.meta.annotations, c.RESTORE_ANNOTATION)
        return Obj(invoker).meta.uid in marks.split(",")

    def _service_account(self, view: RestoreView) -> str:
        """The account the workload's pods (and so their stash-init) run as."""
        return Obj(self._workload(view)).template.service_account

    def _init_absent(
        self, invoker: JSON, views: list[RestoreView], now: dt.datetime
    ) -> dict[int, str]:
        """Why no stash-init will restore each workload member, once the grace is over."""
        if not views or Obj(invoker).status.phase != "Running":
            return {}
        created = parse_rfc3339(Obj(invoker).meta.created)
        if (now - created).total_seconds() < self.init_grace:
            return {}
        absent = {}
        for view in views:
            pods = self.member_pods(view)
            if not isinstance(pods, list):
                if pods:
                    absent[view.index] = pods
                continue
            why, recreating = self._missed(invoker, view, pods, now)
            if why is None and not recreating:
                why = why_init_absent(view.kind, view.target_namespace, view.name, pods)
            if why:
                absent[view.index] = why
        return absent

    def _missed(
        self, invoker: JSON, view: RestoreView, pods: list[JSON], now: dt.datetime
    ) -> tuple[str | None, bool]:
        """The pods rolled for this restore that came up without stash-init while their host is
        not restored (the webhook had not seen the restore yet, or did not answer) are deleted,
        once per host, so that their controller makes them again through the webhook. Returns
        why the member fails (a host whose new pods missed it again) and whether a host's pods
        were re-created within the grace (until then no verdict on the member's pods)."""
        uid = Obj(invoker).meta.uid
        reported = _reported_hosts(invoker, view.index)
        alias = view.member.target.alias if view.member.target else None
        if view.kind not in PER_POD_KINDS and any(has_init(p) for p in pods):
            return None, False  # one pod of a Deployment restores its host: one has stash-init
        stray: dict[str, list[JSON]] = {}
        for pod in rolled_without_init(pods, uid):
            identity = Identity(
                view.target_namespace,
                view.kind,
                view.name,
                Obj(pod).name,
                text(part(pod, "spec"), "nodeName"),
            )
            try:
                host = identity.hostname(alias)
            except ValueError:
                continue  # not scheduled yet: no host
            if host not in reported:
                stray.setdefault(host, []).append(pod)
        where = f"{view.kind} {view.target_namespace}/{view.name}"
        for host, missed in stray.items():
            if (uid, view.index, host) in self._recreated:
                return (
                    f"pod {Obj(missed[0]).name} of {where} came up without the "
                    f"stash-init init container, also after it was re-created for host {host}: "
                    "the webhook did not inject it (is it running? its failurePolicy Ignore "
                    "lets pods start without it)",
                    False,
                )
            self._recreated[(uid, view.index, host)] = now
            for pod in missed:
                self._recreate(invoker, where, pod, host)
        recent = [
            at for (u, index, _), at in self._recreated.items() if u == uid and index == view.index
        ]
        return None, any((now - at).total_seconds() < self.init_grace for at in recent)

    def _recreate(self, invoker: JSON, where: str, pod: JSON, host: str) -> None:
        meta = Obj(pod).meta
        log.info("re-creating pod %s of %s: it came up without stash-init", meta.name, where)
        try:
            self.client.delete(PODS, meta.name, meta.namespace, uid=meta.uid, missing_ok=True)
        except Conflict:
            return  # a newer pod of that name: the next look judges it
        self.events.record(
            invoker,
            "Normal",
            "PodRecreated",
            f"deleted pod {meta.name} of {where}: it came up without stash-init before "
            f"host {host} was restored; its controller makes it again, with stash-init",
        )

    # -- the session reconciler's side ------------------------------------------------------

    def read(self, key: InvokerKey) -> JSON | None:
        kind, namespace, name = key
        rt = RESTORE_INVOKER_TYPES[kind]
        invoker = self.caches.get(rt, namespace, name)
        if invoker is None or Obj(invoker).meta.deleting:
            # Owner references take its Jobs and service account with it; not what it was
            # granted in the Repository's namespace.
            self.grants.keep(key, [])
            return None
        invoker = {"apiVersion": rt.api_version, "kind": kind, **invoker}
        if self._done(invoker):
            self.grants.keep(key, [])  # nothing reads the Repository for it any more
            uid = Obj(invoker).meta.uid
            self._recreated = {k: v for k, v in self._recreated.items() if k[0] != uid}
            return None
        return invoker

    def observe(self, key: InvokerKey, invoker: JSON, now: dt.datetime) -> Observed | Decision:
        try:
            members = restore_members_of(invoker)
        except ValidationError as exc:  # the CRD schema lets through what the model refuses
            return _invalid(invoker, exc, now)
        made = _made(invoker)
        workloads = [v for v in members if v.task is None and v.kind in WORKLOAD_TYPES]
        jobs = {v.index: self._jobs(invoker, v, v.index in made) for v in members if v.task}
        return Observed(
            kind=RESTORE,
            members=members,
            facts=self.reader.read(invoker, members),
            total_hosts={v.index: self.reader.total_hosts(v) for v in members},
            jobs=jobs,
            trouble=troubles(self.client, Obj(invoker).namespace, all_jobs(jobs), now),
            marked={v.index: self._marked(invoker, v) for v in workloads},
            absent=self._init_absent(invoker, workloads, now),
            busy=self._busy(invoker, members),
            leftover=frozenset(self._leftovers(invoker, members)),
            waiting=frozenset(v.index for v in workloads),
        )

    def invoker(self, obj: JSON, seen: Observed) -> JSON | None:
        return obj

    def before(self, key: InvokerKey, obj: JSON, decision: Decision, seen: Observed) -> None:
        refused = Status(decision.status).phase == "Failed" and bool(decision.problems)
        workloads = [
            v
            for v in seen.members
            if isinstance(v, RestoreView) and v.task is None and v.kind in WORKLOAD_TYPES
        ]
        self._keep_access(key, obj, decision.status, seen, workloads, refused=refused)

    def create_job(self, obj: JSON, seen: Observed, member: int, at: int) -> str | None:
        view = seen.members[member]
        ordinal = at if view.claims else None
        first = None
        if ordinal is not None and isinstance(view, RestoreView):
            claimed = view

            def first() -> str | None:
                return self._create_claims(obj, claimed, ordinal)

        return self.effects.create_member_job(obj, obj, view, ordinal=ordinal, first=first)

    def follow_up(
        self, invoker: JSON, status: JSON, seen: Observed, now: dt.datetime
    ) -> Result | None:
        if self.pushgateway_url:
            self._push_metrics(invoker, status, now)
        return None

    def next_look(
        self, invoker: JSON, status: JSON, seen: Observed, now: dt.datetime
    ) -> Result | None:
        """When to look again without an event: a restore whose Job name an earlier one's Job
        holds soon (its deletion's events bring it back too), a waiting restore soon, a running
        one by its deadline (and, while its workloads' or Jobs' pods are watched for, every 20
        or 30 s: their state sends no event here); a finished or Invalid one only on an event."""
        if seen.leftover:
            return Result(requeue_after=LEFTOVER_RECHECK)
        return _next_look(status, now, bool(seen.waiting) or bool(seen.jobs), seen.liveness)

    def _busy(self, invoker: JSON, members: list[RestoreView]) -> dict[int, str]:
        """Before it starts: the members whose target a backup session is backing up now (the
        restore waits for them; once it runs, backups of its targets wait for it)."""
        view = Obj(invoker)
        if view.status.phase in ("Running", *FINISHED):
            return {}
        return self.use.busy("restore", f"{view.kind} {view.namespace}/{view.name}", members)

    def _keep_access(
        self,
        key: InvokerKey,
        invoker: JSON,
        status: JSON,
        seen: Observed,
        workloads: list[RestoreView],
        *,
        refused: bool,
    ) -> None:
        """What the restore's pods may read, kept to what it needs now. Ended: nothing reads
        the Repository for it any more, and if the boundary refused it, a Job still running
        for it is stopped. Otherwise (before any Job or stash-init runs) its Jobs' and its
        workloads' accounts get their roles, and a Repository of another namespace that
        allows this one is readable there."""
        if Status(status).phase not in ("Pending", "Running"):
            self.grants.keep(key, [])
            for jobs in seen.jobs.values() if refused else ():
                for job in jobs:
                    stop_job(self.client, self.writes, job, "the boundary refuses its restore")
            return
        accounts = [self._service_account(v) for v in workloads]
        repository = usable_repository(seen.facts, Status(status).conditions)
        named = [(v.kind, v.name, a) for v, a in zip(workloads, accounts, strict=True)]
        for obj in restore_rbac_objects(invoker, named, repository):
            ensure(self.client, self.caches, self.writes, obj)
        readers = [restore_service_account(Obj(invoker).name), *accounts]
        self.grants.keep(key, repository_grant(invoker, repository, readers, backup=False))

    def _done(self, invoker: JSON) -> bool:
        status = Obj(invoker).status
        if status.phase not in FINISHED:
            return False
        return not self.pushgateway_url or has_condition(status.conditions, c.METRICS_PUSHED)

    # -- making -------------------------------------------------------------------------------

    def _create_claims(self, invoker: JSON, view: RestoreView, ordinal: int) -> str | None:
        """Create the ordinal's new PVCs (one of that name already there is restored into);
        what the API server refused, or None."""
        for claim in claims.claims_for(view, ordinal, invoker):
            meta = Obj(claim).meta
            try:
                self.client.create(claim)
            except AlreadyExists:
                continue
            except (BadRequest, Invalid, Forbidden) as exc:
                return f"PersistentVolumeClaim {meta.name}: {exc}"
            self.writes.record(meta.namespace)
            self.events.record(
                invoker,
                "Normal",
                "RestorePVCCreated",
                f"created PersistentVolumeClaim {meta.name} to restore into",
            )
        return None

    def _push_metrics(self, invoker: JSON, status: JSON, now: dt.datetime) -> None:
        """Push the restore's groups once: the restore's own and each host's, from its status
        (the operator is the Pushgateway's only writer, ``controller.sessions.metric_groups``)."""
        view, ended = Obj(invoker), Status(status)
        who = metrics.Invoker(view.kind, view.name, view.namespace, view.spec.repository.name)
        registry = metrics.restore_session_registry(
            who,
            ended.phase == "Succeeded",
            parse_duration(ended.duration or "0s").total_seconds(),
            tuple(
                metrics.RestoreTargetOutcome(
                    t.ref.kind, t.ref.name, t.phase == "Succeeded", t.reported
                )
                for t in map(Entry, _targets(invoker, status))
            ),
        )
        groups = [
            metric_groups.Group((), registry),
            *metric_groups.restore_host_groups(who, _targets(invoker, status)),
        ]
        url = self.pushgateway_url

        def push() -> bool:
            metric_groups.push_groups(url, who, groups)
            return False  # no repository figures

        key = (view.kind, view.namespace, view.name)
        self.effects.push_metrics(key, status, push, "restore metrics", now)

    def transition(
        self, invoker: JSON, before: JSON, after: JSON, problems: tuple[str, ...]
    ) -> None:
        old, new = Status(before).phase, Status(after).phase
        if old == new:
            return
        if new == "Invalid":
            self.events.record(invoker, "Warning", "RestoreInvalid", "; ".join(problems))
        elif new == "Pending":
            self.events.record(invoker, "Normal", "RestoreWaiting", "; ".join(problems))
        elif new == "Running":
            self.events.record(invoker, "Normal", "RestoreStarted", "the restore has started")
        elif new == "Succeeded":
            self.events.record(
                invoker,
                "Normal",
                "RestoreSessionSucceeded",
                f"every target was restored in {Status(after).duration or '?'}",
            )
        elif new == "Failed":
            self.events.record(
                invoker, "Warning", "RestoreSessionFailed", failure_summary(invoker, after)
            )


def _next_look(
    status: JSON, now: dt.datetime, pods: bool, liveness: Liveness | None = None
) -> Result | None:
    """When to look again without an event: a waiting restore soon, a running one by its
    deadline (and, while its workloads' or Jobs' pods are watched for, every 20 or 30 s: their
    state sends no event here); a finished or Invalid one only on an event."""
    phase = Status(status).phase
    if phase == "Pending":
        return Result(requeue_after=WAITING_RECHECK)
    if Status(status).deadline and phase == "Running":
        after = next_deadline_look(status, liveness, now)
        return Result(requeue_after=min(after, HOSTS_RECHECK) if pods else after)
    return None


def _targets(invoker: JSON, status: JSON) -> list[JSON]:
    """The members' entries of a finished restore (a RestoreSession: its own fields)."""
    view = Status(status)
    if Obj(invoker).kind == "RestoreBatch":
        return [dict(m.raw) for m in view.members]
    spec_ref = dict(Obj(invoker).spec.target_ref.raw)
    return [
        {
            "ref": spec_ref,
            "phase": view.phase or None,
            "stats": items(status, "stats"),
            "conditions": view.conditions,
        }
    ]


def failure_summary(invoker: JSON, status: JSON) -> str:
    """Which targets failed and why, in one line (the Failed Event's message)."""
    parts = []
    for target in map(Entry, _targets(invoker, status)):
        if target.phase != "Failed":
            continue
        reason = message_of(target.conditions, RESTORE_FAILED, status="True", default="failed")
        parts.append(f"{target.ref.kind} {target.ref.name}: {reason}")
    deadline = message_of(Status(status).conditions, c.DEADLINE_EXCEEDED, status="True")
    return "; ".join(parts) or deadline or "the restore failed"


def _job_names(invoker: JSON, view: RestoreView) -> list[str]:
    """The member's restore Job names: one, or one per ordinal restoring into new PVCs."""
    name = Obj(invoker).name
    if not view.claims:
        return [restore_job_name(name, view.index)]
    return [restore_job_name(name, view.index, n) for n in claims.ordinals(view)]


def _owned_by(job: JSON, invoker: JSON) -> bool:
    return owned_by(job, Obj(invoker).meta.uid)


def _reported_hosts(invoker: JSON, index: int) -> set[str]:
    """The hosts of member ``index`` that have reported their restore (either way)."""
    stats = Entry(member_entry(invoker, index)).stats
    return {s.hostname for s in stats if s.hostname}


def _made(invoker: JSON) -> set[int]:
    """The members whose restore Job the status says was made."""
    view = Obj(invoker)
    if view.kind == "RestoreBatch":
        entries = view.status.members
        return {
            i for i, e in enumerate(entries) if is_true(e.conditions, c.RESTORE_EXECUTOR_ENSURED)
        }
    return {0} if is_true(view.status.conditions, c.RESTORE_EXECUTOR_ENSURED) else set()


def _invalid(invoker: JSON, error: ValidationError, now: dt.datetime) -> Decision:
    """A spec the CRD schema let through but the model refuses: Invalid, saying where."""
    status: JSON = dict(Obj(invoker).status.raw)
    where, words = first_error(error)
    problem = f"spec.{where}: {words}"
    status["phase"] = "Invalid"
    status["conditions"] = set_condition(
        Status(status).conditions,
        c.VALIDATION_PASSED,
        False,
        "ResourceValidationFailed",
        problem,
        now=now,
    )
    return Decision(status, problems=(problem,))


def _keyer(kind: str) -> Callable[[JSON], InvokerKey]:
    def key(obj: JSON) -> InvokerKey:
        return (kind, *Obj(obj).key)

    return key


def _job_owner_key(obj: JSON) -> InvokerKey | None:
    """The restore invoker that owns a restore Job (by owner reference)."""
    meta = Obj(obj).meta
    owner = meta.owner(RESTORE_INVOKER_TYPES)
    return (owner.kind, meta.namespace, owner.name) if owner else None
