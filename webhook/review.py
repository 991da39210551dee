"""Parse an AdmissionReview body into an ``AdmissionRequest``, with messages that say what is
wrong (which field, which type) so a misconfigured caller can fix it.

A Pod in the review is checked here for the shape of every field the webhook reads (objects
that must be objects, lists of objects, strings): a review whose pod the API server could never
have sent gets a 400 naming the field, and nothing after this step meets a wrong type.
"""

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
        if kind_name == "Pod":
            _check_pod(obj)
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


# What the webhook reads of a pod, by shape: a field absent (or null) is fine; present, it has
# this type. "[]" marks a list whose every item is checked against the entry after it.
_STR, _BOOL, _OBJECT, _STRINGS = str, bool, dict, "strings"
_CONTAINER: dict[str, Any] = {
    "name": _STR,
    "image": _STR,
    "args": ("[]", _STR),
    "command": ("[]", _STR),
    "volumeMounts": ("[]", {"name": _STR, "mountPath": _STR}),
    "env": ("[]", {"name": _STR}),
    "envFrom": ("[]", _OBJECT),
    "securityContext": _OBJECT,
    "resources": _OBJECT,
}
_POD: dict[str, Any] = {
    "metadata": {
        "name": _STR,
        "generateName": _STR,
        "namespace": _STR,
        "labels": _STRINGS,
        "annotations": _STRINGS,
        "ownerReferences": (
            "[]",
            {"apiVersion": _STR, "kind": _STR, "name": _STR, "uid": _STR, "controller": _BOOL},
        ),
    },
    "spec": {
        "containers": ("[]", _CONTAINER),
        "initContainers": ("[]", _CONTAINER),
        "ephemeralContainers": ("[]", _CONTAINER),
        "volumes": ("[]", {"name": _STR}),
        "nodeName": _STR,
        "serviceAccountName": _STR,
        "securityContext": _OBJECT,
    },
}
_NAMES = {str: "a string", bool: "true or false", dict: "an object"}


def _check_pod(pod: dict[str, Any]) -> None:
    found = _problem(pod, _POD)
    if found is not None:
        trail, what = found
        raise BadReview(f"request.object{''.join(reversed(trail))} {what}")


# A problem: the path to it from the value checked, innermost part first (built only on the
# way out of a problem: a well-formed pod, the usual one, costs no string), and what is wrong.
Problem = tuple[list[str], str]


def _problem(value: Any, shape: Any) -> Problem | None:
    """What is wrong with ``value`` against ``shape`` (the first problem only), or None."""
    if value is None:
        return None
    if isinstance(shape, tuple):  # ("[]", the shape of every item)
        return _list_problem(value, shape[1])
    if shape == _STRINGS:
        return _strings_problem(value)
    if isinstance(shape, dict):
        return _object_problem(value, shape)
    if isinstance(value, shape):
        return None
    return [], f"must be {_NAMES[shape]}, got {_shown(value)}"


def _strings_problem(value: Any) -> Problem | None:
    if not isinstance(value, dict):
        return [], "must be an object"
    bad = next((k for k, v in value.items() if not isinstance(v, str)), None)
    return None if bad is None else ([f"[{_shown(bad)}]"], "must be a string")


def _object_problem(value: Any, shape: dict[str, Any]) -> Problem | None:
    if not isinstance(value, dict):
        return [], "must be an object"
    for key, inner in shape.items():
        item = value.get(key)
        if item is None or (type(inner) is type and isinstance(item, inner)):
            continue
        if (found := _problem(item, inner)) is not None:
            found[0].append(f".{key}")
            return found
    return None


def _list_problem(value: Any, item_shape: Any) -> Problem | None:
    if not isinstance(value, list):
        return [], "must be a list"
    for i, item in enumerate(value):
        if item is None:
            return [f"[{i}]"], "must not be null"
        if (found := _problem(item, item_shape)) is not None:
            found[0].append(f"[{i}]")
            return found
    return None
