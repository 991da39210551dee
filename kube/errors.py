"""Errors of the API server, one class per meaning, built from its ``Status`` responses.

Messages come from the server's own ``Status.message`` (which names the field for validation
errors); request bodies are never part of an error, so a Secret cannot leak through one.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class FieldCause:
    field: str
    message: str
    reason: str = ""


@dataclass
class KubeError(Exception):
    """An API request failed. ``status`` is the HTTP code (0 when the server was unreachable)."""

    message: str
    status: int = 0
    reason: str = ""
    causes: list[FieldCause] = field(default_factory=list)

    def __str__(self) -> str:
        return self.message


class NotFound(KubeError):
    pass


class AlreadyExists(KubeError):
    pass


class Conflict(KubeError):
    pass


class Invalid(KubeError):
    """The object failed validation; ``causes`` name each field and why."""


class BadRequest(KubeError):
    """The request could not be read as the object (a field of the wrong form, e.g. a
    resource quantity that is none): sending it again cannot help."""


class Forbidden(KubeError):
    pass


class Gone(KubeError):
    """A watch or list continued from a resourceVersion that is too old: re-list."""


class Unavailable(KubeError):
    """The server could not be reached or is not ready (connection errors, 429, 5xx)."""


def error_from_response(status: int, body: bytes | str | None, what: str) -> KubeError:
    """Map an error response to the matching ``KubeError`` subclass."""
    text = body.decode("utf-8", "replace") if isinstance(body, bytes) else (body or "")
    parsed: dict[str, Any] = {}
    try:
        loaded = json.loads(text) if text else {}
        if isinstance(loaded, dict):
            parsed = loaded
    except ValueError:
        parsed = {}
    reason = str(parsed.get("reason", ""))
    message = str(parsed.get("message") or text.strip() or f"HTTP {status}")
    details = parsed.get("details") or {}
    causes = [
        FieldCause(
            field=str(c.get("field", "")),
            message=str(c.get("message", "")),
            reason=str(c.get("reason", "")),
        )
        for c in details.get("causes", []) or []
        if isinstance(c, dict)
    ]
    cls: type[KubeError]
    if status == 404:
        cls = NotFound
    elif status == 409 and reason == "AlreadyExists":
        cls = AlreadyExists
    elif status == 409:
        cls = Conflict
    elif status == 422:
        cls = Invalid
    elif status == 400:
        cls = BadRequest
    elif status == 403:
        cls = Forbidden
    elif status == 410:
        cls = Gone
    elif status == 429 or status >= 500:
        cls = Unavailable
    else:
        cls = KubeError
    return cls(message=f"{what}: {message}", status=status, reason=reason, causes=causes)
