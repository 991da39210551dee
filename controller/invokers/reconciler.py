"""The BackupBatch / BackupConfiguration reconciler.

Per invoker key: read the invoker and what it refers to (from caches; Secrets and unknown target
kinds with a GET), ensure the trigger CronJob and its RBAC when the invoker is valid (applied
only when the cached object differs), and write the status only when it changed. A NotReady
invoker waiting for a Secret or a target nobody watches is looked at again every 30 s; a Ready
one is never polled.
"""

from __future__ import annotations

import datetime as dt
import functools
import logging
import threading
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Any, Protocol

from api import constants as c
from api.conditions import false_message, set_condition
from api.naming import backup_service_account, cronjob_name
from api.objects import JSON
from api.repository import Repository
from api.tenancy import NamespacePolicy
from api.views import Obj, Status, text
from controller.invokers.evaluation import (
    InvokerFacts,
    InvokerVerdict,
    MemberView,
    evaluate,
    forget_members,
    members_of,
    track_members,
    track_only,
    usable_repository,
)
from controller.invokers.facts import FactReader, volume_names
from controller.invokers.grants import Grants, InvokerKey, repository_grant
from controller.invokers.sidecar_access import AccessReviewer, sidecar_permissions
from controller.invokers.staleness import LastSuccess, last_success
from controller.invokers.trigger import cronjob, rbac_objects, sidecar_binding
from controller.runtime.caches import (
    INVOKER_TYPES,
    NAMESPACES,
    OWNED_TYPES,
    PVCS,
    REPOSITORIES,
    TASKS,
    WORKLOAD_TYPES,
    Caches,
)
from controller.runtime.loop import Controller, Result, Writes
from controller.runtime.owned import ensure, owned_by
from kube import Client, Invalid, NotFound
from kube.events import EventRecorder
from kube.status import write_status

log = logging.getLogger(__name__)

NOT_READY_RECHECK = 30.0
RBAC_SETTLE = 2.0  # a sidecar refused right after its RoleBinding was written: asked again
SCHEDULE_VERDICTS = 1024  # distinct schedules whose API-server verdict is remembered


class Verification(Protocol):
    """What verifies an invoker's sessions (``controller.sessions.verification.Verifier``,
    given by the operator: it builds Jobs, which live above this package)."""

    def watch(self, enqueue: Callable[[InvokerKey], None]) -> None: ...

    def apply(
        self,
        invoker: JSON,
        conditions: list[JSON],
        last: LastSuccess | None,
        repository: Repository | None,
        now: dt.datetime,
        *,
        refused: bool = False,
    ) -> tuple[list[JSON], dt.datetime | None]: ...


