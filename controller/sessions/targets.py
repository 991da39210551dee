"""What backup and restore sessions share: how a target's phase follows from its hosts' stats
and from its Job, one target after another or all at once, the session's deadline, and
durations and times as Stash writes them. Each kind of session names its conditions through an
``Executor``.

A BackupSession's ``targets[]`` and a RestoreSession's or RestoreBatch's members are the same
shape here: ``{ref, phase, totalHosts, stats[], conditions[]}``, each stat with ``hostname``,
``phase`` and ``error``. Pure functions only.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass

from api.conditions import get_condition, is_true, now_rfc3339, parse_rfc3339, set_condition
from api.constants import DEADLINE_EXCEEDED
from api.hooks import should_run_post_hook
from api.objects import JSON
from api.units import go_duration, parse_duration
from api.views import ConditionView, Entry, EventView, Obj, Status, message_of, part, text
from controller.jobs.outcome import Trouble, job_complete, job_failure
from controller.runtime.defaults import DEFAULT_SESSION_TIMEOUT, STALL_AFTER
from engine.progress import REASONS

PROGRESS_REASONS = frozenset(REASONS.values())

TARGET_TERMINAL = ("Succeeded", "Failed")


@dataclass(frozen=True)
class DefaultDeadline:
    """The deadline of a session whose invoker sets no ``timeOut``: ``after`` its creation,
    and past that for as long as its hosts keep making progress (a long first backup of a large
    volume is not killed half-way); none for ``stall_after`` seconds is a stall, and ends it.
    A ``timeOut`` the user set is a hard deadline."""

    after: str = DEFAULT_SESSION_TIMEOUT
    stall_after: float = STALL_AFTER


@dataclass(frozen=True)
class Liveness:
    """A running session's newest progress report (its hosts' progress Events: the time a host
    last advanced and what it said), read once it is past its default deadline."""

    last_advance: dt.datetime | None
    said: str = ""
    stall_after: float = STALL_AFTER

    def stalled(self, now: dt.datetime) -> bool:
        if self.last_advance is None:
            return True
        return (now - self.last_advance).total_seconds() > self.stall_after

    def judged_at(self, now: dt.datetime) -> dt.datetime:
        """When a session still moving is looked at again: once it could have stalled."""
        since = self.last_advance or now
        return since + dt.timedelta(seconds=self.stall_after)

    def words(self, noun: str, when: str) -> str:
        if self.last_advance is None:
            return (
                f"no host of the {noun} reported progress, and its default deadline {when} passed"
            )
        stalled_for = format_duration(dt.timedelta(seconds=self.stall_after))
        return (
            f"the {noun} stalled: no progress for over {stalled_for} past its default deadline "
            f"{when} (last, at {now_rfc3339(self.last_advance)}: {self.said}); a timeOut on "
            "the invoker sets a deadline of its own"
        )


def format_duration(delta: dt.timedelta) -> str:
    """Like Go's Duration.String(), to a tenth of a second: 41.2s, 2m3s, 1h0m5s."""
    return go_duration(delta.total_seconds(), decimals=1)


def liveness_of(events: Iterable[JSON], uid: str, stall_after: float) -> Liveness:
    """The newest progress report among a session's Events (``uid``: the session's; an Event
    of an earlier session of the same name does not count)."""
    newest: tuple[dt.datetime, str] | None = None
    for event in map(EventView, events):
        if event.reason not in PROGRESS_REASONS or event.involved.uid != uid:
            continue
        try:
            when = parse_rfc3339(event.last_seen)
        except ValueError:
            continue
        if newest is None or when > newest[0]:
            newest = (when, event.message)
    if newest is None:
        return Liveness(None, stall_after=stall_after)
    return Liveness(newest[0], newest[1], stall_after)


def deadline(created: str, time_out: str | None, default: DefaultDeadline | None = None) -> str:
    """The deadline of a session created at ``created``: its ``timeOut`` later, the default's
    (24 h) without one (a target whose executor never reports would otherwise keep it Running
    for ever)."""
    after = time_out or (default or DefaultDeadline()).after
    return now_rfc3339(parse_rfc3339(created) + parse_duration(after))


def phase_from_stats(target: JSON) -> str | None:
    """Succeeded or Failed once every host has reported (None before): one failed host fails
    the target."""
    view = Entry(target)
    if view.reported < view.total_hosts:
        return None
    return "Failed" if view.host_failed else "Succeeded"


def host_failures(target: JSON) -> str:
    """The failed hosts of a target and their errors, for its condition and Events."""
    failed = [
        f"host {s.hostname or '?'}: {s.error or 'failed'}"
        for s in Entry(target).stats
        if s.phase == "Failed"
    ]
    return "; ".join(failed) or "failed"


