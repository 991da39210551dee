"""What the session reconciler does for a decision, the same for every kind of session: create a
member's Job, have the batch's own hook run by its Job, push the session's metrics once, off
the worker, and (a backup session whose last host died before its repository work) have that
work done by a finish Job.

Every Job has a deterministic name and the session as owner: a restarted operator finds the
Jobs it made (AlreadyExists is success) and never makes one twice; a Job of that name that
another owner left (an earlier session of the same name) is not taken for this one's.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from typing import Any

from api import constants as c
from api.conditions import has_condition, set_condition
from api.hooks import BATCH_HOOK_CONDITIONS
from api.naming import hook_job_name
from api.objects import JSON
from api.repository import Repository
from api.views import Obj, Status, items
from controller.invokers.evaluation import MemberRef, MemberView, RestoreView
from controller.invokers.facts import FactReader
from controller.jobs.finish_job import finish_job
from controller.jobs.hook_job import create_hook_job, hook_job_failure
from controller.jobs.member_job import JobError, build_job, job_inputs
from controller.jobs.outcome import job_complete, job_failure
from controller.runtime.background import Background
from controller.runtime.caches import JOBS, WORKLOAD_TYPES, Caches
from controller.runtime.loop import Writes
from controller.runtime.owned import owned_by
from controller.sessions.target_use import TargetUse
from controller.sessions.targets import DefaultDeadline, Liveness, liveness_of
from kube import (
    AlreadyExists,
    BadRequest,
    Client,
    Conflict,
    Forbidden,
    Invalid,
    KubeError,
    ResourceType,
)
from kube.events import EventRecorder
from kube.types import EVENTS, PODS
from pods.workloads import match_labels_selector, pods_of

log = logging.getLogger(__name__)


class SessionEffects:
    def __init__(
        self,
        client: Client,
        caches: Caches,
        writes: Writes,
        *,
        image: str,
        resources: dict[str, ResourceType],
        pushes: str,
        default_deadline: DefaultDeadline | None = None,
    ) -> None:
        self.client = client
        self.caches = caches
        self.writes = writes
        self.image = image
        self.resources = resources  # the session kinds this reconciler writes, by kind
        self.events = EventRecorder(client, "stash-operator")
        # A push may take a Pushgateway's 10 s: off the worker, its outcome taken on a later pass.
        self.pushes: Background[Hashable, bool] = Background(pushes)
        # the reconciler's own queue (keys of its kind): a finished push brings the key back
        self.enqueue: Callable[[Any], None] = lambda key: None
        self.jobs_created = 0
        self.default_deadline = default_deadline or DefaultDeadline()

    def resource(self, obj: JSON) -> ResourceType:
        return self.resources[obj["kind"]]

    def stop_jobs(self, obj: JSON, jobs: list[JSON | None]) -> None:
        """Delete the session's member Jobs still running once it ended at its deadline: a
        stalled restic must not hold the repository's lock for the next session (its pod
        gone, the lock is stale and removed before the next backup)."""
        for job in jobs:
            if job is None or job_complete(job) or job_failure(job) is not None:
                continue
            meta = Obj(job).meta
            if meta.deleting:
                continue
            log.info(
                "stopping Job %s/%s: session %s ended at its deadline",
                meta.namespace,
                meta.name,
                Obj(obj).name,
            )
            with contextlib.suppress(Conflict):  # the name holds another Job now: not ours
                self.client.delete(
                    JOBS, meta.name, meta.namespace, missing_ok=True, uid=meta.uid or None
                )

    def liveness(self, obj: JSON) -> Liveness:
        """How the session's work moves: its hosts' progress Events, read only once it is past
        its default deadline (one list, by field selector, per look)."""
        view = Obj(obj)
        selector = f"involvedObject.name={view.name},involvedObject.kind={view.kind}"
        events = self.client.list(EVENTS, view.namespace, field_selector=selector)
        return liveness_of(items(events, "items"), view.meta.uid, self.default_deadline.stall_after)

    def create_member_job(
        self,
        obj: JSON,
        invoker: JSON,
        member: MemberView | RestoreView,
        *,
        ordinal: int | None = None,
        first: Callable[[], str | None] | None = None,
    ) -> str | None:
        """Create the member's Job for session ``obj`` (``first``: what must exist before it,
        such as the PVCs it restores into); the reason it cannot be made, or None."""
        try:
            job = build_job(
                job_inputs(self.caches, obj, invoker, member, image=self.image, ordinal=ordinal)
            )
        except JobError as exc:
            return str(exc)
        refused = first() if first else None
        if refused:
            return refused
        meta = job["metadata"]
        restoring = obj["kind"] in ("RestoreSession", "RestoreBatch")
        try:
            self.client.create(job)
        except AlreadyExists:
            return None  # created before a restart: the same Job, by name
        except (BadRequest, Invalid, Forbidden) as exc:  # a field of the wrong form, a quota
            return f"the API server refused Job {meta['name']}: {exc}"
        self.jobs_created += 1
        self.writes.record(meta["namespace"])
        log.info("created Job %s/%s", meta["namespace"], meta["name"])
        self.events.record(
            obj,
            "Normal",
            "RestoreJobCreated" if restoring else "BackupJobCreated",
            f"created Job {meta['name']} to {'restore' if restoring else 'back up'} "
            f"{member.kind} {member.name}",
        )
        return None

    def create_finish_job(
        self, session: JSON, invoker: JSON, repository: Repository | None
    ) -> None:
        """Have the session's repository work done by a Job: the pod that claimed it is gone
        before recording it (``controller.jobs.finish_job``). Made once, by name."""
        job = finish_job(session, invoker, repository, self.image)
        meta = job["metadata"]
        try:
            self.client.create(job)
        except AlreadyExists:
            return
        self.writes.record(meta["namespace"])
        log.info("created Job %s/%s", meta["namespace"], meta["name"])
        self.events.record(
            session,
            "Warning",
            "RepositoryWorkTakenOver",
            f"the pod that was doing the session's retention and integrity check is gone "
            f"before recording them: created Job {meta['name']} to do them",
        )

    def batch_hook(self, obj: JSON, invoker: JSON, kind: str) -> str | None:
        """Have the batch's own hook ``kind`` run by its Job in the invoker's namespace (never
        here); its pod records the hook's condition. The failure of a Job that ended without
        doing so (its pod could not start, or ran past its deadline), else None."""
        meta = Obj(obj).meta
        job = self.caches.get(JOBS, meta.namespace, hook_job_name(meta.name, kind))
        if job is not None and not owned_by(job, meta.uid):
            if not Obj(job).meta.deleting:  # an earlier one's: not ours
                self.client.delete(JOBS, Obj(job).name, meta.namespace, missing_ok=True)
            return None
        if job is None:
            create_hook_job(
                self.client, self.writes, self.events, obj, invoker, kind=kind, image=self.image
            )
            return None
        failure = hook_job_failure(job)
        if failure is not None:
            self.events.record(obj, "Warning", "GlobalHookFailed", failure)
        return failure  # None: running, or done and its condition on its way through the cache

    def hook_failed(self, status: JSON, kind: str, failure: str, now: dt.datetime) -> JSON:
        """``status`` with the batch's hook ``kind`` recorded as failed (the session goes on)."""
        status = dict(status)
        status["conditions"] = set_condition(
            Status(status).conditions,
            BATCH_HOOK_CONDITIONS[kind],
            False,
            "GlobalHookExecutionFailed",
            failure,
            now=now,
        )
        return status

    def push_metrics(
        self,
        key: Hashable,
        status: JSON,
        push: Callable[[], bool],
        what: str,
        now: dt.datetime,
    ) -> None:
        """Push a finished session's groups once, off the worker (``push`` says whether the
        repository's figures were among them). The pass after the push records how it went as
        ``MetricsPushed`` (``what``: in words) and, with the repository's figures,
        ``RepositoryMetricsPushed``."""
        if has_condition(Status(status).conditions, c.METRICS_PUSHED):
            return
        pushed = self.pushes.take(key)
        if pushed is None:
            self.pushes.submit(key, push, self.enqueue)
            return
        ok = pushed.error is None
        done = [(c.METRICS_PUSHED, what)]
        if pushed.value:
            done.append((c.REPOSITORY_METRICS_PUSHED, "repository metrics"))
        for type_, words in done:
            status["conditions"] = set_condition(
                Status(status).conditions,
                type_,
                ok,
                "SuccessfullyPushedMetrics" if ok else "FailedToPushMetrics",
                f"pushed {words}" if ok else str(pushed.error),
                now=now,
            )


