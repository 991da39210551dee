"""The operator's own short-lived Jobs: a batch's hook (``hook_job``), a session's finish
(``finish_job``), a Repository's wipe (``wipe_job``). Each is one container of the project's
image in the owner's namespace, under an account of that namespace, built here the one way:
the same restricted pod (non-root as the image's user, RuntimeDefault seccomp), the same
hardened container (no privilege escalation, no capabilities), the same reading of a user's
``runtimeSettings.pod`` (the keys member Jobs take too, a ``securityContext`` given the image's
group), so that what one of them gets right the others cannot miss.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from api import constants as c
from api.objects import JSON
from controller.invokers.trigger import owner_reference
from pods.sidecar import with_image_group

# What of a user's runtimeSettings.pod the operator's pods take (the sidecar's are pods.sidecar's).
POD_SETTING_KEYS = (
    "nodeSelector",
    "affinity",
    "tolerations",
    "securityContext",
    "priorityClassName",
    "imagePullSecrets",
    "serviceAccountName",
    "runtimeClassName",
    "schedulerName",
)
RESTRICTED_POD: JSON = {
    "runAsNonRoot": True,
    "runAsUser": c.IMAGE_USER,
    "runAsGroup": c.IMAGE_GROUP,
    "seccompProfile": {"type": "RuntimeDefault"},
}
HARDENED_CONTAINER: JSON = {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}}
SMALL_RESOURCES: JSON = {
    "requests": {"cpu": "10m", "memory": "64Mi"},
    "limits": {"memory": "256Mi"},
}


def pod_settings(settings: JSON) -> JSON:
    """The pod-spec fields a user's ``runtimeSettings.pod`` sets (its ``securityContext`` with
    the image's group when it names the image's user without one)."""
    taken = {k: v for k, v in settings.items() if k in POD_SETTING_KEYS}
    if isinstance(taken.get("securityContext"), dict):
        taken["securityContext"] = with_image_group(taken["securityContext"])
    return taken


def field_env(name: str, path: str) -> JSON:
    """An environment variable read from the pod's own fields (``metadata.namespace``, …)."""
    return {"name": name, "valueFrom": {"fieldRef": {"fieldPath": path}}}


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
