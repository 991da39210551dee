"""Why a backup or restore Job's pod cannot start, read from the pod itself.

A Job whose pod never starts (an image that cannot be pulled or is not a name at all, a Secret
or ConfigMap it needs that is missing, no node that fits, a volume that cannot be mounted)
never fails by itself: its session would wait for its deadline (24 h by default) and never say
why. The session reconciler asks here about each running Job's pods, says the pod's own reason
on the target within a minute, and fails the target once the reason cannot resolve itself: at
once for an image that is not a valid name, after ``STUCK_GRACE`` for the rest (a registry or a
Secret may come back meanwhile).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass

from api.conditions import is_true, parse_rfc3339
from api.objects import JSON
from api.views import Obj, conditions_of, items, text
from kube import Client, KubeError
from kube.types import PODS

STUCK_GRACE = dt.timedelta(minutes=5)  # a reason that may resolve itself gets this long
CREATING_GRACE = dt.timedelta(minutes=1)  # ContainerCreating longer than this: said
PODS_RECHECK = 20.0  # how often a running Job's pods are looked at (their state sends no event)

# A container waiting for one of these is not going to start by itself soon.
TROUBLE = frozenset(
    {
        "ErrImagePull",
        "ImagePullBackOff",
        "InvalidImageName",
        "ErrImageNeverPull",
        "CreateContainerConfigError",
        "CreateContainerError",
        "RunContainerError",
    }
)
# ... and these never will.
HOPELESS = frozenset({"InvalidImageName", "ErrImageNeverPull"})


@dataclass(frozen=True)
class Trouble:
    """Why a Job's pod does not start, and whether to give up on it."""

    pod: str
    reason: str
    final: bool

    def say(self, noun: str, job: str) -> str:
        return f"the {noun} Job {job}'s pod {self.pod} cannot start: {self.reason}"


def _waiting(pod: JSON) -> tuple[str, str] | None:
    for container in Obj(pod).status.containers:
        waiting = container.waiting
        reason = text(waiting, "reason")
        if reason in TROUBLE or reason == "ContainerCreating":
            return reason, text(waiting, "message")
    return None


def _unschedulable(pod: JSON) -> str | None:
    for cond in conditions_of(Obj(pod).status.conditions):
        if cond.type == "PodScheduled" and cond.status == "False":
            return f"{cond.reason or 'Unschedulable'}: {cond.message}"
    return None


def pod_trouble(pod: JSON, now: dt.datetime) -> Trouble | None:
    """Why ``pod`` (a Job's) does not start, or None while it starts or runs normally."""
    meta = Obj(pod).meta
    name = meta.name or "?"
    try:
        age = now - parse_rfc3339(meta.created)
    except ValueError:
        age = dt.timedelta(0)
    late = age >= STUCK_GRACE
    unschedulable = _unschedulable(pod)
    if unschedulable:
        return Trouble(name, unschedulable.rstrip(": "), late)
    waiting = _waiting(pod)
    if waiting is None:
        return None
    reason, message = waiting
    if reason == "ContainerCreating":
        if age < CREATING_GRACE:
            return None
        seconds = int(age.total_seconds())
        reason = f"still ContainerCreating after {seconds} s (a volume it cannot mount?)"
    words = f"{reason}: {message}".rstrip(": ")
    return Trouble(name, words, reason in HOPELESS or late)


def job_trouble(pods: list[JSON], now: dt.datetime) -> Trouble | None:
    """The trouble of a Job's pods when none of them runs (the first found), else None."""
    troubles = [pod_trouble(pod, now) for pod in pods]
    if not troubles or any(t is None for t in troubles):
        return None
    return next(t for t in troubles if t is not None)


def troubles(
    client: Client, namespace: str, jobs: Iterable[JSON | None], now: dt.datetime
) -> dict[str, Trouble]:
    """The trouble of each running Job among ``jobs`` (by name), from its pods (one list call
    per running Job: their state sends the session no event, so it looks again every
    ``PODS_RECHECK``)."""
    found: dict[str, Trouble] = {}
    for job in jobs:
        if job is None or job_complete(job) or job_failure(job):
            continue
        name = Obj(job).name
        try:
            pods = job_pods(client, namespace, name)
        except KubeError:
            continue  # looked at again on the next pass
        trouble = job_trouble(pods, now)
        if trouble is not None:
            found[name] = trouble
    return found


def job_failure(job: JSON) -> str | None:
    """Why a Job failed (its Failed condition's reason and message), or None."""
    for cond in conditions_of(Obj(job).status.conditions):
        if cond.type == "Failed" and cond.true:
            return f"{cond.reason or 'Failed'}: {cond.message}".rstrip(": ")
    return None


def job_complete(job: JSON) -> bool:
    return is_true(Obj(job).status.conditions, "Complete")


def job_pods(client: Client, namespace: str, job: str) -> list[JSON]:
    """The pods of Job ``job`` (by the ``job-name`` label the Job controller gives them)."""
    return items(client.list(PODS, namespace, label_selector=f"job-name={job}"), "items")


def last_words(pods: Iterable[JSON], container: str) -> str:
    """What ``container`` of the newest finished pod among ``pods`` left in its termination
    log (the program's own last words); empty when none has finished."""
    found = []
    for pod in pods:
        for status in Obj(pod).status.containers:
            terminated = status.terminated
            if status.name == container and terminated:
                found.append((text(terminated, "finishedAt"), terminated))
    if not found:
        return ""
    _, last = max(found, key=lambda pair: pair[0])
    return text(last, "message").strip()
