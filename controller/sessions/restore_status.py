"""What is particular to a RestoreSession or RestoreBatch in the session machine
(``controller.sessions.machine``): ``RESTORE``, the session kind.

A restore invoker is its own session: it runs once. It goes:

- ``Invalid`` when the spec itself is wrong (``ValidationPassed`` names the field and why); a
  later spec that is right starts it;
- ``Pending`` while its Repository, the storage Secret or a target does not exist yet
  (``RepositoryFound``, ``BackendSecretFound``, ``RestoreTargetFound`` say which), until the
  deadline;
- then ``Running``: each Job-model member gets its restore Job (restoring into new PVCs, one
  per ordinal: ``controller.jobs.claims``), and each workload member's pods
  are rolled so that new ones get ``stash-init`` (``StashInitContainerInjected``), all at once or
  one after another with ``executionOrder: Sequential``; a member's phase follows its hosts'
  stats and its Job (``controller.sessions.targets``, shared with backup sessions);
- ``Succeeded`` when every member succeeded, else ``Failed`` (a failed host, a failed or vanished
  Job, the deadline), with ``sessionDuration`` and each member's ``RestoreCompleted``.

A RestoreBatch keeps its members in ``status.members``; a RestoreSession is a batch of one whose
member's ``totalHosts``, ``stats`` and conditions are its own top-level fields.
"""

from __future__ import annotations

import datetime as dt

from api import constants as c
from api.conditions import is_true, parse_rfc3339
from api.hooks import HookKind
from api.objects import JSON
from api.restore import RestoreMember
from api.tenancy import Refusal
from api.views import Entry, Obj, Status, conditions_of, items
from controller.invokers import validation
from controller.invokers.evaluation import (
    ConditionSet,
    InvokerFacts,
    MemberRef,
    RestoreView,
    boundary_problems,
    boundary_refusals,
    member_problems,
    repository_conditions,
)
from controller.jobs.claims import claim_problems
from controller.sessions.machine import Decision, Observed
from controller.sessions.targets import (
    TARGET_TERMINAL,
    Executor,
    deadline,
    fail_unfinished,
    format_duration,
    host_failures,
    hosts_target,
    jobs_target,
    past_deadline,
    wait_target,
)

FINISHED = c.RESULT_PHASES
RESTORE_FAILED = "RestoreFailed"
RESTORE_EXECUTOR = Executor(
    "restore",
    c.RESTORE_EXECUTOR_ENSURED,
    "SuccessfullyEnsuredRestoreExecutor",
    "FailedToEnsureRestoreExecutor",
    RESTORE_FAILED,
    created=((c.RESTORE_JOB_CREATED, "RestoreJobCreationSucceeded"),),
)
# A RestoreSession's conditions that are its (only) target's: kept apart while it is worked on.
TARGET_CONDITIONS = (
    c.RESTORE_TARGET_FOUND,
    c.RESTORE_EXECUTOR_ENSURED,
    c.RESTORE_JOB_CREATED,
    c.STASH_INIT_CONTAINER_INJECTED,
    c.PRE_RESTORE_HOOK_SUCCEEDED,
    c.POST_RESTORE_HOOK_SUCCEEDED,
    c.RESTORE_COMPLETED,
    RESTORE_FAILED,
)


def restore_members_of(invoker: JSON) -> list[RestoreView]:
    view = Obj(invoker)
    if view.kind == "RestoreBatch":
        return [
            RestoreView(i, RestoreMember.model_validate(m), view.namespace)
            for i, m in enumerate(view.spec.members)
        ]
    return [
        RestoreView(0, RestoreMember.model_validate(view.spec.raw), view.namespace, batch=False)
    ]


def restore_problems(
    invoker: JSON, members: list[RestoreView], facts: InvokerFacts, refused: list[Refusal]
) -> list[str]:
    """What is wrong in the restore invoker itself or out of its reach (``refused``: what the
    tenant boundary refuses of it now)."""
    spec = Obj(invoker).spec
    batch = Obj(invoker).kind == "RestoreBatch"
    problems: list[str] = []
    if batch and not members:
        problems.append("spec.members: a RestoreBatch needs at least one member")
    if not spec.repository.name:
        problems.append("spec.repository.name: the Repository to restore from is required")
    if spec.driver != "Restic":
        problems.append(
            f"spec.driver: {spec.driver} is not supported yet; only Restic restores here"
        )
    problems += validation.timeout_problems(dict(spec.raw))
    if batch:
        problems += validation.hook_problems(spec.hooks, "spec.hooks")
    problems += member_problems(members, facts, restoring=True, more=claim_problems)
    return problems + boundary_problems(refused)


