"""JSON Patch (RFC 6902) from two JSON documents: the operations that turn ``old`` into ``new``.

Built for the admission path: subtrees that are the same object in both documents (the mutated
pod is a path copy of the admitted one) are skipped at once; lists that only grew get ``add
/-`` operations; any other change replaces the value. The result is always correct (a property
test applies it), minimal for appends, not for arbitrary list edits.
"""

from __future__ import annotations

from typing import Any

Op = dict[str, Any]


def _escape(key: str) -> str:
    return key.replace("~", "~0").replace("/", "~1")


def _same(a: Any, b: Any) -> bool:
    """JSON equality: unlike Python's ==, 1, 1.0 and true differ, at any depth."""
    if a is b:
        return True
    if type(a) is not type(b):
        return False
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_same(v, b[k]) for k, v in a.items())
    if isinstance(a, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    return bool(a == b)


def diff(old: Any, new: Any, path: str = "") -> list[Op]:  # noqa: PLR0911 - one per JSON shape
    if old is new:
        return []
    if isinstance(old, dict) and isinstance(new, dict):
        ops: list[Op] = [
            {"op": "remove", "path": f"{path}/{_escape(k)}"} for k in old if k not in new
        ]
        for key, value in new.items():
            if key not in old:
                ops.append({"op": "add", "path": f"{path}/{_escape(key)}", "value": value})
            elif old[key] is not value:
                ops.extend(diff(old[key], value, f"{path}/{_escape(key)}"))
        return ops
    if isinstance(old, list) and isinstance(new, list):
        size = len(old)
        if len(new) >= size and all(_same(a, b) for a, b in zip(old, new, strict=False)):
            return [{"op": "add", "path": f"{path}/-", "value": v} for v in new[size:]]
        if len(new) == size:
            ops = []
            for index, (a, b) in enumerate(zip(old, new, strict=True)):
                ops.extend(diff(a, b, f"{path}/{index}"))
            return ops
        return [{"op": "replace", "path": path, "value": new}]
    if _same(old, new):
        return []
    return [{"op": "replace", "path": path, "value": new}]
