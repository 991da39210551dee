"""BackupBatch / BackupConfiguration: what is wrong with one, and what status it should have.

``evaluate`` is pure: given the invoker and the facts the reconciler read (repository, secret,
targets, namespace labels), it returns conditions (``RepositoryFound``, ``BackendSecretFound``,
``BackupTargetFound``, ``ValidationPassed``, ``CronJobCreated``), ``memberConditions`` for batches
and the phase ``Ready | NotReady | Invalid``. Messages name the field and say why.
"""

from __future__ import annotations

import datetime as dt
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

from api import constants as c
from api.backup import BackupMember
from api.common import TargetRef
from api.conditions import RawCondition, is_true, set_condition
from api.objects import JSON
from api.pod_members import WORKLOAD_KINDS, member_documents
from api.repository import Repository
from api.restore import RestoreMember
from api.tenancy import (
    REPOSITORY_REFUSED,
    Member,
    Refusal,
    Subject,
    Tenancy,
    refusals,
    repository_refusal,
)
from api.views import Obj, Ref, items, part
from controller.invokers import validation
from controller.invokers.staleness import LastSuccess, staleness

RESTIC_PASSWORD = "RESTIC_PASSWORD"  # noqa: S105 - the key's name
DEFAULT_PVC_TASK = "pvc-backup"
DEFAULT_PVC_RESTORE_TASK = "pvc-restore"


class MemberRef:
    """What backup and restore members share: the target they name, its Task, and their
    place in the invoker."""

    index: int
    member: BackupMember | RestoreMember
    namespace: str
    batch: bool
    DEFAULT_PVC_TASK = DEFAULT_PVC_TASK

    def target_ref(self) -> TargetRef | None:
        return self.member.target.ref if self.member.target else None

    @property
    def claims(self) -> list[JSON]:
        """New PVCs the member restores into (only restore members have them)."""
        return []

    def replicas(self) -> int | None:
        """``target.replicas``: how many hosts the member names itself, if it does."""
        return self.member.target.replicas if self.member.target else None

    @cached_property
    def _ref(self) -> JSON:
        """The target's reference as a dict, made once per view (read on every question)."""
        ref = self.target_ref()
        return ref.to_dict() if ref else {}

    @property
    def ref(self) -> JSON:
        return dict(self._ref)

    @property
    def kind(self) -> str:
        return Ref(self._ref).kind

    @property
    def name(self) -> str:
        return Ref(self._ref).name

    @property
    def target_namespace(self) -> str:
        return Ref(self._ref).namespace_or(self.namespace)

    @property
    def where(self) -> str:
        """The member's place in the invoker's spec, for messages."""
        return f"spec.members[{self.index}]" if self.batch else "spec"

    @property
    def task(self) -> str | None:
        """The Task of a Job-model member (PVCs default to the built-in one); None for
        workloads (sidecar / init container)."""
        if self.member.task and self.member.task.name:
            return self.member.task.name
        if self.kind == c.PVC_KIND:
            return self.DEFAULT_PVC_TASK
        return None


@dataclass(frozen=True)
class MemberView(MemberRef):
    """One backup member as the reconcilers use it (a BackupConfiguration is a batch of one)."""

    index: int
    member: BackupMember
    namespace: str
    batch: bool = True  # a BackupBatch member (else a BackupConfiguration's own spec)


@dataclass(frozen=True)
class RestoreView(MemberRef):
    """One restore member: a RestoreBatch's, or a RestoreSession's own spec (index 0)."""

    index: int
    member: RestoreMember
    namespace: str
    batch: bool = True
    DEFAULT_PVC_TASK = DEFAULT_PVC_RESTORE_TASK

    def target_ref(self) -> TargetRef | None:
        return self.member.target.identity() if self.member.target else None

    @property
    def claims(self) -> list[JSON]:
        """``target.volumeClaimTemplates``: the new PVCs restored into (per ordinal)."""
        target = self.member.target
        return list(target.volume_claim_templates or []) if target else []

    @property
    def task(self) -> str | None:
        """Restoring into new PVCs is always a Job's work (``pvc-restore`` unless the member
        names another Task), whatever ``ref`` names; otherwise as for backup members."""
        if self.claims:
            named = self.member.task.name if self.member.task else None
            return named or DEFAULT_PVC_RESTORE_TASK
        return super().task


