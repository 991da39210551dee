"""The Repository reconciler: ``status.references`` lists the invokers that back up into it,
and ``wipeOut``: a finalizer that deletes the backend's data when the Repository is deleted.

The finalizer is only added where wiping is possible (REST and S3 backends; never local ones,
whose volume the operator cannot reach). The wipe itself runs off the controller's worker
(``controller.background``): a large repository being wiped does not stall the others. A wipe
that fails is retried a few times with backoff and then given up with a Warning Event, the data
kept: a Repository must never be undeletable because its backend is gone. If the storage Secret
is already gone (a namespace being deleted takes it with it), there are no credentials to wipe
with: the data is kept and an Event says so.
"""

from __future__ import annotations

import functools
import logging
import threading
from collections.abc import Callable, Sequence
from typing import Any

from pydantic import ValidationError

from api import constants as c
from api.repository import Repository
from api.tenancy import Subject, repository_refusal
from controller.background import Background
from controller.caches import INVOKER_TYPES, NAMESPACES, REPOSITORIES, Caches
from controller.runtime import Controller, Result, Writes
from controller.tenancy import read_tenancy
from engine.host_backup import SetupError, storage_secret
from engine.wipe import WipeError, can_wipe, wipe_out
from kube import Client, NotFound
from kube.events import EventRecorder

log = logging.getLogger(__name__)
WIPE_OUT_FINALIZER = f"{c.GROUP}/wipe-out"
WIPE_ATTEMPTS = 5
BY_REPOSITORY = "repository"  # the invokers index: <namespace>/<name> of their Repository

JSON = dict[str, Any]
Key = tuple[str, str]


def _invoker_key(invoker: JSON) -> tuple[str, str, str]:
    meta = invoker.get("metadata") or {}
    return (str(invoker.get("kind")), meta.get("namespace", ""), meta.get("name", ""))


def _repo_key(invoker: JSON) -> Key:
    namespace = invoker.get("metadata", {}).get("namespace", "")
    repo = (invoker.get("spec") or {}).get("repository") or {}
    return (repo.get("namespace") or namespace, repo.get("name", ""))


class RepositoryReconciler:
    def __init__(self, client: Client, caches: Caches, operator_namespace: str = "") -> None:
        self.client = client
        self.caches = caches
        self.operator_namespace = operator_namespace
        self.writes = Writes()
        self.events = EventRecorder(client, "stash-operator")
        self._wipe_attempts: dict[Key, int] = {}
        self.wipes: Background[Key, int] = Background("wipe-out")
        self._enqueue: Callable[[Key], None] = lambda key: None
        self._repo_of: dict[tuple[str, str, str], Key] = {}  # invoker -> its Repository
        self._repos_lock = threading.Lock()  # informers call in from their own threads

    def register(self, controller: Controller[Key]) -> None:
        self._enqueue = controller.enqueue

        def own(obj: JSON) -> Key:
            meta = obj.get("metadata", {})
            return (meta.get("namespace", ""), meta.get("name", ""))

        self.caches.informer(REPOSITORIES).subscribe(
            on_replace=controller.replace_handler(own), on_upsert=controller.handler(own)
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
        namespace = (obj.get("metadata") or {}).get("name", "")
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
        found = []
        for kind, rt in INVOKER_TYPES.items():
            for invoker in self.caches.informer(rt).by_index(BY_REPOSITORY, f"{namespace}/{name}"):
                meta = invoker["metadata"]
                if meta["namespace"] != namespace:
                    tenancy = read_tenancy(
                        self.caches, self.operator_namespace, [meta["namespace"]]
                    )
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

    def reconcile(self, key: Key) -> Result | None:
        namespace, name = key
        repo = self.caches.get(REPOSITORIES, namespace, name)
        if repo is None:
            self._wipe_attempts.pop(key, None)
            self.wipes.forget(key)
            return None
        repo = {"apiVersion": c.V1ALPHA1, "kind": "Repository", **repo}
        finalizers = list(repo["metadata"].get("finalizers") or [])
        if repo["metadata"].get("deletionTimestamp"):
            if WIPE_OUT_FINALIZER in finalizers:
                self._wipe(key, repo)
            return None
        if self._sync_finalizer(repo, finalizers):
            return None  # the update brings the Repository back with its new resourceVersion
        try:
            references = self.references(Repository.model_validate(repo))
        except ValidationError:
            return None  # the invokers' conditions say what is wrong with it
        if ((repo.get("status") or {}).get("references") or []) == references:
            return None
        patch = {
            "metadata": {"resourceVersion": repo["metadata"]["resourceVersion"]},
            "status": {"references": references or None},
        }
        try:
            self.client.patch(REPOSITORIES, name, patch, namespace=namespace, subresource="status")
            self.writes.record(namespace)
        except NotFound:
            pass
        return None

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

    def _release(self, key: Key, repo: JSON, kind: str, reason: str, message: str) -> None:
        finalizers = [
            f for f in repo["metadata"].get("finalizers") or [] if f != WIPE_OUT_FINALIZER
        ]
        self._write_finalizers(repo, finalizers)
        self._wipe_attempts.pop(key, None)
        self.events.record(repo, kind, reason, message)

    def _wipe(self, key: Key, repo: JSON) -> None:
        model = Repository.model_validate(repo)
        secret_name = model.spec.backend.storage_secret_name or ""
        try:
            data = storage_secret(self.client, model, key[0])
        except SetupError:
            self._release(
                key,
                repo,
                "Warning",
                "WipeOutSkipped",
                f"storage Secret {secret_name} is gone: no credentials to wipe with; "
                "the backend's data is kept",
            )
            return
        outcome = self.wipes.take(key)
        if outcome is None:
            # Off the worker; the key comes back when the wipe has ended.
            self.wipes.submit(key, lambda: wipe_out(model, data), self._enqueue)
            return
        if outcome.error is not None:
            if not isinstance(outcome.error, WipeError):
                raise outcome.error
            attempts = self._wipe_attempts.get(key, 0) + 1
            self._wipe_attempts[key] = attempts
            if attempts < WIPE_ATTEMPTS:
                log.warning("wiping out %s/%s (attempt %d): %s", *key, attempts, outcome.error)
                raise outcome.error  # retried with backoff
            self._release(
                key,
                repo,
                "Warning",
                "WipeOutFailed",
                f"gave up after {attempts} attempts, the backend's data is kept: {outcome.error}",
            )
            return
        self._release(
            key,
            repo,
            "Normal",
            "WipedOut",
            f"deleted the repository's data from the backend ({outcome.value} objects)",
        )
