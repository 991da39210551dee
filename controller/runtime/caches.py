"""One informer per resource type, shared by every reconciler that needs it, and what each
keeps of the objects it holds."""

from __future__ import annotations

from collections.abc import Callable

from api.constants import MANAGED_BY_LABEL, MANAGED_BY_VALUE
from api.objects import JSON
from api.views import Obj
from kube import Client, ResourceType
from kube.informer import Informer
from kube.types import (
    BACKUP_BATCHES,
    BACKUP_CONFIGURATIONS,
    BACKUP_SESSIONS,
    CRONJOBS,
    DAEMONSETS,
    DEPLOYMENTS,
    FUNCTIONS,
    INVOKER_TYPES,
    JOBS,
    NAMESPACES,
    PVCS,
    REPOSITORIES,
    ROLE_BINDINGS,
    ROLES,
    SERVICE_ACCOUNTS,
    STATEFULSETS,
    TASKS,
    WORKLOAD_TYPES,
)

OWN_SELECTOR = f"{MANAGED_BY_LABEL}={MANAGED_BY_VALUE}"  # what the operator made

__all__ = [
    "BACKUP_BATCHES",
    "BACKUP_CONFIGURATIONS",
    "BACKUP_SESSIONS",
    "CRONJOBS",
    "DAEMONSETS",
    "DEPLOYMENTS",
    "FUNCTIONS",
    "INVOKER_TYPES",
    "JOBS",
    "NAMESPACES",
    "OWNED_TYPES",
    "PVCS",
    "REPOSITORIES",
    "ROLES",
    "ROLE_BINDINGS",
    "SERVICE_ACCOUNTS",
    "STATEFULSETS",
    "TASKS",
    "WORKLOAD_TYPES",
    "Caches",
]

# Objects the operator creates: watched by label, so nothing else of the cluster is cached.
OWNED_TYPES = {
    "CronJob": CRONJOBS,
    "ServiceAccount": SERVICE_ACCOUNTS,
    "Role": ROLES,
    "RoleBinding": ROLE_BINDINGS,
}


def workload_view(obj: JSON) -> JSON:
    """What the reconcilers read of a Deployment, StatefulSet or DaemonSet: its metadata, its
    selector and replicas, its pod template's metadata, service account and volume names, and a
    DaemonSet's desired pod count. Containers, the rest of the pod spec and the status that
    every rollout rewrites are not kept (a cluster's workloads are most of what is cached)."""
    spec = obj.get("spec") or {}
    template = spec.get("template") or {}
    pod = template.get("spec") or {}
    pod_view: JSON = {"volumes": [{"name": v.get("name")} for v in pod.get("volumes") or []]}
    if "serviceAccountName" in pod:
        pod_view["serviceAccountName"] = pod["serviceAccountName"]
    spec_view: JSON = {key: spec[key] for key in ("selector", "replicas") if key in spec}
    spec_view["template"] = {"metadata": template.get("metadata") or {}, "spec": pod_view}
    view: JSON = {
        "apiVersion": obj.get("apiVersion"),
        "kind": obj.get("kind"),
        "metadata": obj.get("metadata") or {},
        "spec": spec_view,
    }
    scheduled = (obj.get("status") or {}).get("desiredNumberScheduled")
    if scheduled is not None:
        view["status"] = {"desiredNumberScheduled": scheduled}
    return view


def metadata_view(obj: JSON) -> JSON:
    """Only the object's identity and metadata: a PVC is looked at for its existence."""
    return {
        "apiVersion": obj.get("apiVersion"),
        "kind": obj.get("kind"),
        "metadata": obj["metadata"],
    }


TRANSFORMS: dict[ResourceType, Callable[[JSON], JSON | None]] = {
    **{rt: workload_view for rt in WORKLOAD_TYPES.values()},
    PVCS: metadata_view,
}


SESSIONS_BY_INVOKER = "invoker"  # the BackupSessions index: <namespace>/<invoker name>


def session_invoker(session: JSON) -> list[str]:
    """``<namespace>/<invoker name>`` of a BackupSession (its spec.invoker)."""
    view = Obj(session)
    name = view.spec.invoker.name
    return [f"{view.namespace}/{name}"] if name else []


class Caches:
    def __init__(self, client: Client) -> None:
        self.client = client
        self._informers: dict[str, Informer] = {}

    def sessions(self) -> Informer:
        """The BackupSessions' informer, indexed by invoker (``sessions_of``)."""
        informer = self.informer(BACKUP_SESSIONS)
        if not informer.has_index(SESSIONS_BY_INVOKER):
            informer.add_index(SESSIONS_BY_INVOKER, session_invoker)
        return informer

    def sessions_of(self, namespace: str, invoker: str) -> list[JSON]:
        """An invoker's cached BackupSessions: read from the index, not by scanning them all
        (a reconcile's time stays the same however many finished sessions the cluster keeps)."""
        return self.sessions().by_index(SESSIONS_BY_INVOKER, f"{namespace}/{invoker}")

    def informer(self, rt: ResourceType) -> Informer:
        key = f"{rt.api_version}/{rt.kind}"
        if key not in self._informers:
            selector = OWN_SELECTOR if rt in (*OWNED_TYPES.values(), JOBS) else None
            self._informers[key] = Informer(
                self.client, rt, label_selector=selector, transform=TRANSFORMS.get(rt)
            )
        return self._informers[key]

    def get(self, rt: ResourceType, namespace: str, name: str) -> JSON | None:
        return self.informer(rt).get(namespace, name)

    def start(self) -> None:
        for informer in self._informers.values():
            informer.start()

    def synced(self) -> bool:
        return all(i.synced.is_set() for i in self._informers.values())

    def informers(self) -> list[Informer]:
        return list(self._informers.values())

    def stop(self) -> None:
        for informer in self._informers.values():
            informer.stop()
