"""Tenancy: which namespaces an invoker may reach besides its own.

An invoker acts inside its own namespace. A member whose ``target.ref.namespace`` names another
namespace is honoured only when that namespace allows it: its Namespace object carries the
annotation ``stash.appscode.com/allowed-invoker-namespaces`` listing the invoker's namespace
(comma-separated names). Only who may edit the Namespace (a cluster administrator) can grant
it, and a tenant cannot grant itself another's namespace. The operator's own namespace and
``kube-system`` are never targets, whatever their annotations say.

Even when allowed, only Job-model members reach across: their Job runs in the invoker's
namespace with the invoker's service account, so nothing gains privileges it did not have. A
workload's sidecar runs in the workload's namespace and watches only that namespace, and a
PVC can be mounted only by pods of its own namespace; both are refused across namespaces
with a message saying so. ``refusal`` is the pure rule; the reconcilers ask it before they
read, write or create anything for a member.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from api.constants import GROUP, PVC_KIND
from api.pod_members import WORKLOAD_KINDS
from controller.caches import NAMESPACES, Caches

JSON = dict[str, Any]
ALLOW_ANNOTATION = f"{GROUP}/allowed-invoker-namespaces"
NEVER_TARGETS = frozenset({"kube-system"})


def allowed_invoker_namespaces(namespace_obj: JSON | None) -> frozenset[str]:
    """The invoker namespaces a Namespace object allows in (its annotation's names)."""
    annotations = ((namespace_obj or {}).get("metadata") or {}).get("annotations") or {}
    raw = str(annotations.get(ALLOW_ANNOTATION) or "")
    return frozenset(part.strip() for part in raw.split(",") if part.strip())


@dataclass(frozen=True)
class Tenancy:
    """What the rule needs to know: the operator's namespace and the grants in force."""

    operator_namespace: str
    grants: Mapping[str, frozenset[str]] = field(default_factory=dict)  # target ns -> invokers

    def refusal(
        self, invoker_namespace: str, target_namespace: str, kind: str, sidecar: bool
    ) -> str | None:
        """Why an invoker in ``invoker_namespace`` may not target ``kind`` in
        ``target_namespace``, or None when it may."""
        if target_namespace == invoker_namespace:
            return None
        if target_namespace in NEVER_TARGETS or target_namespace == self.operator_namespace:
            return f"namespace {target_namespace} is never a backup target of another namespace"
        if sidecar and kind in WORKLOAD_KINDS:
            return (
                f"a {kind}'s stash sidecar runs in namespace {target_namespace} and serves "
                f"only invokers there; create the invoker in {target_namespace}"
            )
        if kind == PVC_KIND:
            return (
                f"a PersistentVolumeClaim can be mounted only by pods in its own namespace "
                f"({target_namespace}); create the invoker there"
            )
        if invoker_namespace not in self.grants.get(target_namespace, frozenset()):
            return (
                f"namespace {target_namespace} does not allow invokers from "
                f"{invoker_namespace} (its annotation {ALLOW_ANNOTATION} must list "
                f"{invoker_namespace})"
            )
        return None


def read_tenancy(caches: Caches, operator_namespace: str, namespaces: Iterable[str]) -> Tenancy:
    """The grants of ``namespaces`` as the Namespace cache has them."""
    return Tenancy(
        operator_namespace,
        {ns: allowed_invoker_namespaces(caches.get(NAMESPACES, "", ns)) for ns in set(namespaces)},
    )