def _entries(invoker: JSON, status: JSON, seen: Observed) -> list[JSON]:
    """The members' status entries to work on (a RestoreSession's: made from its own fields)."""
    if Obj(invoker).kind == "RestoreBatch":
        entries: list[JSON] = items(status, "members")
        if len(entries) != len(seen.members):
            entries = [
                {"ref": v.ref, "phase": "Pending", "totalHosts": seen.total_hosts.get(v.index, 1)}
                for v in seen.members
            ]
        return entries
    view = Status(status)
    own = [cd.raw for cd in conditions_of(view.conditions) if cd.type in TARGET_CONDITIONS]
    entry: JSON = {
        "ref": seen.members[0].ref if seen.members else {},
        "totalHosts": view.hosts_said or seen.total_hosts.get(0, 1),
        "stats": items(status, "stats"),
        "conditions": own,
        "phase": "Pending" if view.phase != "Running" else "Running",
    }
    return [entry]


def _store(invoker: JSON, status: JSON, entries: list[JSON]) -> None:
    if Obj(invoker).kind == "RestoreBatch":
        status["members"] = entries
        return
    entry = entries[0]
    status["totalHosts"] = entry["totalHosts"]
    session_level = [
        cd.raw
        for cd in conditions_of(Status(status).conditions)
        if cd.type not in TARGET_CONDITIONS
    ]
    status["conditions"] = session_level + Entry(entry).conditions


def _found(entries: list[JSON], seen: Observed, now: dt.datetime) -> list[str]:
    """Set each member's RestoreTargetFound; the targets that do not exist (yet)."""
    missing = []
    for view, entry in zip(seen.members, entries, strict=True):
        found = seen.facts.targets_found.get(view.index, False)
        out = ConditionSet(Entry(entry).conditions, now, None)
        message = f"{view.kind} {view.target_namespace}/{view.name}"
        out.put(
            c.RESTORE_TARGET_FOUND,
            found,
            "TargetAvailable" if found else "TargetNotAvailable",
            f"restore target {message} {'found' if found else 'does not exist'}",
        )
        entry["conditions"] = out.conditions
        if not found:
            missing.append(f"restore target {message} does not exist")
    return missing


def _injected(entry: JSON, view: MemberRef, marked: bool, now: dt.datetime) -> None:
    what = f"{view.kind} {view.target_namespace}/{view.name}"
    out = ConditionSet(Entry(entry).conditions, now, None)
    out.put(
        c.STASH_INIT_CONTAINER_INJECTED,
        marked,
        "InitContainerInjectionSucceeded" if marked else "InitContainerInjectionPending",
        f"the pods of {what} are rolled: new ones get the stash-init init container"
        if marked
        else f"waiting for {what} to be rolled for the restore",
    )
    entry["conditions"] = out.conditions


def _settle(invoker: JSON, status: JSON, entries: list[JSON], now: dt.datetime) -> None:
    phases = [Entry(e).phase for e in entries]
    deadline_passed = is_true(Status(status).conditions, c.DEADLINE_EXCEEDED)
    if any(p not in TARGET_TERMINAL for p in phases) and not deadline_passed:
        status["phase"] = "Running"
        return
    ok = all(p == "Succeeded" for p in phases) and not deadline_passed
    status["phase"] = "Succeeded" if ok else "Failed"
    created = parse_rfc3339(Obj(invoker).meta.created)
    status["sessionDuration"] = format_duration(now - created)
    for entry in entries:
        succeeded = Entry(entry).phase == "Succeeded"
        hosts = Entry(entry).reported
        out = ConditionSet(Entry(entry).conditions, now, None)
        out.put(
            c.RESTORE_COMPLETED,
            True,
            "PostRestoreTasksExecuted",
            f"restored {hosts} host(s)" if succeeded else _failure(entry),
        )
        entry["conditions"] = out.conditions


def _failure(entry: JSON) -> str:
    for cond in conditions_of(Entry(entry).conditions):
        if cond.type == RESTORE_FAILED and cond.true:
            return cond.message or "failed"
    return host_failures(entry)


