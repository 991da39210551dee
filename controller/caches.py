"""One informer per resource type, shared by every reconciler that needs it."""

from __future__ import annotations

from typing import Any

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

JSON = dict[str, Any]
MANAGED_BY = "app.kubernetes.io/managed-by=stash"

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


class Caches:
    def __init__(self, client: Client) -> None:
        self.client = client
        self._informers: dict[str, Informer] = {}

    def informer(self, rt: ResourceType) -> Informer:
        key = f"{rt.api_version}/{rt.kind}"
        if key not in self._informers:
            selector = MANAGED_BY if rt in (*OWNED_TYPES.values(), JOBS) else None
            self._informers[key] = Informer(self.client, rt, label_selector=selector)
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
