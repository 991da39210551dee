"""The Repository reconciler: ``status.references`` lists the invokers that back up into it (and
that its usagePolicy lets in), and ``wipeOut``: a finalizer that deletes the backend's data when
the Repository is deleted.

The finalizer is only added where wiping is possible (REST and S3 backends; never local ones).
The wipe never runs here: the operator never connects to an endpoint a tenant wrote. It runs as
a Job in the Repository's namespace with that namespace's reach (``controller.jobs.wipe_job``); the
``WipedOut`` condition says how it goes (running, each failed attempt), and when the Job has
ended, wiped or not, the finalizer is released with an Event saying so: a Repository must never
be undeletable because its backend is gone, and a wipe that failed keeps the data.
"""

from __future__ import annotations

import functools
import logging
import threading
from collections.abc import Callable, Sequence

from pydantic import ValidationError

from api import constants as c
from api.conditions import set_condition
from api.objects import JSON
from api.repository import Repository
from api.tenancy import Subject, repository_refusal
from api.views import Obj, items
from controller.invokers.tenancy import read_tenancy
from controller.jobs.outcome import job_pods
from controller.jobs.wipe_job import WIPE_ATTEMPTS, wipe_objects, wipe_outcome
from controller.runtime.caches import INVOKER_TYPES, JOBS, NAMESPACES, REPOSITORIES, Caches
from controller.runtime.loop import Controller, Result, Writes
from controller.runtime.owned import ensure, owned_by
from engine.wipe import can_wipe
from kube import AlreadyExists, Client, Conflict, NotFound
from kube.events import EventRecorder
from kube.informer import ObjectKey
from kube.status import write_status

log = logging.getLogger(__name__)
WIPE_OUT_FINALIZER = f"{c.GROUP}/wipe-out"
WIPED_OUT = "WipedOut"  # the condition that says how the wipe goes
WIPE_LABEL = f"{c.GROUP}/wipe-out"
BY_REPOSITORY = "repository"  # the invokers index: <namespace>/<name> of their Repository


def _invoker_key(invoker: JSON) -> tuple[str, str, str]:
    view = Obj(invoker)
    return (view.kind, view.namespace, view.name)


def _repo_key(invoker: JSON) -> ObjectKey:
    view = Obj(invoker)
    repo = view.spec.repository
    return (repo.namespace_or(view.namespace), repo.name)


