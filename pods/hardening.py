"""How every pod the operator makes for its own programs is locked down, the one way: a
restricted pod (non-root as the image's user, RuntimeDefault seccomp), a hardened container (no
privilege escalation, no capabilities), and what of a user's ``runtimeSettings.pod`` such a pod
takes (its ``securityContext`` given the image's group, ``pods.sidecar.with_image_group``)."""

from __future__ import annotations

from api import constants as c
from api.constants import IMAGE_GROUP, IMAGE_USER
from api.objects import JSON

# What of a user's runtimeSettings.pod the operator's Job pods take (the sidecar's: pods.sidecar).
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
# a small program of the project's image (a hook, a wipe, the trigger)
SMALL_RESOURCES: JSON = {
    "requests": {"cpu": "10m", "memory": "64Mi"},
    "limits": {"memory": "256Mi"},
}


def with_image_group(security_context: JSON) -> JSON:
    """``security_context`` with the image's group added when it asks for the image's user
    without a group: the runtime would look that user up in the image's /etc/passwd, not find
    it and run the process in group 0, so every file a restore writes would get group root."""
    if security_context.get("runAsUser") == IMAGE_USER and "runAsGroup" not in security_context:
        return {**security_context, "runAsGroup": IMAGE_GROUP}
    return security_context


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
