"""The HTTP edge: status codes, messages, fail-open, probes and metrics."""

from __future__ import annotations

import asyncio
import base64
import json
import threading
import time
from collections.abc import Iterable, Iterator, MutableMapping
from typing import Any

import pytest
from fastapi.testclient import TestClient

from api.constants import RESTORE_ANNOTATION, RESTORE_INIT_CONTAINER, WEBHOOK_PATH
from pods.invokers import SidecarIndex
from pods.sidecar import SidecarSettings
from tests.factories import batch, pod, restore_member, restore_session, review
from tests.unit.webhook.asgi import post
from webhook import app as app_module
from webhook.app import AdmissionEndpoint, WebhookMetrics, create_app


@pytest.fixture
def index() -> SidecarIndex:
    index = SidecarIndex()
    index.upsert(batch())
    return index


@pytest.fixture
def client(index: SidecarIndex) -> Iterator[TestClient]:
    app = create_app(index, SidecarSettings(image="stash-py:test"), max_body=64 * 1024)
    with TestClient(app) as test_client:
        yield test_client


def _post(client: TestClient, body: Any, raw: bytes | None = None) -> Any:
    content = raw if raw is not None else json.dumps(body).encode()
    return client.post(WEBHOOK_PATH, content=content, headers={"Content-Type": "application/json"})


def test_a_targeted_pod_is_answered_with_a_base64_json_patch(client: TestClient) -> None:
    doc = review(pod())
    response = _post(client, doc)
    assert response.status_code == 200
    answer = response.json()
    assert answer["apiVersion"] == "admission.k8s.io/v1"
    assert answer["response"]["uid"] == doc["request"]["uid"]
    assert answer["response"]["allowed"] is True
    patch = json.loads(base64.b64decode(answer["response"]["patch"]))
    assert any(op["path"].startswith("/spec/containers") for op in patch)


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (b"definitely not json", "body is not JSON"),
        (b"[]", "the AdmissionReview must be an object"),
        (b'{"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview"}', "request must be"),
        (b'{"apiVersion": ' + b"[" * 1000 + b"]" * 1000 + b"}", "got a JSON array"),
        (
            b'{"apiVersion": "admission.k8s.io/v1", "kind": '
            + b'{"a": ' * 500
            + b"1"
            + b"}" * 500
            + b"}",
            "must be AdmissionReview, got a JSON object",
        ),
        (
            b'{"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": '
            b'{"uid": "x", "operation": "CREATE", "kind": {"kind": '
            + b"[" * 1000
            + b"]" * 1000
            + b"}}}",
            "request.kind.kind must be a string, got a JSON array",
        ),
        (b'{"apiVersion": "' + b"v" * 5000 + b'"}', "…'"),
    ],
)
def test_a_malformed_review_gets_400_with_a_message(
    client: TestClient, raw: bytes, message: str
) -> None:
    response = _post(client, None, raw=raw)
    assert response.status_code == 400
    assert message in response.json()["message"]


def test_a_review_without_a_uid_gets_400(client: TestClient) -> None:
    doc = review(pod())
    del doc["request"]["uid"]
    response = _post(client, doc)
    assert response.status_code == 400
    assert response.json()["message"] == "request.uid must be a non-empty string"


def test_a_body_over_the_cap_gets_413_without_being_read_whole(client: TestClient) -> None:
    response = _post(client, None, raw=b"{" + b" " * (128 * 1024) + b"}")
    assert response.status_code == 413
    assert "exceeds the 65536-byte limit" in response.json()["message"]


def test_a_streamed_body_over_the_cap_gets_413(client: TestClient) -> None:
    def chunks() -> Iterator[bytes]:
        for _ in range(100):
            yield b" " * 1024

    response = client.post(WEBHOOK_PATH, content=chunks())
    assert response.status_code == 413


