"""One machine for backup and restore sessions: ``decide`` is the next status of a BackupSession,
a RestoreSession or a RestoreBatch, and the work to do now, as a pure function of what the
reconciler observed (``Observed``) and the time.

Every session goes the same way: it begins (a backup session may be skipped; a restore is
validated and waits for what it needs), its batch's pre hook runs, its targets move on (all at
once or one after another with ``executionOrder: Sequential``: ``controller.sessions.targets``),
the deadline fails what is unfinished, its phase settles, and its batch's post hook runs. What
differs between the kinds sits behind ``SessionKind`` (``backup_status.BACKUP``,
``restore_status.RESTORE``): where the targets' entries live, how a session begins and settles,
how one member moves on.

The reconciler does what the ``Decision`` says (create Jobs, run a batch hook) and writes its
status once.
"""

from __future__ import annotations

import copy
import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Protocol

from api import constants as c
from api.conditions import is_true, parse_rfc3339
from api.hooks import BATCH_HOOK_CONDITIONS, HookKind
from api.objects import JSON
from api.views import Entry, Obj, Status
from controller.invokers.evaluation import InvokerFacts, MemberRef, MemberView, RestoreView
from controller.jobs.outcome import Trouble
from controller.sessions.targets import (
    DefaultDeadline,
    Executor,
    Liveness,
    fail_executor,
    fail_unfinished,
    hook_state,
    in_order,
    past_deadline,
)

JobAt = tuple[int, int]  # (member, position among the member's Jobs)


@dataclass(frozen=True)
class Observed:
    """What the reconciler saw, beside the session itself: read on every pass, the tenant
    boundary's judgement included."""

    kind: SessionKind
    members: Sequence[MemberView] | Sequence[RestoreView]
    invoker: JSON | None = None  # a backup session's invoker (a restore is its own invoker)
    facts: InvokerFacts = field(default_factory=InvokerFacts)
    total_hosts: dict[int, int] = field(default_factory=dict)
    # each Job-model member's Jobs (one; restoring into new PVCs, one per ordinal); None: absent
    jobs: dict[int, list[JSON | None]] = field(default_factory=dict)
    # members the tenant boundary refuses now, and why (a backup session's; a restore judges
    # its whole spec from ``facts`` as it begins)
    refused: dict[int, str] = field(default_factory=dict)
    # members carried out by injected containers (the sidecar, stash-init) that no pod can
    # carry out once the grace period is over, and why
    absent: dict[int, str] = field(default_factory=dict)
    # members not started whose target the product is using otherwise now, and why
    # (controller.sessions.target_use)
    busy: dict[int, str] = field(default_factory=dict)
    # running Jobs whose pod cannot start, by Job name (controller.jobs.outcome)
    trouble: dict[str, Trouble] = field(default_factory=dict)
    other_running: str | None = None  # another running session of the invoker (backup)
    # workload members whose pod template carries this restore (its pods were rolled for it)
    marked: dict[int, bool] = field(default_factory=dict)
    # Job-model members whose Job name an earlier restore's Job still holds (being deleted)
    leftover: frozenset[int] = frozenset()
    # members carried out by injected containers whose hosts have not all reported yet (their
    # pods send no event here: the reconciler looks again soon)
    waiting: frozenset[int] = frozenset()
    # a backup session's repository work (retention, the check): the pod that claimed it is
    # gone before recording it, and the operator's finish Job for it, if made
    work_holder_gone: bool = False
    finish_job: JSON | None = None
    # the deadline of a session whose invoker sets no timeOut (the operator's settings)
    default_deadline: DefaultDeadline = field(default_factory=DefaultDeadline)
    # past that default deadline: how the work moves (None: a hard deadline, or not past it)
    liveness: Liveness | None = None


def all_jobs(jobs: dict[int, list[JSON | None]]) -> list[JSON | None]:
    """Every member's Jobs (``Observed.jobs``) in one list, None for those absent."""
    return [job for each in jobs.values() for job in each]


@dataclass(frozen=True)
class Decision:
    status: JSON
    create_jobs: tuple[JobAt, ...] = ()
    problems: tuple[str, ...] = ()  # what keeps a restore Invalid or Pending (for its Event)
    run_hook: HookKind | None = None  # the batch's own hook to run now
    finish: bool = False  # the repository work is orphaned: the operator's finish Job does it


