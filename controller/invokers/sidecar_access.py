"""What a sidecar's service account may not do of what the sidecar must: watch its sessions,
read its invoker, Repository and Secret, report into the session's status.

A sidecar refused any of these says so only in its own log; the invoker's
``SidecarAuthorized`` condition says it on the API instead. The API server answers the
question itself (a SubjectAccessReview per permission, as ``kubectl auth can-i --as`` does), so
whatever grants or denies it (a missing RoleBinding, a deleted ClusterRole, an authorizer
webhook) is judged the way the sidecar will meet it. A yes is kept a minute (an invoker
reconciled many times a minute asks once); a no only a few seconds: the API server's authorizer
trails a RoleBinding just written, and a no kept a minute held every invoker of the namespace
refused — and re-checked every 30 s — for that minute.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from api.constants import GROUP
from kube import Client
from kube.errors import KubeError
from kube.types import SUBJECT_ACCESS_REVIEWS

ANSWER_SECONDS = 60.0
REFUSAL_SECONDS = 3.0


@dataclass(frozen=True)
class Permission:
    verb: str
    resource: str
    group: str = GROUP
    subresource: str = ""
    name: str = ""  # one object, by name (the sidecar holds some only by name)
    namespace: str = ""  # asked there instead of the sidecar's own (another's Repository)

    def describe(self) -> str:
        resource = f"{self.resource}.{self.group}" if self.group else self.resource
        sub = f"/{self.subresource}" if self.subresource else ""
        named = f" {self.name}" if self.name else ""
        where = f" in namespace {self.namespace}" if self.namespace else ""
        return f"{self.verb} {resource}{sub}{named}{where}"


def sidecar_permissions(
    invoker_plural: str, repository: tuple[str, str, str] | None = None
) -> tuple[Permission, ...]:
    """What the sidecar of an invoker of kind ``invoker_plural`` does in its namespace, and
    of ``repository`` (namespace, name, storage Secret) by name where that is."""
    needed = [
        Permission("list", "backupsessions"),
        Permission("watch", "backupsessions"),
        Permission("patch", "backupsessions", subresource="status"),
        Permission("get", invoker_plural),
    ]
    if repository is not None:
        where, name, secret = repository
        needed.append(Permission("get", "repositories", name=name, namespace=where))
        if secret:
            needed.append(Permission("get", "secrets", group="", name=secret, namespace=where))
    return tuple(needed)


class AccessReviewer:
    """Asks the API server what a service account may do; a yes kept ``ANSWER_SECONDS``, a
    no ``REFUSAL_SECONDS``."""

    def __init__(self, client: Client, clock: Callable[[], float] = time.monotonic) -> None:
        self.client = client
        self.clock = clock
        self._answers: dict[tuple[str, str, Permission], tuple[float, bool]] = {}

    def allowed(self, namespace: str, account: str, permission: Permission) -> bool | None:
        """Whether ``account`` may; None when the API server could not be asked."""
        key = (namespace, account, permission)
        kept = self._answers.get(key)
        now = self.clock()
        if kept is not None and now - kept[0] < (ANSWER_SECONDS if kept[1] else REFUSAL_SECONDS):
            return kept[1]
        attributes = {
            "namespace": permission.namespace or namespace,
            "verb": permission.verb,
            "group": permission.group,
            "resource": permission.resource,
        }
        if permission.subresource:
            attributes["subresource"] = permission.subresource
        if permission.name:
            attributes["name"] = permission.name
        review = {
            "apiVersion": SUBJECT_ACCESS_REVIEWS.api_version,
            "kind": "SubjectAccessReview",
            "spec": {
                "user": f"system:serviceaccount:{namespace}:{account}",
                "groups": [
                    "system:serviceaccounts",
                    f"system:serviceaccounts:{namespace}",
                    "system:authenticated",
                ],
                "resourceAttributes": attributes,
            },
        }
        try:
            answer = self.client.create(review)
        except KubeError:
            return None
        allowed = bool((answer.get("status") or {}).get("allowed"))
        if len(self._answers) > 4096:
            self._answers.clear()
        self._answers[key] = (now, allowed)
        return allowed

    def missing(
        self, namespace: str, account: str, permissions: tuple[Permission, ...]
    ) -> list[str]:
        """The permissions ``account`` lacks (unknown answers are not counted as missing)."""
        return [p.describe() for p in permissions if self.allowed(namespace, account, p) is False]
