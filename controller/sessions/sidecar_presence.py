"""Why no sidecar can back up a workload target (or no stash-init restore one): the judgement
behind failing such a target that never reports, instead of leaving its session Running until
the deadline.

A sidecar target is carried out by the ``stash`` containers of the workload's pods. When none
of its pods is ready with one — the workload scaled to 0, its pods created before the opt-in
label (so without the sidecar), the sidecar crashing — nothing will ever report, and the
target fails saying which of these it is.

A restore's pods carry the uids of the restores their template was rolled for; one of them that
came up without ``stash-init`` (``rolled_without_init``) missed its restore.
"""

from __future__ import annotations

from api.constants import RESTORE_ANNOTATION, RESTORE_INIT_CONTAINER, SIDECAR_CONTAINER
from api.objects import JSON
from api.views import ContainerStatus, Obj, text
from pods.sidecar import INIT_COMMAND, SIDECAR_COMMAND, has_init, has_sidecar, name_clash


def _sidecar_status(pod: JSON) -> ContainerStatus:
    """The sidecar's container status (an empty one before the kubelet reports it)."""
    found = (s for s in Obj(pod).status.containers if s.name == SIDECAR_CONTAINER)
    return next(found, ContainerStatus(None))


def _not_ready_reason(status: ContainerStatus) -> str:
    waiting = status.waiting
    if waiting:
        return f"{text(waiting, 'reason', 'Waiting')}: {text(waiting, 'message')}".rstrip(": ")
    terminated = status.terminated or status.last_terminated
    if terminated:
        return f"exited {text(terminated, 'exitCode', 'None')} ({text(terminated, 'reason')})"
    return "not ready"


def why_absent(kind: str, namespace: str, name: str, pods: list[JSON]) -> str | None:
    """Why none of ``pods`` (the workload's) can back it up; None when one can."""
    where = f"{kind} {namespace}/{name}"
    with_sidecar = [p for p in pods if has_sidecar(p)]
    if any(_sidecar_status(p).ready for p in with_sidecar):
        return None
    if not pods:
        return f"{where} has no pods (scaled to 0?): no stash sidecar runs to back it up"
    clash = next(
        (c for p in pods if (c := name_clash(p, SIDECAR_CONTAINER, SIDECAR_COMMAND))), None
    )
    if not with_sidecar and clash:
        return f"{len(pods)} pod(s) of {where} run without the stash sidecar: {clash}"
    if not with_sidecar:
        return (
            f"{len(pods)} pod(s) of {where} run without the stash sidecar: they were created "
            f"before the opt-in label; restart them (kubectl rollout restart "
            f"{kind.lower()}/{name} -n {namespace}) to back them up"
        )
    reasons = "; ".join(
        f"pod {Obj(p).name}: {_not_ready_reason(_sidecar_status(p))}" for p in with_sidecar[:5]
    )
    return f"no stash sidecar of {where} is ready ({reasons})"


def why_init_absent(kind: str, namespace: str, name: str, pods: list[JSON]) -> str | None:
    """Why no stash-init among ``pods`` (the workload's) will restore it; None when one may."""
    where = f"{kind} {namespace}/{name}"
    if not pods:
        return f"{where} has no pods (scaled to 0?): no stash-init runs to restore it"
    if any(has_init(p) for p in pods):
        return None
    clash = next(
        (c for p in pods if (c := name_clash(p, RESTORE_INIT_CONTAINER, INIT_COMMAND))), None
    )
    if clash:
        return f"{len(pods)} pod(s) of {where} run without the stash-init init container: {clash}"
    return (
        f"{len(pods)} pod(s) of {where} run without the stash-init init container: the webhook "
        "did not inject it (is it running? its failurePolicy Ignore lets pods start without "
        "it)"
    )


def rolled_without_init(pods: list[JSON], restore_uid: str) -> list[JSON]:
    """The pods made from a template rolled for the restore ``restore_uid`` that came up
    without stash-init: the webhook had not seen the restore yet, or did not answer."""
    found = []
    for pod in pods:
        marks = Obj(pod).meta.annotation(RESTORE_ANNOTATION) or ""
        if restore_uid in marks.split(",") and not has_init(pod):
            found.append(pod)
    return found
