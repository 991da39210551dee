"""Small object factories for tests: pods, invokers, admission reviews."""

from __future__ import annotations

import uuid
from typing import Any

from api.constants import BACKUP_LABEL, BACKUP_LABEL_VALUE
from api.objects import JSON


def pod(
    *,
    name: str = "",
    namespace: str = "demo",
    opted_in: bool = True,
    owner: tuple[str, str] | None = ("ReplicaSet", "web-5d4f8b9c7"),
    pod_hash: str | None = "5d4f8b9c7",
    volumes: tuple[str, ...] = ("data",),
    containers: tuple[str, ...] = ("app",),
) -> JSON:
    labels: dict[str, str] = {"app": "web"}
    if opted_in:
        labels[BACKUP_LABEL] = BACKUP_LABEL_VALUE
    if pod_hash:
        labels["pod-template-hash"] = pod_hash
    meta: JSON = {"generateName": "web-", "namespace": namespace, "labels": labels}
    if name:
        meta["name"] = name
    if owner:
        meta["ownerReferences"] = [
            {
                "apiVersion": "apps/v1",
                "kind": owner[0],
                "name": owner[1],
                "uid": str(uuid.uuid4()),
                "controller": True,
                "blockOwnerDeletion": True,
            }
        ]
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": meta,
        "spec": {
            "containers": [{"name": c, "image": "nginx:1.27"} for c in containers],
            "volumes": [{"name": v, "emptyDir": {}} for v in volumes],
        },
    }


def member(
    kind: str = "Deployment",
    name: str = "web",
    *,
    mounts: tuple[tuple[str, str], ...] = (("data", "/data"),),
    task: str | None = None,
    container: JSON | None = None,
    namespace: str | None = None,
) -> JSON:
    ref: JSON = {"apiVersion": "apps/v1", "kind": kind, "name": name}
    if namespace:
        ref["namespace"] = namespace
    out: JSON = {
        "target": {
            "ref": ref,
            "paths": [path for _, path in mounts],
            "volumeMounts": [{"name": n, "mountPath": p} for n, p in mounts],
        }
    }
    if task:
        out["task"] = {"name": task}
    if container:
        out["runtimeSettings"] = {"container": container}
    return out


def _invoker(kind: str, name: str, namespace: str, spec: JSON) -> JSON:
    return {
        "apiVersion": "stash.appscode.com/v1beta1",
        "kind": kind,
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "repository": {"name": "repo"},
            "schedule": "0 * * * *",
            "retentionPolicy": {"name": "keep-last-5", "keepLast": 5},
            **spec,
        },
    }


def batch(name: str = "nightly", namespace: str = "demo", *members: JSON, **spec: Any) -> JSON:
    return _invoker(
        "BackupBatch", name, namespace, {"members": list(members) or [member()], **spec}
    )


def configuration(name: str = "single", namespace: str = "demo", **target: Any) -> JSON:
    return _invoker("BackupConfiguration", name, namespace, member(**target))


def review(obj: JSON | None, *, operation: str = "CREATE", namespace: str = "demo") -> JSON:
    return {
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": str(uuid.uuid4()),
            "kind": {"group": "", "version": "v1", "kind": "Pod"},
            "resource": {"group": "", "version": "v1", "resource": "pods"},
            "namespace": namespace,
            "operation": operation,
            "userInfo": {"username": "system:serviceaccount:kube-system:replicaset-controller"},
            "object": obj,
            "dryRun": False,
        },
    }


def restore_member(
    kind: str = "PersistentVolumeClaim",
    name: str = "data",
    *,
    task: str | None = None,
    rules: list[JSON] | None = None,
    mount: str | None = None,
    namespace: str | None = None,
) -> JSON:
    ref: JSON = {"apiVersion": "v1" if kind == "PersistentVolumeClaim" else "apps/v1"}
    ref.update(kind=kind, name=name)
    if namespace:
        ref["namespace"] = namespace
    target: JSON = {"ref": ref}
    if rules is not None:
        target["rules"] = rules
    if mount:
        target["volumeMounts"] = [{"name": "target-volume", "mountPath": mount}]
    out: JSON = {"target": target}
    if task:
        out["task"] = {"name": task}
    return out


def restore_session(
    name: str = "restore", namespace: str = "demo", member: JSON | None = None, **spec: Any
) -> JSON:
    return {
        "apiVersion": "stash.appscode.com/v1beta1",
        "kind": "RestoreSession",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"repository": {"name": "repo"}, **(member or restore_member()), **spec},
    }


def restore_batch(
    name: str = "restore-all", namespace: str = "demo", *members: JSON, **spec: Any
) -> JSON:
    return {
        "apiVersion": "stash.appscode.com/v1beta1",
        "kind": "RestoreBatch",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "repository": {"name": "repo"},
            "members": list(members) or [restore_member()],
            **spec,
        },
    }


def deadline_exceeded(message: str) -> JSON:
    """The condition the operator sets on a session or restore that ended at its deadline."""
    return {"type": "DeadlineExceeded", "status": "True", "message": message}
