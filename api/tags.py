"""Restic snapshot tags: what a snapshot is of, and whose it is (DESIGN.md section 4).

Every backup is tagged ``namespace:<invoker namespace>``, ``invoker:<kind>/<name>``,
``target:<kind>/<name>`` and ``session:<name>``. A snapshot belongs to one namespace and one
invoker: two tenants sharing a Repository (its usagePolicy lets them) never select each other's
snapshots for retention, restore or listing, even when their targets have the same names.

Snapshots written before these tags existed carry only ``target:`` and ``session:``: they
belong to the Repository's own namespace (the only one that could use a Repository then,
unless its usagePolicy was widened), to any invoker there.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

NAMESPACE_PREFIX = "namespace:"
INVOKER_PREFIX = "invoker:"
TARGET_PREFIX = "target:"
SESSION_PREFIX = "session:"


def session_tag(session: str) -> str:
    return f"{SESSION_PREFIX}{session}"


def target_tag(kind: str, name: str) -> str:
    return f"{TARGET_PREFIX}{kind}/{name}"


def namespace_tag(namespace: str) -> str:
    return f"{NAMESPACE_PREFIX}{namespace}"


def invoker_tag(kind: str, name: str) -> str:
    return f"{INVOKER_PREFIX}{kind}/{name}"


def _value(tags: Iterable[str], prefix: str) -> str | None:
    for tag in tags:
        if tag.startswith(prefix):
            return tag[len(prefix) :]
    return None


@dataclass(frozen=True)
class SnapshotOwner:
    """Whose snapshots a selection may see: a namespace and, for a backup invoker's own work
    (retention), the invoker. ``repository_namespace`` owns the untagged snapshots of older
    versions."""

    namespace: str
    repository_namespace: str
    invoker: str | None = None  # "<kind>/<name>"; None: any invoker of the namespace (restores)

    @property
    def tags(self) -> tuple[str, ...]:
        """The tags a backup of this owner carries (with its target and session tags)."""
        own = (namespace_tag(self.namespace),)
        return (*own, f"{INVOKER_PREFIX}{self.invoker}") if self.invoker else own

    def owns(self, tags: Iterable[str]) -> bool:
        tags = tuple(tags)
        namespace = _value(tags, NAMESPACE_PREFIX)
        if (namespace if namespace is not None else self.repository_namespace) != self.namespace:
            return False
        invoker = _value(tags, INVOKER_PREFIX)
        return self.invoker is None or invoker is None or invoker == self.invoker
