"""What an invoker's pods may read in its Repository's namespace when that is another one: a Role
and RoleBinding there (``stash-<kind>-<namespace>-<name>``) letting the invoker's Job and
workload service accounts get that one Repository and its storage Secret, by name, and for a
backup write the Repository's status and (through the ClusterRole ``stash-repository-init``)
take the Lease beside it that guards initialising the repository. Nothing else of that
namespace.

They exist only while the Repository's ``usagePolicy`` lets the invoker's namespace use it (the
operator makes them only for a Repository it found allowed) and the invoker names it: owner
references cannot cross namespaces, so ``Grants`` keeps an index of what it made, by the
invoker it was made for (annotation ``stash.appscode.com/granted-to: Kind/namespace/name``),
removes what an invoker no longer needs, and removes everything of an invoker that is gone,
also one deleted while the operator was down.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Sequence

from api import constants as c
from api.naming import REPOSITORY_INIT_CLUSTER_ROLE, fit, label_value
from api.objects import JSON
from api.repository import Repository
from api.views import Obj
from controller.runtime.caches import ROLE_BINDINGS, ROLES, Caches
from controller.runtime.loop import Writes
from controller.runtime.owned import ensure
from kube import Client
from kube.informer import Informer

InvokerKey = tuple[str, str, str]  # (invoker kind, namespace, name)
GRANTED_TO = f"{c.GROUP}/granted-to"


def grant_name(kind: str, namespace: str, name: str) -> str:
    return fit(f"stash-{kind.lower()}-{namespace}-{name}", 253)


def _grant_rules(repository: Repository, *, backup: bool) -> list[JSON]:
    """What the grant lets the invoker's accounts do in the Repository's namespace: get the
    Repository and its storage Secret, by name, and (a backup's last host) write its status."""
    repo_name = repository.metadata.name or ""
    rules: list[JSON] = [
        {
            "apiGroups": [c.GROUP],
            "resources": ["repositories"],
            "verbs": ["get"],
            "resourceNames": [repo_name],
        }
    ]
    if backup:  # a backup's last host writes the Repository's size, count and integrity
        rules.append(
            {
                "apiGroups": [c.GROUP],
                "resources": ["repositories/status"],
                "verbs": ["get", "patch", "update"],
                "resourceNames": [repo_name],
            }
        )
    secret = repository.spec.backend.storage_secret_name
    if secret:
        rules.append(
            {
                "apiGroups": [""],
                "resources": ["secrets"],
                "verbs": ["get"],
                "resourceNames": [secret],
            }
        )
    return rules


def repository_grant(
    invoker: JSON, repository: Repository | None, accounts: Iterable[str], *, backup: bool
) -> list[JSON]:
    """The Role and RoleBinding in the Repository's namespace (none when it is the invoker's
    own, or when there is no Repository)."""
    who = Obj(invoker)
    namespace = who.namespace
    if repository is None or (repository.metadata.namespace or namespace) == namespace:
        return []
    name = grant_name(who.kind, namespace, who.name)
    grant_meta: JSON = {
        "name": name,
        "namespace": repository.metadata.namespace or "",
        "labels": {
            **c.MANAGED_BY,
            c.INVOKER_TYPE_LABEL: who.kind,
            c.INVOKER_NAME_LABEL: label_value(who.name),
        },
        "annotations": {GRANTED_TO: f"{who.kind}/{namespace}/{who.name}"},
    }
    subjects = [
        {"kind": "ServiceAccount", "name": account, "namespace": namespace}
        for account in sorted(set(accounts))
    ]
    rbac = f"{c.RBAC_GROUP}/v1"
    objects: list[JSON] = [
        {
            "apiVersion": rbac,
            "kind": "Role",
            "metadata": grant_meta,
            "rules": _grant_rules(repository, backup=backup),
        },
        {
            "apiVersion": rbac,
            "kind": "RoleBinding",
            "metadata": grant_meta,
            "roleRef": {"apiGroup": c.RBAC_GROUP, "kind": "Role", "name": name},
            "subjects": subjects,
        },
    ]
    if backup:  # the Lease beside the Repository that guards initialising it
        init_role = {
            "apiGroup": c.RBAC_GROUP,
            "kind": "ClusterRole",
            "name": REPOSITORY_INIT_CLUSTER_ROLE,
        }
        objects.append(
            {
                "apiVersion": rbac,
                "kind": "RoleBinding",
                "metadata": {**grant_meta, "name": fit(f"{name}-init", 253)},
                "roleRef": init_role,
                "subjects": subjects,
            }
        )
    return objects


def granted_to(obj: JSON) -> InvokerKey | None:
    """The invoker a grant was made for, from its annotation."""
    parts = (Obj(obj).meta.annotation(GRANTED_TO) or "").split("/", 2)
    return (parts[0], parts[1], parts[2]) if len(parts) == 3 and all(parts) else None


class Grants:
    """The grants the operator made, by invoker; keeps each invoker's to what it needs."""

    def __init__(self, client: Client, caches: Caches, writes: Writes, kinds: Iterable[str]):
        self.client = client
        self.caches = caches
        self.writes = writes
        self.kinds = frozenset(kinds)  # the invoker kinds this reconciler answers for
        self._lock = threading.Lock()
        self._made: dict[InvokerKey, set[tuple[str, str, str]]] = {}  # -> {(kind, namespace, name)}

    def watch(self, enqueue: Callable[[InvokerKey], None]) -> None:
        """Index the grants as the caches see them, and have their invoker looked at (a grant
        whose invoker is gone is removed by that look)."""
        for rt in (ROLES, ROLE_BINDINGS):
            self._watch_kind(rt.kind, self.caches.informer(rt), enqueue)

    def _watch_kind(
        self, kind: str, informer: Informer, enqueue: Callable[[InvokerKey], None]
    ) -> None:
        def replaced(items: Sequence[JSON]) -> None:
            self._replace(kind, items, enqueue)

        def upserted(obj: JSON) -> None:
            self._upsert(kind, obj, enqueue)

        def deleted(obj: JSON) -> None:
            self._delete(kind, obj)

        informer.subscribe(on_replace=replaced, on_upsert=upserted, on_delete=deleted)

    def _replace(
        self, kind: str, items: Sequence[JSON], enqueue: Callable[[InvokerKey], None]
    ) -> None:
        with self._lock:
            for made in self._made.values():
                for entry in [e for e in made if e[0] == kind]:
                    made.discard(entry)
        for obj in items:
            self._upsert(kind, obj, enqueue)

    def _upsert(self, kind: str, obj: JSON, enqueue: Callable[[InvokerKey], None]) -> None:
        key = granted_to(obj)
        if key is None or key[0] not in self.kinds:
            return
        meta = obj["metadata"]
        with self._lock:
            self._made.setdefault(key, set()).add((kind, meta["namespace"], meta["name"]))
        enqueue(key)

    def _delete(self, kind: str, obj: JSON) -> None:
        key = granted_to(obj)
        if key is None:
            return
        meta = obj["metadata"]
        with self._lock:
            self._made.get(key, set()).discard((kind, meta["namespace"], meta["name"]))

    def keep(self, key: InvokerKey, desired: list[JSON]) -> None:
        """Apply ``desired`` (what the invoker ``key`` needs now; empty: nothing, or it is
        gone) and remove the rest of what was made for it."""
        for obj in desired:
            ensure(self.client, self.caches, self.writes, obj)
        wanted = {(o["kind"], o["metadata"]["namespace"], o["metadata"]["name"]) for o in desired}
        with self._lock:
            stale = sorted(self._made.get(key, set()) - wanted)
        for kind, namespace, name in stale:
            rt = ROLES if kind == "Role" else ROLE_BINDINGS
            self.client.delete(rt, name, namespace, missing_ok=True)
            self.writes.record(namespace)
            with self._lock:
                self._made.get(key, set()).discard((kind, namespace, name))
        with self._lock:
            if not self._made.get(key, True):
                del self._made[key]
