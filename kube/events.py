"""Kubernetes Events (core/v1) about an object, as ``kubectl describe`` shows them.

Recording never fails the caller: an Event that cannot be written is logged and dropped.
"""

from __future__ import annotations

import datetime as dt
import logging
import uuid
from typing import Any

from kube.client import Client
from kube.errors import KubeError

log = logging.getLogger(__name__)

MAX_MESSAGE = 1024


class EventRecorder:
    def __init__(self, client: Client, component: str) -> None:
        self.client = client
        self.component = component
        self.recorded = 0

    def record(self, obj: dict[str, Any], type_: str, reason: str, message: str) -> None:
        meta = obj.get("metadata", {})
        namespace = meta.get("namespace") or "default"
        now = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        event = {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {
                "name": f"{meta.get('name', 'object')}.{uuid.uuid4().hex[:12]}",
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
        except KubeError as exc:
            log.warning("could not record event %s on %s: %s", reason, meta.get("name"), exc)
