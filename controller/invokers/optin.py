"""Opt-in for sidecar and restore targets: the workload's pod template gets the opt-in label and
a hash of what the sidecar needs; when nothing targets the workload any more, both go again.

A workload an unfinished RestoreSession / RestoreBatch restores also gets the annotation
``stash.appscode.com/restore: <restore uid>`` on its pod template: its pods are rolled, so the
new ones pass through the webhook and get ``stash-init``. When the restore ends the annotation
stays (taking it away would roll the pods once more for nothing); a later restore sets its own.

A workload created already opted in (the label in its own manifest) whose pods the webhook
injected at their creation with the current sidecar is not rolled: the hash its pods carry is
recorded on the workload itself, not its template (a template change would replace every pod,
and a session begun in that second would be begun by a pod about to go).

The label is removed only when the operator added it (it marks the workload with
``stash.appscode.com/opt-in-managed``): a label a user wrote into their own manifests (GitOps)
is theirs to keep. ``desired_patch`` is the pure decision; ``OptInReconciler`` runs it per
workload key from the shared caches and writes only when something must change.
"""

from __future__ import annotations

import datetime as dt
import functools
import logging

from api.conditions import parse_rfc3339
from api.constants import (
    BACKUP_LABEL,
    BACKUP_LABEL_VALUE,
    GROUP,
    RESTORE_ANNOTATION,
    SIDECAR_HASH_ANNOTATION,
)
from api.objects import JSON
from api.views import Obj, items, text
from controller.runtime.caches import INVOKER_TYPES, REPOSITORIES, WORKLOAD_TYPES, Caches
from controller.runtime.loop import Controller, Result, Writes
from kube import Client, KubeError, NotFound
from kube.types import PODS, RESTORE_INVOKER_TYPES
from pods.invokers import SidecarIndex, SidecarTarget, WorkloadKey
from pods.sidecar import has_sidecar, plan_for
from pods.workloads import match_labels_selector, pods_of

log = logging.getLogger(__name__)

HASH_ANNOTATION = SIDECAR_HASH_ANNOTATION
MANAGED_ANNOTATION = f"{GROUP}/opt-in-managed"
# A workload created already opted in, with no pod yet: looked at again this often, for this
# long, before its template is marked (its pods are being made; marking it would replace them).
PODS_AWAITED = 5.0
PODS_GRACE = 60.0


def pods_to_ask(workload: JSON, fingerprint: str | None) -> bool:
    """Whether its pods decide how the hash is recorded: the workload opted in by its own
    label, its template never marked by the operator, and the hash not recorded yet."""
    view = Obj(workload)
    template_meta = view.template.meta
    labelled = template_meta.label(BACKUP_LABEL) == BACKUP_LABEL_VALUE
    return (
        fingerprint is not None
        and labelled
        and HASH_ANNOTATION not in template_meta.annotations
        and view.meta.annotation(HASH_ANNOTATION) != fingerprint
    )


def pods_carry(pods: list[JSON], fingerprint: str) -> bool:
    """Every pod was injected with the sidecar of this plan (as the webhook marks them)."""
    return all(
        has_sidecar(pod) and Obj(pod).meta.annotation(HASH_ANNOTATION) == fingerprint
        for pod in pods
    )


