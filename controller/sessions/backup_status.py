"""What is particular to a BackupSession in the session machine (``controller.sessions.machine``):
``BACKUP``, the session kind.

A BackupSession begins by being skipped (another session of the invoker runs, or the invoker is
not Ready) or by its targets getting their host counts and the session its deadline. A member
the tenant boundary refuses fails; a sidecar member follows its hosts' reports; a Job-model
member its Job. It succeeds only once every target did and the last host's retention and
integrity check reported success. Also here: which finished sessions ``backupHistoryLimit``
lets go, and a finished session's metrics.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import Any

from api import constants as c
from api.conditions import has_condition, is_true, parse_rfc3339, set_condition
from api.hooks import HookKind, is_final_attempt
from api.objects import JSON
from api.units import parse_duration
from api.views import Entry, Obj, Status, conditions_of, session_ended
from controller.invokers.evaluation import MemberRef
from controller.jobs.outcome import job_complete, job_failure
from controller.sessions.machine import Decision, Observed
from controller.sessions.targets import (
    TARGET_TERMINAL,
    Executor,
    deadline,
    fail_target,
    format_duration,
    hosts_target,
    job_target,
    wait_target,
)
from engine.metrics import SessionOutcome, TargetOutcome

TERMINAL = c.SESSION_TERMINAL_PHASES
REPOSITORY_CONDITIONS = (c.RETENTION_POLICY_APPLIED, c.REPOSITORY_INTEGRITY_VERIFIED)
BACKUP_EXECUTOR = Executor(
    "backup",
    c.BACKUP_EXECUTOR_ENSURED,
    "SuccessfullyEnsuredBackupExecutor",
    "FailedToEnsureBackupExecutor",
    "BackupFailed",
)


def history_to_delete(
    sessions: list[JSON], limit: int, current: str, current_phase: str | None
) -> list[str]:
    """The finished sessions that ``backupHistoryLimit`` lets go, oldest last kept.

    Results (Succeeded, Failed) and Skipped sessions are counted apart, each keeping the newest
    ``limit`` (at least 1): a slot skipped during a long session never pushes the session that
    just finished out of the history. The newest Succeeded one is always kept: it is the record
    of the last successful backup (what ``kubectl get backupsession`` shows, and what the
    metrics' last-success times are rebuilt from after a failover). ``current`` (just finished,
    maybe not yet written) counts with ``current_phase``.
    """

    def phase(s: JSON) -> str | None:
        if Obj(s).name == current:
            return current_phase
        return Obj(s).status.phase

    newest_first = sorted(
        (s for s in sessions if phase(s) in TERMINAL),
        key=lambda s: (Obj(s).meta.created, Obj(s).name),
        reverse=True,
    )
    keep = max(limit, 1)
    results = [s for s in newest_first if phase(s) != "Skipped"]
    skipped = [s for s in newest_first if phase(s) == "Skipped"]
    last_success = next((s for s in results if phase(s) == "Succeeded"), None)
    return [Obj(s).name for s in results[keep:] + skipped[keep:] if s is not last_success]


def session_outcome(status: JSON, history: list[JSON], now: dt.datetime) -> SessionOutcome:
    """The metrics of a finished session: success, duration, and the last success times of the
    invoker and each target (this session, else the newest earlier one that succeeded)."""

    earlier = sorted(
        (
            (session_ended(s).timestamp(), s.status)
            for s in map(Obj, history)
            if s.status.phase in ("Succeeded", "Failed")
        ),
        key=lambda pair: pair[0],
        reverse=True,
    )
    mine = Status(status)
    succeeded = mine.phase == "Succeeded"
    last = (
        now.timestamp()
        if succeeded
        else next((when for when, st in earlier if st.phase == "Succeeded"), None)
    )
    targets = []
    for target in mine.targets:
        ref = target.ref
        ok = target.phase == "Succeeded"
        last_target = (
            now.timestamp()
            if ok
            else next(
                (
                    when
                    for when, st in earlier
                    for t in st.targets
                    if t.ref.raw == ref.raw and t.phase == "Succeeded"
                ),
                None,
            )
        )
        targets.append(TargetOutcome(ref.kind, ref.name, ok, last_target))
    duration = parse_duration(mine.duration or "0s").total_seconds()
    return SessionOutcome(succeeded, duration, last, tuple(targets))


def _skip(status: JSON, reason: str, message: str, now: dt.datetime) -> Decision:
    status["phase"] = "Skipped"
    status["conditions"] = set_condition(
        Status(status).conditions, c.BACKUP_SKIPPED, True, reason, message, now=now
    )
    return Decision(status)


def _start(session: JSON, status: JSON, seen: Observed, now: dt.datetime) -> Decision | None:
    """Skip the session, or initialise its targets and deadline (None: it starts)."""
    invoker = seen.invoker
    if invoker is None:
        return _skip(status, "InvokerNotFound", "the session's invoker does not exist", now)
    phase = Obj(invoker).status.phase
    if phase != "Ready":
        name = f"{Obj(invoker).kind} {Obj(invoker).name}"
        return _skip(status, "InvokerNotReady", f"{name} is {phase or 'not ready yet'}", now)
    if seen.other_running:
        message = f"session {seen.other_running} of the same invoker is still running"
        return _skip(status, "SkippedTakingNewBackup", message, now)
    status["targets"] = [
        {"ref": view.ref, "totalHosts": seen.total_hosts.get(view.index, 1), "phase": "Pending"}
        for view in seen.members
    ]
    # Without a timeOut a session still ends (24 h): every later slot would be Skipped.
    status["sessionDeadline"] = deadline(
        Obj(session).meta.created, Obj(invoker).spec.time_out, seen.default_deadline
    )
    status["phase"] = "Running"
    return None


def repository_outcome(conditions: list[JSON] | None) -> bool | None:
    """Whether the last host's repository work (retention, integrity check) succeeded; None
    while it has not reported yet."""
    found = {
        # a held forget removed nothing and says so: the backup is not failed by it
        cond.type: "True" if cond.reason == c.RETENTION_HELD else cond.status
        for cond in conditions_of(conditions)
        if cond.type in REPOSITORY_CONDITIONS
    }
    if any(value == "False" for value in found.values()):
        return False
    return True if len(found) == len(REPOSITORY_CONDITIONS) else None


def awaits_repository_work(raw: Mapping[str, Any]) -> bool:
    """Every target succeeded and the repository work (retention, the check) is not recorded
    yet: the last host, or a finish Job, is doing it."""
    status = Status(raw)
    targets = status.targets
    return (
        bool(targets)
        and all(t.phase == "Succeeded" for t in targets)
        and repository_outcome(status.conditions) is None
    )


def work_finished_at(raw: Mapping[str, Any]) -> dt.datetime | None:
    """When the session's work finished, by the hosts' own record: every target settled and the
    last host's retention and integrity check reported (the time it wrote them); None while
    any of it is outstanding."""
    status = Status(raw)
    if any(t.phase not in TARGET_TERMINAL for t in status.targets):
        return None
    if repository_outcome(status.conditions) is None:
        return None
    times = []
    for cond in conditions_of(status.conditions):
        if cond.type in REPOSITORY_CONDITIONS:
            try:
                times.append(parse_rfc3339(cond.changed_at))
            except ValueError:
                return None  # not a time: judged as before, by when the operator looks
    return max(times, default=None)


def _settle(session: JSON, status: JSON, now: dt.datetime) -> None:
    view = Status(status)
    phases = [t.phase for t in view.targets]
    repository = repository_outcome(view.conditions)
    if is_true(view.conditions, c.DEADLINE_EXCEEDED):
        status["phase"] = "Failed"
    elif all(p == "Succeeded" for p in phases):
        # Every host backed up; the session succeeds once retention ran and the repository
        # checked out, so a Succeeded session always means a verified repository.
        status["phase"] = {True: "Succeeded", False: "Failed", None: "Running"}[repository]
    elif any(p not in TARGET_TERMINAL for p in phases):
        status["phase"] = "Running"
    else:
        status["phase"] = "Failed"
    if status["phase"] in TERMINAL:
        created = parse_rfc3339(Obj(session).meta.created)
        ended = work_finished_at(status) or now  # the hosts' record, not when the operator looked
        status["sessionDuration"] = format_duration(max(ended, created) - created)


def _move(member: MemberRef, target: JSON, seen: Observed, now: dt.datetime) -> list[int]:
    index = member.index
    if Entry(target).phase == "Pending" and index in seen.busy:
        wait_target(target, BACKUP_EXECUTOR, seen.busy[index], now)
    elif index in seen.refused:
        fail_target(target, BACKUP_EXECUTOR, seen.refused[index], now)
    elif member.task is None:  # sidecar: the hosts report their own stats
        hosts_target(target, BACKUP_EXECUTOR, seen.absent.get(index), now)
    elif job_target(
        target, (seen.jobs.get(index) or [None])[0], BACKUP_EXECUTOR, now, seen.trouble
    ):
        return [0]
    return []


def _batch_hooks(invoker: JSON | None) -> JSON:
    if invoker is None or Obj(invoker).kind != "BackupBatch":
        return {}  # a BackupConfiguration's hooks are its (only) member's
    return dict(Obj(invoker).spec.hooks)


class BackupKind:
    """A BackupSession: its targets are ``status.targets``; its invoker is another object."""

    executor: Executor = BACKUP_EXECUTOR
    terminal: tuple[str, ...] = TERMINAL
    pre_hook: HookKind = "preBackup"
    post_hook: HookKind = "postBackup"

    def begin(self, obj: JSON, status: JSON, seen: Observed, now: dt.datetime) -> Decision | None:
        return None if Status(status).targets else _start(obj, status, seen, now)

    def entries(self, obj: JSON, status: JSON, seen: Observed) -> list[JSON]:
        targets: list[JSON] = status["targets"]
        return targets

    def store(self, obj: JSON, status: JSON, entries: list[JSON]) -> None:
        status["targets"] = entries

    def batch_hooks(self, obj: JSON, seen: Observed) -> JSON:
        return _batch_hooks(seen.invoker)

    def time_out(self, obj: JSON, seen: Observed) -> str | None:
        return Obj(seen.invoker).spec.time_out

    def sequential(self, obj: JSON, seen: Observed) -> bool:
        return Obj(seen.invoker).spec.sequential

    def move(self, member: MemberRef, entry: JSON, seen: Observed, now: dt.datetime) -> list[int]:
        return _move(member, entry, seen, now)

    def work_finished_at(self, status: JSON) -> dt.datetime | None:
        return work_finished_at(status)

    def working(self, status: JSON, seen: Observed) -> bool:
        finish = seen.finish_job
        if finish is not None:
            return job_failure(finish) is None and not job_complete(finish)
        return awaits_repository_work(status) and not seen.work_holder_gone

    def repository_work(
        self, status: JSON, entries: list[JSON], seen: Observed, now: dt.datetime
    ) -> bool:
        if not awaits_repository_work(status):
            return False
        job = seen.finish_job
        if job is None:
            return seen.work_holder_gone
        failure = job_failure(job)
        if failure is None and job_complete(job):
            failure = "it completed without recording the work"
        if failure is not None:
            name = Obj(job).name
            why = (
                f"the repository work (retention, integrity check) failed in Job {name}: {failure}"
            )
            for type_ in REPOSITORY_CONDITIONS:
                if not has_condition(Status(status).conditions, type_):
                    status["conditions"] = set_condition(
                        Status(status).conditions,
                        type_,
                        False,
                        "RepositoryWorkFailed",
                        why,
                        now=now,
                    )
        return False

    def settle(self, obj: JSON, status: JSON, entries: list[JSON], now: dt.datetime) -> None:
        _settle(obj, status, now)

    def final_attempt(self, obj: JSON, seen: Observed) -> bool:
        return is_final_attempt(obj, seen.invoker)


BACKUP = BackupKind()
