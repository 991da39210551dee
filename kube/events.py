"""Kubernetes Events (core/v1) about an object, as ``kubectl describe`` shows them.

Recording never fails the caller: an Event that cannot be written is logged and dropped.
"""

from __future__ import annotations

import datetime as dt
import logging
import uuid
from typing import Any

from kube.client import Client
from kube.errors import AlreadyExists, KubeError, NotFound
from kube.types import EVENTS

log = logging.getLogger(__name__)

MAX_MESSAGE = 1024


class EventRecorder:
    def __init__(self, client: Client, component: str) -> None:
        self.client = client
        self.component = component
        self.recorded = 0

    def record(
        self, obj: dict[str, Any], type_: str, reason: str, message: str, *, name: str = ""
    ) -> None:
        """Record an Event; with ``name``, that one Event, its message and count updated each
        time (progress: one line that moves, not a new Event per step)."""
        if name and self._update(obj, name, message):
            return
        meta = obj.get("metadata", {})
        namespace = meta.get("namespace") or "default"
        now = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        event = {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {
                "name": name or f"{meta.get('name', 'object')}.{uuid.uuid4().hex[:12]}",
                "namespace": namespace,
            },
            "involvedObject": {
                "apiVersion": obj.get("apiVersion", ""),
                "kind": obj.get("kind", ""),
                "name": meta.get("name", ""),
                "namespace": namespace,
                "uid": meta.get("uid", ""),
            },
            "type": type_,
            "reason": reason,
            "message": message[:MAX_MESSAGE],
            "source": {"component": self.component},
            "reportingComponent": self.component,
            "firstTimestamp": now,
            "lastTimestamp": now,
            "count": 1,
        }
        try:
            self.client.create(event)
            self.recorded += 1
        except AlreadyExists:
            self._update(obj, name, message)  # made meanwhile by another pass
        except KubeError as exc:
            log.warning("could not record event %s on %s: %s", reason, meta.get("name"), exc)

    def _update(self, obj: dict[str, Any], name: str, message: str) -> bool:
        """Move the named Event on; False when there is none yet."""
        namespace = obj.get("metadata", {}).get("namespace") or "default"
        try:
            event = self.client.get(EVENTS, name, namespace)
        except NotFound:
            return False
        except KubeError as exc:
            log.warning("could not read event %s: %s", name, exc)
            return True  # never fail the caller; the next step tries again
        now = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        patch = {
            "message": message[:MAX_MESSAGE],
            "lastTimestamp": now,
            "count": int(event.get("count") or 1) + 1,
        }
        try:
            self.client.patch(EVENTS, name, patch, namespace=namespace)
            self.recorded += 1
        except KubeError as exc:
            log.warning("could not update event %s: %s", name, exc)
        return True
