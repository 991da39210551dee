"""Status conditions: set one (its lastTransitionTime moves only when its status does), read one.

Conditions are plain dicts as stored (kmodules' Condition: type, status, reason, message,
lastTransitionTime, observedGeneration).
"""

from __future__ import annotations

import datetime as dt
from typing import Any

RawCondition = dict[str, Any]


RFC3339 = "%Y-%m-%dT%H:%M:%SZ"  # how the API server and this project write a time


def now_rfc3339(now: dt.datetime | None = None) -> str:
    return (now or dt.datetime.now(dt.UTC)).strftime(RFC3339)


def parse_rfc3339(text: str) -> dt.datetime:
    """``now_rfc3339`` read back (ValueError for anything else)."""
    return dt.datetime.strptime(text, RFC3339).replace(tzinfo=dt.UTC)


def set_condition(
    conditions: list[RawCondition] | None,
    type_: str,
    status: bool,
    reason: str,
    message: str = "",
    *,
    now: dt.datetime | None = None,
    observed_generation: int | None = None,
) -> list[RawCondition]:
    """A new list with ``type_`` set; unchanged entries (and their times) are kept as they are."""
    value = "True" if status else "False"
    out: list[RawCondition] = []
    found = False
    for condition in conditions or []:
        if condition.get("type") != type_:
            out.append(condition)
            continue
        found = True
        updated = dict(condition)
        if condition.get("status") != value:
            updated["lastTransitionTime"] = now_rfc3339(now)
        updated.update(status=value, reason=reason, message=message)
        if observed_generation is not None:
            updated["observedGeneration"] = observed_generation
        out.append(updated)
    if not found:
        new: RawCondition = {
            "type": type_,
            "status": value,
            "reason": reason,
            "message": message,
            "lastTransitionTime": now_rfc3339(now),
        }
        if observed_generation is not None:
            new["observedGeneration"] = observed_generation
        out.append(new)
    return out


def get_condition(conditions: list[RawCondition] | None, type_: str) -> RawCondition | None:
    return next((c for c in conditions or [] if c.get("type") == type_), None)


def has_condition(conditions: list[RawCondition] | None, type_: str) -> bool:
    return any(cond.get("type") == type_ for cond in conditions or [])


def is_true(conditions: list[RawCondition] | None, type_: str) -> bool:
    condition = get_condition(conditions, type_)
    return condition is not None and condition.get("status") == "True"


def false_message(conditions: list[RawCondition] | None, type_: str) -> str | None:
    """The message of condition ``type_`` when it is False (None: absent, or not False)."""
    condition = get_condition(conditions, type_)
    if condition is None or condition.get("status") != "False":
        return None
    return str(condition.get("message", ""))
