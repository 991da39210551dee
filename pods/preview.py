"""The preview Job: ``stash-preview-<restore>-<member>[-<ordinal>]``, which ``kubectl stash restore
--preview`` makes in the user's namespace with the user's own rights, one per host to restore.

It mounts the target's live volumes where the restore would mount them, read-only, and runs
``stash restore-preview`` (``agent.restore_preview``) as the restore's ``runtimeSettings.pod``
says, locked down as ``pods.hardening`` says, with a read-only root file system, no service
account token (it never talks to the API server) and the Repository's storage Secret as a
read-only volume (the Secret the user's restore would use; the plugin reads nothing of it).
A local Repository's volume is mounted read-only too: restic runs with ``--no-lock``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from api import constants as c
from api.naming import JOB_NAME_MAX, fit, label_value
from api.objects import JSON
from api.repository import Repository
from pods.hardening import HARDENED_CONTAINER, RESTRICTED_POD, SMALL_RESOURCES, pod_settings
from pods.volumes import local_volume

PREVIEW_CONTAINER = "preview"
PREVIEW_LABEL = f"{c.GROUP}/preview"  # the restore it previews
SECRET_VOLUME = "repository-secret"  # noqa: S105 - a volume's name
SECRET_DIR = "/etc/stash/repository-secret"  # noqa: S105 - where it is mounted
REPOSITORY_ENV = "STASH_PREVIEW_REPOSITORY"
PREVIEW_DEADLINE = 900  # seconds
PREVIEW_TTL = 900  # seconds its log is kept for reading


def preview_job_name(restore: str, member: int, ordinal: int | None = None) -> str:
    suffix = "" if ordinal is None else f"-{ordinal}"
    return fit(f"stash-preview-{restore}-{member}{suffix}", JOB_NAME_MAX)


@dataclass(frozen=True)
class PreviewHost:
    """One host of a restore to preview, with where its live data is."""

    name: str  # the Job's
    restore: str  # the RestoreSession or RestoreBatch
    namespace: str
    target_kind: str
    target_name: str
    host: str  # the restic host whose snapshot the restore would take
    volumes: tuple[JSON, ...]  # the target's live volumes
    mounts: tuple[JSON, ...]  # where the restore mounts them
    snapshot: str = "latest"
    paths: tuple[str, ...] = ()
    settings: JSON = field(default_factory=dict)  # the restore's runtimeSettings.pod


def _repository_doc(repository: Repository) -> str:
    """What the program needs of the Repository: its name, namespace and backend (no secret)."""
    doc = repository.to_dict()
    return json.dumps(
        {
            "apiVersion": doc.get("apiVersion", "stash.appscode.com/v1alpha1"),
            "kind": "Repository",
            "metadata": {
                "name": repository.metadata.name,
                "namespace": repository.metadata.namespace,
            },
            "spec": {"backend": (doc.get("spec") or {}).get("backend") or {}},
        },
        separators=(",", ":"),
    )


def preview_job(host: PreviewHost, repository: Repository, image: str) -> JSON:
    """The Job that dry-runs ``host``'s restore against its live data."""
    secret = repository.spec.backend.storage_secret_name or ""
    volumes: list[JSON] = [
        *host.volumes,
        {"name": c.TMP_DIR_VOLUME, "emptyDir": {}},
        {"name": SECRET_VOLUME, "secret": {"secretName": secret, "defaultMode": 0o444}},
    ]
    mounts: list[JSON] = [
        *({**m, "readOnly": True} for m in host.mounts),
        {"name": c.TMP_DIR_VOLUME, "mountPath": c.TMP_DIR_MOUNT_PATH},
        {"name": SECRET_VOLUME, "mountPath": SECRET_DIR, "readOnly": True},
    ]
    local = local_volume(repository)
    if local is not None:
        volumes.append(local[0])
        mounts.append({**local[1], "readOnly": True})
    args = [
        "restore-preview",
        f"--namespace={host.namespace}",
        f"--target-kind={host.target_kind}",
        f"--target-name={host.target_name}",
        f"--host={host.host}",
        f"--snapshot={host.snapshot}",
        f"--secret-dir={SECRET_DIR}",
    ]
    if host.paths:
        args.append(f"--paths={','.join(host.paths)}")
    container: JSON = {
        "name": PREVIEW_CONTAINER,
        "image": image,
        "args": args,
        "env": [{"name": REPOSITORY_ENV, "value": _repository_doc(repository)}],
        "volumeMounts": mounts,
        "resources": SMALL_RESOURCES,
        "securityContext": {**HARDENED_CONTAINER, "readOnlyRootFilesystem": True},
    }
    labels = {
        "app.kubernetes.io/managed-by": "kubectl-stash",
        PREVIEW_LABEL: label_value(host.restore),
    }
    pod: JSON = {
        "restartPolicy": "Never",
        "automountServiceAccountToken": False,
        "securityContext": dict(RESTRICTED_POD),
        **pod_settings(host.settings),
        "containers": [container],
        "volumes": volumes,
    }
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": host.name, "namespace": host.namespace, "labels": labels},
        "spec": {
            "backoffLimit": 0,
            "activeDeadlineSeconds": PREVIEW_DEADLINE,
            "ttlSecondsAfterFinished": PREVIEW_TTL,
            "template": {"metadata": {"labels": labels}, "spec": pod},
        },
    }