class SessionKind(Protocol):
    """What is particular to a kind of session."""

    executor: Executor
    terminal: tuple[str, ...]  # phases after which nothing changes
    pre_hook: HookKind
    post_hook: HookKind

    def begin(self, obj: JSON, status: JSON, seen: Observed, now: dt.datetime) -> Decision | None:
        """Start the session, or the decision that holds it (skipped, invalid, waiting)."""

    def entries(self, obj: JSON, status: JSON, seen: Observed) -> list[JSON]:
        """The targets' status entries, to be moved on (``store`` puts them back)."""

    def store(self, obj: JSON, status: JSON, entries: list[JSON]) -> None: ...

    def batch_hooks(self, obj: JSON, seen: Observed) -> JSON:
        """The batch's own hooks (``spec.hooks``); none for a single-target kind."""

    def sequential(self, obj: JSON, seen: Observed) -> bool: ...

    def time_out(self, obj: JSON, seen: Observed) -> str | None:
        """The ``timeOut`` the user set for the session (None: the default deadline)."""

    def move(self, member: MemberRef, entry: JSON, seen: Observed, now: dt.datetime) -> list[int]:
        """Move one unfinished target on; the positions of its Jobs to create now."""

    def work_finished_at(self, status: JSON) -> dt.datetime | None:
        """When the work finished by its own record, if it says (judged against the
        deadline instead of the time the operator looks)."""

    def working(self, status: JSON, seen: Observed) -> bool:
        """Whether work that reports no progress of its own is under way by a worker still
        there (a backup's repository work, claimed by a pod that lives): past a default
        deadline it counts as progress."""

    def repository_work(
        self, status: JSON, entries: list[JSON], seen: Observed, now: dt.datetime
    ) -> bool:
        """Whether the session's repository work must be done for it (its claimer is gone);
        a finish Job that failed is recorded in ``status`` instead."""

    def settle(self, obj: JSON, status: JSON, entries: list[JSON], now: dt.datetime) -> None:
        """The session's phase (and duration, once it ended) from its targets."""

    def final_attempt(self, obj: JSON, seen: Observed) -> bool:
        """Whether no retry follows if the session fails (a post hook's policy asks)."""


def decide(obj: JSON, seen: Observed, now: dt.datetime) -> Decision:
    """The next status of session ``obj`` and what to do now."""
    kind = seen.kind
    status: JSON = copy.deepcopy(dict(Obj(obj).status.raw))
    if Status(status).phase in kind.terminal:
        return Decision(status)
    held = kind.begin(obj, status, seen, now)
    if held is not None:
        return held
    entries = kind.entries(obj, status, seen)
    hooks = kind.batch_hooks(obj, seen)
    pre = hook_state(status, hooks, kind.pre_hook, BATCH_HOOK_CONDITIONS[kind.pre_hook])
    if pre == "due" and not past_deadline(status, entries, kind.executor, now):
        kind.store(obj, status, entries)
        return Decision(status, run_hook=kind.pre_hook)  # targets wait until it ran
    create: list[JobAt] = []
    if pre == "failed":
        why = f"not run: the batch's {kind.pre_hook} hook failed"
        fail_unfinished(entries, kind.executor, why, now)
    else:
        create = _advance(obj, entries, seen, now)
    finished, liveness = kind.work_finished_at(status), seen.liveness
    if liveness is not None and kind.working(status, seen):
        liveness = replace(liveness, last_advance=now)
    if past_deadline(status, entries, kind.executor, now, finished, liveness=liveness):
        create = []
    finish = kind.repository_work(status, entries, seen, now)
    kind.settle(obj, status, entries, now)
    kind.store(obj, status, entries)
    if status["phase"] != "Running" and not is_true(Status(status).conditions, c.DEADLINE_EXCEEDED):
        post = hook_state(
            status,
            hooks,
            kind.post_hook,
            BATCH_HOOK_CONDITIONS[kind.post_hook],
            kind.final_attempt(obj, seen),
            succeeded=all(Entry(e).phase == "Succeeded" for e in entries),
        )
        if post == "due":
            status["phase"] = "Running"
            status.pop("sessionDuration", None)
            return Decision(status, tuple(create), run_hook=kind.post_hook)
        if post == "failed":
            status["phase"] = "Failed"
    return Decision(status, tuple(create), finish=finish and status["phase"] == "Running")


def past_default_deadline(obj: JSON, seen: Observed, now: dt.datetime) -> bool:
    """Whether a running session is past a deadline that is the default one (its invoker sets
    no ``timeOut``): then how its work moves decides whether it goes on."""
    status = Obj(obj).status
    when = status.deadline
    if status.phase in seen.kind.terminal or not when:
        return False
    try:
        passed = parse_rfc3339(when) < now
    except ValueError:
        return False
    return passed and seen.kind.time_out(obj, seen) is None


def _advance(obj: JSON, entries: list[JSON], seen: Observed, now: dt.datetime) -> list[JobAt]:
    """Move every target on; the Jobs to create now."""
    kind = seen.kind
    members = {member.index: member for member in seen.members}
    create: list[JobAt] = []

    def move(index: int, entry: JSON) -> None:
        create.extend((index, at) for at in kind.move(members[index], entry, seen, now))

    pairs = [(m.index, entry) for m, entry in zip(seen.members, entries, strict=False)]
    in_order(pairs, kind.sequential(obj, seen), move, kind.executor, now)
    return create


def fail_member(
    obj: JSON, status: JSON, failed: tuple[int, str], seen: Observed, now: dt.datetime
) -> JSON:
    """``status`` with a member failed (``failed``: its index, and why: its Job could not be
    built or created) and the session's phase settled again."""
    kind, (index, message) = seen.kind, failed
    status = copy.deepcopy(status)
    entries = kind.entries(obj, status, seen)
    fail_executor(entries[index], kind.executor, message, now)
    kind.settle(obj, status, entries, now)
    kind.store(obj, status, entries)
    return status
