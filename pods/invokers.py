"""Which invoker members are carried out by a container injected into a workload's pods: the
``stash`` sidecar for BackupBatch / BackupConfiguration members in sidecar mode, the
``stash-init`` init container for RestoreSession / RestoreBatch members that restore a workload
and have not finished.

``SidecarIndex`` is a pure, immutable-per-update index: fed invoker objects (raw dicts, as a
watch delivers them) and Repositories, it answers "who targets Deployment demo/web, and which
local-backend volumes must its sidecar (or its stash-init) mount?" without any API call.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, TypeVar

from pydantic import ValidationError

from api.backup import BackupBatch, BackupConfiguration, BackupMember
from api.base import ObjectMeta
from api.common import EmptyDirSettings, ObjectReference, VolumeMount
from api.constants import LOCAL_BACKEND_VOLUME, RESTORE_INVOKER_KINDS
from api.objects import JSON
from api.pod_members import pod_members
from api.repository import Repository
from api.restore import RestoreBatch, RestoreMember, RestoreSession
from api.tenancy import Member, NamespacePolicy, Subject, Tenancy, refusals
from pods.volumes import local_volume

T = TypeVar("T")
WorkloadKey = tuple[str, str, str]  # (namespace, kind, name)
RepositoryKey = tuple[str, str]  # (namespace, name)


# A restore in one of these phases may still restore: its workloads' new pods get stash-init.
RESTORE_UNFINISHED = (None, "", "Pending", "Running")
RESTORES_REMEMBERED = 10_000  # restore uids kept by the index, seen or waited for


@dataclass(frozen=True)
class SidecarTarget:
    """One invoker member carried out in a workload's pods: backed up by the ``stash`` sidecar,
    or restored by the ``stash-init`` init container (``paths`` then empty)."""

    invoker_kind: str
    invoker_name: str
    member_index: int
    paths: tuple[str, ...]
    volume_mounts: tuple[VolumeMount, ...]
    container_settings: dict[str, Any] | None
    temp_dir: EmptyDirSettings | None
    repository: RepositoryKey = ("", "")
    invoker_uid: str = ""

    @property
    def invoker(self) -> str:
        return f"{self.invoker_kind}/{self.invoker_name}"


def sidecar_targets_of(invoker: dict[str, Any]) -> dict[WorkloadKey, list[SidecarTarget]]:
    """Every workload an invoker object targets in sidecar mode, with what the sidecar needs.

    An object that does not parse (it passed the CRD schema, but may be from a newer version)
    targets nothing: the webhook must never fail a pod because of someone's invoker.
    """
    kind = invoker.get("kind")
    try:
        if kind == "BackupBatch":
            batch = BackupBatch.from_dict(invoker)
            members = list(batch.spec.members or [])
            obj: BackupBatch | BackupConfiguration = batch
        elif kind == "BackupConfiguration":
            config = BackupConfiguration.from_dict(invoker)
            members = [config.spec]
            obj = config
        else:
            return {}
    except ValidationError:
        return {}
    return _in_pods(invoker, obj.metadata, obj.spec.repository, members)


def _in_pods(
    invoker: JSON,
    meta: ObjectMeta,
    ref: ObjectReference | None,
    members: list[BackupMember] | list[RestoreMember],
) -> dict[WorkloadKey, list[SidecarTarget]]:
    """The members carried out in their workload's pods (``api.pod_members`` decides which),
    by workload, with what their container needs."""
    kind = str(invoker.get("kind"))
    namespace, name = meta.namespace or "", meta.name or ""
    repository = ((ref.namespace or namespace), ref.name or "") if ref else (namespace, "")
    restoring = kind in RESTORE_INVOKER_KINDS
    found: dict[WorkloadKey, list[SidecarTarget]] = {}
    for chosen in pod_members(invoker):
        member = members[chosen.index] if chosen.index < len(members) else None
        if member is None or member.target is None:
            continue
        target = member.target
        container = member.runtime_settings.container if member.runtime_settings else None
        paths = () if restoring else tuple(getattr(target, "paths", None) or ())
        found.setdefault((namespace, chosen.kind, chosen.name), []).append(
            SidecarTarget(
                invoker_kind=kind,
                invoker_name=name,
                member_index=chosen.index,
                paths=paths,
                volume_mounts=tuple(target.volume_mounts or ()),
                container_settings=container,
                temp_dir=member.temp_dir,
                repository=repository,
                invoker_uid=(meta.uid or "") if restoring else "",
            )
        )
    return found


def init_targets_of(invoker: dict[str, Any]) -> dict[WorkloadKey, list[SidecarTarget]]:
    """Every workload an unfinished RestoreSession / RestoreBatch restores through stash-init.

    Once a restore has ended (Succeeded, Failed) or is Invalid, it targets nothing: new pods no
    longer get the init container. An object that does not parse targets nothing.
    """
    kind = invoker.get("kind")
    if kind not in RESTORE_INVOKER_KINDS:
        return {}
    if (invoker.get("status") or {}).get("phase") not in RESTORE_UNFINISHED:
        return {}
    try:
        if kind == "RestoreBatch":
            restore_batch = RestoreBatch.from_dict(invoker)
            members: list[RestoreMember] = list(restore_batch.spec.members or [])
            meta, ref = restore_batch.metadata, restore_batch.spec.repository
        else:
            session = RestoreSession.from_dict(invoker)
            members = [session.spec]
            meta, ref = session.metadata, session.spec.repository
    except ValidationError:
        return {}
    return _in_pods(invoker, meta, ref, members)


def _targets_of(invoker: dict[str, Any]) -> dict[WorkloadKey, list[SidecarTarget]]:
    if invoker.get("kind") in RESTORE_INVOKER_KINDS:
        return init_targets_of(invoker)
    return sidecar_targets_of(invoker)


class SidecarIndex:
    """Thread-safe index workload → sidecar targets, updated as invokers change."""

    def __init__(self, operator_namespace: str = "") -> None:
        self._lock = threading.Lock()
        self._operator_namespace = operator_namespace
        self._namespaces: dict[str, NamespacePolicy] = {}  # the tenant boundary's policies
        self._by_invoker: dict[tuple[str, str, str], dict[WorkloadKey, list[SidecarTarget]]] = {}
        self._by_workload: dict[WorkloadKey, tuple[SidecarTarget, ...]] = {}
        self._restoring: dict[WorkloadKey, tuple[SidecarTarget, ...]] = {}  # stash-init
        # which invokers target each workload: an invoker's change recomputes its workloads only
        self._invokers_of: dict[WorkloadKey, set[tuple[str, str, str]]] = {}
        self._repositories: dict[RepositoryKey, Repository] = {}
        self._memo: dict[WorkloadKey, dict[str, Any]] = {}  # derive()'s values per workload
        # The uid of every restore seen (any phase, deleted ones too) or waited for in vain,
        # oldest first; a pod rolled for a restore not in here is ahead of the index.
        self._restores_seen: dict[str, None] = {}
        self._restores_missed: dict[str, float] = {}  # uid -> when a pod first named it unseen

    @staticmethod
    def _invoker_key(obj: dict[str, Any]) -> tuple[str, str, str]:
        meta = obj.get("metadata", {})
        return (str(obj.get("kind")), str(meta.get("namespace", "")), str(meta.get("name", "")))

    def upsert(self, invoker: dict[str, Any]) -> set[WorkloadKey]:
        """Index an added or changed invoker; returns the workloads it targeted or targets."""
        key = self._invoker_key(invoker)
        targets = _targets_of(invoker)
        with self._lock:
            before = set(self._by_invoker.get(key, {}))
            self._by_invoker[key] = targets
            self._saw_restores([invoker])
            self._move(key, before, set(targets))
        return before | set(targets)

    def delete(self, invoker: dict[str, Any]) -> set[WorkloadKey]:
        """Forget an invoker; returns the workloads it targeted."""
        key = self._invoker_key(invoker)
        with self._lock:
            before = set(self._by_invoker.pop(key, {}))
            self._saw_restores([invoker])
            self._move(key, before, set())
        return before

    def replace(self, invokers: Iterable[dict[str, Any]], kind: str | None = None) -> None:
        """Replace every invoker (or, with ``kind``, every invoker of that kind)."""
        invokers = list(invokers)
        fresh = {self._invoker_key(obj): _targets_of(obj) for obj in invokers}
        with self._lock:
            if kind is not None:
                kept = {k: v for k, v in self._by_invoker.items() if k[0] != kind}
                fresh = {**kept, **fresh}
            self._by_invoker = fresh
            self._saw_restores(invokers)
            self._rebuild()

    # -- restores a pod was rolled for, which the index may not have seen yet -----------------

    def _saw_restores(self, invokers: Iterable[dict[str, Any]], *uids: str) -> None:
        """Remember restore uids (the lock held); the oldest go beyond RESTORES_REMEMBERED."""
        for obj in invokers:
            uid = (obj.get("metadata") or {}).get("uid")
            if obj.get("kind") in RESTORE_INVOKER_KINDS and isinstance(uid, str) and uid:
                uids = (*uids, uid)
        for uid in uids:
            self._restores_seen.pop(uid, None)
            self._restores_seen[uid] = None
        while len(self._restores_seen) > RESTORES_REMEMBERED:
            del self._restores_seen[next(iter(self._restores_seen))]

    def unseen_restores(self, uids: Iterable[str]) -> tuple[str, ...]:
        """Those of ``uids`` (restores a pod's template was rolled for) the index has not seen."""
        with self._lock:
            return tuple(u for u in uids if u not in self._restores_seen)

    def unseen_since(self, uids: Iterable[str], now: float) -> float:
        """When a pod first named one of these unseen restores (``now`` if none did before):
        how long pods naming them have been held back."""
        with self._lock:
            first = [self._restores_missed.setdefault(u, now) for u in uids]
            while len(self._restores_missed) > RESTORES_REMEMBERED:
                del self._restores_missed[next(iter(self._restores_missed))]
            return min(first, default=now)

    def give_up_restores(self, uids: Iterable[str]) -> None:
        """Count these restores as seen: no later pod naming them is held (a restore deleted
        before this process started is never seen)."""
        with self._lock:
            self._saw_restores((), *uids)

    # -- Repositories: their local backends are mounted into the sidecar ----------------------

    @staticmethod
    def _repository_key(obj: dict[str, Any]) -> RepositoryKey:
        meta = obj.get("metadata", {})
        return (str(meta.get("namespace", "")), str(meta.get("name", "")))

    @staticmethod
    def _parse_repository(obj: dict[str, Any]) -> Repository | None:
        try:
            return Repository.model_validate(obj)
        except ValidationError:
            return None  # never fail a pod over someone's Repository: it mounts nothing

    def _using(self, key: RepositoryKey) -> set[WorkloadKey]:
        every = [*self._by_workload.items(), *self._restoring.items()]
        return {w for w, ts in every if any(t.repository == key for t in ts)}

    def upsert_repository(self, obj: dict[str, Any]) -> set[WorkloadKey]:
        """Index an added or changed Repository; returns the workloads whose sidecar uses it."""
        key = self._repository_key(obj)
        parsed = self._parse_repository(obj)
        with self._lock:
            if parsed is None:
                self._repositories.pop(key, None)
            else:
                self._repositories[key] = parsed
            self._memo = {}
            return self._using(key)

    def delete_repository(self, obj: dict[str, Any]) -> set[WorkloadKey]:
        key = self._repository_key(obj)
        with self._lock:
            self._repositories.pop(key, None)
            self._memo = {}
            return self._using(key)

    def replace_repositories(self, items: Iterable[dict[str, Any]]) -> set[WorkloadKey]:
        parsed = {self._repository_key(o): self._parse_repository(o) for o in items}
        with self._lock:
            self._repositories = {k: v for k, v in parsed.items() if v is not None}
            self._memo = {}
            return set(self._by_workload) | set(self._restoring)

    # -- Namespaces: the tenant boundary's policies ---------------------------------------------

    @staticmethod
    def _policy(obj: dict[str, Any]) -> NamespacePolicy:
        return NamespacePolicy.of(str((obj.get("metadata") or {}).get("name", "")), obj)

    def upsert_namespace(self, obj: dict[str, Any]) -> None:
        policy = self._policy(obj)
        with self._lock:
            self._namespaces[policy.name] = policy
            self._memo = {}

    def delete_namespace(self, obj: dict[str, Any]) -> None:
        with self._lock:
            self._namespaces.pop(self._policy(obj).name, None)
            self._memo = {}

    def replace_namespaces(self, items: Iterable[dict[str, Any]]) -> None:
        policies = {policy.name: policy for policy in map(self._policy, items)}
        with self._lock:
            self._namespaces = policies
            self._memo = {}

    def admitted(
        self, namespace: str, targets: Iterable[SidecarTarget]
    ) -> tuple[tuple[SidecarTarget, ...], tuple[str, ...]]:
        """The targets the tenant boundary (``api.tenancy``) lets into pods of ``namespace``
        now, and a warning for each one it refuses: a Repository the namespace may not use, a
        local backend or container settings it was not allowed. A refused target puts nothing
        into the pod: no container, no volume."""
        with self._lock:
            tenancy = Tenancy(self._operator_namespace, dict(self._namespaces))
            repositories = dict(self._repositories)
        kept: list[SidecarTarget] = []
        warnings: list[str] = []
        for target in targets:
            batch = target.invoker_kind in ("BackupBatch", "RestoreBatch")
            where = f"spec.members[{target.member_index}]" if batch else "spec"
            settings = (
                {"container": target.container_settings} if target.container_settings else None
            )
            subject = Subject(
                namespace,
                repositories.get(target.repository),
                (Member(where, "", "", namespace, True, settings),),
            )
            refused = refusals(tenancy, subject)
            if refused:
                warnings.append(
                    f"{target.invoker}: nothing injected for it, refused: "
                    + "; ".join(str(r) for r in refused)
                )
            else:
                kept.append(target)
        return tuple(kept), tuple(warnings)

    def repositories_known(self, targets: Iterable[SidecarTarget]) -> bool:
        """Has the index seen every Repository the targets back up into? Until it has, a plan
        would lack their local-backend volumes and change (and roll pods) once they arrive."""
        with self._lock:
            return all(t.repository in self._repositories for t in targets)

    def local_backends(self, targets: Iterable[SidecarTarget]) -> tuple[tuple[JSON, JSON], ...]:
        """The (volume, mount) of each distinct local-backend Repository the targets use, in
        their order: ``stash-local`` for the first (Stash's name), ``stash-local-<n>`` after."""
        out: list[tuple[JSON, JSON]] = []
        seen: set[RepositoryKey] = set()
        with self._lock:
            repositories = dict(self._repositories)
        for target in targets:
            repo = repositories.get(target.repository)
            if target.repository in seen or repo is None:
                continue
            seen.add(target.repository)
            name = LOCAL_BACKEND_VOLUME if not out else f"{LOCAL_BACKEND_VOLUME}-{len(out) + 1}"
            found = local_volume(repo, name)
            if found is not None:
                out.append(found)
        return tuple(out)

    def _rebuild(self) -> None:
        """Every workload's targets anew from ``_by_invoker`` (the lock held)."""
        self._invokers_of = {}
        for key, targets in self._by_invoker.items():
            for workload in targets:
                self._invokers_of.setdefault(workload, set()).add(key)
        self._by_workload, self._restoring, self._memo = {}, {}, {}
        for workload in self._invokers_of:
            self._merge(workload)

    def _move(
        self, key: tuple[str, str, str], before: set[WorkloadKey], after: set[WorkloadKey]
    ) -> None:
        """Invoker ``key`` now targets ``after`` instead of ``before`` (the lock held): only
        those workloads are merged again, so an invoker's change costs its own workloads, not
        every invoker of the cluster."""
        for workload in before - after:
            holders = self._invokers_of.get(workload)
            if holders is not None:
                holders.discard(key)
                if not holders:
                    del self._invokers_of[workload]
        for workload in after:
            self._invokers_of.setdefault(workload, set()).add(key)
        for workload in before | after:
            self._merge(workload)

    def _merge(self, workload: WorkloadKey) -> None:
        """The workload's sidecar and stash-init targets from the invokers naming it, in a
        stable order: the same invokers always give the same sidecar (and hash)."""
        merged: list[SidecarTarget] = []
        restoring: list[SidecarTarget] = []
        for key in self._invokers_of.get(workload, ()):
            into = restoring if key[0] in RESTORE_INVOKER_KINDS else merged
            into.extend(self._by_invoker[key].get(workload, ()))
        for index, items in ((self._by_workload, merged), (self._restoring, restoring)):
            if items:
                index[workload] = tuple(sorted(items, key=lambda t: (t.invoker, t.member_index)))
            else:
                index.pop(workload, None)
        self._memo.pop(workload, None)

    def targets(self, namespace: str, kind: str, name: str) -> tuple[SidecarTarget, ...]:
        return self._by_workload.get((namespace, kind, name), ())

    def init_targets(self, namespace: str, kind: str, name: str) -> tuple[SidecarTarget, ...]:
        """The unfinished restores of the workload, whose new pods get stash-init."""
        return self._restoring.get((namespace, kind, name), ())

    def derive(
        self,
        namespace: str,
        kind: str,
        name: str,
        tag: str,
        compute: Callable[[tuple[SidecarTarget, ...]], T],
        *,
        restoring: bool = False,
    ) -> T | None:
        """``compute(targets)`` for a workload (its sidecar targets, or with ``restoring`` its
        stash-init ones), remembered under ``tag`` until the index next changes; None when
        nothing targets the workload. Keeps the admission path from rebuilding the same
        sidecar for every pod of a Deployment.
        """
        key = (namespace, kind, name)
        source = self._restoring if restoring else self._by_workload
        with self._lock:
            targets = source.get(key)
            if not targets:
                return None
            memo = self._memo.get(key, {})
            if tag in memo:
                remembered: T = memo[tag]
                return remembered
        value = compute(targets)
        with self._lock:
            source = self._restoring if restoring else self._by_workload
            if source.get(key) is targets:  # still current: remember it
                self._memo.setdefault(key, {})[tag] = value
        return value

    def workloads(self) -> dict[WorkloadKey, tuple[SidecarTarget, ...]]:
        with self._lock:
            return dict(self._by_workload)

    def restored_workloads(self) -> dict[WorkloadKey, tuple[SidecarTarget, ...]]:
        with self._lock:
            return dict(self._restoring)
