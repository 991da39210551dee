"""What an invoker refers to, read for its evaluation: the grants of the namespaces its members
name, its Repository and whether the storage Secret exists (its keys, never its values), each
target's existence, the volumes of sidecar workloads, and whether each Task is installed.

Caches answer where they can; a Secret and a target of a kind nobody watches take a GET. Shared
by the backup and the restore invokers' reconcilers; members are any ``MemberRef``.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence

from api import constants as c
from api.objects import JSON
from api.repository import Repository
from api.tenancy import Subject, repository_refusal
from api.views import Obj, items, part, text
from controller.invokers.evaluation import InvokerFacts, MemberRef, namespaces_of, refusal
from controller.invokers.tenancy import read_tenancy
from controller.runtime.caches import (
    DAEMONSETS,
    PVCS,
    REPOSITORIES,
    STATEFULSETS,
    TASKS,
    WORKLOAD_TYPES,
    Caches,
)
from kube import Client, NotFound
from kube.types import SECRETS


def volume_names(workload: JSON) -> frozenset[str]:
    volumes = items(Obj(workload).template.pod_spec, "volumes")
    return frozenset(text(v, "name", "None") for v in volumes)


SECRET_KEYS_TTL = 10.0  # seconds a Secret's keys, once read, answer again without a GET


class FactReader:
    def __init__(
        self,
        client: Client,
        caches: Caches,
        operator_namespace: str,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.client = client
        self.caches = caches
        self.operator_namespace = operator_namespace
        self._clock = clock
        # (namespace, name) -> (when read, keys): a thousand invokers of a namespace share one
        # Secret, and one converging invoker is judged several times within seconds
        self._secret_keys: dict[tuple[str, str], tuple[float, frozenset[str]]] = {}
        self._lock = threading.Lock()

    def exists(self, view: MemberRef) -> bool:
        if view.claims:  # restoring into new PVCs: they are made by the restore itself
            return True
        namespace = view.target_namespace
        if view.kind in WORKLOAD_TYPES:
            return self.caches.get(WORKLOAD_TYPES[view.kind], namespace, view.name) is not None
        if view.kind == c.PVC_KIND:
            return self.caches.get(PVCS, namespace, view.name) is not None
        api_version = text(view.ref, "apiVersion", "v1")
        try:
            rt = self.client.resource_type(api_version, view.kind)
            self.client.get(rt, view.name, namespace if rt.namespaced else None)
        except NotFound:
            return False
        return True

    def secret_keys(self, namespace: str, name: str) -> frozenset[str] | None:
        """The Secret's keys, None when it does not exist; its values are never kept. Keys
        read less than SECRET_KEYS_TTL ago answer again (Secrets are not watched); a missing
        Secret is asked for every time, so that its creation is seen at the next look."""
        now = self._clock()
        with self._lock:
            read = self._secret_keys.get((namespace, name))
        if read is not None and now - read[0] < SECRET_KEYS_TTL:
            return read[1]
        try:
            body = self.client.request("GET", SECRETS.path(namespace, name))
        except NotFound:
            with self._lock:
                self._secret_keys.pop((namespace, name), None)
            return None
        keys = frozenset(part(body, "data").keys())
        del body
        with self._lock:
            self._secret_keys[(namespace, name)] = (now, keys)
            for stale in [k for k, (when, _) in self._secret_keys.items() if now - when > 60]:
                del self._secret_keys[stale]
        return keys

    def repository_of(self, invoker: JSON) -> Repository | None:
        """The Repository the invoker's spec names now, from the cache (None: not there; a
        ValidationError: not a Repository this version reads)."""
        view = Obj(invoker)
        ref = view.spec.repository
        found = self.caches.get(REPOSITORIES, ref.namespace_or(view.namespace), ref.name)
        return Repository.from_dict(found) if found else None

    def workload_volumes(self, view: MemberRef) -> frozenset[str] | None:
        if view.task is not None or view.kind not in WORKLOAD_TYPES:
            return None
        workload = self.caches.get(WORKLOAD_TYPES[view.kind], view.target_namespace, view.name)
        return volume_names(workload) if workload is not None else None

    def total_hosts(self, view: MemberRef) -> int:
        """How many hosts carry the member out: a StatefulSet's replicas and a DaemonSet's
        nodes for a sidecar or stash-init, else one (a Job, a Deployment's one Lease holder)."""
        if replicas := view.replicas():
            return int(replicas)
        if view.kind == "StatefulSet" and view.task is None:
            sts = self.caches.get(STATEFULSETS, view.target_namespace, view.name)
            return Obj(sts).spec.replicas
        if view.kind == "DaemonSet" and view.task is None:
            ds = self.caches.get(DAEMONSETS, view.target_namespace, view.name)
            # At least one host: a DaemonSet on no node has nothing done, not a success.
            return max(1, Obj(ds).status.count("desiredNumberScheduled", 1))
        return 1

    def read(
        self, invoker: JSON, views: Sequence[MemberRef], schedule_problem: str | None = None
    ) -> InvokerFacts:
        namespace = invoker["metadata"]["namespace"]
        repo = self.repository_of(invoker)
        # The policies of every namespace in play (the invoker's, its targets', its
        # Repository's), from the Namespace cache.
        tenancy = read_tenancy(
            self.caches, self.operator_namespace, namespaces_of(invoker, views, repo)
        )
        secret = repo.spec.backend.storage_secret_name if repo else None
        # A Repository the boundary refuses costs its namespace nothing: its Secret is not read.
        usable = repo is not None and repository_refusal(tenancy, Subject(namespace, repo)) is None
        keys = (
            self.secret_keys(repo.metadata.namespace or "", secret)
            if repo and secret and usable
            else None
        )
        members = [v for v in views if v.kind and not refusal(v, tenancy)]
        volumes = {v.index: self.workload_volumes(v) for v in members}
        return InvokerFacts(
            tenancy=tenancy,
            repository=repo,
            secret_found=keys is not None,
            secret_keys=keys,
            # out of reach (tenancy): not even read
            targets_found={v.index: self.exists(v) for v in members},
            schedule_problem=schedule_problem,
            workload_volumes={i: v for i, v in volumes.items() if v is not None},
            tasks_found={
                v.task: self.caches.get(TASKS, "", v.task) is not None
                for v in members
                if v.task is not None
            },
        )