@dataclass(frozen=True)
class InvokerFacts:
    tenancy: Tenancy = field(default_factory=lambda: Tenancy(operator_namespace=""))
    repository: Repository | None = None
    secret_found: bool = False
    secret_keys: frozenset[str] | None = None  # the storage Secret's keys (never its values)
    targets_found: dict[int, bool] = field(default_factory=dict)
    # What the API server said of spec.schedule (a dry-run CronJob), None when it took it.
    schedule_problem: str | None = None
    # The volumes of each sidecar member's workload (absent: the workload is not known).
    workload_volumes: dict[int, frozenset[str]] = field(default_factory=dict)
    tasks_found: dict[str, bool] = field(default_factory=dict)  # Task name -> exists
    cronjob_error: str | None = None  # None: the CronJob is in place (or not needed)
    last_success: LastSuccess | None = None  # its newest Succeeded session (BackupStale)


@dataclass(frozen=True)
class InvokerVerdict:
    phase: str
    conditions: list[RawCondition]
    member_conditions: list[JSON] | None
    problems: tuple[str, ...]
    recheck_at: dt.datetime | None = None  # when a verdict turns by itself (BackupStale)

    def as_status(self, generation: int | None) -> JSON:
        status: JSON = {"phase": self.phase, "conditions": self.conditions}
        if generation is not None:
            status["observedGeneration"] = generation
        if self.member_conditions is not None:
            status["memberConditions"] = self.member_conditions
        return status


MEMBERS_REMEMBERED = 4096  # invokers whose parsed members are kept (one reconcile asks often)
# (kind, uid) -> (generation, members): kept only for invokers the cache holds (``track``), and
# dropped with them, so a reconcile that parses a just-deleted invoker keeps nothing of it.
_members: OrderedDict[tuple[Any, Any], tuple[Any, tuple[MemberView, ...]]] = OrderedDict()
_live: set[tuple[Any, Any]] = set()
_members_lock = threading.Lock()


def _member_key(invoker: JSON) -> tuple[Any, Any]:
    view = Obj(invoker)
    return (view.kind, view.meta.uid)


def members_of(invoker: JSON) -> list[MemberView]:
    """The invoker's members, parsed. A stored invoker's members are a function of its uid and
    generation (a spec change bumps it), so they are parsed once per generation, not on every
    question a reconcile asks."""
    meta = Obj(invoker).meta
    key = _member_key(invoker)
    generation = meta.generation
    remember = bool(meta.uid) and generation is not None
    if remember:
        with _members_lock:
            found = _members.get(key)
        if found is not None and found[0] == generation:
            return list(found[1])
    batch = Obj(invoker).kind == "BackupBatch"
    views = tuple(
        MemberView(i, BackupMember.model_validate(m), meta.namespace, batch)
        for i, m in enumerate(member_documents(invoker))
    )
    if remember:
        with _members_lock:
            if key in _live:
                _members[key] = (generation, views)
                _members.move_to_end(key)
                while len(_members) > MEMBERS_REMEMBERED:
                    _members.popitem(last=False)
    return list(views)


def track_members(invoker: JSON) -> None:
    """The cache holds ``invoker``: ``members_of`` may keep its parsed members."""
    with _members_lock:
        _live.add(_member_key(invoker))


def forget_members(invoker: JSON) -> None:
    """Drop what ``members_of`` kept of a deleted invoker, and keep nothing of it from now."""
    key = _member_key(invoker)
    with _members_lock:
        _members.pop(key, None)
        _live.discard(key)


def track_only(kind: str, uids: Iterable[Any]) -> None:
    """A relisting of ``kind`` found these uids: its invokers deleted meanwhile (no delete
    event came for them) go."""
    keys = {(kind, uid) for uid in uids}
    with _members_lock:
        gone = {k for k in _live if k[0] == kind and k not in keys}
        _live.difference_update(gone)
        _live.update(keys)
        for key in gone:
            _members.pop(key, None)


