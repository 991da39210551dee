"""Verified restores: ``BackupVerified`` on a backup invoker (docs/guides/verification.md).

After each session of an invoker succeeds, and again once its last verification is older than
``stash.appscode.com/verify-every`` (24 h), a verification Job (``controller.jobs.verify_job``)
restores the newest successful session's snapshots in the invoker's namespace, with its
privileges, and proves them. One runs at a time per invoker; the newest finished one is kept
as the record of when the last ran (older ones are removed), and its verdict (from its pod's
termination log) is the condition: ``True``/``VerificationSucceeded``, or ``False`` with
``VerificationFailed`` (something differs: which files, in restic's words) or
``VerificationNotCompleted`` (the Job ended without a verdict). A failed verification changes
nothing else.

``plan`` is the pure decision; ``Verifier`` reads the Jobs from the cache (a finished Job's pods
once: its verdict is remembered by uid), applies the plan and says the verdict in an Event.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from api import constants as c
from api.conditions import get_condition, parse_rfc3339, set_condition
from api.objects import JSON
from api.repository import Repository
from api.units import parse_duration, parse_quantity
from api.views import Obj, conditions_of, text
from controller.invokers.staleness import LastSuccess
from controller.jobs.outcome import job_complete, job_failure, job_pods, last_words
from controller.jobs.verify_job import VERIFY_CONTAINER, VERIFY_LABEL, verify_job
from controller.runtime.caches import JOBS, Caches
from controller.runtime.loop import Writes
from controller.runtime.owned import owned_by
from engine.verification import Verdict
from kube import AlreadyExists, Client, KubeError
from kube.events import EventRecorder

log = logging.getLogger(__name__)

DEFAULT_EVERY = dt.timedelta(hours=24)
DEFAULT_MAX_BYTES = 1 << 30
VERIFIES_ANNOTATION = f"{c.GROUP}/verifies"  # on a verification Job: the session it verifies
VERIFICATIONS_BY_INVOKER = "verifications"  # the Jobs index: <namespace>/<kind>/<invoker>
VERDICTS_REMEMBERED = 4096


@dataclass(frozen=True)
class VerifySettings:
    enabled: bool = True
    every: dt.timedelta = DEFAULT_EVERY
    max_bytes: int = DEFAULT_MAX_BYTES
    after_backup: bool = True
    problems: tuple[str, ...] = ()  # annotations that could not be read (defaults used)


def verify_settings(invoker: JSON, by_default: bool = True) -> VerifySettings:
    """What the invoker's annotations ask of verification (``by_default``: whether an invoker
    that does not say is verified, the operator's ``--verify-backups``)."""
    meta = Obj(invoker).meta
    problems = []
    every = DEFAULT_EVERY
    every_text = meta.annotation(c.VERIFY_EVERY_ANNOTATION)
    if every_text:
        parsed = parse_duration(every_text)
        if parsed >= dt.timedelta(minutes=1):
            every = parsed
        else:
            problems.append(
                f"annotation {c.VERIFY_EVERY_ANNOTATION}={every_text!r} is not a duration of "
                "a minute or more such as 24h"
            )
    max_bytes = DEFAULT_MAX_BYTES
    bytes_text = meta.annotation(c.VERIFY_MAX_BYTES_ANNOTATION)
    if bytes_text:
        quantity = parse_quantity(bytes_text)
        if quantity is not None and quantity > 0:
            max_bytes = quantity
        else:
            problems.append(
                f"annotation {c.VERIFY_MAX_BYTES_ANNOTATION}={bytes_text!r} is not a quantity "
                "of bytes such as 1Gi"
            )
    return VerifySettings(
        enabled=_switch(meta.annotation(c.VERIFY_ANNOTATION), by_default),
        every=every,
        max_bytes=max_bytes,
        after_backup=_switch(meta.annotation(c.VERIFY_AFTER_BACKUP_ANNOTATION), True),
        problems=tuple(problems),
    )


def _switch(text: str | None, default: bool) -> bool:
    said = (text or "").strip().lower()
    return True if said == "true" else False if said == "false" else default


@dataclass(frozen=True)
class VerifyRun:
    """One verification Job, as the plan sees it."""

    name: str
    session: str
    created: dt.datetime
    done: bool = False
    finished: dt.datetime | None = None
    verdict: Verdict | None = None
    failure: str = ""  # why it ended without a verdict


@dataclass(frozen=True)
class VerifyPlan:
    create: tuple[str, int | None] | None = None  # (session, again_at) of a new Job
    condition: tuple[bool, str, str] | None = None  # None: leave it as it is
    remove_condition: bool = False
    delete: tuple[str, ...] = ()  # Jobs no longer needed
    recheck_at: dt.datetime | None = None  # when the next verification is due


