"""Where the kinds this project reads and writes live on the API server.

The Stash kinds are written out here rather than read from ``api.crd.KINDS``: that would load
every pydantic model into processes that only watch (a sidecar in every opted-in pod).
``tests/unit/kube/test_resource_type.py`` holds this table to the CRDs' own plural and scope.
"""

from __future__ import annotations

from api.constants import APPCATALOG_V1ALPHA1, V1ALPHA1, V1BETA1
from kube.client import ResourceType

STASH = {
    kind: ResourceType(api_version, plural, namespaced, kind)
    for kind, api_version, plural, namespaced in (
        ("Repository", V1ALPHA1, "repositories", True),
        ("BackupConfiguration", V1BETA1, "backupconfigurations", True),
        ("BackupBatch", V1BETA1, "backupbatches", True),
        ("BackupSession", V1BETA1, "backupsessions", True),
        ("RestoreSession", V1BETA1, "restoresessions", True),
        ("RestoreBatch", V1BETA1, "restorebatches", True),
        ("Task", V1BETA1, "tasks", False),
        ("Function", V1BETA1, "functions", False),
        ("BackupBlueprint", V1BETA1, "backupblueprints", False),
        ("BackupTemplate", V1BETA1, "backuptemplates", False),
    )
}
BACKUP_BATCHES = STASH["BackupBatch"]
BACKUP_CONFIGURATIONS = STASH["BackupConfiguration"]
BACKUP_SESSIONS = STASH["BackupSession"]
RESTORE_SESSIONS = STASH["RestoreSession"]
RESTORE_BATCHES = STASH["RestoreBatch"]
RESTORE_INVOKER_TYPES = {"RestoreSession": RESTORE_SESSIONS, "RestoreBatch": RESTORE_BATCHES}
REPOSITORIES = STASH["Repository"]
TASKS = STASH["Task"]
FUNCTIONS = STASH["Function"]
BACKUP_BLUEPRINTS = STASH["BackupBlueprint"]
INVOKER_TYPES = {"BackupBatch": BACKUP_BATCHES, "BackupConfiguration": BACKUP_CONFIGURATIONS}

NAMESPACES = ResourceType("v1", "namespaces", False, "Namespace")
PODS = ResourceType("v1", "pods", True, "Pod")
NODES = ResourceType("v1", "nodes", False, "Node")
PERSISTENT_VOLUMES = ResourceType("v1", "persistentvolumes", False, "PersistentVolume")
SECRETS = ResourceType("v1", "secrets", True, "Secret")
SERVICE_ACCOUNTS = ResourceType("v1", "serviceaccounts", True, "ServiceAccount")
PVCS = ResourceType("v1", "persistentvolumeclaims", True, "PersistentVolumeClaim")
EVENTS = ResourceType("v1", "events", True, "Event")
DEPLOYMENTS = ResourceType("apps/v1", "deployments", True, "Deployment")
STATEFULSETS = ResourceType("apps/v1", "statefulsets", True, "StatefulSet")
DAEMONSETS = ResourceType("apps/v1", "daemonsets", True, "DaemonSet")
REPLICASETS = ResourceType("apps/v1", "replicasets", True, "ReplicaSet")
JOBS = ResourceType("batch/v1", "jobs", True, "Job")
CRONJOBS = ResourceType("batch/v1", "cronjobs", True, "CronJob")
# Stash's addons find databases by AppBinding (its CRD: manifests/appbinding, optional)
APPBINDINGS = ResourceType(APPCATALOG_V1ALPHA1, "appbindings", True, "AppBinding")
ROLES = ResourceType("rbac.authorization.k8s.io/v1", "roles", True, "Role")
CLUSTER_ROLES = ResourceType("rbac.authorization.k8s.io/v1", "clusterroles", False, "ClusterRole")
ROLE_BINDINGS = ResourceType("rbac.authorization.k8s.io/v1", "rolebindings", True, "RoleBinding")
LEASES = ResourceType("coordination.k8s.io/v1", "leases", True, "Lease")
SUBJECT_ACCESS_REVIEWS = ResourceType(
    "authorization.k8s.io/v1", "subjectaccessreviews", False, "SubjectAccessReview"
)
WEBHOOK_CONFIGS = ResourceType(
    "admissionregistration.k8s.io/v1",
    "mutatingwebhookconfigurations",
    False,
    "MutatingWebhookConfiguration",
)
CRDS = ResourceType(
    "apiextensions.k8s.io/v1", "customresourcedefinitions", False, "CustomResourceDefinition"
)
WORKLOAD_TYPES = {"Deployment": DEPLOYMENTS, "StatefulSet": STATEFULSETS, "DaemonSet": DAEMONSETS}