def desired_patch(
    workload: JSON,
    fingerprint: str | None,
    restores: tuple[str, ...] = (),
    *,
    pods_current: bool = False,
) -> JSON | None:
    """The merge patch that brings ``workload`` in line, or None when it already is.

    ``fingerprint`` is the sidecar plan's hash when invokers target the workload, else None;
    ``restores`` the uids of the unfinished restores of it; ``pods_current``: its pods already
    carry that plan (asked only when ``pods_to_ask``), so it is recorded without a roll.
    """
    meta = Obj(workload).meta
    template_meta = Obj(workload).template.meta
    template_annotations = dict(template_meta.annotations)
    labelled = template_meta.label(BACKUP_LABEL) == BACKUP_LABEL_VALUE
    managed = meta.annotation(MANAGED_ANNOTATION) == "true"

    meta_patch: JSON = {}
    template_patch: JSON = {}
    recorded = meta.annotation(HASH_ANNOTATION)
    if pods_current and pods_to_ask(workload, fingerprint):
        meta_patch[HASH_ANNOTATION] = fingerprint
    elif fingerprint is None and recorded is not None:
        meta_patch[HASH_ANNOTATION] = None
    carried = template_meta.annotation(HASH_ANNOTATION) or (
        fingerprint if pods_current else recorded
    )
    wanted = _template_annotations(template_annotations, fingerprint, restores, carried)
    if wanted:
        template_patch["annotations"] = wanted
    if fingerprint is not None or restores:
        if not labelled:
            template_patch.setdefault("labels", {})[BACKUP_LABEL] = BACKUP_LABEL_VALUE
            if not managed:
                meta_patch[MANAGED_ANNOTATION] = "true"
    elif managed:
        meta_patch[MANAGED_ANNOTATION] = None
        if BACKUP_LABEL in template_meta.labels:
            template_patch.setdefault("labels", {})[BACKUP_LABEL] = None
    if not meta_patch and not template_patch:
        return None
    patch: JSON = {}
    if meta_patch:
        patch["metadata"] = {"annotations": meta_patch}
    if template_patch:
        patch["spec"] = {"template": {"metadata": template_patch}}
    return patch


def _template_annotations(
    current: JSON, fingerprint: str | None, restores: tuple[str, ...], carried: str | None
) -> JSON:
    """The pod template's annotations to change: the sidecar hash when the pods do not carry
    that plan (``carried``: the hash they do), and the restores its pods were rolled for (set
    when a restore is new to it, never taken away)."""
    patch: JSON = {}
    if fingerprint is not None and carried != fingerprint:
        patch[HASH_ANNOTATION] = fingerprint
    elif fingerprint is None and HASH_ANNOTATION in current:
        patch[HASH_ANNOTATION] = None
    rolled_for = set(text(current, RESTORE_ANNOTATION).split(","))
    if restores and not set(restores) <= rolled_for:
        patch[RESTORE_ANNOTATION] = ",".join(restores)
    return patch