@dataclass(frozen=True)
class Wiring:
    """What a session side is built from: the operator's settings, the same for both kinds."""

    client: Client
    caches: Caches
    image: str
    pushgateway_url: str = ""
    operator_namespace: str = ""
    target_use: TargetUse | None = None  # one judge of who works on a target, shared
    default_deadline: DefaultDeadline | None = None


class SessionSide:
    """What both sides of the session reconciler hold: the API, the caches, its own writes,
    the judge of target use, the facts reader and the effects (with their Events)."""

    def __init__(self, wiring: Wiring, *, resources: dict[str, ResourceType], pushes: str) -> None:
        self.client = wiring.client
        self.caches = wiring.caches
        self.writes = Writes()
        self.use = wiring.target_use or TargetUse(wiring.caches)
        self.pushgateway_url = wiring.pushgateway_url
        self.operator_namespace = wiring.operator_namespace
        self.reader = FactReader(wiring.client, wiring.caches, wiring.operator_namespace)
        self.effects = SessionEffects(
            wiring.client,
            wiring.caches,
            self.writes,
            image=wiring.image,
            resources=resources,
            pushes=pushes,
            default_deadline=wiring.default_deadline,
        )
        self.events = self.effects.events

    def member_pods(self, view: MemberRef) -> list[JSON] | str | None:
        """The pods of a workload member (its injected containers carry it out): why not,
        when the workload is gone; None when the API server did not answer (looked at again
        on the next pass)."""
        namespace = view.target_namespace
        workload = self.caches.get(WORKLOAD_TYPES[view.kind], namespace, view.name)
        if workload is None:
            return f"{view.kind} {namespace}/{view.name} no longer exists"
        try:
            listed = self.client.list(
                PODS, namespace, label_selector=match_labels_selector(workload)
            )
        except KubeError as exc:
            log.info("pods of %s %s/%s: %s", view.kind, namespace, view.name, exc)
            return None
        return pods_of(workload, items(listed, "items"))
