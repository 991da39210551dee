"""The restic host a backup or restore writes as: one rule for the sidecar, ``stash-init``,
backup and restore Jobs, and the operator that judges them.

- A StatefulSet's pod is ``host-<ordinal>``; a DaemonSet's pod is its node's name: every pod is
  a host of its own (``PER_POD_KINDS``).
- Every other target (Deployment, ReplicaSet, a PVC, a database) is one host: ``host-0``, or
  the member's ``target.alias``; one pod of a workload backs it up, chosen by a Lease.
- A restore into ``replicas`` new claims writes host ``host-<ordinal>`` (``<alias>-<ordinal>``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from api.naming import sidecar_lease

PER_POD_KINDS = ("StatefulSet", "DaemonSet")
SINGLE_HOST = "host-0"
_ORDINAL = re.compile(r"-(\d+)$")


def single_host(alias: str | None) -> str:
    """The host of a target that is one host whatever runs it: the alias, else ``host-0``."""
    return alias or SINGLE_HOST


def ordinal_host(alias: str | None, ordinal: int) -> str:
    """The host of one ordinal of a replicated target: ``host-<n>`` or ``<alias>-<n>``."""
    return f"{alias}-{ordinal}" if alias else f"host-{ordinal}"


@dataclass(frozen=True)
class Identity:
    """A pod that backs up or restores its workload (from the downward API)."""

    namespace: str
    target_kind: str
    target_name: str
    pod_name: str
    node_name: str = ""

    def hostname(self, alias: str | None) -> str:
        if self.target_kind == "StatefulSet":
            match = _ORDINAL.search(self.pod_name)
            if match is None:
                raise ValueError(f"pod {self.pod_name} has no StatefulSet ordinal")
            return f"host-{match.group(1)}"
        if self.target_kind == "DaemonSet":
            if not self.node_name:
                raise ValueError("NODE_NAME is not set (the downward API's spec.nodeName)")
            return self.node_name
        return single_host(alias)

    @property
    def elects(self) -> bool:
        """One pod of the workload backs up (Deployment, ReplicaSet…), chosen by a Lease."""
        return self.target_kind not in PER_POD_KINDS

    @property
    def lease_name(self) -> str:
        return sidecar_lease(self.target_kind, self.target_name)