def refusal(view: MemberRef, tenancy: Tenancy) -> str | None:
    """Why the member's target is out of the invoker's reach (tenancy), or None."""
    if not view.kind or not view.name:
        return None
    return tenancy.refusal(
        view.namespace, view.target_namespace, view.kind, sidecar=view.task is None
    )


def subject_of(invoker: JSON, views: Sequence[MemberRef], repository: Repository | None) -> Subject:
    """What the boundary judges of ``invoker``: its members (their targets and
    ``runtimeSettings``) and the Repository its spec names now."""
    view = Obj(invoker)
    batch = view.kind in ("BackupBatch", "RestoreBatch")
    return Subject(
        namespace=view.namespace,
        repository=repository,
        members=tuple(
            Member(
                where=v.where,
                kind=v.kind,
                name=v.name,
                target_namespace=v.target_namespace,
                in_pods=v.task is None,
                runtime_settings=(
                    v.member.runtime_settings.to_dict() if v.member.runtime_settings else None
                ),
            )
            for v in views
        ),
        # A batch's own settings are its hook Jobs' and trigger's; a single-target invoker's
        # are its member's, judged there.
        runtime_settings=(part(view.spec.raw, "runtimeSettings") or None) if batch else None,
    )


def namespaces_of(
    invoker: JSON, views: Sequence[MemberRef], repository: Repository | None
) -> set[str]:
    """Every namespace whose policy the rules may read for ``invoker``."""
    found = {Obj(invoker).namespace, *(v.target_namespace for v in views)}
    if repository is not None and repository.metadata.namespace:
        found.add(repository.metadata.namespace)
    return found


def boundary_refusals(
    invoker: JSON, members: Sequence[MemberRef], facts: InvokerFacts
) -> list[Refusal]:
    """What the tenant boundary (``api.tenancy``) refuses of the invoker as it is now."""
    return refusals(facts.tenancy, subject_of(invoker, members, facts.repository))


def boundary_problems(refused: Sequence[Refusal]) -> list[str]:
    """The refusals that make an invoker's spec invalid, in words: all but its Repository's,
    which ``RepositoryFound`` says (``repository_conditions``)."""
    return [str(r) for r in refused if r.reason != REPOSITORY_REFUSED]


def usable_repository(
    facts: InvokerFacts, conditions: list[RawCondition] | None
) -> Repository | None:
    """The Repository read for the invoker if the boundary lets it use it (its
    ``RepositoryFound`` is True), else None: only then is it named in what its pods may read."""
    return facts.repository if is_true(conditions, c.REPOSITORY_FOUND) else None


def validation_problems(invoker: JSON, members: list[MemberView], facts: InvokerFacts) -> list[str]:
    """Problems in the invoker itself and in what it may reach: nothing can work until the
    spec changes (or the Task it names is installed, or an admin allows what it asks)."""
    spec = Obj(invoker).spec
    batch = Obj(invoker).kind == "BackupBatch"
    problems: list[str] = []
    if batch and not members:
        problems.append("spec.members: a BackupBatch needs at least one member")
    if spec.schedule:
        why = facts.schedule_problem or validation.never_fires(spec.schedule)
        if why:
            problems.append(f"spec.schedule: {why}")
    if not spec.repository.name:
        problems.append("spec.repository.name: the Repository to back up into is required")
    if spec.driver != "Restic":
        problems.append(
            f"spec.driver: {spec.driver} is not supported yet; only Restic backs up here"
        )
    if not spec.retention.keeps:
        problems.append(
            "spec.retentionPolicy: set at least one of keepLast, keepHourly, keepDaily, "
            "keepWeekly, keepMonthly, keepYearly, keepTags"
        )
    problems += validation.retention_problems(dict(spec.retention.raw))
    problems += validation.timeout_problems(dict(spec.raw))
    problems += validation.retry_problems(dict(spec.raw))
    if batch:
        problems += validation.hook_problems(spec.hooks, "spec.hooks")
    problems += member_problems(members, facts, restoring=False)
    problems += boundary_problems(boundary_refusals(invoker, members, facts))
    return problems


