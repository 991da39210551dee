"""The objects the operator keeps for invokers (trigger CronJobs, ServiceAccounts, Roles,
RoleBindings): server-side applied under one field manager, and only when the cache shows that
they lack something desired, so a converged invoker costs no write. And the Jobs sessions own:
looked up in the cache, or on the API server when the session says it made one the cache has
not seen yet (a watch lagging behind its creation)."""

from __future__ import annotations

import logging
from typing import Any

from api.objects import JSON
from api.views import Obj
from controller.runtime.caches import JOBS, OWNED_TYPES, Caches
from controller.runtime.loop import Writes
from kube import Client, NotFound, ResourceType

log = logging.getLogger(__name__)

OPERATOR_FIELD_MANAGER = "stash-operator"


def contains(actual: Any, desired: Any) -> bool:
    """Does ``actual`` hold everything ``desired`` says (server defaults may add more)?"""
    if isinstance(desired, dict):
        return isinstance(actual, dict) and all(
            k in actual and contains(actual[k], v) for k, v in desired.items()
        )
    if isinstance(desired, list):
        return (
            isinstance(actual, list)
            and len(actual) == len(desired)
            and all(contains(a, d) for a, d in zip(actual, desired, strict=True))
        )
    return bool(actual == desired)


def ensure(
    client: Client,
    caches: Caches,
    writes: Writes,
    desired: JSON,
    *,
    rt: ResourceType | None = None,
    field_manager: str = OPERATOR_FIELD_MANAGER,
) -> JSON | None:
    """Apply ``desired`` (of ``rt``: default one of ``OWNED_TYPES``) under ``field_manager``
    unless the cached object already holds all of it; the object as the API server stored it
    (None when nothing was written)."""
    rt = rt or OWNED_TYPES[desired["kind"]]
    namespace, name = Obj(desired).key
    current = caches.get(rt, namespace, name)
    if current is not None and contains(current, desired):
        return None
    applied = client.apply(desired, field_manager=field_manager)
    unchanged = current is not None and _version(current) == _version(applied)
    writes.record(namespace, None if unchanged else applied)  # no change, no echo
    return applied


def _version(obj: JSON) -> str:
    return Obj(obj).meta.resource_version


def find_job(
    client: Client, caches: Caches, namespace: str, name: str, *, made: bool, owner_uid: str = ""
) -> JSON | None:
    """The Job ``name``; None when there is none, or (``owner_uid`` given) when the one of that
    name is another owner's (an earlier session or restore of the same name)."""
    job = caches.get(JOBS, namespace, name)
    if job is None and made:
        try:
            job = client.get(JOBS, name, namespace)
        except NotFound:
            return None
    if job is not None and owner_uid and not owned_by(job, owner_uid):
        return None
    return job


def owned_by(obj: JSON, uid: str) -> bool:
    return any(o.uid == uid for o in Obj(obj).meta.owners)


def stop_job(client: Client, writes: Writes, job: JSON | None, why: str) -> None:
    """Delete ``job`` (its pods with it) if it still runs; ``why`` for the log."""
    if job is None or Obj(job).meta.deleting:
        return
    status = Obj(job).status
    if status.count("succeeded") or status.count("failed"):
        return
    namespace, name = Obj(job).key
    log.info("stopping Job %s/%s: %s", namespace, name, why)
    client.delete(JOBS, name, namespace, missing_ok=True)
    writes.record(namespace)