@dataclass(frozen=True)
class Executor:
    """How a kind of session names what happens to its targets, in conditions and messages."""

    noun: str  # "backup" / "restore"
    ensured: str  # the condition type: the target's executor (its Job) is in place
    ensured_reason: str
    not_ensured_reason: str  # the Job could not be made (a missing Task, an unset variable)
    failed: str  # the condition type set on a failed target, with the reason
    created: tuple[tuple[str, str], ...] = ()  # more (type, reason) set when the Job is made


def fail_target(target: JSON, executor: Executor, message: str, now: dt.datetime) -> None:
    target["phase"] = "Failed"
    target["conditions"] = set_condition(
        Entry(target).conditions, executor.failed, True, executor.failed, message, now=now
    )


def in_order(
    pairs: Iterable[tuple[int, JSON]],
    sequential: bool,
    move: Callable[[int, JSON], None],
    executor: Executor,
    now: dt.datetime,
) -> None:
    """Move each unfinished target on (``move(index, target)``), all at once or, with
    ``executionOrder: Sequential``, each once the one before has succeeded; after a failure
    the later ones fail without running."""
    blocked_by: int | None = None
    for index, target in pairs:
        if Entry(target).phase not in TARGET_TERMINAL:
            if blocked_by is not None:
                fail_target(target, executor, f"not run: member {blocked_by} failed before it", now)
                continue
            move(index, target)
        if sequential and Entry(target).phase == "Failed" and blocked_by is None:
            blocked_by = index
        elif sequential and Entry(target).phase != "Succeeded":
            break  # the next member starts once this one has succeeded


def job_target(
    target: JSON,
    job: JSON | None,
    executor: Executor,
    now: dt.datetime,
    trouble: Mapping[str, Trouble] | None = None,
) -> bool:
    """``jobs_target`` for a target carried out by one Job: True when it is to be created."""
    return bool(jobs_target(target, [job], executor, now, trouble))


def jobs_target(
    target: JSON,
    jobs: Sequence[JSON | None],
    executor: Executor,
    now: dt.datetime,
    trouble: Mapping[str, Trouble] | None = None,
) -> list[int]:
    """Move a Job-model target on from its Jobs (one, or one per ordinal restoring into new
    PVCs; None: not there); the positions of the Jobs to be created now. The hosts' stats
    decide; a Job that failed, all Jobs completed without every host reporting, or a Job that
    vanished after they were made fails the target with the reason. A Job whose pod cannot
    start (``trouble`` by Job name: ``controller.jobs.outcome``) is said on the target, and fails
    it once the reason cannot resolve itself."""
    ensured = is_true(Entry(target).conditions, executor.ensured)
    absent = [i for i, job in enumerate(jobs) if job is None]
    if absent and ensured:
        fail_target(
            target, executor, f"the {executor.noun} Job was deleted before it finished", now
        )
        return []
    if absent:  # none made yet, or some before a restart lost the status write
        target["phase"] = "Running"
        _ensured(target, executor, f"the {executor.noun} Job was created", now)
        return absent
    if not ensured:  # created before the status said so (a write lost to a restart)
        _ensured(target, executor, f"the {executor.noun} Job exists", now)
    present = [job for job in jobs if job is not None]
    reported = phase_from_stats(target)
    failed = [(Obj(job).name, f) for job in present if (f := job_failure(job))]
    if reported == "Failed" or (failed and Entry(target).host_failed):
        fail_target(target, executor, host_failures(target), now)
    elif reported is not None:
        target["phase"] = reported
    elif failed:
        name, failure = failed[0]
        fail_target(target, executor, f"{executor.noun} Job {name} failed ({failure})", now)
    elif all(job_complete(job) for job in present):
        names = ", ".join(Obj(job).name for job in present)
        fail_target(
            target, executor, f"{executor.noun} Job {names} completed without reporting stats", now
        )
    else:
        target["phase"] = "Running"
        _troubled(target, present, executor, trouble or {}, now)
    return []


def _troubled(
    target: JSON,
    jobs: Sequence[JSON],
    executor: Executor,
    trouble: Mapping[str, Trouble],
    now: dt.datetime,
) -> None:
    stuck = [(Obj(j).name, t) for j in jobs if (t := trouble.get(Obj(j).name))]
    said = message_of(Entry(target).conditions, executor.ensured)
    if stuck:
        name, first = stuck[0]
        words = first.say(executor.noun, name)
        if first.final:
            fail_target(target, executor, words, now)
        else:
            _ensured(target, executor, f"{words}; waiting for it to start", now)
    elif "cannot start" in said:
        _ensured(target, executor, f"the {executor.noun} Job's pod has started", now)


