"""Parse an AdmissionReview body into an ``AdmissionRequest``, with messages that say what is
wrong (which field, which type) so a misconfigured caller can fix it."""

from __future__ import annotations

from typing import Any

import orjson

from api.admission import ADMISSION_VERSIONS, AdmissionRequest
from webhook.errors import BadReview


def _shown(value: Any) -> str:
    """A value for an error message, bounded whatever it is: a short string quoted, anything
    else named by its type (a list nested a thousand deep must not be formatted)."""
    if isinstance(value, str):
        return repr(value) if len(value) <= 64 else repr(value[:64] + "…")
    if value is None or isinstance(value, bool | int | float):
        return repr(value)
    return f"a JSON {'object' if isinstance(value, dict) else 'array'}"


def _expect(value: Any, kind: type, where: str) -> Any:
    if not isinstance(value, kind):
        raise BadReview(f"{where} must be {kind.__name__ if kind is not dict else 'an object'}")
    return value


def parse_review(body: bytes) -> AdmissionRequest:
    """The request of an AdmissionReview body; ``BadReview`` saying what is wrong. No input
    escapes as anything else: what cannot be read for a reason not foreseen is a BadReview
    naming the error, never a 5xx."""
    try:
        return _parse(body)
    except BadReview:
        raise
    except Exception as exc:
        raise BadReview(f"the AdmissionReview could not be read ({type(exc).__name__})") from None


def _parse(body: bytes) -> AdmissionRequest:
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise BadReview(f"body is not JSON: {exc}") from None
    _expect(doc, dict, "the AdmissionReview")
    api_version = doc.get("apiVersion")
    if api_version not in ADMISSION_VERSIONS:
        raise BadReview(
            f"apiVersion must be one of {', '.join(ADMISSION_VERSIONS)}, got {_shown(api_version)}"
        )
    if doc.get("kind") != "AdmissionReview":
        raise BadReview(f"kind must be AdmissionReview, got {_shown(doc.get('kind'))}")
    request = _expect(doc.get("request"), dict, "request")
    uid = request.get("uid")
    if not isinstance(uid, str) or not uid:
        raise BadReview("request.uid must be a non-empty string")
    kind = _expect(request.get("kind", {}), dict, "request.kind")
    kind_name = kind.get("kind", "")
    if not isinstance(kind_name, str):
        raise BadReview(f"request.kind.kind must be a string, got {_shown(kind_name)}")
    operation = request.get("operation")
    if not isinstance(operation, str):
        raise BadReview("request.operation must be a string")
    obj = request.get("object")
    if obj is not None:
        _expect(obj, dict, "request.object")
    namespace = request.get("namespace") or ""
    name = request.get("name") or ""
    if not isinstance(namespace, str) or not isinstance(name, str):
        raise BadReview("request.namespace and request.name must be strings")
    return AdmissionRequest(
        api_version=api_version,
        uid=uid,
        kind=kind_name,
        operation=operation,
        namespace=namespace,
        name=name,
        object=obj,
        dry_run=request.get("dryRun") is True,
    )
