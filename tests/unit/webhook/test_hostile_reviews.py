"""Property: no AdmissionReview, however malformed, gets a 5xx or a traceback in the log.

A well-formed review of an opted-in pod (rolled for a restore, so every step runs: the restore
catch-up, the sidecar plan, stash-init) has one of its values replaced by any JSON value. The
answer is a 200 (the pod admitted, mutated or not) or a 400 whose message names a field; the
webhook logs no error, so every step that reads the request stays inside the one guard, and a
step added later that does not is caught here.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import json
import logging
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from api.constants import RESTORE_ANNOTATION
from pods.invokers import SidecarIndex
from pods.sidecar import SidecarSettings
from tests.factories import batch, pod, restore_member, restore_session, review
from tests.unit.webhook.asgi import post
from webhook.app import AdmissionEndpoint, WebhookMetrics

JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=12),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=12,
)


def _index() -> SidecarIndex:
    index = SidecarIndex()
    index.upsert(batch())
    restore = restore_session("back", "demo", restore_member("Deployment", "web"))
    restore["metadata"]["uid"] = "uid-1"
    index.upsert(restore)
    return index


METRICS = WebhookMetrics.create()


def _endpoint() -> AdmissionEndpoint:
    """A fresh index each time, so the unseen restore is waited for (not held) every time."""
    return AdmissionEndpoint(
        _index(),
        SidecarSettings(image="stash-py:test"),
        METRICS,
        max_body=1 << 20,
        restore_wait=0.0,
        restore_hold=0.0,
    )


def _good_review() -> dict[str, Any]:
    obj = pod()
    obj["metadata"]["annotations"] = {RESTORE_ANNOTATION: "uid-1,uid-unseen"}
    obj["spec"]["initContainers"] = [{"name": "setup", "image": "busybox"}]
    obj["spec"]["containers"][0]["volumeMounts"] = [{"name": "data", "mountPath": "/data"}]
    return review(obj)


def _paths(value: Any, prefix: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    yield prefix
    if isinstance(value, dict):
        for key, inner in value.items():
            yield from _paths(inner, (*prefix, key))
    elif isinstance(value, list):
        for i, inner in enumerate(value):
            yield from _paths(inner, (*prefix, i))


PATHS = [p for p in _paths(_good_review()) if p]


def _replaced(doc: dict[str, Any], path: tuple[Any, ...], value: Any) -> dict[str, Any]:
    out = copy.deepcopy(doc)
    node: Any = out
    for step in path[:-1]:
        node = node[step]
    node[path[-1]] = value
    return out


def _post(body: bytes) -> tuple[int, dict[str, Any]]:
    return asyncio.run(post(_endpoint(), body))


class _Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@contextlib.contextmanager
def _errors_logged() -> Iterator[list[logging.LogRecord]]:
    handler = _Collect()
    root = logging.getLogger()
    root.addHandler(handler)
    try:
        yield handler.records
    finally:
        root.removeHandler(handler)


def test_the_well_formed_review_is_mutated() -> None:
    status, answer = _post(json.dumps(_good_review()).encode())
    assert status == 200
    assert answer["response"]["patch"]


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(path=st.sampled_from(PATHS), value=JSON_VALUES)
def test_any_value_anywhere_in_a_review_gets_a_200_or_a_400_naming_it_and_no_error_logged(
    path: tuple[Any, ...], value: Any
) -> None:
    with _errors_logged() as errors:
        status, answer = _post(json.dumps(_replaced(_good_review(), path, value)).encode())
    assert status in (200, 400), (path, value, answer)
    if status == 400:
        assert answer["kind"] == "Status"
        assert answer["message"]
    else:
        assert answer["response"]["allowed"] is True
        assert not any("stash webhook failed" in w for w in answer["response"].get("warnings", []))
    assert not errors, [r.getMessage() for r in errors]


@pytest.mark.parametrize(
    ("path", "value", "message"),
    [
        (("request", "object", "metadata"), [], "request.object.metadata must be an object"),
        (
            ("request", "object", "metadata", "labels"),
            "x",
            "request.object.metadata.labels must be an object",
        ),
        (
            ("request", "object", "metadata", "annotations"),
            7,
            "request.object.metadata.annotations must be an object",
        ),
        (
            ("request", "object", "spec", "containers"),
            {},
            "request.object.spec.containers must be a list",
        ),
        (
            ("request", "object", "spec", "volumes", 0),
            "v",
            "request.object.spec.volumes[0] must be an object",
        ),
    ],
)
def test_a_pod_of_a_shape_the_api_server_never_sends_gets_400_naming_the_field(
    path: tuple[Any, ...], value: Any, message: str
) -> None:
    status, answer = _post(json.dumps(_replaced(_good_review(), path, value)).encode())
    assert status == 400
    assert answer["message"].startswith(message)
