"""``${VAR}`` and ``${VAR:=default}`` in templates, as Stash substitutes them: Task and Function
steps, and the Repository and BackupConfiguration a BackupBlueprint generates.

A variable without a value and without a default is an error that names it: a Job built with a
silently empty flag would back up the wrong thing.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

_PATTERN = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::=([^}]*))?\}")


class SubstitutionError(ValueError):
    def __init__(self, missing: list[str]) -> None:
        self.missing = sorted(set(missing))
        super().__init__("no value for " + ", ".join(f"${{{m}}}" for m in self.missing))


def substitute(text: str, variables: Mapping[str, str], missing: list[str] | None = None) -> str:
    def replace(match: re.Match[str]) -> str:
        name, default = match[1], match[2]
        if name in variables:
            return variables[name]
        if default is not None:
            return default
        if missing is None:
            raise SubstitutionError([name])
        missing.append(name)
        return match[0]

    return _PATTERN.sub(replace, text)


def substitute_all(value: Any, variables: Mapping[str, str], *, strict: bool = True) -> Any:
    """Substitute in every string of a JSON value; raise once, naming every missing variable
    (not ``strict``: leave them as written)."""
    missing: list[str] = []

    def walk(item: Any) -> Any:
        if isinstance(item, str):
            return substitute(item, variables, missing)
        if isinstance(item, list):
            return [walk(v) for v in item]
        if isinstance(item, dict):
            return {walk(k): walk(v) for k, v in item.items()}
        return item

    result = walk(value)
    if missing and strict:
        raise SubstitutionError(missing)
    return result
