"""One informer per resource type, shared by every reconciler that needs it."""

from __future__ import annotations

from typing import Any

from api import constants as c
from kube import Client, ResourceType
from kube.informer import Informer

JSON = dict[str, Any]
MANAGED_BY = "app.kubernetes.io/managed-by=stash"

BACKUP_BATCHES = ResourceType(c.V1BETA1, "backupbatches", True, "BackupBatch")
BACKUP_CONFIGURATIONS = ResourceType(c.V1BETA1, "backupconfigurations", True, "BackupConfiguration")
BACKUP_SESSIONS = ResourceType(c.V1BETA1, "backupsessions", True, "BackupSession")
REPOSITORIES = ResourceType(c.V1ALPHA1, "repositories", True, "Repository")
DEPLOYMENTS = ResourceType("apps/v1", "deployments", True, "Deployment")
STATEFULSETS = ResourceType("apps/v1", "statefulsets", True, "StatefulSet")
DAEMONSETS = ResourceType("apps/v1", "daemonsets", True, "DaemonSet")
PVCS = ResourceType("v1", "persistentvolumeclaims", True, "PersistentVolumeClaim")
NAMESPACES = ResourceType("v1", "namespaces", False, "Namespace")
CRONJOBS = ResourceType("batch/v1", "cronjobs", True, "CronJob")
SERVICE_ACCOUNTS = ResourceType("v1", "serviceaccounts", True, "ServiceAccount")
ROLES = ResourceType("rbac.authorization.k8s.io/v1", "roles", True, "Role")
ROLE_BINDINGS = ResourceType("rbac.authorization.k8s.io/v1", "rolebindings", True, "RoleBinding")
JOBS = ResourceType("batch/v1", "jobs", True, "Job")
TASKS = ResourceType(c.V1BETA1, "tasks", False, "Task")
FUNCTIONS = ResourceType(c.V1BETA1, "functions", False, "Function")

INVOKER_TYPES = {"BackupBatch": BACKUP_BATCHES, "BackupConfiguration": BACKUP_CONFIGURATIONS}
WORKLOAD_TYPES = {"Deployment": DEPLOYMENTS, "StatefulSet": STATEFULSETS, "DaemonSet": DAEMONSETS}
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

    def stop(self) -> None:
        for informer in self._informers.values():
            informer.stop()
