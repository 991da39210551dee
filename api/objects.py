"""A Kubernetes object as the API server sends it: a JSON object, kept raw where the code only
passes it on or patches it (the admitted pod, a Job being built) and read through typed views
where a decision depends on it."""

from __future__ import annotations

from typing import Any

JSON = dict[str, Any]