def member_problems(
    members: Sequence[MemberRef],
    facts: InvokerFacts,
    *,
    restoring: bool,
    more: Callable[[Any], list[str]] = lambda view: [],
) -> list[str]:
    """What is wrong with the members of a backup or a restore invoker: one rule for both
    (``more``: what the kind adds per member, e.g. a restore's new claims)."""
    problems: list[str] = []
    seen: dict[tuple[str, str, str], int] = {}
    for view in members:
        if not view.kind or not view.name:
            problems.append(f"{view.where}.target.ref: kind and name are required")
            continue
        problems += _member_problems(view, facts, restoring) + more(view)
        key = (view.target_namespace, view.kind, view.name)
        if key in seen:
            problems.append(
                f"{view.where}.target.ref: {view.kind} {view.name} is also member {seen[key]}"
            )
        seen[key] = view.index
    return problems


def _member_problems(view: MemberRef, facts: InvokerFacts, restoring: bool) -> list[str]:
    where = view.where
    raw = view.member.to_dict()
    target = part(raw, "target")
    mounts = items(target, "volumeMounts")
    problems = validation.temp_dir_problems(part(raw, "tempDir"), f"{where}.tempDir")
    if view.task is None and view.kind in WORKLOAD_KINDS:
        if not restoring:
            problems += validation.path_problems(items(target, "paths"), f"{where}.target.paths")
        elif not mounts:
            problems.append(
                f"{where}.target.volumeMounts: name the {view.kind}'s volumes to restore into "
                "(and where stash-init mounts them: where they were backed up from)"
            )
        problems += validation.mount_problems(
            mounts, f"{where}.target.volumeMounts", facts.workload_volumes.get(view.index)
        )
    elif view.task is None:
        how = (
            "restored by the stash-init init container" if restoring else "backed up by the sidecar"
        )
        problems.append(
            f"{where}.task.name: a {view.kind} target needs a Task (only Deployments, "
            f"StatefulSets and DaemonSets are {how})"
        )
    elif facts.tasks_found.get(view.task) is False:
        field_name = "task.name" if view.member.task and view.member.task.name else "task"
        problems.append(f"{where}.{field_name}: Task {view.task} not found")
    problems += validation.hook_problems(part(raw, "hooks"), f"{where}.hooks")
    problems += validation.param_problems(part(raw, "task"), f"{where}.task")
    return problems


class ConditionSet:
    """Accumulates condition changes and what keeps the invoker from being Ready."""

    def __init__(
        self, old: list[RawCondition] | None, now: dt.datetime | None, generation: int | None
    ):
        self.conditions = old
        self.now = now
        self.generation = generation
        self.not_ready: list[str] = []

    def put(self, type_: str, ok: bool, reason: str, message: str, blocking: bool = True) -> None:
        self.conditions = set_condition(
            self.conditions,
            type_,
            ok,
            reason,
            message,
            now=self.now,
            observed_generation=self.generation,
        )
        if not ok and blocking and type_ != c.VALIDATION_PASSED:
            self.not_ready.append(message)


def repository_conditions(
    out: ConditionSet, repo: Repository | None, repo_name: str, namespace: str, facts: InvokerFacts
) -> None:
    if repo is None:
        out.put(
            c.REPOSITORY_FOUND,
            False,
            "RepositoryNotAvailable",
            f"Repository {repo_name!r} not found in namespace {namespace}",
        )
        return
    forbidden = repository_refusal(facts.tenancy, Subject(namespace, repo))
    if forbidden:
        out.put(c.REPOSITORY_FOUND, False, forbidden.reason, forbidden.message)
        out.put(
            c.BACKEND_SECRET_FOUND,
            False,
            "BackendSecretNotRead",
            "not read: the Repository is out of this namespace's reach",
            blocking=False,  # RepositoryFound says why
        )
        return
    out.put(
        c.REPOSITORY_FOUND,
        True,
        "RepositoryAvailable",
        f"Repository {repo.metadata.namespace}/{repo.metadata.name} exists",
    )
    secret = repo.spec.backend.storage_secret_name
    if not secret:
        out.put(
            c.BACKEND_SECRET_FOUND,
            False,
            "BackendSecretNotAvailable",
            "the Repository has no spec.backend.storageSecretName",
        )
    elif not facts.secret_found:
        out.put(
            c.BACKEND_SECRET_FOUND,
            False,
            "BackendSecretNotAvailable",
            f"Secret {repo.metadata.namespace}/{secret} not found",
        )
    elif facts.secret_keys is not None and RESTIC_PASSWORD not in facts.secret_keys:
        out.put(
            c.BACKEND_SECRET_FOUND,
            False,
            "BackendSecretInvalid",
            f"Secret {repo.metadata.namespace}/{secret} has no {RESTIC_PASSWORD} key: "
            "restic cannot open the repository without it",
        )
    else:
        out.put(c.BACKEND_SECRET_FOUND, True, "BackendSecretAvailable", f"Secret {secret} exists")


