"""The next status of a RestoreSession or RestoreBatch, as a pure function of what the reconciler
observed.

A restore invoker is its own session: it runs once. ``next_restore_status`` decides:

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

import copy
import datetime as dt
from dataclasses import dataclass, field

from api import constants as c
from api.conditions import is_true, parse_rfc3339
from api.objects import JSON
from api.pod_members import WORKLOAD_KINDS
from api.restore import RestoreMember
from api.tenancy import Refusal
from controller.invokers import validation
from controller.invokers.evaluation import (
    ConditionSet,
    InvokerFacts,
    RestoreView,
    boundary_problems,
    boundary_refusals,
    repository_conditions,
)
from controller.jobs.claims import claim_problems
from controller.jobs.outcome import Trouble
from controller.sessions.targets import (
    TARGET_TERMINAL,
    Executor,
    deadline,
    fail_executor,
    fail_unfinished,
    format_duration,
    hook_state,
    host_failures,
    hosts_target,
    in_order,
    jobs_target,
    past_deadline,
    wait_target,
)

FINISHED = ("Succeeded", "Failed")
RESTORE_FAILED = "RestoreFailed"
RESTORE = Executor(
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
    namespace = invoker.get("metadata", {}).get("namespace", "")
    spec = invoker.get("spec") or {}
    if invoker.get("kind") == "RestoreBatch":
        return [
            RestoreView(i, RestoreMember.model_validate(m), namespace)
            for i, m in enumerate(spec.get("members") or [])
        ]
    return [RestoreView(0, RestoreMember.model_validate(spec), namespace, batch=False)]


@dataclass(frozen=True)
class RestoreObserved:
    """What the reconciler saw, beside the invoker itself."""

    members: list[RestoreView]
    facts: InvokerFacts
    total_hosts: dict[int, int] = field(default_factory=dict)
    # each Job-model member's Jobs (one; restoring into new PVCs, one per ordinal), None: absent
    jobs: dict[int, list[JSON | None]] = field(default_factory=dict)
    # workload members whose pod template carries this restore (its pods were rolled for it)
    marked: dict[int, bool] = field(default_factory=dict)
    # workload members past the grace period that no stash-init will restore, and why
    init_absent: dict[int, str] = field(default_factory=dict)
    # Job-model members whose Job name an earlier restore's Job still holds (being deleted)
    leftover: frozenset[int] = frozenset()
    # members whose target a backup session is backing up now, and why (the restore waits:
    # controller.sessions.target_use)
    busy: dict[int, str] = field(default_factory=dict)
    # running Jobs whose pod cannot start, by Job name (controller.jobs.outcome)
    trouble: dict[str, Trouble] = field(default_factory=dict)


@dataclass(frozen=True)
class RestoreDecision:
    status: JSON
    create_jobs: tuple[tuple[int, int], ...] = ()  # (member, position in its jobs) to create
    # what keeps it Invalid or Pending (for its Event)
    problems: tuple[str, ...] = ()
    run_hook: str | None = None  # "preRestore" / "postRestore": the batch's hook to run now


def _member_problems(view: RestoreView, facts: InvokerFacts) -> list[str]:
    where = view.where
    raw = view.member.to_dict()
    target = raw.get("target") or {}
    problems = validation.temp_dir_problems(raw.get("tempDir"), f"{where}.tempDir")
    if view.task is None and view.kind in WORKLOAD_KINDS:
        if not target.get("volumeMounts"):
            problems.append(
                f"{where}.target.volumeMounts: name the {view.kind}'s volumes to restore into "
                "(and where stash-init mounts them: where they were backed up from)"
            )
        problems += validation.mount_problems(
            target.get("volumeMounts"),
            f"{where}.target.volumeMounts",
            facts.workload_volumes.get(view.index),
        )
    elif view.task is None:
        problems.append(
            f"{where}.task.name: a {view.kind} target needs a Task (only Deployments, "
            "StatefulSets and DaemonSets are restored by the stash-init init container)"
        )
    elif facts.tasks_found.get(view.task) is False:
        field_name = "task.name" if view.member.task and view.member.task.name else "task"
        problems.append(f"{where}.{field_name}: Task {view.task} not found")
    problems += validation.hook_problems(raw.get("hooks"), f"{where}.hooks")
    problems += validation.param_problems(raw.get("task"), f"{where}.task")
    return problems + claim_problems(view)


def restore_problems(
    invoker: JSON, members: list[RestoreView], facts: InvokerFacts, refused: list[Refusal]
) -> list[str]:
    """What is wrong in the restore invoker itself or out of its reach (``refused``: what the
    tenant boundary refuses of it now)."""
    spec = invoker.get("spec") or {}
    batch = invoker.get("kind") == "RestoreBatch"
    problems: list[str] = []
    if batch and not members:
        problems.append("spec.members: a RestoreBatch needs at least one member")
    if not (spec.get("repository") or {}).get("name"):
        problems.append("spec.repository.name: the Repository to restore from is required")
    if spec.get("driver", "Restic") != "Restic":
        problems.append(
            f"spec.driver: {spec['driver']} is not supported yet; only Restic restores here"
        )
    problems += validation.timeout_problems(spec)
    if batch:
        problems += validation.hook_problems(spec.get("hooks"), "spec.hooks")
    seen: dict[tuple[str, str, str], int] = {}
    for view in members:
        if not view.kind or not view.name:
            problems.append(f"{view.where}.target.ref: kind and name are required")
            continue
        problems += _member_problems(view, facts)
        key = (view.target_namespace, view.kind, view.name)
        if key in seen:
            problems.append(
                f"{view.where}.target.ref: {view.kind} {view.name} is also member {seen[key]}"
            )
        seen[key] = view.index
    return problems + boundary_problems(refused)


def _entries(invoker: JSON, status: JSON, seen: RestoreObserved) -> list[JSON]:
    """The members' status entries to work on (a RestoreSession's: made from its own fields)."""
    if invoker.get("kind") == "RestoreBatch":
        entries: list[JSON] = status.get("members") or []
        if len(entries) != len(seen.members):
            entries = [
                {"ref": v.ref, "phase": "Pending", "totalHosts": seen.total_hosts.get(v.index, 1)}
                for v in seen.members
            ]
        return entries
    own = [cd for cd in status.get("conditions") or [] if cd.get("type") in TARGET_CONDITIONS]
    entry: JSON = {
        "ref": seen.members[0].ref if seen.members else {},
        "totalHosts": status.get("totalHosts") or seen.total_hosts.get(0, 1),
        "stats": status.get("stats") or [],
        "conditions": own,
        "phase": "Pending" if status.get("phase") != "Running" else "Running",
    }
    return [entry]


def _store(invoker: JSON, status: JSON, entries: list[JSON]) -> None:
    if invoker.get("kind") == "RestoreBatch":
        status["members"] = entries
        return
    entry = entries[0]
    status["totalHosts"] = entry["totalHosts"]
    session_level = [
        cd for cd in status.get("conditions") or [] if cd.get("type") not in TARGET_CONDITIONS
    ]
    status["conditions"] = session_level + list(entry.get("conditions") or [])


def _found(entries: list[JSON], seen: RestoreObserved, now: dt.datetime) -> list[str]:
    """Set each member's RestoreTargetFound; the targets that do not exist (yet)."""
    missing = []
    for view, entry in zip(seen.members, entries, strict=True):
        found = seen.facts.targets_found.get(view.index, False)
        out = ConditionSet(entry.get("conditions"), now, None)
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