def test_a_failure_inside_the_handler_fails_open_with_a_warning(
    client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    def explode(*_: Any) -> Any:
        raise KeyError("boom")

    monkeypatch.setattr(app_module, "handle", explode)
    doc = review(pod())
    response = _post(client, doc)
    assert response.status_code == 200
    answer = response.json()["response"]
    assert answer["allowed"] is True
    assert "patch" not in answer
    assert answer["warnings"] == ["stash webhook failed (KeyError); pod admitted unchanged"]


def test_probes_and_metrics_are_served(index: SidecarIndex) -> None:
    synced = {"value": False}
    app = create_app(index, SidecarSettings(image="x"), cache_synced=lambda: synced["value"])
    with TestClient(app) as client:
        assert client.get("/healthz").text == "ok"
        not_ready = client.get("/readyz")
        assert not_ready.status_code == 503
        assert not_ready.text == "invoker cache not synced yet"
        synced["value"] = True
        assert client.get("/readyz").status_code == 200
        _post(client, review(pod()))
        _post(client, None, raw=b"nope")
        text = client.get("/metrics").text
    assert 'stash_webhook_requests_total{outcome="mutated"} 1.0' in text
    assert 'stash_webhook_requests_total{outcome="bad_request"} 1.0' in text
    assert 'stash_webhook_request_duration_seconds_count{outcome="mutated"} 1.0' in text


def test_two_apps_do_not_share_metrics(index: SidecarIndex) -> None:
    first = create_app(index, SidecarSettings(image="x"))
    second = create_app(index, SidecarSettings(image="x"))
    with TestClient(first) as one, TestClient(second) as two:
        _post(one, review(pod()))
        assert "stash_webhook_requests_total" not in two.get("/metrics").text.split("# TYPE")[-1]
        assert 'outcome="mutated"' not in two.get("/metrics").text


def test_other_methods_get_405(client: TestClient) -> None:
    assert client.get(WEBHOOK_PATH).status_code == 405


def test_a_stalled_body_gets_408_and_the_connection_closed(index: SidecarIndex) -> None:
    endpoint = AdmissionEndpoint(
        index, SidecarSettings(image="stash-py:test"), WebhookMetrics.create(), 1024, 0.2
    )
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        if not sent and not hasattr(receive, "once"):
            receive.once = True  # type: ignore[attr-defined]
            return {"type": "http.request", "body": b"{", "more_body": True}
        await asyncio.sleep(3600)  # the client stalls
        raise AssertionError("unreachable")

    async def send(message: MutableMapping[str, Any]) -> None:
        sent.append(dict(message))

    scope = {"type": "http", "method": "POST", "path": WEBHOOK_PATH, "headers": []}
    asyncio.run(asyncio.wait_for(endpoint(scope, receive, send), 5))
    assert sent[0]["status"] == 408
    assert (b"connection", b"close") in sent[0]["headers"]
    assert b"did not arrive within 0.2 s" in sent[1]["body"]


def _late_restore() -> dict[str, Any]:
    late = restore_session(member=restore_member("Deployment", "web"))
    late["spec"]["target"]["volumeMounts"] = [{"name": "data", "mountPath": "/data"}]
    late["metadata"]["uid"] = "uid-late"
    return late


def _rolled_for(uid: str) -> dict[str, Any]:
    rolled = pod()
    rolled["metadata"]["annotations"] = {RESTORE_ANNOTATION: uid}
    return rolled


class _LateIndex(SidecarIndex):
    """An index whose watch delivers the restore once the endpoint starts waiting for it."""

    def unseen_restores(self, uids: Iterable[str]) -> tuple[str, ...]:
        unseen = super().unseen_restores(uids)
        if unseen and not getattr(self, "delivering", False):
            self.delivering = True
            threading.Timer(0.05, self.upsert, args=(_late_restore(),)).start()
        return unseen


def _stash_init_in(answer: dict[str, Any]) -> bool:
    patch = json.loads(base64.b64decode(answer["patch"]))
    added = [op["value"] for op in patch if op["path"].startswith("/spec/initContainers")]
    names = [c["name"] for v in added for c in (v if isinstance(v, list) else [v])]
    return RESTORE_INIT_CONTAINER in names


def test_a_pod_rolled_for_a_restore_not_yet_indexed_waits_for_it_and_gets_stash_init() -> None:
    app = create_app(_LateIndex(), SidecarSettings(image="stash-py:test"))
    with TestClient(app) as client:
        answer = _post(client, review(_rolled_for("uid-late"))).json()["response"]
    assert _stash_init_in(answer)


def test_a_pod_rolled_for_a_restore_not_seen_in_time_is_refused_for_now_never_admitted_without(
    index: SidecarIndex,
) -> None:
    """Its ReplicaSet creates it again; once the index has the restore, it gets stash-init."""
    app = create_app(index, SidecarSettings(image="stash-py:test"), restore_wait=0.01)
    with TestClient(app) as client:
        answer = _post(client, review(_rolled_for("uid-late"))).json()["response"]
        assert answer["allowed"] is False
        assert answer["status"]["code"] == 429
        assert (
            "restore(s) uid-late, which the stash webhook has not seen yet"
            in (answer["status"]["message"])
        )
        index.upsert(_late_restore())  # the watch catches up; the ReplicaSet tries again
        again = _post(client, review(_rolled_for("uid-late"))).json()["response"]
    assert again["allowed"] is True
    assert _stash_init_in(again)


def test_a_pod_rolled_for_a_restore_never_seen_is_admitted_once_the_hold_is_over(
    index: SidecarIndex,
) -> None:
    app = create_app(
        index, SidecarSettings(image="stash-py:test"), restore_wait=0.01, restore_hold=0.0
    )
    with TestClient(app) as client:
        answer = _post(client, review(_rolled_for("uid-gone"))).json()["response"]
    assert answer["allowed"] is True
    assert "patch" in answer  # the backup sidecar, as the index knows it
    assert index.unseen_restores(["uid-gone"]) == ()  # the next pod is not held


def test_a_flood_of_pods_naming_unseen_restores_is_answered_within_the_wait(
    index: SidecarIndex,
) -> None:
    """100 at once: every one answered within the wait plus a little, not one after another."""
    endpoint = AdmissionEndpoint(
        index,
        SidecarSettings(image="stash-py:test"),
        WebhookMetrics.create(),
        max_body=1 << 20,
        restore_wait=0.5,
    )

    async def one(i: int) -> tuple[float, int, dict[str, Any]]:
        started = time.perf_counter()
        status, doc = await post(
            endpoint, json.dumps(review(_rolled_for(f"uid-flood-{i}"))).encode()
        )
        return time.perf_counter() - started, status, doc

    async def flood() -> list[tuple[float, int, dict[str, Any]]]:
        return await asyncio.gather(*(one(i) for i in range(100)))

    answers = asyncio.run(flood())
    assert max(elapsed for elapsed, _, _ in answers) < 1.5
    assert {status for _, status, _ in answers} == {200}
    assert all(doc["response"]["allowed"] is False for _, _, doc in answers)  # held, not lost
