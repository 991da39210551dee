"""The objects that trigger an invoker's sessions: CronJob ``stash-trigger-<invoker>`` and the
service account it runs as, allowed to create BackupSessions and nothing else; and the
identities its backups run as (backup Jobs' service account, the sidecars' RoleBinding), and
the one a restore invoker's restore Jobs run as.

All are owned by the invoker (deleted with it), built here as pure functions.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from api import constants as c
from api.naming import (
    BACKUP_JOB_CLUSTER_ROLE,
    RESTORE_JOB_CLUSTER_ROLE,
    SIDECAR_CLUSTER_ROLE,
    backup_service_account,
    cronjob_name,
    invoker_service_account,
    label_value,
    restore_service_account,
    sidecar_role_binding,
)

JSON = dict[str, Any]
TRIGGER_CONTAINER = "stash-trigger"


def owner_reference(obj: JSON, *, controller: bool = True) -> JSON:
    return {
        "apiVersion": obj["apiVersion"],
        "kind": obj["kind"],
        "name": obj["metadata"]["name"],
        "uid": obj["metadata"]["uid"],
        "controller": controller,
        "blockOwnerDeletion": False,
    }


def _labels(invoker: JSON) -> dict[str, str]:
    return {
        "app.kubernetes.io/managed-by": "stash",
        c.INVOKER_TYPE_LABEL: invoker["kind"],
        c.INVOKER_NAME_LABEL: label_value(invoker["metadata"]["name"]),
    }


def _meta(invoker: JSON, name: str) -> JSON:
    return {
        "name": name,
        "namespace": invoker["metadata"]["namespace"],
        "labels": _labels(invoker),
        "ownerReferences": [owner_reference(invoker)],
    }


def service_account_name(invoker: JSON) -> str:
    """The invoker's own ``runtimeSettings.pod.serviceAccountName``, else ours."""
    pod = ((invoker.get("spec") or {}).get("runtimeSettings") or {}).get("pod") or {}
    return str(
        pod.get("serviceAccountName") or invoker_service_account(invoker["metadata"]["name"])
    )


def sidecar_binding(invoker: JSON, service_accounts: Iterable[str]) -> JSON:
    """The RoleBinding of ClusterRole ``stash-sidecar`` (manifests/rbac/sidecar.yaml) to the
    service accounts the invoker's sidecar-model workloads run as, in the invoker's namespace
    only: the injected sidecar then works with no RoleBinding made by hand, and the grant goes
    with the invoker (owner reference)."""
    namespace = invoker["metadata"]["namespace"]
    return {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "RoleBinding",
        "metadata": _meta(invoker, sidecar_role_binding(invoker["metadata"]["name"])),
        "roleRef": {
            "apiGroup": "rbac.authorization.k8s.io",
            "kind": "ClusterRole",
            "name": SIDECAR_CLUSTER_ROLE,
        },
        "subjects": [
            {"kind": "ServiceAccount", "name": account, "namespace": namespace}
            for account in sorted(set(service_accounts))
        ],
    }


def rbac_objects(invoker: JSON) -> list[JSON]:
    """For the trigger CronJob: ServiceAccount, Role (create BackupSessions, nothing else) and
    RoleBinding. For backup Jobs: a ServiceAccount bound in this namespace to the ClusterRole
    ``stash-backup-job`` (manifests/rbac/backup-job.yaml)."""
    name = invoker_service_account(invoker["metadata"]["name"])
    objects: list[JSON] = []
    if service_account_name(invoker) == name:
        objects.append(
            {
                "apiVersion": "v1",
                "kind": "ServiceAccount",
                "metadata": _meta(invoker, name),
                "automountServiceAccountToken": True,
            }
        )
    objects.append(
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "Role",
            "metadata": _meta(invoker, name),
            "rules": [
                {"apiGroups": [c.GROUP], "resources": ["backupsessions"], "verbs": ["create"]}
            ],
        }
    )
    objects.append(
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "RoleBinding",
            "metadata": _meta(invoker, name),
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": name},
            "subjects": [
                {
                    "kind": "ServiceAccount",
                    "name": service_account_name(invoker),
                    "namespace": invoker["metadata"]["namespace"],
                }
            ],
        }
    )
    objects += _job_identity(invoker, backup_service_account, BACKUP_JOB_CLUSTER_ROLE)
    return objects