def _injected(entry: JSON, view: RestoreView, marked: bool, now: dt.datetime) -> None:
    what = f"{view.kind} {view.target_namespace}/{view.name}"
    out = ConditionSet(entry.get("conditions"), now, None)
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
    phases = [e.get("phase") for e in entries]
    deadline_passed = any(
        cd.get("type") == c.DEADLINE_EXCEEDED and cd.get("status") == "True"
        for cd in status.get("conditions") or []
    )
    if any(p not in TARGET_TERMINAL for p in phases) and not deadline_passed:
        status["phase"] = "Running"
        return
    ok = all(p == "Succeeded" for p in phases) and not deadline_passed
    status["phase"] = "Succeeded" if ok else "Failed"
    created = parse_rfc3339(invoker["metadata"]["creationTimestamp"])
    status["sessionDuration"] = format_duration(now - created)
    for entry in entries:
        succeeded = entry.get("phase") == "Succeeded"
        hosts = len(entry.get("stats") or [])
        out = ConditionSet(entry.get("conditions"), now, None)
        out.put(
            c.RESTORE_COMPLETED,
            True,
            "PostRestoreTasksExecuted",
            f"restored {hosts} host(s)" if succeeded else _failure(entry),
        )
        entry["conditions"] = out.conditions


def _failure(entry: JSON) -> str:
    for cond in entry.get("conditions") or []:
        if cond.get("type") == RESTORE_FAILED and cond.get("status") == "True":
            return str(cond.get("message") or "failed")
    return host_failures(entry)