class RepositoryReconciler:
    def __init__(
        self, client: Client, caches: Caches, operator_namespace: str = "", image: str = ""
    ) -> None:
        self.client = client
        self.caches = caches
        self.operator_namespace = operator_namespace
        self.image = image  # the wipe Job's
        self.writes = Writes()
        self.events = EventRecorder(client, "stash-operator")
        self._enqueue: Callable[[ObjectKey], None] = lambda key: None
        self._repo_of: dict[tuple[str, str, str], ObjectKey] = {}  # invoker -> its Repository
        self._repos_lock = threading.Lock()  # informers call in from their own threads

    def register(self, controller: Controller[ObjectKey]) -> None:
        self._enqueue = controller.enqueue

        def own(obj: JSON) -> ObjectKey:
            return Obj(obj).key

        self.caches.informer(REPOSITORIES).subscribe(
            on_replace=controller.replace_handler(own), on_upsert=controller.handler(own)
        )
        self.caches.informer(JOBS).subscribe(
            on_upsert=controller.handler(_wipe_job_owner),
            on_delete=controller.handler(_wipe_job_owner),
        )
        self.caches.informer(NAMESPACES).subscribe(
            on_upsert=self._namespace_changed, on_delete=self._namespace_changed
        )
        for rt in INVOKER_TYPES.values():
            informer = self.caches.informer(rt)
            informer.add_index(BY_REPOSITORY, lambda invoker: ["/".join(_repo_key(invoker))])
            informer.subscribe(
                on_replace=functools.partial(self._invokers_listed, rt.kind),
                on_upsert=lambda obj: self._invoker_changed(obj, deleted=False),
                on_delete=lambda obj: self._invoker_changed(obj, deleted=True),
            )

    def _namespace_changed(self, obj: JSON) -> None:
        """A namespace's labels may now match (or no longer) the usagePolicy of a Repository
        elsewhere that its invokers use: those Repositories list their references again."""
        namespace = Obj(obj).name
        with self._repos_lock:
            repos = {r for (_, ns, _), r in self._repo_of.items() if ns == namespace}
        for repo in repos:
            if repo[0] != namespace:
                self._enqueue(repo)

    def _invoker_changed(self, invoker: JSON, *, deleted: bool) -> None:
        """An invoker that appeared, went, or moved to another Repository: the Repositories it
        left and joined list their references again (a status write of it changes neither)."""
        key = _invoker_key(invoker)
        now = None if deleted else _repo_key(invoker)
        with self._repos_lock:
            before = self._repo_of.pop(key, None)
            if now is not None:
                self._repo_of[key] = now
        if before != now:
            for repo in (before, now):
                if repo is not None:
                    self._enqueue(repo)

    def _invokers_listed(self, kind: str, items: Sequence[JSON]) -> None:
        """Every invoker of ``kind`` listed anew (after a watch gap): the Repositories they used
        and use now are looked at again."""
        listed = {_invoker_key(invoker): _repo_key(invoker) for invoker in items}
        with self._repos_lock:
            before = {k: v for k, v in self._repo_of.items() if k[0] == kind}
            for key in before:
                del self._repo_of[key]
            self._repo_of.update(listed)
        for repo in set(before.values()) | set(listed.values()):
            self._enqueue(repo)

    def references(self, repo: Repository) -> list[JSON]:
        """The invokers that back up into ``repo`` and may (``api.tenancy``): one of another
        namespace that its usagePolicy refuses is not written into this namespace."""
        namespace, name = repo.metadata.namespace or "", repo.metadata.name or ""
        invokers = {
            kind: self.caches.informer(rt).by_index(BY_REPOSITORY, f"{namespace}/{name}")
            for kind, rt in INVOKER_TYPES.items()
        }
        users = {i["metadata"]["namespace"] for found in invokers.values() for i in found}
        tenancy = read_tenancy(self.caches, self.operator_namespace, users - {namespace})
        found = []
        for kind, listed in invokers.items():
            for invoker in listed:
                meta = invoker["metadata"]
                if repository_refusal(tenancy, Subject(meta["namespace"], repo)):
                    continue
                found.append(
                    {
                        "apiGroup": c.GROUP,
                        "kind": kind,
                        "namespace": meta["namespace"],
                        "name": meta["name"],
                    }
                )
        return sorted(found, key=lambda r: (r["namespace"], r["kind"], r["name"]))

    def reconcile(self, key: ObjectKey) -> Result | None:
        namespace, name = key
        repo = self.caches.get(REPOSITORIES, namespace, name)
        if repo is None:
            return None
        repo = {"apiVersion": c.V1ALPHA1, "kind": "Repository", **repo}
        finalizers = Obj(repo).meta.finalizers
        if Obj(repo).meta.deleting:
            if WIPE_OUT_FINALIZER in finalizers:
                return self._wipe(key, repo)
            return None
        if not self._sync_finalizer(repo, finalizers):
            # (a written finalizer brings the Repository back with its new resourceVersion)
            self._sync_references(repo)
        return None

    def _sync_references(self, repo: JSON) -> None:
        try:
            references = self.references(Repository.model_validate(repo))
        except ValidationError:
            return  # the invokers' conditions say what is wrong with it
        if items(Obj(repo).status.raw, "references") != references:
            self._patch_status(repo, {"references": references or None})

    def _patch_status(self, repo: JSON, status: JSON) -> None:
        """Write ``status`` fields of the Repository as read (its resourceVersion): gone or
        changed meanwhile, nothing is written and the next look writes it."""
        try:
            write_status(self.client, REPOSITORIES, repo, status)
            self.writes.record(repo["metadata"]["namespace"])
        except (NotFound, Conflict):
            pass

    def _sync_finalizer(self, repo: JSON, finalizers: list[str]) -> bool:
        """Add or remove the wipe-out finalizer as ``spec.wipeOut`` says; True if written."""
        try:
            model = Repository.model_validate(repo)
            wipe = bool(model.spec.wipe_out)
            kind = model.spec.backend.kind()
        except (ValidationError, ValueError):
            return False
        want = wipe and can_wipe(model)
        if wipe and not want and kind != "local" and WIPE_OUT_FINALIZER not in finalizers:
            self.events.record(
                repo,
                "Warning",
                "WipeOutNotSupported",
                f"wipeOut is not supported for the {kind} backend: its data will be kept",
            )
        if want == (WIPE_OUT_FINALIZER in finalizers):
            return False
        updated = [f for f in finalizers if f != WIPE_OUT_FINALIZER]
        if want:
            updated.append(WIPE_OUT_FINALIZER)
        self._write_finalizers(repo, updated)
        return True

    def _write_finalizers(self, repo: JSON, finalizers: list[str]) -> None:
        meta = repo["metadata"]
        patch = {
            "metadata": {
                "resourceVersion": meta["resourceVersion"],
                "finalizers": finalizers or None,
            }
        }
        try:
            self.client.patch(REPOSITORIES, meta["name"], patch, namespace=meta["namespace"])
            self.writes.record(meta["namespace"])
        except NotFound:
            pass

    def _release(self, repo: JSON, kind: str, reason: str, message: str) -> None:
        finalizers = [f for f in Obj(repo).meta.finalizers if f != WIPE_OUT_FINALIZER]
        self._write_finalizers(repo, finalizers)
        self.events.record(repo, kind, reason, message)

    def _condition(self, repo: JSON, ok: bool, reason: str, message: str) -> None:
        """Write the ``WipedOut`` condition when it says something new."""
        before = Obj(repo).status.conditions
        conditions = set_condition(before, WIPED_OUT, ok, reason, message)
        if conditions != before:
            self._patch_status(repo, {"conditions": conditions})

    def _wipe(self, key: ObjectKey, repo: JSON) -> Result | None:
        """Run the wipe in its Job in the Repository's namespace, follow it, and release the
        finalizer once it ended."""
        namespace = key[0]
        *access, desired = wipe_objects(repo, self.image)
        name = desired["metadata"]["name"]
        job = self.caches.get(JOBS, namespace, name)
        if job is not None and not owned_by(job, Obj(repo).meta.uid):
            # An earlier Repository of the same name left it: not this wipe's.
            if not Obj(job).meta.deleting:
                self.client.delete(JOBS, name, namespace, missing_ok=True)
            return Result(requeue_after=2.0)
        if job is None:
            for obj in access:
                ensure(self.client, self.caches, self.writes, obj)
            try:
                self.client.create(desired)
                self.writes.record(namespace)
                self.events.record(
                    repo, "Normal", "WipeOutStarted", f"Job {name} deletes the backend's data"
                )
            except AlreadyExists:
                pass  # made before a restart: the same Job, by name
            self._condition(repo, False, "WipeOutRunning", f"Job {name} is deleting the data")
            return None  # the Job's events bring the Repository back
        outcome = wipe_outcome(job, job_pods(self.client, namespace, name))
        if not outcome.done:
            if outcome.attempts:
                self._condition(
                    repo,
                    False,
                    "WipeOutRetrying",
                    f"attempt {outcome.attempts} of {WIPE_ATTEMPTS} failed: {outcome.message}",
                )
            return None
        if outcome.ok:
            self._condition(repo, True, "WipeOutSucceeded", outcome.message)
            self._release(repo, "Normal", "WipedOut", outcome.message)
            return None
        words = (
            outcome.message
            if outcome.skipped
            else f"gave up after {outcome.attempts} attempt(s), the backend's data is kept: "
            f"{outcome.message}"
        )
        reason = "WipeOutSkipped" if outcome.skipped else "WipeOutFailed"
        self._condition(repo, False, reason, words)
        self._release(repo, "Warning", reason, words)
        return None


def _wipe_job_owner(obj: JSON) -> ObjectKey | None:
    """The Repository that owns a wipe Job."""
    meta = Obj(obj).meta
    if WIPE_LABEL not in meta.labels:
        return None
    owner = meta.owner(("Repository",))
    return (meta.namespace, owner.name) if owner else None