def _ensured(target: JSON, executor: Executor, message: str, now: dt.datetime) -> None:
    conditions = set_condition(
        Entry(target).conditions, executor.ensured, True, executor.ensured_reason, message, now=now
    )
    for type_, reason in executor.created:
        conditions = set_condition(conditions, type_, True, reason, message, now=now)
    target["conditions"] = conditions


def wait_target(target: JSON, executor: Executor, why: str, now: dt.datetime) -> None:
    """Hold a target that has not started (Pending), saying why in its executor condition: the
    product itself is using the target (``controller.sessions.target_use``)."""
    target["phase"] = "Pending"
    target["conditions"] = set_condition(
        Entry(target).conditions, executor.ensured, False, "TargetInUse", why, now=now
    )


def fail_unfinished(
    targets: Iterable[JSON], executor: Executor, message: str, now: dt.datetime
) -> None:
    for target in targets:
        if Entry(target).phase not in TARGET_TERMINAL:
            fail_target(target, executor, message, now)


def fail_executor(target: JSON, executor: Executor, message: str, now: dt.datetime) -> None:
    """Fail a target whose Job could not be made (built or created), saying why."""
    target["conditions"] = set_condition(
        Entry(target).conditions,
        executor.ensured,
        False,
        executor.not_ensured_reason,
        message,
        now=now,
    )
    fail_target(target, executor, message, now)


def past_deadline(
    status: JSON,
    targets: Iterable[JSON],
    executor: Executor,
    now: dt.datetime,
    finished_at: dt.datetime | None = None,
    *,
    liveness: Liveness | None = None,
) -> bool:
    """Whether ``status.sessionDeadline`` has passed; if so the unfinished targets fail and
    the session gets ``DeadlineExceeded``. ``finished_at``: when the work recorded itself
    finished (its hosts' own timestamps) — work done by the deadline is judged by that, however
    late the operator looks (it was scaled down, or restarting). ``liveness``: the deadline is
    the default one, and this is how the work moves — past it, work still making progress goes
    on; a stall ends it, in words that say so."""
    when = Status(status).deadline
    if not when or now <= parse_rfc3339(when):
        return False
    if finished_at is not None and finished_at <= parse_rfc3339(when):
        return False
    if liveness is not None and not liveness.stalled(now):
        return False
    if liveness is not None:
        reason, message = "Stalled", liveness.words(executor.noun, when)
        fail_unfinished(targets, executor, message, now)
    else:
        reason, message = (
            "FailedToCompleteWithinDeadline",
            f"the {executor.noun} did not finish by {when}",
        )
        fail_unfinished(targets, executor, f"the session's deadline {when} passed", now)
    status["conditions"] = set_condition(
        Status(status).conditions, DEADLINE_EXCEEDED, True, reason, message, now=now
    )
    return True


def next_deadline_look(status: JSON, liveness: Liveness | None, now: dt.datetime) -> float:
    """Seconds until a running session's deadline is judged again: at the deadline, and past a
    default one while the work still moves, once it could have stalled."""
    when = parse_rfc3339(Status(status).deadline)
    if when < now and liveness is not None:
        when = liveness.judged_at(now)
    return max(1.0, (when - now).total_seconds() + 1)


def hosts_target(
    target: JSON,
    executor: Executor,
    absent: str | None,
    now: dt.datetime,
    *,
    first_failure: bool = False,
) -> None:
    """Move on a target whose hosts report themselves (a sidecar, stash-init): Running until
    every host reported; failed when a host failed (with ``first_failure`` at the first one,
    not waiting for the others), or with ``absent`` (why nothing will ever carry it out)."""
    early = "Failed" if first_failure and Entry(target).host_failed else None
    target["phase"] = early or phase_from_stats(target) or "Running"
    if target["phase"] == "Failed":
        fail_target(target, executor, host_failures(target), now)
    elif target["phase"] == "Running" and absent is not None:
        fail_target(target, executor, absent, now)


def hook_state(
    status: JSON,
    hooks: JSON,
    kind: str,
    condition: str,
    final_attempt: bool = True,
    *,
    succeeded: bool = True,
) -> str:
    """Where a batch's own hook ``kind`` is: ``none`` (no such hook, or its policy skips it),
    ``due``, ``done`` or ``failed`` (its ``condition`` on the session). A post hook's
    ``executionPolicy`` is judged by whether every target ``succeeded``."""
    hook = part(hooks, kind)
    if not hook:
        return "none"
    found = get_condition(Status(status).conditions, condition)
    if found is not None:
        return "done" if ConditionView(found).true else "failed"
    if kind.startswith("post") and not should_run_post_hook(
        text(hook, "executionPolicy") or None, succeeded, final_attempt
    ):
        return "none"
    return "due"