def _begin(invoker: JSON, status: JSON, seen: RestoreObserved, now: dt.datetime) -> list[str]:
    """Validate and judge the tenant boundary (on every pass: a field changed while running is
    judged as one set at the start), and before the start wait for what the restore needs;
    what keeps it from going on (``status`` then says Invalid, Pending or, for a running
    restore the boundary now refuses, Failed), or nothing."""
    meta = invoker["metadata"]
    spec = invoker.get("spec") or {}
    started = status.get("phase") == "Running"
    refused = boundary_refusals(invoker, seen.members, seen.facts)
    problems = restore_problems(invoker, seen.members, seen.facts, refused)
    out = ConditionSet(status.get("conditions"), now, meta.get("generation"))
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
    repo_name = (spec.get("repository") or {}).get("name", "")
    repository_conditions(out, seen.facts.repository, repo_name, meta["namespace"], seen.facts)
    status["conditions"] = out.conditions
    status.setdefault("sessionDeadline", deadline(meta["creationTimestamp"], spec.get("timeOut")))
    entries = _entries(invoker, status, seen)
    if started:
        if refused:  # nothing more is read, written or run for it
            words = "; ".join(str(r) for r in refused)
            fail_unfinished(entries, RESTORE, f"refused: {words}", now)
            _settle(invoker, status, entries, now)
            _store(invoker, status, entries)
        return [str(r) for r in refused]
    waiting = out.not_ready + _found(entries, seen, now) + list(seen.busy.values())
    for index, why in seen.busy.items():  # said on the member, as a backup target says it
        wait_target(entries[index], RESTORE, why, now)
    if waiting:
        if past_deadline(status, entries, RESTORE, now):
            _settle(invoker, status, entries, now)
        else:
            status["phase"] = "Pending"
    else:
        status["phase"] = "Running"
    _store(invoker, status, entries)
    return waiting


def next_restore_status(invoker: JSON, seen: RestoreObserved, now: dt.datetime) -> RestoreDecision:
    status: JSON = copy.deepcopy(invoker.get("status") or {})
    if status.get("phase") in FINISHED:
        return RestoreDecision(status)
    held = _begin(invoker, status, seen, now)
    if held:
        return RestoreDecision(status, problems=tuple(held))
    spec = invoker.get("spec") or {}
    entries = _entries(invoker, status, seen)
    hooks = dict(spec.get("hooks") or {}) if invoker.get("kind") == "RestoreBatch" else {}
    pre = hook_state(status, hooks, "preRestore", c.GLOBAL_PRE_RESTORE_HOOK_SUCCEEDED)
    if pre == "due" and not past_deadline(status, entries, RESTORE, now):
        _store(invoker, status, entries)
        return RestoreDecision(status, run_hook="preRestore")  # members wait until it ran
    create: list[tuple[int, int]] = []
    if pre == "failed":
        fail_unfinished(entries, RESTORE, "not run: the batch's preRestore hook failed", now)
    else:
        create = _advance(spec, entries, seen, now)
    if past_deadline(status, entries, RESTORE, now):
        create = []
    _settle(invoker, status, entries, now)
    _store(invoker, status, entries)
    if status["phase"] != "Running" and not is_true(status.get("conditions"), c.DEADLINE_EXCEEDED):
        succeeded = all(e.get("phase") == "Succeeded" for e in entries)
        post = hook_state(
            status, hooks, "postRestore", c.GLOBAL_POST_RESTORE_HOOK_SUCCEEDED, succeeded=succeeded
        )
        if post == "due":
            status["phase"] = "Running"
            status.pop("sessionDuration", None)
            return RestoreDecision(status, tuple(create), run_hook="postRestore")
        if post == "failed":
            status["phase"] = "Failed"
    return RestoreDecision(status, tuple(create))


def _advance(
    spec: JSON, entries: list[JSON], seen: RestoreObserved, now: dt.datetime
) -> list[tuple[int, int]]:
    """Move every member on; the restore Jobs to be created now (member, position)."""
    views = {view.index: view for view in seen.members}
    create: list[tuple[int, int]] = []

    def move(index: int, entry: JSON) -> None:
        if views[index].task is None:  # stash-init: the hosts report their own stats
            _injected(entry, views[index], seen.marked.get(index, False), now)
            # One failed host fails it at once: the others' pods (a StatefulSet's next
            # ordinal) may wait behind it for ever, and the restore is failed either way.
            hosts_target(entry, RESTORE, seen.init_absent.get(index), now, first_failure=True)
        elif index in seen.leftover and not is_true(entry.get("conditions"), RESTORE.ensured):
            entry["phase"] = "Pending"  # waits for the earlier restore's Job to go
        else:
            jobs = seen.jobs.get(index) or [None]
            create.extend(
                (index, at) for at in jobs_target(entry, jobs, RESTORE, now, seen.trouble)
            )

    sequential = spec.get("executionOrder") == "Sequential"
    pairs = ((v.index, e) for v, e in zip(seen.members, entries, strict=True))
    in_order(pairs, sequential, move, RESTORE, now)
    return create


def fail_restore_member(
    invoker: JSON, status: JSON, index: int, message: str, now: dt.datetime
) -> JSON:
    """``status`` with member ``index`` failed (its Job could not be built or created)."""
    status = copy.deepcopy(status)
    members = restore_members_of(invoker)
    seen = RestoreObserved(members, InvokerFacts())
    entries = _entries(invoker, status, seen)
    fail_executor(entries[index], RESTORE, message, now)
    _settle(invoker, status, entries, now)
    _store(invoker, status, entries)
    return status
