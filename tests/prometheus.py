"""Reading Prometheus' text format in tests, independent of label order."""

from __future__ import annotations

import re


def metric_value(text: str, metric: str, /, **labels: str) -> float | None:
    """The value of the sample ``name`` whose labels include ``labels``, from Prometheus text."""
    for line in text.splitlines():
        if not line.startswith(metric + "{"):
            continue
        found = dict(re.findall(r'(\w+)="([^"]*)"', line[: line.rindex("}")]))
        if all(found.get(k) == v for k, v in labels.items()):
            return float(line.rsplit(" ", 1)[1])
    return None
