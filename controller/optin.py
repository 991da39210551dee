"""Opt-in for sidecar targets: the workload's pod template gets the opt-in label and a hash of
what the sidecar needs; when nothing targets the workload any more, both go again.

The label is removed only when the operator added it (it marks the workload with
``stash.appscode.com/opt-in-managed``): a label a user wrote into their own manifests (GitOps)
is theirs to keep. ``desired_patch`` is the pure decision; ``OptInController`` runs it per
workload key from informer caches and writes only when something must change.
"""

from __future__ import annotations

import functools
import logging
import threading
from typing import Any

from api.constants import BACKUP_LABEL, BACKUP_LABEL_VALUE, GROUP
from controller.queue import WorkQueue
from engine.invokers import WORKLOAD_KINDS, SidecarIndex, WorkloadKey
from engine.sidecar import plan_for
from kube import Client, KubeError, NotFound, ResourceType
from kube.informer import Informer

log = logging.getLogger(__name__)

JSON = dict[str, Any]
HASH_ANNOTATION = f"{GROUP}/sidecar-hash"
MANAGED_ANNOTATION = f"{GROUP}/opt-in-managed"

WORKLOAD_TYPES = {
    kind: ResourceType("apps/v1", f"{kind.lower()}s", True, kind) for kind in WORKLOAD_KINDS
}
INVOKER_TYPES = (
    ResourceType("stash.appscode.com/v1beta1", "backupbatches", True, "BackupBatch"),
    ResourceType("stash.appscode.com/v1beta1", "backupconfigurations", True, "BackupConfiguration"),
)


def desired_patch(workload: JSON, fingerprint: str | None) -> JSON | None:
    """The merge patch that brings ``workload`` in line, or None when it already is.

    ``fingerprint`` is the sidecar plan's hash when invokers target the workload, else None.
    """
    meta = workload.get("metadata") or {}
    annotations = meta.get("annotations") or {}
    template_meta = (workload.get("spec") or {}).get("template", {}).get("metadata") or {}
    labels = template_meta.get("labels") or {}
    template_annotations = template_meta.get("annotations") or {}
    labelled = labels.get(BACKUP_LABEL) == BACKUP_LABEL_VALUE
    managed = annotations.get(MANAGED_ANNOTATION) == "true"

    meta_patch: JSON = {}
    template_patch: JSON = {}
    if fingerprint is not None:
        if not labelled:
            template_patch.setdefault("labels", {})[BACKUP_LABEL] = BACKUP_LABEL_VALUE
            if not managed:
                meta_patch[MANAGED_ANNOTATION] = "true"
        if template_annotations.get(HASH_ANNOTATION) != fingerprint:
            template_patch.setdefault("annotations", {})[HASH_ANNOTATION] = fingerprint
    else:
        if HASH_ANNOTATION in template_annotations:
            template_patch.setdefault("annotations", {})[HASH_ANNOTATION] = None
        if managed:
            meta_patch[MANAGED_ANNOTATION] = None
            if BACKUP_LABEL in labels:
                template_patch.setdefault("labels", {})[BACKUP_LABEL] = None
    if not meta_patch and not template_patch:
        return None
    patch: JSON = {}
    if meta_patch:
        patch["metadata"] = {"annotations": meta_patch}
    if template_patch:
        patch["spec"] = {"template": {"metadata": template_patch}}
    return patch


class OptInController:
    """Keeps every workload's opt-in in step with the invokers that target it."""

    def __init__(self, client: Client, workers: int = 1) -> None:
        self.client = client
        self.index = SidecarIndex()
        self.queue: WorkQueue[WorkloadKey] = WorkQueue()
        self.workers = workers
        self.writes = 0
        self._threads: list[threading.Thread] = []
        self.invoker_informers = [
            Informer(
                client,
                rt,
                on_replace=functools.partial(self._invokers_replaced, rt.kind),
                on_upsert=self._invoker_changed,
                on_delete=self._invoker_deleted,
            )
            for rt in INVOKER_TYPES
        ]
        self.workload_informers = {
            kind: Informer(
                client,
                rt,
                on_replace=functools.partial(self._enqueue_all, kind),
                on_upsert=self._workload_changed,
                on_delete=self._workload_changed,
            )
            for kind, rt in WORKLOAD_TYPES.items()
        }

    # -- event handlers: map changes to workload keys ---------------------------------------

    def _invokers_replaced(self, kind: str, items: list[JSON]) -> None:
        before = set(self.index.workloads())
        self.index.replace(items, kind=kind)
        for key in before | set(self.index.workloads()):
            self.queue.add(key)

    def _invoker_changed(self, obj: JSON) -> None:
        for key in self.index.upsert(obj):
            self.queue.add(key)

    def _invoker_deleted(self, obj: JSON) -> None:
        for key in self.index.delete(obj):
            self.queue.add(key)

    def _enqueue_all(self, kind: str, items: list[JSON]) -> None:
        for item in items:
            meta = item.get("metadata", {})
            self.queue.add((meta.get("namespace", ""), kind, meta.get("name", "")))

    def _workload_changed(self, obj: JSON) -> None:
        meta = obj.get("metadata", {})
        self.queue.add((meta.get("namespace", ""), obj.get("kind", ""), meta.get("name", "")))

    # -- reconcile -----------------------------------------------------------------------------

    def reconcile(self, key: WorkloadKey) -> None:
        namespace, kind, name = key
        informer = self.workload_informers.get(kind)
        workload = informer.get(namespace, name) if informer else None
        if workload is None:
            return  # not there (yet): its ADDED event will bring it back
        targets = self.index.targets(namespace, kind, name)
        fingerprint = plan_for(kind, name, targets).fingerprint() if targets else None
        patch = desired_patch(workload, fingerprint)
        if patch is None:
            return
        try:
            self.client.patch(WORKLOAD_TYPES[kind], name, patch, namespace=namespace)
        except NotFound:
            return
        self.writes += 1
        log.info(
            "%s %s/%s: %s the stash opt-in",
            kind,
            namespace,
            name,
            "updated" if fingerprint else "removed",
        )

    def _work(self) -> None:
        while True:
            key = self.queue.get()
            if key is None:
                return
            try:
                self.reconcile(key)
                self.queue.forget(key)
            except KubeError as exc:
                delay = self.queue.retry(key)
                log.warning("%s: %s (retrying in %.1fs)", "/".join(key), exc, delay)
            except Exception:
                delay = self.queue.retry(key)
                log.exception("%s: unexpected error (retrying in %.1fs)", "/".join(key), delay)
            finally:
                self.queue.done(key)

    def start(self) -> OptInController:
        for informer in [*self.invoker_informers, *self.workload_informers.values()]:
            informer.start()
        for i in range(self.workers):
            thread = threading.Thread(target=self._work, name=f"optin-{i}", daemon=True)
            thread.start()
            self._threads.append(thread)
        return self

    def synced(self) -> bool:
        informers = [*self.invoker_informers, *self.workload_informers.values()]
        return all(i.synced.is_set() for i in informers)

    def stop(self) -> None:
        for informer in [*self.invoker_informers, *self.workload_informers.values()]:
            informer.stop()
        self.queue.shutdown()
