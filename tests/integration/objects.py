"""What the backup tests create on the dev cluster: a Secret and a local Repository, a PVC bound
to a hostPath PersistentVolume, a workload that keeps a host directory; and restic opened on a
test's local repository."""

from __future__ import annotations

from pathlib import Path

from api import constants as c
from api.objects import JSON
from api.repository import Repository
from api.tenancy import HOST_PATH, PRIVILEGES_ANNOTATION
from controller.invokers.optin import HASH_ANNOTATION
from engine.backend import backend_config
from engine.restic import Restic, Snapshot
from kube import Client
from kube.types import NAMESPACES, WORKLOAD_TYPES
from tests.integration.helpers import shared_dir

PASSWORD = "repo-pw-3c9e1d"


def workload(kind: str, name: str, replicas: int, data: Path, image: str) -> JSON:
    """A workload whose pods keep ``data`` (a host directory) at the same path."""
    spec: JSON = {
        "replicas": replicas,
        "selector": {"matchLabels": {"app": name}},
        "template": {
            # opted in from the start, as a GitOps manifest would be: no rollout needed
            "metadata": {"labels": {"app": name, c.BACKUP_LABEL: c.BACKUP_LABEL_VALUE}},
            "spec": {
                "terminationGracePeriodSeconds": 1,
                "containers": [
                    {
                        "name": "app",
                        "image": image,
                        "volumeMounts": [{"name": "data", "mountPath": str(data)}],
                    }
                ],
                "volumes": [{"name": "data", "hostPath": {"path": str(data)}}],
            },
        },
    }
    if kind == "StatefulSet":
        spec["serviceName"] = name
    if kind == "DaemonSet":
        del spec["replicas"]  # one pod per node
    return {"apiVersion": "apps/v1", "kind": kind, "metadata": {"name": name}, "spec": spec}


def local_repository(
    kube: Client, namespace: str, mount_path: str, host_path: str, password: str
) -> None:
    """Secret ``repo-secret`` (its ``RESTIC_PASSWORD``) and Repository ``repo`` on a local
    backend: ``host_path`` mounted at ``mount_path``. A repository on the node is a cluster
    admin's decision for the namespace (``api.tenancy``): the test takes it as the admin."""
    allow_host_path(kube, namespace)
    backend_repository(
        kube,
        namespace,
        {"local": {"mountPath": mount_path, "hostPath": {"path": host_path}}},
        password,
    )


def backend_repository(kube: Client, namespace: str, backend: JSON, password: str) -> None:
    """Secret ``repo-secret`` (its ``RESTIC_PASSWORD``) and Repository ``repo`` on ``backend``
    (``{"rest": {"url": ...}}``, say)."""
    storage_secret(kube, namespace, password)
    kube.create(
        {
            "apiVersion": "stash.appscode.com/v1alpha1",
            "kind": "Repository",
            "metadata": {"name": "repo"},
            "spec": {"backend": {**backend, "storageSecretName": "repo-secret"}},
        },
        namespace,
    )


def storage_secret(kube: Client, namespace: str, password: str = PASSWORD) -> None:
    """Secret ``repo-secret``: the ``RESTIC_PASSWORD`` of a local or REST repository."""
    kube.create(
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": "repo-secret"},
            "stringData": {"RESTIC_PASSWORD": password},
        },
        namespace,
    )


def allow_host_path(kube: Client, namespace: str) -> None:
    """Annotate ``namespace`` as a cluster admin would to let its pods keep a repository on
    the node."""
    kube.patch(
        NAMESPACES, namespace, {"metadata": {"annotations": {PRIVILEGES_ANNOTATION: HOST_PATH}}}
    )


def repository(kube: Client, namespace: str, repo_dir: Path, password: str = PASSWORD) -> None:
    """The local Repository of the real-pod tests: ``repo_dir`` on this machine, writable by
    the pods, mounted at the same path."""
    shared_dir(repo_dir)
    local_repository(kube, namespace, str(repo_dir), str(repo_dir), password)


def persistent_volume(kube: Client, namespace: str, claim: str, data: Path) -> None:
    """A hostPath PersistentVolume of ``data`` for the PVC ``claim``, made or to be made (the
    dev cluster has no provisioner: a static volume, as on many clusters)."""
    kube.create(
        {
            "apiVersion": "v1",
            "kind": "PersistentVolume",
            "metadata": {"name": f"{namespace}-{claim}"},
            "spec": {
                "capacity": {"storage": "1Gi"},
                "accessModes": ["ReadWriteOnce"],
                "persistentVolumeReclaimPolicy": "Retain",
                "storageClassName": "",
                "claimRef": {"namespace": namespace, "name": claim},
                "hostPath": {"path": str(data)},
            },
        }
    )


def pvc(kube: Client, namespace: str, name: str, data: Path) -> None:
    """A PVC bound to a hostPath PersistentVolume of ``data``."""
    persistent_volume(kube, namespace, name, data)
    claim(kube, namespace, name)


def claim(kube: Client, namespace: str, name: str) -> None:
    """A PVC of 1Gi with no storage class (bound to a static volume, if one is made)."""
    kube.create(
        {
            "apiVersion": "v1",
            "kind": "PersistentVolumeClaim",
            "metadata": {"name": name},
            "spec": {
                "accessModes": ["ReadWriteOnce"],
                "storageClassName": "",
                "resources": {"requests": {"storage": "1Gi"}},
            },
        },
        namespace,
    )


def restic_of(repo_dir: Path, password: str = PASSWORD) -> Restic:
    repo = Repository.model_validate(
        {
            "apiVersion": "stash.appscode.com/v1alpha1",
            "kind": "Repository",
            "metadata": {"name": "repo"},
            "spec": {"backend": {"local": {"mountPath": str(repo_dir)}}},
        }
    )
    return Restic(backend_config(repo, {"RESTIC_PASSWORD": password}))


def session_snapshot(restic: Restic, session: str) -> Snapshot:
    """The one snapshot ``session`` made (a scheduled session of the same invoker may have
    added others meanwhile)."""
    (snapshot,) = [s for s in restic.snapshots() if f"session:{session}" in s.tags]
    return snapshot


def rolled_out(kube: Client, namespace: str, kind: str, name: str) -> bool:
    """Has the operator opted the workload in (its sidecar hash on the pod template, or, when
    its pods carried the sidecar from their creation, on the workload itself) and has the
    rollout that followed finished: every replica updated and ready? A backup must not start
    on pods that are about to be replaced."""
    rt = WORKLOAD_TYPES[kind]
    obj = kube.get(rt, name, namespace)
    template = (obj["spec"]["template"].get("metadata") or {}).get("annotations") or {}
    own = obj["metadata"].get("annotations") or {}
    status = obj.get("status") or {}
    replicas = obj["spec"].get("replicas", 1)
    done = (
        (HASH_ANNOTATION in template or HASH_ANNOTATION in own)
        and status.get("observedGeneration", 0) >= obj["metadata"]["generation"]
        and status.get("updatedReplicas", 0) == replicas
        and status.get("readyReplicas", 0) == replicas
        and status.get("replicas", 0) == replicas
    )
    if kind == "StatefulSet":
        done = done and status.get("currentRevision") == status.get("updateRevision")
    return bool(done)
