"""The Pushgateway's public door, against the real Pushgateway: reads pass through, and no
push, overwrite or delete gets past it, whoever sends it — only the operator, on the pod's
loopback, writes (docs/security.md, "Metrics")."""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from urllib.error import HTTPError

import pytest
from prometheus_client import CollectorRegistry, Gauge

from controller.runtime.pushgateway_front import PushgatewayFront
from controller.sessions import metric_groups
from devcluster import services
from devcluster.cluster import free_port
from devcluster.services import Service
from engine import metrics
from tests.prometheus import metric_value

WHO = metrics.Invoker("BackupBatch", "nightly", "team-a", "repo")


@pytest.fixture
def gateway(tmp_path: Path) -> Iterator[Service]:
    service = services.pushgateway(tmp_path)
    yield service
    service.stop()


@pytest.fixture
def front(gateway: Service) -> Iterator[PushgatewayFront]:
    door = PushgatewayFront(gateway.url, 0, host="127.0.0.1").start()
    yield door
    door.stop()


def _call(url: str, method: str, body: bytes | None = None) -> tuple[int, str]:
    request = urllib.request.Request(url, data=body, method=method)  # noqa: S310
    try:
        with urllib.request.urlopen(request, timeout=5) as response:  # noqa: S310
            return response.status, response.read().decode()
    except HTTPError as exc:
        return exc.code, exc.read().decode()


def _groups(gateway: Service) -> list[dict[str, str]]:
    with urllib.request.urlopen(f"{gateway.url}/api/v1/metrics", timeout=5) as response:  # noqa: S310
        return sorted(
            (g["labels"] for g in json.load(response)["data"]), key=lambda g: sorted(g.items())
        )


def _pushed_by_the_operator(gateway: Service) -> None:
    registry = CollectorRegistry()
    Gauge("stash_backup_session_success", "x", list(WHO.labels), registry=registry).labels(
        **WHO.labels
    ).set(1)
    metric_groups.push_groups(gateway.url, WHO, [metric_groups.Group((), registry)])


def test_the_door_serves_what_the_operator_pushed_on_loopback(
    gateway: Service, front: PushgatewayFront
) -> None:
    _pushed_by_the_operator(gateway)
    code, text = _call(f"http://127.0.0.1:{front.port}/metrics", "GET")
    assert code == 200
    assert metric_value(text, "stash_backup_session_success", namespace="team-a") == 1.0
    assert _call(f"http://127.0.0.1:{front.port}/-/ready", "GET")[0] == 200
    assert _call(f"http://127.0.0.1:{front.port}/-/healthy", "GET")[0] == 200
    assert _call(f"http://127.0.0.1:{front.port}/metrics", "HEAD")[0] == 200


@pytest.mark.parametrize("method", ["PUT", "POST", "DELETE", "PATCH"])
@pytest.mark.parametrize(
    "path",
    [
        "/metrics/job/backupbatch-team-a-nightly",
        "/metrics/job/backupbatch-team-a-nightly/kind/Deployment/name/web/hostname/host-0",
        "/api/v1/admin/wipe",
        "/metrics",
    ],
)
def test_no_push_overwrite_or_delete_gets_through_the_door(
    gateway: Service, front: PushgatewayFront, method: str, path: str
) -> None:
    _pushed_by_the_operator(gateway)
    before = _groups(gateway)
    forged = b"stash_backup_session_success 0\n"
    code, text = _call(f"http://127.0.0.1:{front.port}{path}", method, forged)
    assert code == 405
    assert "the stash operator alone writes its metrics" in text
    assert _groups(gateway) == before
    served = _call(f"http://127.0.0.1:{front.port}/metrics", "GET")[1]
    assert metric_value(served, "stash_backup_session_success", namespace="team-a") == 1.0


def test_the_door_serves_nothing_but_the_read_paths(front: PushgatewayFront) -> None:
    for path in ("/api/v1/metrics", "/api/v1/status", "/", "/metrics/job/x", "/-/quit"):
        code, text = _call(f"http://127.0.0.1:{front.port}{path}", "GET")
        assert code == 404, path
        assert "only /metrics" in text


def test_a_door_whose_pushgateway_is_gone_says_so_instead_of_hanging() -> None:
    door = PushgatewayFront(f"http://127.0.0.1:{free_port()}", 0, host="127.0.0.1").start()
    try:
        code, text = _call(f"http://127.0.0.1:{door.port}/-/ready", "GET")
        assert code == 502
        assert text.startswith("the Pushgateway does not answer")
    finally:
        door.stop()
