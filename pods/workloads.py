"""A workload's pods: its selector as a label selector for a list, and the pods it picks."""

from __future__ import annotations

from api.objects import JSON
from api.tenancy import selector_matches


def match_labels_selector(workload: JSON) -> str | None:
    """The ``labelSelector`` of the workload's ``matchLabels`` (expressions are applied by
    ``pods_of``); None when it has none."""
    labels = ((workload.get("spec") or {}).get("selector") or {}).get("matchLabels") or {}
    return ",".join(f"{k}={v}" for k, v in sorted(labels.items())) or None


def pods_of(workload: JSON, pods: list[JSON]) -> list[JSON]:
    """The pods (of the workload's namespace) its selector picks, terminating ones left out."""
    selector = (workload.get("spec") or {}).get("selector")
    if not selector:
        return []
    return [
        p
        for p in pods
        if not p["metadata"].get("deletionTimestamp")
        and selector_matches(selector, p["metadata"].get("labels") or {})
    ]
