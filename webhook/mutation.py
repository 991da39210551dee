"""The admission decision, as a pure function: ``handle(request, index, settings)``.

Only CREATE of pods carrying the opt-in label are mutated: the ``stash`` sidecar when backup
invokers target the pod's workload, ``stash-init`` while an unfinished restore does. The pod's
workload is found from its owner references (a Deployment through its ReplicaSet's
``pod-template-hash`` naming), its invokers from the in-memory index: no API call happens on
the request path. ``rolled_for_restores`` names the restores a pod was rolled for, so that the
caller can first let the index catch up with them.
"""

from __future__ import annotations

from api.admission import AdmissionRequest, AdmissionResponse
from api.constants import BACKUP_LABEL, BACKUP_LABEL_VALUE, RESTORE_ANNOTATION
from api.objects import JSON
from pods.invokers import SidecarIndex, SidecarTarget
from pods.sidecar import SidecarPlan, SidecarSettings, has_sidecar, inject, inject_init, plan_for
from webhook.patch import diff

# The operator names a workload's unfinished restores; more than this on a pod is not its doing.
MAX_RESTORES = 16


def workload_of(pod: JSON) -> tuple[str, str] | None:
    """(kind, name) of the workload that owns ``pod``, or None."""
    meta = pod.get("metadata") or {}
    refs = meta.get("ownerReferences") or []
    owner = next((r for r in refs if isinstance(r, dict) and r.get("controller")), None)
    if owner is None and len(refs) == 1 and isinstance(refs[0], dict):
        owner = refs[0]
    if owner is None:
        return None
    kind, name = owner.get("kind"), owner.get("name")
    if not isinstance(name, str) or not name:
        return None
    if kind in ("StatefulSet", "DaemonSet"):
        return (kind, name)
    if kind == "ReplicaSet":
        # The Deployment controller names its ReplicaSets "<deployment>-<pod-template-hash>"
        # and labels their pods with that hash.
        pod_hash = (meta.get("labels") or {}).get("pod-template-hash")
        if isinstance(pod_hash, str) and pod_hash and name.endswith(f"-{pod_hash}"):
            return ("Deployment", name[: -len(pod_hash) - 1])
    return None


def rolled_for_restores(request: AdmissionRequest) -> tuple[str, ...]:
    """The uids of the restores an opted-in pod being created was rolled for (its template's
    annotation): its stash-init depends on the index having seen them."""
    pod = request.object
    if request.kind != "Pod" or request.operation != "CREATE" or not isinstance(pod, dict):
        return ()
    meta = pod.get("metadata") or {}
    if (meta.get("labels") or {}).get(BACKUP_LABEL) != BACKUP_LABEL_VALUE:
        return ()
    value = (meta.get("annotations") or {}).get(RESTORE_ANNOTATION)
    if not isinstance(value, str):
        return ()
    uids = tuple(uid for uid in (u.strip() for u in value.split(",")) if uid)
    return uids[:MAX_RESTORES]


def handle(
    request: AdmissionRequest, index: SidecarIndex, settings: SidecarSettings
) -> AdmissionResponse:
    allow = AdmissionResponse(uid=request.uid)
    pod = request.object
    if request.kind != "Pod" or request.operation != "CREATE" or pod is None:
        return allow
    labels = (pod.get("metadata") or {}).get("labels") or {}
    if labels.get(BACKUP_LABEL) != BACKUP_LABEL_VALUE:
        return allow
    namespace = request.namespace or (pod.get("metadata") or {}).get("namespace") or ""
    workload = workload_of(pod)
    if workload is None:
        return AdmissionResponse(
            uid=request.uid,
            warnings=(
                f"pod has {BACKUP_LABEL}={BACKUP_LABEL_VALUE} but no Deployment, StatefulSet or "
                "DaemonSet owns it: no stash sidecar injected",
            ),
        )
    kind, name = workload

    def planned(targets: tuple[SidecarTarget, ...]) -> tuple[SidecarPlan | None, tuple[str, ...]]:
        """The plan of what the tenant boundary admits of ``targets``, and its refusals."""
        kept, refused = index.admitted(namespace, targets)
        if not kept:
            return None, refused
        return plan_for(kind, name, kept, index.local_backends(kept)), refused

    sidecar = index.derive(namespace, kind, name, "sidecar-plan", planned)
    init = index.derive(namespace, kind, name, "init-plan", planned, restoring=True)
    plan, refused = sidecar or (None, ())
    init_plan, init_refused = init or (None, ())
    refusals = tuple(dict.fromkeys((*refused, *init_refused)))
    if plan is None and init_plan is None and not has_sidecar(pod):
        return AdmissionResponse(
            uid=request.uid,
            warnings=refusals
            or (
                f"no BackupBatch or BackupConfiguration targets {kind} {namespace}/{name} in "
                "sidecar mode: no stash sidecar injected",
            ),
        )
    mutated: JSON = pod
    warnings: list[str] = list(refusals)
    if plan is not None:
        mutated, sidecar_warnings = inject(mutated, plan, settings)
        warnings += [w for w in sidecar_warnings if w not in warnings]
    if init_plan is not None:  # an unfinished restore: the data is put back before the app
        mutated, init_warnings = inject_init(mutated, init_plan, settings)
        warnings += [w for w in init_warnings if w not in warnings]
    if mutated is pod:  # reinvoked: everything is in place already
        return AdmissionResponse(uid=request.uid, warnings=tuple(warnings))
    return AdmissionResponse(uid=request.uid, patch=diff(pod, mutated), warnings=tuple(warnings))
