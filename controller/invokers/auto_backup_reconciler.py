"""Auto-backup, the hand: keeps the Repository and BackupConfiguration each annotated target
should have (``controller.invokers.auto_backup.plan``) and removes those it no longer should.

Keys are (kind, namespace, name) of targets. A target is looked at when it changes, when a
blueprint it names changes, and when something it generated is changed or deleted by someone
else (it is put back). Generated objects are server-side applied under their own field manager
and only when the cache shows them out of date (their digest, or a field changed under them),
so a converged target costs no write. An object of a generated name that auto-backup did not
generate for this target is never touched. When a blueprint generates nothing now (it is gone,
or wrong), what it generated before is kept, and the target gets a Warning Event saying why;
when the annotation no longer names it, its BackupConfiguration and then its Repository are
deleted (the Repository's ``wipeOut`` decides whether its data goes too). A deleted target's
BackupConfiguration goes with it (owner reference); its Repository stays, to restore from.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Final

from api.appbinding import APPBINDING_KIND
from api.blueprint import GENERATED_BY_LABEL
from api.naming import label_value
from api.objects import JSON
from api.tenancy import NEVER_TARGETS
from api.views import Obj
from controller.invokers.auto_backup import (
    GENERATED_FOR_ANNOTATION,
    TARGET_TYPES,
    Plan,
    blueprint_names,
    generated_for,
    plan,
)
from controller.runtime.caches import (
    BACKUP_CONFIGURATIONS,
    REPOSITORIES,
    Caches,
)
from controller.runtime.loop import Controller, Result, Writes
from controller.runtime.owned import ensure
from kube import Client, KubeError, NotFound, ResourceType
from kube.events import EventRecorder
from kube.types import BACKUP_BLUEPRINTS

log = logging.getLogger(__name__)

TargetKey = tuple[str, str, str]  # kind, namespace, name
FIELD_MANAGER: Final = "stash-auto-backup"
BY_BLUEPRINT: Final = "blueprints"  # targets' index: the blueprints they name
BY_TARGET: Final = "generated-for"  # generated objects' index: <namespace>/<Kind>/<name>
# deleted in this order: the BackupConfiguration first, so nothing backs up into a Repository
# being removed
GENERATED_TYPES: Final = (BACKUP_CONFIGURATIONS, REPOSITORIES)


class AutoBackupReconciler:
    def __init__(self, client: Client, caches: Caches, operator_namespace: str) -> None:
        self.client = client
        self.caches = caches
        # AppBindings are watched when their CRD is served at start (it is optional: KubeDB's,
        # or manifests/appbinding); one installed later is seen after the operator restarts
        self.target_types = {
            kind: rt
            for kind, rt in TARGET_TYPES.items()
            if kind != APPBINDING_KIND or _served(client, rt)
        }
        self.forbidden = NEVER_TARGETS | {operator_namespace}  # api.tenancy's rule
        self.writes = Writes()
        self.events = EventRecorder(client, "stash-auto-backup")
        # the problems last said of each target (forgotten once it has none, or is gone)
        self._said: dict[TargetKey, tuple[str, ...]] = {}

    # -- wiring ----------------------------------------------------------------------------

    def register(self, controller: Controller[TargetKey]) -> None:
        for kind, rt in self.target_types.items():
            informer = self.caches.informer(rt)
            informer.add_index(BY_BLUEPRINT, lambda o: blueprint_names(Obj(o).meta.annotations))
            informer.subscribe(on_upsert=controller.handler(self._keyer(kind)))
        for rt in GENERATED_TYPES:
            informer = self.caches.informer(rt)
            informer.add_index(BY_TARGET, _generated_index)
            informer.subscribe(
                on_upsert=controller.handler(self._changed_generated),
                on_delete=controller.handler(self._deleted_generated),
            )
        blueprints = self.caches.informer(BACKUP_BLUEPRINTS)
        blueprints.subscribe(
            on_upsert=lambda o: self._users_of(o, controller),
            on_delete=lambda o: self._users_of(o, controller),
        )

    def _keyer(self, kind: str) -> Callable[[JSON], TargetKey | None]:
        def key(obj: JSON) -> TargetKey | None:
            """Only targets that name a blueprint, or had objects generated: nothing else of
            the cluster's workloads costs a reconcile."""
            view = Obj(obj)
            named = blueprint_names(view.meta.annotations)
            if named or self._generated(view.namespace, f"{kind}/{view.name}"):
                return (kind, view.namespace, view.name)
            return None

        return key

    def _changed_generated(self, obj: JSON) -> TargetKey | None:
        """A generated object changed by someone else: its target looks again (our own
        write's echo needs nothing)."""
        return None if self.writes.echo(obj) else _generator_key(obj, self.target_types)

    def _deleted_generated(self, obj: JSON) -> TargetKey | None:
        self.writes.forget(obj)
        return _generator_key(obj, self.target_types)

    def _users_of(self, blueprint: JSON, controller: Controller[TargetKey]) -> None:
        name = Obj(blueprint).name
        for kind, rt in self.target_types.items():
            for target in self.caches.informer(rt).by_index(BY_BLUEPRINT, name):
                controller.enqueue((kind, *Obj(target).key))

    def _generated(self, namespace: str, kind_name: str) -> list[JSON]:
        """What auto-backup generated for a target, BackupConfigurations first."""
        value = f"{namespace}/{kind_name}"
        return [
            {"kind": rt.kind, "apiVersion": rt.api_version, **obj}
            for rt in GENERATED_TYPES
            for obj in self.caches.informer(rt).by_index(BY_TARGET, value)
        ]

    # -- reconciling ----------------------------------------------------------------------

    def reconcile(self, key: TargetKey) -> Result | None:
        kind, namespace, name = key
        rt = self.target_types.get(kind)
        cached = self.caches.get(rt, namespace, name) if rt else None
        if rt is None or cached is None or Obj(cached).meta.deleting:
            self._said.pop(key, None)
            return None  # its BackupConfigurations go with it; its Repositories stay
        target = {"apiVersion": rt.api_version, **cached, "kind": kind}
        names = blueprint_names(Obj(target).meta.annotations)
        blueprints = {n: self.caches.get(BACKUP_BLUEPRINTS, "", n) for n in names}
        wanted = plan(target, blueprints, forbidden_namespaces=self.forbidden)
        problems = list(wanted.problems)
        written: list[str] = []
        for generated in wanted.wanted:
            for obj in (generated.repository, generated.invoker):
                problem, wrote = self._ensure(target, obj)
                if problem is not None:
                    problems.append(problem)
                    break  # no BackupConfiguration without its Repository
                if wrote:
                    written.append(f"{obj['kind']} {Obj(obj).name}")
        removed = self._remove_unwanted(target, wanted)
        self._say(key, target, (written, removed), problems)
        return None

    def _ensure(self, target: JSON, desired: JSON) -> tuple[str | None, bool]:
        """Apply ``desired`` unless the cache shows it current (its digest and every field it
        sets: ``owned.ensure``): why it is left alone (or None), and whether it was written."""
        rt = REPOSITORIES if desired["kind"] == "Repository" else BACKUP_CONFIGURATIONS
        namespace, name = Obj(desired).key
        current = self.caches.get(rt, namespace, name)
        whose = Obj(current).meta.annotation(GENERATED_FOR_ANNOTATION) if current else None
        if current is not None and whose != generated_for(target):
            why = "already exists and was not generated by auto-backup for this target"
            return f"{desired['kind']} {namespace}/{name} {why}: left alone", False
        try:
            applied = ensure(
                self.client, self.caches, self.writes, desired, rt=rt, field_manager=FIELD_MANAGER
            )
        except KubeError as exc:
            return f"{desired['kind']} {namespace}/{name}: {exc}", False
        return None, applied is not None

    def _remove_unwanted(self, target: JSON, wanted: Plan) -> list[str]:
        """Delete what was generated for the target from a blueprint it no longer names; what
        a blueprint that is named but generates nothing now (``held``) made is kept."""
        keep = {Obj(g.invoker).name for g in wanted.wanted}
        held = {label_value(name) for name in wanted.held}
        removed = []
        view = Obj(target)
        for obj in self._generated(view.namespace, generated_for(target)):
            meta = Obj(obj).meta
            if meta.name in keep or meta.label(GENERATED_BY_LABEL) in held or meta.deleting:
                continue
            rt = REPOSITORIES if obj["kind"] == "Repository" else BACKUP_CONFIGURATIONS
            try:
                self.client.delete(rt, meta.name, meta.namespace, uid=meta.uid)
            except NotFound:
                continue
            except KubeError as exc:
                log.warning("could not delete %s %s: %s", obj["kind"], meta.name, exc)
                continue
            self.writes.record(meta.namespace)
            removed.append(f"{obj['kind']} {meta.name}")
        return removed

    def _say(
        self,
        key: TargetKey,
        target: JSON,
        changes: tuple[list[str], list[str]],
        problems: list[str],
    ) -> None:
        """Events on the target: what was generated or removed, and (once per new set of
        problems) why a blueprint generates nothing."""
        written, removed = changes
        if written:
            self.events.record(
                target,
                "Normal",
                "AutoBackupResourcesCreationSucceeded",
                "generated " + ", ".join(written),
            )
        if removed:
            self.events.record(
                target,
                "Normal",
                "AutoBackupResourcesDeletionSucceeded",
                "removed " + ", ".join(removed) + " (the annotation no longer names its blueprint)",
            )
        said = tuple(problems)
        if said and self._said.get(key) != said:
            self.events.record(
                target, "Warning", "AutoBackupResourcesCreationFailed", "; ".join(problems)
            )
        if said:
            self._said[key] = said
        else:
            self._said.pop(key, None)


def _generated_index(obj: JSON) -> list[str]:
    """``<namespace>/<Kind>/<name>`` of the target an object was generated for."""
    meta = Obj(obj).meta
    whose = meta.annotation(GENERATED_FOR_ANNOTATION)
    if not whose or not meta.label(GENERATED_BY_LABEL):
        return []
    return [f"{meta.namespace}/{whose}"]


def _generator_key(obj: JSON, kinds: Mapping[str, ResourceType]) -> TargetKey | None:
    """The target a generated object belongs to (None for anything else)."""
    found = _generated_index(obj)
    if not found:
        return None
    namespace, kind, name = found[0].split("/", 2)
    return (kind, namespace, name) if kind in kinds else None


def _served(client: Client, rt: ResourceType) -> bool:
    """Whether the API server serves ``rt`` now (an optional CRD installed)."""
    try:
        client.resource_type(rt.api_version, rt.kind)
    except KubeError:
        return False
    return True