def _member_conditions(
    invoker: JSON, members: list[MemberView], facts: InvokerFacts, out: ConditionSet
) -> list[JSON]:
    old: dict[tuple[str, str], list[RawCondition]] = {}
    for entry in items(Obj(invoker).status.raw, "memberConditions"):
        ref = Ref(part(entry, "target"))
        old[(ref.kind, ref.name)] = items(entry, "conditions")
    result = []
    for view in members:
        found = facts.targets_found.get(view.index, False)
        refused = refusal(view, facts.tenancy)
        conditions = set_condition(
            old.get((view.kind, view.name)),
            c.BACKUP_TARGET_FOUND,
            found,
            "TargetNotAllowed"
            if refused
            else ("TargetAvailable" if found else "TargetNotAvailable"),
            f"{view.where}.target.ref.namespace: {refused}"
            if refused
            else f"{view.kind} {view.name} {'found' if found else 'not found'}",
            now=out.now,
            observed_generation=out.generation,
        )
        result.append({"target": view.ref, "conditions": conditions})
    return result


def evaluate(invoker: JSON, facts: InvokerFacts, now: dt.datetime | None = None) -> InvokerVerdict:
    """The status ``invoker`` should have, given ``facts``."""
    view = Obj(invoker)
    members = members_of(invoker)
    problems = validation_problems(invoker, members, facts)
    out = ConditionSet(view.status.conditions, now, view.meta.generation)
    out.put(
        c.VALIDATION_PASSED,
        not problems,
        "ResourceValidationPassed" if not problems else "ResourceValidationFailed",
        "; ".join(problems) or "the invoker is valid",
    )
    repository_conditions(out, facts.repository, view.spec.repository.name, view.namespace, facts)
    member_conditions = None
    if view.kind == "BackupBatch":
        member_conditions = _member_conditions(invoker, members, facts, out)
    if members:
        missing = [
            v
            for v in members
            if v.kind
            and not facts.targets_found.get(v.index, False)
            and not refusal(v, facts.tenancy)  # named by ValidationPassed; never looked up
        ]
        out.put(
            c.BACKUP_TARGET_FOUND,
            not missing,
            "TargetAvailable" if not missing else "TargetNotAvailable",
            "not found: " + ", ".join(f"{v.kind} {v.name}" for v in missing)
            if missing
            else "every target exists",
        )
    if not view.spec.schedule:
        out.put(
            c.CRONJOB_CREATED,
            False,
            "ScheduleNotSet",
            "no spec.schedule: sessions are created only on demand (stash trigger)",
            blocking=False,
        )
    elif facts.cronjob_error is None:
        out.put(
            c.CRONJOB_CREATED, True, "CronJobCreationSucceeded", "the trigger CronJob is in place"
        )
    else:
        out.put(c.CRONJOB_CREATED, False, "CronJobCreationFailed", facts.cronjob_error)
    stale = staleness(invoker, facts.last_success, out.now or dt.datetime.now(dt.UTC))
    out.put(c.BACKUP_STALE, stale.stale, stale.reason, stale.message, blocking=False)
    phase = "Invalid" if problems else ("NotReady" if out.not_ready else "Ready")
    return InvokerVerdict(
        phase,
        out.conditions or [],
        member_conditions,
        tuple(problems + out.not_ready),
        recheck_at=stale.due,
    )