class OptInReconciler:
    """Keeps every workload's opt-in in step with the invokers that target it."""

    def __init__(self, client: Client, caches: Caches) -> None:
        self.client = client
        self.caches = caches
        self.index = SidecarIndex()
        self.writes = Writes()
        # Expectations (as kube-controller-manager keeps them): the resourceVersion of the
        # cached workload each write was computed from. Until the cache shows a newer version
        # (our own write's event), reconciling that key again would only repeat the write.
        self._written_over: dict[WorkloadKey, str] = {}

    def register(self, controller: Controller[WorkloadKey]) -> None:
        for kind, rt in (*INVOKER_TYPES.items(), *RESTORE_INVOKER_TYPES.items()):
            self.caches.informer(rt).subscribe(
                on_replace=functools.partial(self._invokers_replaced, controller, kind),
                on_upsert=lambda o: _enqueue(controller, self.index.upsert(o)),
                on_delete=lambda o: _enqueue(controller, self.index.delete(o)),
            )
        self.caches.informer(REPOSITORIES).subscribe(
            on_replace=lambda items: _enqueue(controller, self.index.replace_repositories(items)),
            on_upsert=lambda o: _enqueue(controller, self.index.upsert_repository(o)),
            on_delete=lambda o: _enqueue(controller, self.index.delete_repository(o)),
        )
        for rt in WORKLOAD_TYPES.values():
            self.caches.informer(rt).subscribe(
                on_replace=controller.replace_handler(_workload_key),
                on_upsert=controller.handler(_workload_key),
                on_delete=controller.handler(_workload_key),
            )

    def _invokers_replaced(
        self, controller: Controller[WorkloadKey], kind: str, items: list[JSON]
    ) -> None:
        before = set(self.index.workloads()) | set(self.index.restored_workloads())
        self.index.replace(items, kind=kind)
        for key in before | set(self.index.workloads()) | set(self.index.restored_workloads()):
            controller.enqueue(key)

    def _started(self, namespace: str, target: SidecarTarget) -> bool:
        """Whether the restore has started: its workloads are rolled only then (before, it
        may be waiting for a backup of them to finish: controller.sessions.target_use)."""
        rt = RESTORE_INVOKER_TYPES.get(target.invoker_kind)
        restore = self.caches.get(rt, namespace, target.invoker_name) if rt else None
        return Obj(restore).status.phase == "Running"

    def reconcile(self, key: WorkloadKey) -> Result | None:
        namespace, kind, name = key
        workload = self.caches.get(WORKLOAD_TYPES[kind], namespace, name)
        if workload is None:
            self._written_over.pop(key, None)  # gone: nothing to wait for
            return None  # not there (yet): its ADDED event brings it back
        targets = self.index.targets(namespace, kind, name)
        restores = tuple(
            sorted(
                {
                    t.invoker_uid
                    for t in self.index.init_targets(namespace, kind, name)
                    if self._started(namespace, t)
                }
            )
        )
        if targets and not self.index.repositories_known(targets):
            return None  # the Repository's arrival enqueues the workload again
        fingerprint = (
            plan_for(kind, name, targets, self.index.local_backends(targets)).fingerprint()
            if targets
            else None
        )
        version = Obj(workload).meta.resource_version
        if self._written_over.get(key) == version:
            return None  # the cache has not caught up with our last write yet
        self._written_over.pop(key, None)
        current = self._pods_current(workload, fingerprint)
        if isinstance(current, Result):
            return current
        patch = desired_patch(workload, fingerprint, restores, pods_current=current)
        if patch is not None:
            self._write(key, version, patch, bool(fingerprint or restores))
        return None

    def _write(self, key: WorkloadKey, version: str, patch: JSON, opted_in: bool) -> None:
        namespace, kind, name = key
        try:
            self.client.patch(WORKLOAD_TYPES[kind], name, patch, namespace=namespace)
        except NotFound:
            return
        self._written_over[key] = version
        self.writes.record(namespace)
        what = "updated" if opted_in else "removed"
        log.info("%s %s/%s: %s the stash opt-in", kind, namespace, name, what)

    def _pods_current(self, workload: JSON, fingerprint: str | None) -> bool | Result:
        """Whether the pods of a workload opted in by its own label already carry the plan
        (False when there is nothing to ask); a Result to look again when that cannot be told
        yet (the list failed, or its first pods are still being made)."""
        if fingerprint is None or not pods_to_ask(workload, fingerprint):
            return False
        pods = self._pods(workload)
        if pods is None or (not pods and self._young(workload)):
            return Result(requeue_after=PODS_AWAITED)
        return bool(pods) and pods_carry(pods, fingerprint)

    def _pods(self, workload: JSON) -> list[JSON] | None:
        """The workload's pods (None: the API server did not answer)."""
        namespace, name = Obj(workload).key
        try:
            listed = self.client.list(
                PODS, namespace, label_selector=match_labels_selector(workload)
            )
        except KubeError as exc:
            log.info("pods of %s/%s: %s", namespace, name, exc)
            return None
        return pods_of(workload, items(listed, "items"))

    @staticmethod
    def _young(workload: JSON) -> bool:
        created = Obj(workload).meta.created
        try:
            age = dt.datetime.now(dt.UTC) - parse_rfc3339(created)
        except ValueError:
            return False
        return age.total_seconds() < PODS_GRACE


def _enqueue(controller: Controller[WorkloadKey], keys: set[WorkloadKey]) -> None:
    for key in keys:
        controller.enqueue(key)


def _workload_key(obj: JSON) -> WorkloadKey:
    view = Obj(obj)
    return (view.namespace, view.kind, view.name)