class InvokerReconciler:
    def __init__(
        self,
        client: Client,
        caches: Caches,
        image: str,
        operator_namespace: str,
        verification: Callable[[Writes, EventRecorder], Verification] | None = None,
    ) -> None:
        self.client = client
        self.caches = caches
        self.image = image
        self.operator_namespace = operator_namespace
        self.writes = Writes()
        self.events = EventRecorder(client, "stash-operator")
        # (namespace, kind, name) of a target or repository -> invoker keys that refer to it
        self._refs: dict[tuple[str, str, str], set[InvokerKey]] = {}
        self._refs_of: dict[InvokerKey, set[tuple[str, str, str]]] = {}
        self._refs_lock = threading.Lock()  # informers call in from their own threads
        # What an invoker cares about of each referenced object; a change elsewhere (a
        # Deployment's status, say) does not re-run the invokers that target it.
        self._ref_marks: dict[tuple[str, str, str], tuple[Any, ...]] = {}
        self._schedule_verdicts: dict[str, str | None] = {}
        self.access = AccessReviewer(client)
        self.reader = FactReader(client, caches, operator_namespace)
        self.grants = Grants(client, caches, self.writes, INVOKER_TYPES)
        self.verifier = verification(self.writes, self.events) if verification else None

    # -- wiring --------------------------------------------------------------------------------

    def register(self, controller: Controller[InvokerKey]) -> None:
        def replaced(items: Sequence[JSON], kind: str) -> None:
            uids = []
            for obj in items:
                uids.append(Obj(obj).meta.uid)
                self._invoker_event(obj, controller)
            track_only(kind, uids)

        self.grants.watch(controller.enqueue)
        if self.verifier is not None:
            self.verifier.watch(controller.enqueue)

        for rt in INVOKER_TYPES.values():
            self.caches.informer(rt).subscribe(
                on_replace=functools.partial(replaced, kind=rt.kind),
                on_upsert=lambda o: self._invoker_event(o, controller),
                on_delete=lambda o: self._invoker_event(o, controller, deleted=True),
            )

        def relisted(items: Sequence[JSON]) -> None:  # after a watch gap: what appeared meanwhile
            for obj in items:
                self._referenced_event(obj, controller)

        for rt in (REPOSITORIES, PVCS, TASKS, *WORKLOAD_TYPES.values()):
            self.caches.informer(rt).subscribe(
                on_replace=relisted,
                on_upsert=lambda o: self._referenced_event(o, controller),
                on_delete=lambda o: self._referenced_event(o, controller, deleted=True),
            )
        for rt in OWNED_TYPES.values():
            self.caches.informer(rt).subscribe(
                on_upsert=lambda o: self._owned_event(o, controller),
                on_delete=lambda o: self._owned_event(o, controller, deleted=True),
            )
        self.caches.informer(NAMESPACES).subscribe(
            on_upsert=lambda o: self._namespace_event(o, controller),
            on_delete=lambda o: self._namespace_event(o, controller, deleted=True),
        )
        # A session that succeeded (or such a one deleted) moves its invoker's BackupStale.
        self.caches.sessions().subscribe(
            on_upsert=lambda o: self._session_event(o, controller),
            on_delete=lambda o: self._session_event(o, controller),
        )

    def _session_event(self, obj: JSON, controller: Controller[InvokerKey]) -> None:
        session = Obj(obj)
        ref = session.spec.invoker
        # (one that ended otherwise lets a verification that waited for it start)
        if (
            session.status.phase in c.SESSION_TERMINAL_PHASES
            and ref.kind in INVOKER_TYPES
            and ref.name
        ):
            controller.enqueue((ref.kind, session.namespace, ref.name))

    def _invoker_event(
        self, obj: JSON, controller: Controller[InvokerKey], deleted: bool = False
    ) -> None:
        if not deleted:
            track_members(obj)
        if not deleted and self.writes.echo(obj):
            return  # our own status write coming back: it was judged when it was written
        key = (Obj(obj).kind, *Obj(obj).key)
        if deleted:
            forget_members(obj)
            self.writes.forget(obj)
        refs = set() if deleted else self._references(obj)
        with self._refs_lock:
            for ref in self._refs_of.pop(key, set()):
                holders = self._refs.get(ref, set())
                holders.discard(key)
                if not holders:  # nobody refers to it now: nothing of it is kept
                    self._refs.pop(ref, None)
                    self._ref_marks.pop(ref, None)
            if not deleted:
                self._refs_of[key] = refs
                for ref in refs:
                    self._refs.setdefault(ref, set()).add(key)
        if not deleted:
            controller.enqueue(key)

    def _references(self, obj: JSON) -> set[tuple[str, str, str]]:
        invoker = Obj(obj)
        repo = invoker.spec.repository
        refs = {(repo.namespace_or(invoker.namespace), "Repository", repo.name)}
        try:
            views = members_of(obj)
        except ValueError:
            return refs
        for view in views:
            refs.add((view.target_namespace, view.kind, view.name))
            if view.task is not None:
                refs.add(("", "Task", view.task))
        return refs

    def _referenced_event(
        self, obj: JSON, controller: Controller[InvokerKey], deleted: bool = False
    ) -> None:
        view = Obj(obj)
        meta, template = view.meta, view.template
        ref = (meta.namespace, view.kind, meta.name)
        mark = (
            deleted,
            meta.uid,
            meta.generation if view.kind == "Repository" else None,
            text(template.meta.labels, c.BACKUP_LABEL),
            # the sidecar's RoleBinding names the pods' service account
            template.service_account,
            volume_names(obj),  # a sidecar member may mount only volumes the pods have
        )
        with self._refs_lock:
            if ref not in self._refs:  # no invoker refers to it: nothing to tell, nothing kept
                self._ref_marks.pop(ref, None)
                return
            if self._ref_marks.get(ref) == mark:
                return
            if deleted:  # gone: its invokers are told once; nothing of it is kept
                self._ref_marks.pop(ref, None)
            else:
                self._ref_marks[ref] = mark
            keys = list(self._refs.get(ref, ()))
        for key in keys:
            controller.enqueue(key)

    def _namespace_event(
        self, obj: JSON, controller: Controller[InvokerKey], deleted: bool = False
    ) -> None:
        """A namespace's policy changed (its grants, its privileges, its Pod Security level or
        the labels a Repository's usagePolicy selects on): the invokers in it and those that
        reach into it are judged again."""
        namespace = Obj(obj).name
        ref = (namespace, "Namespace", namespace)
        policy = NamespacePolicy.of(namespace, obj)
        mark = (sorted(policy.labels.items()), sorted(policy.annotations.items()))
        with self._refs_lock:
            if self._ref_marks.get(ref) == mark:
                return
            first = ref not in self._ref_marks
            if deleted:
                self._ref_marks.pop(ref, None)
            else:
                self._ref_marks[ref] = mark
            keys = {k for r, ks in self._refs.items() if r[0] == namespace for k in ks}
        if first:  # the cache's first sight: every invoker is judged at start-up anyway
            keys = {k for k in keys if k[1] != namespace}
        for key in keys:
            controller.enqueue(key)

    def _owned_event(
        self, obj: JSON, controller: Controller[InvokerKey], deleted: bool = False
    ) -> None:
        """An object the operator made changed: its owner, by owner reference (the invoker-name
        label of a long name is cut)."""
        if deleted:
            self.writes.forget(obj)
        elif self.writes.echo(obj):
            return  # as we applied it: nothing drifted
        meta = Obj(obj).meta
        for owner in meta.owners:
            if owner.kind in INVOKER_TYPES and owner.name:
                controller.enqueue((owner.kind, meta.namespace, owner.name))

    # -- reading facts -------------------------------------------------------------------------

    def _schedule_problem(self, namespace: str, schedule: str) -> str | None:
        """What the API server says of ``schedule`` (a dry-run CronJob), so that a schedule is
        read exactly as the CronJob will read it; remembered per schedule."""
        if schedule in self._schedule_verdicts:
            return self._schedule_verdicts[schedule]
        probe = {
            "apiVersion": "batch/v1",
            "kind": "CronJob",
            "metadata": {"generateName": "stash-schedule-check-"},
            "spec": {
                "schedule": schedule,
                "jobTemplate": {
                    "spec": {
                        "template": {
                            "spec": {
                                "restartPolicy": "Never",
                                "containers": [{"name": "check", "image": self.image}],
                            }
                        }
                    }
                },
            },
        }
        try:
            self.client.create(probe, namespace, dry_run=True)
            verdict = None
        except Invalid as exc:
            causes = [c_ for c_ in exc.causes if c_.field == "spec.schedule"]
            verdict = _schedule_message(causes[0].message) if causes else str(exc)
        if len(self._schedule_verdicts) >= SCHEDULE_VERDICTS:
            self._schedule_verdicts.pop(next(iter(self._schedule_verdicts)))
        self._schedule_verdicts[schedule] = verdict
        return verdict

    def facts(self, invoker: JSON) -> InvokerFacts:
        schedule = Obj(invoker).spec.schedule
        namespace, name = Obj(invoker).key
        facts = self.reader.read(
            invoker,
            members_of(invoker),
            schedule_problem=self._schedule_problem(namespace, schedule) if schedule else None,
        )
        # its newest successful session, for BackupStale (a backup invoker's alone)
        return replace(facts, last_success=last_success(self.caches.sessions_of(namespace, name)))

    # -- writing -------------------------------------------------------------------------------

    def _ensure(self, desired: JSON) -> bool:
        """Apply ``desired`` where the cache lacks it; whether it was written."""
        return ensure(self.client, self.caches, self.writes, desired) is not None

    def _sidecar_workloads(self, invoker: JSON) -> list[tuple[MemberView, str]]:
        """The invoker's sidecar-model workloads in its own namespace (a workload elsewhere
        gets nothing from this invoker), each with its pods' service account."""
        namespace = Obj(invoker).namespace
        found = []
        for view in members_of(invoker):
            if view.task is not None or view.kind not in WORKLOAD_TYPES:
                continue
            if view.target_namespace != namespace:
                continue
            workload = self.caches.get(WORKLOAD_TYPES[view.kind], namespace, view.name)
            if workload is None:
                continue
            found.append((view, Obj(workload).template.service_account))
        return found

    def _sidecar_access(
        self, invoker: JSON, facts: InvokerFacts, status: InvokerVerdict
    ) -> tuple[InvokerVerdict, bool]:
        """``SidecarAuthorized``: whether each sidecar's service account may do what the
        sidecar must. A refused sidecar only logs it; this says it where users look. With
        whether it was refused (then looked at again: RBAC changes trigger nothing here)."""
        workloads = self._sidecar_workloads(invoker)
        if not workloads:
            return status, False
        namespace = invoker["metadata"]["namespace"]
        repo = usable_repository(facts, status.conditions)
        named = (
            (
                repo.metadata.namespace or namespace,
                repo.metadata.name or "",
                repo.spec.backend.storage_secret_name or "",
            )
            if repo is not None
            else None
        )
        needed = sidecar_permissions(INVOKER_TYPES[invoker["kind"]].plural, named)
        refused = []
        for view, account in workloads:
            missing = self.access.missing(namespace, account, needed)
            if missing:
                refused.append(
                    f"{view.kind} {view.name} (service account {namespace}/{account}) may not "
                    + ", ".join(missing)
                )
        message = (
            "; ".join(refused) + ": its sidecar can neither see nor report its sessions"
            if refused
            else "the sidecars' service accounts may read their sessions and report"
        )
        conditions = set_condition(
            status.conditions,
            c.SIDECAR_AUTHORIZED,
            not refused,
            "SidecarNotAuthorized" if refused else "SidecarAuthorized",
            message,
            observed_generation=Obj(invoker).meta.generation,
        )
        return replace(status, conditions=conditions), bool(refused)

    def _ensure_sidecar_binding(self, invoker: JSON, repository: Repository | None) -> bool:
        """The sidecars' RoleBindings and named Role (removed when no sidecar member is left);
        whether any was written now."""
        workloads = [(v.kind, v.name, account) for v, account in self._sidecar_workloads(invoker)]
        desired = sidecar_binding(invoker, workloads, repository)
        if workloads:
            written = False
            for obj in desired:
                written |= self._ensure(obj)
            return written
        for obj in desired:
            namespace, name = Obj(obj).key
            rt = OWNED_TYPES[obj["kind"]]
            if self.caches.get(rt, namespace, name):
                self.client.delete(rt, name, namespace, missing_ok=True)
                self.writes.record(namespace)
        return False

    def ensure_trigger(
        self, invoker: JSON, repository: Repository | None = None
    ) -> tuple[str | None, bool]:
        """Apply the CronJob and its RBAC: an error message when the API server refused, and
        whether RBAC was written now (the API server's authorizer then catches up within
        moments: a refusal read at once is not yet the answer)."""
        rbac_written = False
        try:
            for obj in rbac_objects(invoker):
                rbac_written |= self._ensure(obj)
            rbac_written |= self._ensure_sidecar_binding(invoker, repository)
            if Obj(invoker).spec.schedule:
                self._ensure(cronjob(invoker, self.image))
        except Invalid as exc:
            return f"the API server rejected the trigger objects: {exc}", rbac_written
        return None, rbac_written

    def _trigger(
        self, invoker: JSON, facts: InvokerFacts, status: InvokerVerdict, now: dt.datetime
    ) -> tuple[InvokerVerdict, bool]:
        """A valid invoker gets its trigger (its status says if the API server refused it); one
        that became Invalid (the boundary refuses it) starts no more sessions. Whether RBAC
        was written now."""
        if status.phase == "Invalid":
            self._remove_trigger(invoker)
            return status, False
        # Only a Repository the boundary lets in is named in what the sidecars may read.
        error, rbac_written = self.ensure_trigger(
            invoker, usable_repository(facts, status.conditions)
        )
        if error is not None:
            status = evaluate(invoker, replace(facts, cronjob_error=error), now=now)
        return status, rbac_written

    def _remove_trigger(self, invoker: JSON) -> None:
        meta = Obj(invoker).meta
        name = cronjob_name(meta.name)
        found = self.caches.get(OWNED_TYPES["CronJob"], meta.namespace, name)
        if found is not None and owned_by(found, meta.uid):
            self.client.delete(OWNED_TYPES["CronJob"], name, meta.namespace, missing_ok=True)
            self.writes.record(meta.namespace)

    def _keep_grant(
        self, key: InvokerKey, invoker: JSON, facts: InvokerFacts, status: InvokerVerdict
    ) -> None:
        """A Repository of another namespace that allows this one: its backup Jobs and
        sidecars may read it and its Secret there (and nothing more)."""
        accounts = [backup_service_account(Obj(invoker).name)]
        accounts += [account for _, account in self._sidecar_workloads(invoker)]
        usable = usable_repository(facts, status.conditions)
        repository = usable if status.phase != "Invalid" else None
        self.grants.keep(key, repository_grant(invoker, repository, accounts, backup=True))

    def _sidecar_conditions(self, invoker: JSON, status: InvokerVerdict) -> InvokerVerdict:
        """``StashSidecarInjected`` per sidecar member: its pod template carries the opt-in."""
        if status.member_conditions is None:
            return status
        members = []
        for view, given in zip(members_of(invoker), status.member_conditions, strict=True):
            entry = given
            own = view.target_namespace == view.namespace  # a sidecar serves only its own
            if view.task is None and view.kind in WORKLOAD_TYPES and own:
                workload = self.caches.get(WORKLOAD_TYPES[view.kind], view.namespace, view.name)
                labels = Obj(workload).template.meta.labels
                injected = text(labels, c.BACKUP_LABEL) == c.BACKUP_LABEL_VALUE
                entry = {
                    **entry,
                    "conditions": set_condition(
                        entry["conditions"],
                        c.STASH_SIDECAR_INJECTED,
                        injected,
                        "SidecarInjectionSucceeded" if injected else "SidecarInjectionPending",
                        "pods of the workload get the stash sidecar"
                        if injected
                        else "waiting for the opt-in label on the pod template",
                        observed_generation=Obj(invoker).meta.generation,
                    ),
                }
            members.append(entry)
        return replace(status, member_conditions=members)

    def _verification(
        self, invoker: JSON, facts: InvokerFacts, status: InvokerVerdict, now: dt.datetime
    ) -> InvokerVerdict:
        """``BackupVerified``: a Ready invoker's newest successful session gets verified (one
        still missing what it needs starts none; one the boundary refuses has its running
        verification stopped)."""
        if self.verifier is None:
            return status
        usable = usable_repository(facts, status.conditions) if status.phase == "Ready" else None
        conditions, due = self.verifier.apply(
            invoker,
            status.conditions,
            facts.last_success,
            usable,
            now,
            refused=status.phase == "Invalid",
        )
        recheck = min((t for t in (status.recheck_at, due) if t is not None), default=None)
        return replace(status, conditions=conditions, recheck_at=recheck)

    def reconcile(self, key: InvokerKey) -> Result | None:
        kind, namespace, name = key
        invoker = self.caches.get(INVOKER_TYPES[kind], namespace, name)
        if invoker is None or Obj(invoker).meta.deleting:
            # Owner references take its CronJob and RBAC with it; not what it was granted in
            # another namespace.
            self.grants.keep(key, [])
            return None
        invoker.setdefault("apiVersion", INVOKER_TYPES[kind].api_version)
        invoker.setdefault("kind", kind)
        facts = self.facts(invoker)
        now = dt.datetime.now(dt.UTC)
        status = evaluate(invoker, facts, now=now)
        status, rbac_written = self._trigger(invoker, facts, status, now)
        self._keep_grant(key, invoker, facts, status)
        status = self._sidecar_conditions(invoker, status)
        sidecar_refused = False
        if status.phase != "Invalid":
            status, sidecar_refused = self._sidecar_access(invoker, facts, status)
        status = self._verification(invoker, facts, status, now)
        new_status = status.as_status(Obj(invoker).meta.generation)
        old_status = Obj(invoker).status
        if new_status != old_status.raw:
            try:
                written = write_status(self.client, INVOKER_TYPES[kind], invoker, new_status)
                self.writes.record(namespace, written)
            except NotFound:
                return None
            if status.phase != old_status.phase:  # after the write: a refused write records nothing
                if status.phase == "Ready":
                    self.events.record(
                        invoker, "Normal", "Ready", "the invoker is ready to back up"
                    )
                else:
                    self.events.record(invoker, "Warning", status.phase, "; ".join(status.problems))
            refusal_now = false_message(Status(new_status).conditions, c.SIDECAR_AUTHORIZED)
            refusal_before = false_message(old_status.conditions, c.SIDECAR_AUTHORIZED)
            if sidecar_refused and refusal_now != refusal_before:
                self.events.record(invoker, "Warning", "SidecarNotAuthorized", refusal_now or "")
        if sidecar_refused and rbac_written:
            return Result(requeue_after=RBAC_SETTLE)
        if status.phase == "NotReady" or sidecar_refused:
            return Result(requeue_after=NOT_READY_RECHECK)
        if status.recheck_at is not None:  # stale then, or a verification is due
            return Result(requeue_after=max(1.0, (status.recheck_at - now).total_seconds() + 1))
        return None


def _schedule_message(message: str) -> str:
    """The API server's reason without its echo of the value: ``Invalid value: "0 0 * * 7":
    end of range (7) above maximum (6): 7`` -> ``end of range (7) above maximum (6): 7``."""
    if message.startswith("Invalid value: "):
        rest = message[len("Invalid value: ") :]
        if rest.startswith('"'):
            end = rest.find('": ', 1)
            if end != -1:
                return rest[end + 3 :]
    return message
