"""The Job that deletes a ``wipeOut`` Repository's data: ``stash-wipe-<repository>``.

The operator never connects to a backend a tenant wrote. The wipe runs in the Repository's own
namespace, as a short-lived pod of the project's image (``stash wipe-out``, ``engine.wipe``),
under a service account that may get that one Repository and its storage Secret, by name, and
nothing else: it reaches what that namespace's own pods reach, no more. Its retries are
bounded (``WIPE_ATTEMPTS`` pods, a deadline); a wipe that cannot succeed (no Secret, a backend
that cannot be wiped) exits ``NOT_RETRIED`` and fails the Job at once. How it ended is read
from the Job and its pods' termination messages (``wipe_outcome``).

Every object is owned by the Repository, so they go with it once its finalizer is released.
"""

from __future__ import annotations

from dataclasses import dataclass

from api import constants as c
from api.naming import wipe_job_name
from api.objects import JSON
from api.views import Obj, conditions_of, part, text
from controller.invokers.trigger import owner_reference
from controller.jobs.outcome import last_words
from controller.jobs.small_job import SmallJob, small_job
from engine.wipe import NOT_RETRIED
from pods.hardening import SMALL_RESOURCES, field_env

WIPE_CONTAINER = "wipe-out"
WIPE_ATTEMPTS = 3
WIPE_DEADLINE = 900  # seconds for every attempt together


LABELS = {**c.MANAGED_BY, f"{c.GROUP}/wipe-out": "true"}


def _meta(repository: JSON, name: str) -> JSON:
    return {
        "name": name,
        "namespace": Obj(repository).namespace,
        "labels": dict(LABELS),
        "ownerReferences": [owner_reference(repository, controller=True)],
    }


def _access(repository: JSON, name: str) -> list[JSON]:
    """The wipe's ServiceAccount, and a Role (with its binding) that may get the Repository
    and its storage Secret, by name."""
    repo = Obj(repository)
    rules: list[JSON] = [
        {
            "apiGroups": [c.GROUP],
            "resources": ["repositories"],
            "verbs": ["get"],
            "resourceNames": [repo.name],
        }
    ]
    secret = text(part(repo.spec.raw, "backend"), "storageSecretName")
    if secret:
        rules.append(
            {
                "apiGroups": [""],
                "resources": ["secrets"],
                "verbs": ["get"],
                "resourceNames": [secret],
            }
        )
    return [
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": _meta(repository, name)},
        {
            "apiVersion": f"{c.RBAC_GROUP}/v1",
            "kind": "Role",
            "metadata": _meta(repository, name),
            "rules": rules,
        },
        {
            "apiVersion": f"{c.RBAC_GROUP}/v1",
            "kind": "RoleBinding",
            "metadata": _meta(repository, name),
            "roleRef": {"apiGroup": c.RBAC_GROUP, "kind": "Role", "name": name},
            "subjects": [{"kind": "ServiceAccount", "name": name, "namespace": repo.namespace}],
        },
    ]


def wipe_objects(repository: JSON, image: str) -> list[JSON]:
    """The ServiceAccount, Role, RoleBinding and Job of ``repository``'s wipe, in its
    namespace."""
    name = wipe_job_name(Obj(repository).name)
    container = {
        "name": WIPE_CONTAINER,
        "image": image,
        "args": ["wipe-out", f"--repository={Obj(repository).name}"],
        "env": [field_env("POD_NAMESPACE", "metadata.namespace")],
        "terminationMessagePolicy": "FallbackToLogsOnError",
        "resources": SMALL_RESOURCES,
    }
    fail_at_once = {
        "action": "FailJob",
        "onExitCodes": {"containerName": WIPE_CONTAINER, "operator": "In", "values": [NOT_RETRIED]},
    }
    job = SmallJob(
        name=name,
        owner=repository,
        labels=dict(LABELS),
        account=name,
        container=container,
        attempts=WIPE_ATTEMPTS,
        deadline=WIPE_DEADLINE,
        ttl=None,
        extra={"podFailurePolicy": {"rules": [fail_at_once]}},
        container_security={"readOnlyRootFilesystem": True},
    )
    return [*_access(repository, name), small_job(job)]


@dataclass(frozen=True)
class WipeOutcome:
    """How the wipe Job stands: ``done`` once it ended, ``ok`` if it wiped, in the program's
    own words (its pods' last termination message) and how many pods tried; ``skipped`` when
    it ended because it could not be wiped at all (``NOT_RETRIED``)."""

    done: bool
    ok: bool
    message: str
    attempts: int
    skipped: bool = False


def _message(pods: list[JSON]) -> str:
    """The newest pod's termination message (the program's own last words)."""
    return last_words(pods, WIPE_CONTAINER)[-1024:]


def wipe_outcome(job: JSON, pods: list[JSON]) -> WipeOutcome:
    status = Obj(job).status
    attempts = status.count("succeeded") + status.count("failed")
    for condition in conditions_of(status.conditions):
        if not condition.true:
            continue
        if condition.type == "Complete":
            return WipeOutcome(True, True, _message(pods) or "wiped out", attempts)
        if condition.type == "Failed":
            why = _message(pods) or condition.message or condition.reason
            skipped = condition.reason == "PodFailurePolicy"
            return WipeOutcome(True, False, why, attempts, skipped)
    return WipeOutcome(False, False, _message(pods), attempts)