def _when(at: dt.datetime | None) -> str:
    return at.strftime("%Y-%m-%dT%H:%M:%SZ") if at is not None else "?"


def verdict_condition(run: VerifyRun) -> tuple[bool, str, str]:
    """The ``BackupVerified`` condition a finished run gives."""
    ended = f"Job {run.name}, finished {_when(run.finished)}"
    if run.verdict is None:
        why = run.failure or "no verdict in its termination log"
        return False, "VerificationNotCompleted", f"session {run.session}: {why} ({ended})"
    if run.verdict.ok:
        return True, "VerificationSucceeded", f"{run.verdict.says()} ({ended})"
    return False, "VerificationFailed", f"{run.verdict.says()} ({ended})"


def plan(
    settings: VerifySettings,
    last: LastSuccess | None,
    runs: Sequence[VerifyRun],
    now: dt.datetime,
    *,
    paused: bool = False,
    busy: bool = False,
    refused: bool = False,
) -> VerifyPlan:
    """What to do about verification now. ``busy``: a session of the invoker is under way (a
    verification would compete with it for the repository's lock and its I/O: it waits).
    ``refused``: the tenant boundary refuses the invoker (Invalid): a verification still
    running is stopped, none starts."""
    ordered = sorted(runs, key=lambda r: (r.created, r.name))
    if not settings.enabled:
        return VerifyPlan(remove_condition=True, delete=tuple(r.name for r in ordered))
    finished = [r for r in ordered if r.done]
    newest_done = finished[-1] if finished else None
    condition = verdict_condition(newest_done) if newest_done is not None else None
    delete = tuple(r.name for r in finished[:-1])
    if refused:
        running = tuple(r.name for r in ordered if not r.done)
        return VerifyPlan(condition=condition, delete=delete + running)
    if paused or busy or last is None or any(not r.done for r in ordered):
        return VerifyPlan(condition=condition, delete=delete)
    if settings.after_backup and not any(r.session == last.session for r in ordered):
        return VerifyPlan((last.session, None), condition, delete=delete)
    since = newest_done.finished or newest_done.created if newest_done is not None else None
    due = since + settings.every if since is not None else now
    if now < due:
        return VerifyPlan(condition=condition, delete=delete, recheck_at=due)
    again = int(due.timestamp()) if since is not None else None
    return VerifyPlan((last.session, again), condition, delete=delete)


def _time(text: str) -> dt.datetime | None:
    try:
        return parse_rfc3339(text)
    except ValueError:
        return None


def verification_key(job: JSON) -> list[str]:
    """``<namespace>/<kind>/<invoker>`` of a verification Job (its owning invoker)."""
    meta = Obj(job).meta
    if VERIFY_LABEL not in meta.labels:
        return []
    owner = meta.owner(tuple(c.BACKUP_INVOKER_KINDS))
    return [f"{meta.namespace}/{owner.kind}/{owner.name}"] if owner else []