def _begin(invoker: JSON, status: JSON, seen: Observed, now: dt.datetime) -> list[str]:
    """Validate and judge the tenant boundary (on every pass: a field changed while running is
    judged as one set at the start), and before the start wait for what the restore needs;
    what keeps it from going on (``status`` then says Invalid, Pending or, for a running
    restore the boundary now refuses, Failed), or nothing."""
    meta, spec = Obj(invoker).meta, Obj(invoker).spec
    started = Status(status).phase == "Running"
    refused = boundary_refusals(invoker, seen.members, seen.facts)
    members = [m for m in seen.members if isinstance(m, RestoreView)]
    problems = restore_problems(invoker, members, seen.facts, refused)
    out = ConditionSet(Status(status).conditions, now, meta.generation)
    out.put(
        c.VALIDATION_PASSED,
        not problems,
        "ResourceValidationPassed" if not problems else "ResourceValidationFailed",
        "; ".join(problems) or "the restore is valid",
    )
    if problems and not started:
        status["conditions"] = out.conditions
        status["phase"] = "Invalid"
        return problems
    repo_name = spec.repository.name
    repository_conditions(out, seen.facts.repository, repo_name, meta.namespace, seen.facts)
    status["conditions"] = out.conditions
    status.setdefault(
        "sessionDeadline", deadline(meta.created, spec.time_out, seen.default_deadline)
    )
    entries = _entries(invoker, status, seen)
    if started:
        if refused:  # nothing more is read, written or run for it
            words = "; ".join(str(r) for r in refused)
            fail_unfinished(entries, RESTORE_EXECUTOR, f"refused: {words}", now)
            _settle(invoker, status, entries, now)
            _store(invoker, status, entries)
        return [str(r) for r in refused]
    waiting = out.not_ready + _found(entries, seen, now) + list(seen.busy.values())
    for index, why in seen.busy.items():  # said on the member, as a backup target says it
        wait_target(entries[index], RESTORE_EXECUTOR, why, now)
    if waiting:
        if past_deadline(status, entries, RESTORE_EXECUTOR, now):
            _settle(invoker, status, entries, now)
        else:
            status["phase"] = "Pending"
    else:
        status["phase"] = "Running"
    _store(invoker, status, entries)
    return waiting


def _move(member: MemberRef, entry: JSON, seen: Observed, now: dt.datetime) -> list[int]:
    index = member.index
    if member.task is None:  # stash-init: the hosts report their own stats
        _injected(entry, member, seen.marked.get(index, False), now)
        # One failed host fails it at once: the others' pods (a StatefulSet's next ordinal)
        # may wait behind it for ever, and the restore is failed either way.
        hosts_target(entry, RESTORE_EXECUTOR, seen.absent.get(index), now, first_failure=True)
    elif index in seen.leftover and not is_true(Entry(entry).conditions, RESTORE_EXECUTOR.ensured):
        entry["phase"] = "Pending"  # waits for the earlier restore's Job to go
    else:
        jobs = seen.jobs.get(index) or [None]
        return jobs_target(entry, jobs, RESTORE_EXECUTOR, now, seen.trouble)
    return []


class RestoreKind:
    """A RestoreSession (its one target's entry is its own status) or a RestoreBatch (its
    members' entries are ``status.members``)."""

    executor: Executor = RESTORE_EXECUTOR
    terminal: tuple[str, ...] = FINISHED
    pre_hook: HookKind = "preRestore"
    post_hook: HookKind = "postRestore"

    def begin(self, obj: JSON, status: JSON, seen: Observed, now: dt.datetime) -> Decision | None:
        held = _begin(obj, status, seen, now)
        return Decision(status, problems=tuple(held)) if held else None

    def entries(self, obj: JSON, status: JSON, seen: Observed) -> list[JSON]:
        return _entries(obj, status, seen)

    def store(self, obj: JSON, status: JSON, entries: list[JSON]) -> None:
        _store(obj, status, entries)

    def working(self, status: JSON, seen: Observed) -> bool:
        return False  # a restore's hosts do all its work, and report their progress

    def time_out(self, obj: JSON, seen: Observed) -> str | None:
        return Obj(obj).spec.time_out

    def batch_hooks(self, obj: JSON, seen: Observed) -> JSON:
        if Obj(obj).kind != "RestoreBatch":
            return {}
        return dict(Obj(obj).spec.hooks)

    def sequential(self, obj: JSON, seen: Observed) -> bool:
        return Obj(obj).spec.sequential

    def move(self, member: MemberRef, entry: JSON, seen: Observed, now: dt.datetime) -> list[int]:
        return _move(member, entry, seen, now)

    def work_finished_at(self, status: JSON) -> dt.datetime | None:
        return None  # judged by when the operator looks

    def repository_work(
        self, status: JSON, entries: list[JSON], seen: Observed, now: dt.datetime
    ) -> bool:
        return False  # a restore writes nothing to the repository

    def settle(self, obj: JSON, status: JSON, entries: list[JSON], now: dt.datetime) -> None:
        _settle(obj, status, entries, now)

    def final_attempt(self, obj: JSON, seen: Observed) -> bool:
        return True  # a restore is not retried


RESTORE = RestoreKind()
