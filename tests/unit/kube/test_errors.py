"""API server error responses become typed errors that say what went wrong."""

from __future__ import annotations

import json

import pytest

from kube.errors import (
    AlreadyExists,
    BadRequest,
    Conflict,
    Forbidden,
    Gone,
    Invalid,
    KubeError,
    NotFound,
    Unavailable,
    error_from_response,
)


def _status(
    code: int, reason: str, message: str, causes: list[dict[str, str]] | None = None
) -> bytes:
    body: dict[str, object] = {
        "kind": "Status",
        "apiVersion": "v1",
        "status": "Failure",
        "code": code,
        "reason": reason,
        "message": message,
    }
    if causes is not None:
        body["details"] = {"causes": causes}
    return json.dumps(body).encode()


@pytest.mark.parametrize(
    ("code", "reason", "cls"),
    [
        (404, "NotFound", NotFound),
        (409, "AlreadyExists", AlreadyExists),
        (409, "Conflict", Conflict),
        (422, "Invalid", Invalid),
        (403, "Forbidden", Forbidden),
        (410, "Expired", Gone),
        (429, "TooManyRequests", Unavailable),
        (503, "ServiceUnavailable", Unavailable),
        (400, "BadRequest", BadRequest),
        (418, "Teapot", KubeError),
    ],
)
def test_each_status_code_maps_to_its_error_class(code: int, reason: str, cls: type) -> None:
    err = error_from_response(code, _status(code, reason, "boom"), "GET /x")
    assert type(err) is cls
    assert err.status == code
    assert err.reason == reason


def test_an_invalid_object_error_names_each_field_and_why() -> None:
    body = _status(
        422,
        "Invalid",
        'BackupBatch.stash.appscode.com "b" is invalid: spec.executionOrder: Unsupported value',
        [
            {
                "reason": "FieldValueNotSupported",
                "message": 'Unsupported value: "Random"',
                "field": "spec.executionOrder",
            }
        ],
    )
    err = error_from_response(422, body, "POST /apis/stash.appscode.com/v1beta1/backupbatches")
    assert isinstance(err, Invalid)
    assert "spec.executionOrder" in str(err)
    assert [(c.field, c.reason) for c in err.causes] == [
        ("spec.executionOrder", "FieldValueNotSupported")
    ]


def test_a_body_that_is_not_json_is_kept_as_the_message() -> None:
    err = error_from_response(502, b"<html>bad gateway</html>", "GET /readyz")
    assert isinstance(err, Unavailable)
    assert str(err) == "GET /readyz: <html>bad gateway</html>"


def test_an_empty_body_still_gives_a_message() -> None:
    assert str(error_from_response(500, None, "GET /x")) == "GET /x: HTTP 500"
