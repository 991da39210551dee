"""The operator's own short-lived Jobs: a batch's hook (``hook_job``), a session's finish
(``finish_job``), a Repository's wipe (``wipe_job``). Each is one container of the project's
image in the owner's namespace, under an account of that namespace, built here the one way,
locked down as ``pods.hardening`` says, so that what one of them gets right the others cannot
miss.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from api import constants as c
from api.objects import JSON
from api.repository import Repository
from controller.invokers.trigger import owner_reference
from pods.hardening import HARDENED_CONTAINER, RESTRICTED_POD, pod_settings
from pods.volumes import local_volume


def repository_volumes(repository: Repository | None) -> tuple[list[JSON], list[JSON]]:
    """(volumes, mounts) of a small Job that runs restic: the scratch ``tmp-dir`` (restic's
    cache) and the repository's own volume where it has one, as the member Jobs mount it."""
    volumes: list[JSON] = [{"name": c.TMP_DIR_VOLUME, "emptyDir": {}}]
    mounts: list[JSON] = [{"name": c.TMP_DIR_VOLUME, "mountPath": c.TMP_DIR_MOUNT_PATH}]
    local = local_volume(repository) if repository is not None else None
    if local is not None:
        volumes.append(local[0])
        mounts.append(local[1])
    return volumes, mounts


@dataclass(frozen=True)
class SmallJob:
    """One of the operator's short-lived Jobs, as its builder describes it."""

    name: str
    owner: JSON  # what the Job belongs to (and whose namespace it runs in)
    labels: JSON
    account: str
    container: JSON  # name, image, args, env, mounts…; hardened here
    volumes: tuple[JSON, ...] = ()
    settings: JSON = field(default_factory=dict)  # the invoker's runtimeSettings.pod
    attempts: int = 1
    deadline: int = 3600  # activeDeadlineSeconds
    ttl: int | None = 3600  # ttlSecondsAfterFinished
    extra: JSON = field(default_factory=dict)  # more Job spec (a podFailurePolicy)
    container_security: JSON = field(default_factory=dict)  # beyond HARDENED_CONTAINER


def small_job(job: SmallJob) -> JSON:
    container = {
        **job.container,
        "securityContext": {**HARDENED_CONTAINER, **job.container_security},
    }
    pod_spec: JSON = {
        "restartPolicy": "Never",
        "serviceAccountName": job.account,
        "securityContext": dict(RESTRICTED_POD),
        **pod_settings(job.settings),
        "containers": [container],
    }
    if job.volumes:
        pod_spec["volumes"] = list(job.volumes)
    spec: JSON = {
        "backoffLimit": job.attempts - 1,
        "activeDeadlineSeconds": job.deadline,
        **({"ttlSecondsAfterFinished": job.ttl} if job.ttl is not None else {}),
        **job.extra,
        "template": {"metadata": {"labels": job.labels}, "spec": pod_spec},
    }
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {
            "name": job.name,
            "namespace": job.owner["metadata"]["namespace"],
            "labels": job.labels,
            "ownerReferences": [owner_reference(job.owner)],
        },
        "spec": spec,
    }
