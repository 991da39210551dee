"""The operator in its pod: probes, and the leader's label the Pushgateway Service selects."""

from __future__ import annotations

import threading
import urllib.error
import urllib.request
from pathlib import Path

from controller.operator import LEADER_LABEL, Operator, OperatorOptions
from devcluster import ControlPlane
from kube import Client
from kube.types import PODS
from tests.factories import batch
from tests.integration.helpers import eventually


def _status(port: int, path: str) -> int:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=2) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return exc.code


def _metrics(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as response:
        return str(response.read().decode())


def _leader_label(kube: Client, namespace: str) -> str | None:
    labels = kube.get(PODS, "stash-operator-0", namespace)["metadata"].get("labels") or {}
    return labels.get(LEADER_LABEL)


def test_the_leader_labels_its_pod_serves_probes_and_unlabels_when_it_stops(
    control_plane: ControlPlane, kube: Client, namespace: str
) -> None:
    kube.create(
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": "stash-operator-0", "labels": {LEADER_LABEL: "true"}},
            "spec": {"containers": [{"name": "operator", "image": "stash-py:test"}]},
        },
        namespace,
    )
    client = Client.from_kubeconfig(str(Path(control_plane.kubeconfig)))
    operator = Operator(
        client,
        OperatorOptions(
            image="stash-py:test",
            namespace=namespace,
            health_port=0,
            pod_name="stash-operator-0",
            lease_duration=4,
            renew_deadline=3,
            retry_period=0.5,
        ),
    )
    stop = threading.Event()
    thread = threading.Thread(target=operator.run, args=(stop,), daemon=True)
    thread.start()
    try:
        eventually(operator.leading.is_set, 30, "the operator to lead")
        assert eventually(lambda: _leader_label(kube, namespace) == "true", 10, "the label")
        port = eventually(lambda: getattr(operator, "health", None), 10, "the health server").port
        assert _status(port, "/healthz") == 200
        assert eventually(lambda: _status(port, "/readyz") == 200, 30, "ready")
        assert _status(port, "/nothing") == 404

        # Its own metrics, under controller-runtime's names, from real reconciles.
        kube.create(batch("nightly", namespace), namespace)
        text = eventually(
            lambda: (
                found
                if 'controller_runtime_reconcile_total{controller="invokers",result="success"}'
                in (found := _metrics(port))
                else None
            ),
            30,
            "a reconcile counted",
        )
        for name in (
            "controller_runtime_reconcile_errors_total",
            "controller_runtime_reconcile_time_seconds_bucket",
            "controller_runtime_active_workers",
            "workqueue_depth",
            "workqueue_adds_total",
            "workqueue_queue_duration_seconds_bucket",
            "workqueue_work_duration_seconds_bucket",
            "workqueue_retries_total",
            "workqueue_longest_running_processor_seconds",
        ):
            assert f"{name}{{" in text, name
        assert 'leader_election_master_status{name="stash-operator"} 1.0' in text
    finally:
        stop.set()
        thread.join(20)
        client.close()
    assert _leader_label(kube, namespace) is None