def restore_rbac_objects(invoker: JSON, workload_accounts: Iterable[str] = ()) -> list[JSON]:
    """For a RestoreSession's or RestoreBatch's restore Jobs: a ServiceAccount bound in the
    invoker's namespace to the ClusterRole ``stash-restore-job``
    (manifests/rbac/restore-job.yaml); the same binding holds the service accounts the restored
    workloads' pods run as, for their stash-init."""
    return _job_identity(
        invoker, restore_service_account, RESTORE_JOB_CLUSTER_ROLE, workload_accounts
    )


def _job_identity(
    invoker: JSON,
    account_name: Callable[[str], str],
    role: str,
    more: Iterable[str] = (),
) -> list[JSON]:
    account = account_name(invoker["metadata"]["name"])
    namespace = invoker["metadata"]["namespace"]
    return [
        {
            "apiVersion": "v1",
            "kind": "ServiceAccount",
            "metadata": _meta(invoker, account),
            "automountServiceAccountToken": True,
        },
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "RoleBinding",
            "metadata": _meta(invoker, account),
            "roleRef": {
                "apiGroup": "rbac.authorization.k8s.io",
                "kind": "ClusterRole",
                "name": role,
            },
            "subjects": [
                {"kind": "ServiceAccount", "name": name, "namespace": namespace}
                for name in [account, *sorted(set(more) - {account})]
            ],
        },
    ]


def cronjob(invoker: JSON, image: str) -> JSON:
    """The CronJob that runs ``stash create-backupsession`` at every schedule slot."""
    spec = invoker.get("spec") or {}
    meta = invoker["metadata"]
    return {
        "apiVersion": "batch/v1",
        "kind": "CronJob",
        "metadata": _meta(invoker, cronjob_name(meta["name"])),
        "spec": {
            "schedule": spec.get("schedule", ""),
            "suspend": bool(spec.get("paused", False)),
            "concurrencyPolicy": "Forbid",
            "startingDeadlineSeconds": 300,
            "successfulJobsHistoryLimit": 1,
            "failedJobsHistoryLimit": 1,
            "jobTemplate": {
                "metadata": {"labels": _labels(invoker)},
                "spec": {
                    "backoffLimit": 3,
                    "ttlSecondsAfterFinished": 3600,
                    "template": {
                        "metadata": {"labels": _labels(invoker)},
                        "spec": {
                            "serviceAccountName": service_account_name(invoker),
                            "restartPolicy": "Never",
                            "securityContext": {
                                "runAsNonRoot": True,
                                "runAsUser": 65532,
                                "seccompProfile": {"type": "RuntimeDefault"},
                            },
                            "containers": [
                                {
                                    "name": TRIGGER_CONTAINER,
                                    "image": image,
                                    "args": [
                                        "create-backupsession",
                                        f"--invoker-kind={invoker['kind']}",
                                        f"--invoker-name={meta['name']}",
                                        f"--invoker-uid={meta['uid']}",
                                    ],
                                    "env": [
                                        {
                                            "name": "POD_NAMESPACE",
                                            "valueFrom": {
                                                "fieldRef": {"fieldPath": "metadata.namespace"}
                                            },
                                        }
                                    ],
                                    "resources": {
                                        "requests": {"cpu": "10m", "memory": "64Mi"},
                                        "limits": {"memory": "128Mi"},
                                    },
                                    "securityContext": {
                                        "allowPrivilegeEscalation": False,
                                        "readOnlyRootFilesystem": True,
                                        "capabilities": {"drop": ["ALL"]},
                                    },
                                }
                            ],
                        },
                    },
                },
            },
        },
    }