class Verifier:
    """Applies ``plan`` for one invoker at a time; the reconciler's verification hand."""

    def __init__(
        self,
        client: Client,
        caches: Caches,
        writes: Writes,
        events: EventRecorder,
        *,
        image: str,
        by_default: bool = True,
    ) -> None:
        self.client = client
        self.caches = caches
        self.writes = writes
        self.events = events
        self.image = image
        self.by_default = by_default
        self._verdicts: OrderedDict[str, tuple[Verdict | None, str]] = OrderedDict()
        self._lock = threading.Lock()

    def watch(self, enqueue: Callable[[tuple[str, str, str]], None]) -> None:
        """A verification Job that changed or went brings its invoker back."""
        informer = self.caches.informer(JOBS)
        if not informer.has_index(VERIFICATIONS_BY_INVOKER):
            informer.add_index(VERIFICATIONS_BY_INVOKER, verification_key)

        def changed(job: JSON) -> None:
            for key in verification_key(job):
                namespace, kind, name = key.split("/", 2)
                enqueue((kind, namespace, name))

        def deleted(job: JSON) -> None:
            with self._lock:
                self._verdicts.pop(Obj(job).meta.uid, None)
            changed(job)

        informer.subscribe(on_upsert=changed, on_delete=deleted)

    def runs(self, invoker: JSON) -> list[VerifyRun]:
        who = Obj(invoker)
        key = f"{who.namespace}/{who.kind}/{who.name}"
        jobs = self.caches.informer(JOBS).by_index(VERIFICATIONS_BY_INVOKER, key)
        return [
            self._run(job)
            for job in jobs
            if owned_by(job, who.meta.uid) and not Obj(job).meta.deleting
        ]

    def _run(self, job: JSON) -> VerifyRun:
        view = Obj(job)
        meta, status = view.meta, view.status
        created = _time(meta.created) or dt.datetime.now(dt.UTC)
        session = meta.annotation(VERIFIES_ANNOTATION) or ""
        failure = job_failure(job)
        done = job_complete(job) or failure is not None
        if not done:
            return VerifyRun(view.name, session, created)
        finished = _time(text(status.raw, "completionTime")) or _condition_time(job) or created
        verdict, words = self._verdict(job)
        why = ""
        if verdict is None:
            said = f"its last words: {words}" if words else ""
            why = "; ".join(x for x in (failure or "", said) if x)
        return VerifyRun(view.name, session, created, True, finished, verdict, why)

    def _verdict(self, job: JSON) -> tuple[Verdict | None, str]:
        """The finished Job's verdict, read from its pod once (then remembered by uid)."""
        uid = Obj(job).meta.uid
        with self._lock:
            if uid in self._verdicts:
                return self._verdicts[uid]
        namespace, name = Obj(job).key
        try:
            pods = [p for p in job_pods(self.client, namespace, name) if owned_by(p, uid)]
        except KubeError as exc:  # not remembered: read again on the next pass
            return None, f"its pods could not be read: {exc}"
        said = last_words(pods, VERIFY_CONTAINER)
        verdict = Verdict.from_termination(said) if said else None
        found = (verdict, "" if verdict is not None else said[:300])
        with self._lock:
            self._verdicts[uid] = found
            while len(self._verdicts) > VERDICTS_REMEMBERED:
                self._verdicts.popitem(last=False)
        return found

    def apply(
        self,
        invoker: JSON,
        conditions: list[JSON],
        last: LastSuccess | None,
        repository: Repository | None,
        now: dt.datetime,
        *,
        refused: bool = False,
    ) -> tuple[list[JSON], dt.datetime | None]:
        """Carry out the plan: the invoker's conditions after it, and when to look again.
        ``repository``: the one the invoker may use now (None: it is not Ready, nothing
        starts); ``refused``: the boundary refuses it (a running verification is stopped)."""
        who = Obj(invoker)
        settings = verify_settings(invoker, self.by_default)
        busy = any(
            Obj(s).status.phase in ("", "Pending", "Running")
            for s in self.caches.sessions_of(who.namespace, who.name)
            if Obj(s).spec.invoker.kind == who.kind
        )
        decided = plan(
            settings,
            last,
            self.runs(invoker),
            now,
            paused=who.spec.paused,
            busy=busy,
            refused=refused,
        )
        for name in decided.delete:
            self.client.delete(JOBS, name, who.namespace, missing_ok=True)
            self.writes.record(who.namespace)
        if decided.create is not None and repository is not None:
            self._create(invoker, repository, settings, *decided.create)
        if decided.remove_condition:
            return [x for x in conditions if x.get("type") != c.BACKUP_VERIFIED], None
        if decided.condition is None:
            return conditions, decided.recheck_at
        ok, reason, message = decided.condition
        if settings.problems:  # said where the verdict is read; the defaults were used
            message += f" ({'; '.join(settings.problems)}: the default is used)"
        before = get_condition(conditions, c.BACKUP_VERIFIED)
        after = set_condition(conditions, c.BACKUP_VERIFIED, ok, reason, message, now=now)
        if before is None or (before.get("message"), before.get("status")) != (
            message,
            "True" if ok else "False",
        ):
            self.events.record(invoker, "Normal" if ok else "Warning", reason, message)
        return after, decided.recheck_at

    def _create(
        self,
        invoker: JSON,
        repository: Repository,
        settings: VerifySettings,
        session: str,
        again_at: int | None,
    ) -> None:
        job = verify_job(
            invoker, session, again_at, repository, image=self.image, max_bytes=settings.max_bytes
        )
        job["metadata"]["annotations"] = {VERIFIES_ANNOTATION: session}
        namespace, name = Obj(job).key
        try:
            self.client.create(job)
            self.writes.record(namespace)
            log.info("verifying session %s/%s in Job %s", namespace, session, name)
        except AlreadyExists:
            pass  # made by an earlier pass the cache has not shown yet: the same Job, by name


def _condition_time(job: JSON) -> dt.datetime | None:
    """When the Job's Complete or Failed condition turned True."""
    for cond in conditions_of(Obj(job).status.conditions):
        if cond.type in ("Complete", "Failed") and cond.true:
            return _time(text(cond.raw, "lastTransitionTime"))
    return None
