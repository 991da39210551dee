"""Install CustomResourceDefinitions and wait until the API server serves them."""

from __future__ import annotations

import time
from typing import Any

from kube.client import Client
from kube.errors import KubeError
from kube.types import CRDS

CRD_TYPE = CRDS


def established(crd: dict[str, Any]) -> bool:
    conditions = crd.get("status", {}).get("conditions", []) or []
    return any(c.get("type") == "Established" and c.get("status") == "True" for c in conditions)


def install_crds(
    client: Client, crds: list[dict[str, Any]], *, field_manager: str, timeout: float = 60.0
) -> None:
    """Server-side apply each CRD, then wait until every one is Established."""
    for crd in crds:
        client.apply(crd, field_manager=field_manager)
    deadline = time.monotonic() + timeout
    pending = [crd["metadata"]["name"] for crd in crds]
    while pending:
        pending = [name for name in pending if not established(client.get(CRD_TYPE, name))]
        if not pending:
            break
        if time.monotonic() > deadline:
            raise KubeError(message=f"CRDs not Established after {timeout:.0f}s: {pending}")
        time.sleep(0.1)
    # New groups appear in discovery only now.
    client.forget_discovery()
