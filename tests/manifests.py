"""Test helpers over manifests: loading fixtures, CRD defaults, fields a schema would prune."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import yaml

from api.objects import JSON

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = Path(__file__).resolve().parent / "fixtures"


def load_all(path: Path) -> list[JSON]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


def stash_manifests() -> list[JSON]:
    return load_all(FIXTURES / "stash-manifests.yaml")


def manifest_id(doc: JSON) -> str:
    return f"{doc['kind']}/{doc['metadata']['name']}"


def with_defaults(schema: JSON, value: Any) -> Any:
    """``value`` as the API server stores it: CRD defaults filled in where absent."""
    value = copy.deepcopy(value)
    if isinstance(value, dict) and schema.get("type") == "object":
        props = schema.get("properties", {})
        for key, sub in props.items():
            if key not in value and "default" in sub:
                value[key] = copy.deepcopy(sub["default"])
        for key, item in list(value.items()):
            if key in props:
                value[key] = with_defaults(props[key], item)
            elif isinstance(schema.get("additionalProperties"), dict):
                value[key] = with_defaults(schema["additionalProperties"], item)
    elif isinstance(value, list) and schema.get("type") == "array":
        value = [with_defaults(schema["items"], item) for item in value]
    return value


def pruned_paths(schema: JSON, value: Any, path: str = "") -> list[str]:
    """Paths in ``value`` the schema does not declare (the API server would drop them)."""
    if schema.get("x-kubernetes-preserve-unknown-fields"):
        return []
    found: list[str] = []
    if isinstance(value, dict) and schema.get("type") == "object":
        props = schema.get("properties", {})
        extra = schema.get("additionalProperties")
        for key, item in value.items():
            if key in props:
                found += pruned_paths(props[key], item, f"{path}.{key}")
            elif isinstance(extra, dict):
                found += pruned_paths(extra, item, f"{path}.{key}")
            else:
                found.append(f"{path}.{key}")
    elif isinstance(value, list) and schema.get("type") == "array":
        for i, item in enumerate(value):
            found += pruned_paths(schema["items"], item, f"{path}[{i}]")
    return found
