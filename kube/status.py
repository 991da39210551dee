"""The one status writer. Every reconciler and every in-pod program writes an object's status
through its ``/status`` subresource, conditional on the resourceVersion it read: a status
computed from a stale read is refused (Conflict) instead of written over a newer one.

- ``write_status``: one write of a status computed from the object as read (a reconciler's:
  a Conflict or NotFound goes back to the caller, whose next pass reads again).
- ``update_status``: read, change, write, again on Conflict (several writers of one object at
  once: the hosts of a session and the operator).
"""

from __future__ import annotations

import time
from collections.abc import Callable

from api.objects import JSON
from kube.client import Client, ResourceType
from kube.errors import Conflict

ATTEMPTS = 20


class StatusError(RuntimeError):
    """A status could not be written: it kept changing, or the change refused it."""


def write_status(client: Client, rt: ResourceType, obj: JSON, status: JSON) -> JSON:
    """Write ``status`` to ``obj`` as read; the object as written."""
    meta = obj["metadata"]
    return client.patch(
        rt,
        meta["name"],
        {"metadata": {"resourceVersion": meta["resourceVersion"]}, "status": status},
        namespace=meta.get("namespace"),
        subresource="status",
    )


def update_status(
    client: Client,
    rt: ResourceType,
    namespace: str,
    name: str,
    change: Callable[[JSON], JSON | None],
) -> tuple[JSON, JSON]:
    """Apply ``change`` to the object's current status and write it, again until the write is
    not a Conflict; returns (the status before, the status written). ``change`` returning None
    (or the same status) writes nothing."""
    for attempt in range(ATTEMPTS):
        obj = client.get(rt, name, namespace)
        before = obj.get("status") or {}
        after = change(before)
        if after is None or after == before:
            return before, before
        try:
            write_status(client, rt, obj, after)
            return before, after
        except Conflict:
            time.sleep(min(0.05 * (attempt + 1), 0.5))
    raise StatusError(f"{rt.kind} {namespace}/{name}: status kept changing")
