"""The operator's own metrics under controller-runtime's names, and ``/healthz`` failing when a
reconcile, a worker or an informer is wedged."""

from __future__ import annotations

import threading
import time
import urllib.error
import urllib.request
from typing import Any

from controller.runtime.health import HealthServer
from controller.runtime.loop import Controller, Result
from controller.runtime.metrics import RuntimeMetrics
from controller.runtime.queue import WorkQueue
from kube.informer import Informer
from kube.types import PODS
from tests.waiting import eventually


class Scripted:
    """Reconciles ``ok`` at once, asks ``later`` back in a minute, fails ``bad``, and holds
    ``stuck`` until released."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.seen: list[str] = []

    def reconcile(self, key: str) -> Result | None:
        self.seen.append(key)
        if key == "bad":
            raise RuntimeError("boom")
        if key == "stuck":
            self.release.wait(10)
        return Result(requeue_after=60) if key == "later" else None


def value(metrics: RuntimeMetrics, metric: str, **labels: str) -> float:
    found = metrics.registry.get_sample_value(metric, labels)
    assert found is not None, (metric, labels)
    return found


def test_reconciles_are_counted_by_result_and_timed_per_controller() -> None:
    metrics = RuntimeMetrics()
    reconciler = Scripted()
    controller = Controller("invokers", reconciler, workers=1, metrics=metrics)
    controller.start()
    try:
        for key in ("ok", "later", "bad"):
            controller.enqueue(key)
        eventually(lambda: len(reconciler.seen) >= 3, 5, "three reconciles")
        eventually(
            lambda: (
                (
                    metrics.registry.get_sample_value(
                        "controller_runtime_reconcile_errors_total", {"controller": "invokers"}
                    )
                    or 0
                )
                >= 1
            ),
            5,
            "the error counted",
        )
    finally:
        controller.stop()
    total = "controller_runtime_reconcile_total"
    assert value(metrics, total, controller="invokers", result="success") == 1.0
    assert value(metrics, total, controller="invokers", result="requeue_after") == 1.0
    assert value(metrics, total, controller="invokers", result="error") >= 1.0
    assert (
        value(metrics, "controller_runtime_reconcile_time_seconds_count", controller="invokers")
        >= 3.0
    )
    assert (
        value(metrics, "controller_runtime_max_concurrent_reconciles", controller="invokers") == 1.0
    )
    queue = {"controller": "invokers", "name": "invokers"}
    assert value(metrics, "workqueue_adds_total", **queue) >= 3.0
    assert value(metrics, "workqueue_retries_total", **queue) >= 1.0
    assert value(metrics, "workqueue_queue_duration_seconds_count", **queue) >= 3.0
    assert value(metrics, "workqueue_work_duration_seconds_count", **queue) >= 3.0
    assert value(metrics, "workqueue_depth", **queue) >= 0.0


def test_a_reconcile_that_does_not_return_wedges_its_controller_until_it_does() -> None:
    metrics = RuntimeMetrics()
    reconciler = Scripted()
    controller = Controller("sessions", reconciler, workers=1, metrics=metrics)
    controller.start()
    try:
        controller.enqueue("stuck")
        why = eventually(lambda: controller.wedged(limit=0.2), 5, "the controller to be wedged")
        assert why.startswith("a reconcile of controller sessions has run for")
        queue = {"controller": "sessions", "name": "sessions"}
        assert value(metrics, "workqueue_longest_running_processor_seconds", **queue) > 0.2
        assert value(metrics, "controller_runtime_active_workers", controller="sessions") == 1.0
        reconciler.release.set()
        eventually(lambda: controller.wedged(limit=0.2) is None, 5, "the controller to recover")
    finally:
        reconciler.release.set()
        controller.stop()
    assert controller.wedged(limit=0.0) is None  # a stopped controller is not wedged


def test_the_queue_tells_how_long_keys_waited_and_were_worked_on() -> None:
    observed: dict[str, list[float]] = {"waited": [], "worked": []}

    class Observer:
        def added(self) -> None:
            pass

        def waited(self, seconds: float) -> None:
            observed["waited"].append(seconds)

        def worked(self, seconds: float) -> None:
            observed["worked"].append(seconds)

        def retried(self) -> None:
            pass

    queue: WorkQueue[str] = WorkQueue()
    queue.observer = Observer()
    queue.add("a")
    time.sleep(0.05)
    assert queue.get(1) == "a"
    time.sleep(0.05)
    assert queue.running()[0] >= 0.05
    queue.done("a")
    assert observed["waited"][0] >= 0.05
    assert observed["worked"][0] >= 0.05
    assert queue.running() == []


def test_an_informer_whose_thread_ended_or_that_hears_nothing_is_wedged() -> None:
    informer = Informer(None, PODS, watch_timeout=1)  # type: ignore[arg-type]  # never started
    assert informer.wedged() is None
    ended = threading.Thread(target=lambda: None)
    ended.start()
    ended.join()
    informer._thread = ended
    assert informer.wedged() == "the pods informer stopped"
    hold = threading.Event()
    alive = threading.Thread(target=hold.wait)
    alive.start()
    try:
        informer._thread = alive
        assert informer.wedged() is None
        informer.last_contact = time.monotonic() - 1000
        why = informer.wedged()
        assert why is not None
        assert why.startswith("the pods informer heard nothing for")
    finally:
        hold.set()


def _get(port: int, path: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def test_healthz_says_why_it_fails_and_metrics_are_served() -> None:
    why: dict[str, Any] = {"now": None}
    metrics = RuntimeMetrics()
    metrics.leader.labels(name="stash-operator").set(1)
    server = HealthServer(
        0,
        ready=lambda: True,
        wedged=lambda: why["now"],
        registry=metrics.registry,
        host="127.0.0.1",
    ).start()
    try:
        assert _get(server.port, "/healthz") == (200, "ok\n")
        why["now"] = "the pods informer stopped"
        assert _get(server.port, "/healthz") == (503, "the pods informer stopped\n")
        code, text = _get(server.port, "/metrics")
        assert code == 200
        assert 'leader_election_master_status{name="stash-operator"} 1.0' in text
        assert _get(server.port, "/nothing")[0] == 404
    finally:
        server.stop()
