"""One reconciler for every kind of session: observe, decide, apply, write the status once.

``SessionReconciler`` runs the same pass for a BackupSession (``backup.BackupSide``) and a
RestoreSession or RestoreBatch (``restore.RestoreSide``): the side reads the session and what
it needs (``Observed``, the tenant boundary's judgement included, on every pass), the machine
decides (``controller.sessions.machine``), the reconciler does what the decision says, the
same for both kinds (the batch's hook by its Job, the members' Jobs: ``effects``), the side
does what follows the end of its kind of session, and the status is written once, conditional
on the resourceVersion read (``kube.status``), with an Event for a new phase.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Hashable
from dataclasses import replace
from typing import Generic, Protocol, TypeVar

from api.conditions import is_true
from api.constants import DEADLINE_EXCEEDED
from api.objects import JSON
from controller.runtime.loop import Controller, Result, Writes
from controller.sessions.effects import SessionEffects
from controller.sessions.machine import (
    Decision,
    Observed,
    all_jobs,
    decide,
    fail_member,
    past_default_deadline,
)
from kube import NotFound
from kube.status import write_status

K = TypeVar("K", bound=Hashable)


class Side(Protocol[K]):
    """What a kind of session reads, and what follows its decision, for the reconciler."""

    effects: SessionEffects

    def register(self, controller: Controller[K]) -> None:
        """Subscribe to what brings its sessions back (their objects, Jobs, what they wait for)."""

    def read(self, key: K) -> JSON | None:
        """The session to work on (``apiVersion`` and ``kind`` set); None when it is gone or
        nothing is left to do for it (after letting go of what it held)."""

    def observe(self, key: K, obj: JSON, now: dt.datetime) -> Observed | Decision:
        """What the machine needs; a Decision when the spec cannot even be read."""

    def invoker(self, obj: JSON, seen: Observed) -> JSON | None:
        """The invoker whose settings the session's Jobs use."""

    def before(self, key: K, obj: JSON, decision: Decision, seen: Observed) -> None:
        """What must hold before anything runs for the decision (access, refused Jobs)."""

    def create_job(self, obj: JSON, seen: Observed, member: int, at: int) -> str | None:
        """Create a member's Job; why it cannot be made, or None."""

    def follow_up(self, obj: JSON, status: JSON, seen: Observed, now: dt.datetime) -> Result | None:
        """What follows a session's end (history, metrics, retry), recorded in ``status``."""

    def transition(self, obj: JSON, before: JSON, after: JSON, problems: tuple[str, ...]) -> None:
        """The Event of a new phase (written: never twice for one)."""

    def next_look(self, obj: JSON, status: JSON, seen: Observed, now: dt.datetime) -> Result | None:
        """When to look again without an event."""


class SessionReconciler(Generic[K]):
    def __init__(self, side: Side[K]) -> None:
        self.side = side
        self.writes: Writes = side.effects.writes

    @property
    def jobs_created(self) -> int:
        return self.side.effects.jobs_created

    def register(self, controller: Controller[K]) -> None:
        self.side.register(controller)

    def reconcile(self, key: K) -> Result | None:
        obj = self.side.read(key)
        if obj is None:
            return None
        now = dt.datetime.now(dt.UTC)
        seen = self.side.observe(key, obj, now)
        if isinstance(seen, Decision):  # the spec cannot be read: said, nothing runs
            self._write(obj, seen.status, seen.problems)
            return None
        seen = replace(seen, default_deadline=self.side.effects.default_deadline)
        if past_default_deadline(obj, seen, now):  # does its work still move?
            seen = replace(seen, liveness=self.side.effects.liveness(obj))
        decision = decide(obj, seen, now)
        self.side.before(key, obj, decision, seen)
        status = decision.status
        invoker = self.side.invoker(obj, seen)
        if decision.run_hook and invoker is not None:
            failure = self.side.effects.batch_hook(obj, invoker, decision.run_hook)
            if failure is not None:
                status = self.side.effects.hook_failed(status, decision.run_hook, failure, now)
        for member, at in decision.create_jobs:
            problem = self.side.create_job(obj, seen, member, at)
            if problem:
                status = fail_member(obj, status, (member, problem), seen, now)
        if decision.finish and invoker is not None:  # its last host died before the work
            self.side.effects.create_finish_job(obj, invoker, seen.facts.repository)
        result = None
        if status.get("phase") in seen.kind.terminal:
            if is_true(status.get("conditions"), DEADLINE_EXCEEDED):
                self.side.effects.stop_jobs(obj, all_jobs(seen.jobs))
            result = self.side.follow_up(obj, status, seen, now)
        if not self._write(obj, status, decision.problems):
            return None
        return self.side.next_look(obj, status, seen, now) or result

    def _write(self, obj: JSON, status: JSON, problems: tuple[str, ...]) -> bool:
        """Write ``status`` if it changed, then say a new phase; False when the session is
        gone. A status computed from a stale cache is refused (Conflict) and computed again
        once the cache has caught up."""
        before = obj.get("status") or {}
        if status == before:
            return True
        meta = obj["metadata"]
        try:
            write_status(self.side.effects.client, self.side.effects.resource(obj), obj, status)
        except NotFound:
            return False
        self.writes.record(meta["namespace"])
        self.side.transition(obj, before, status, problems)  # after the write: never twice
        return True
