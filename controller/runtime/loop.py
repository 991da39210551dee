"""The reconcile runtime: keys from informer events into a work queue, workers that reconcile.

The contract (controller-runtime's): a request is a key, never an event; ``reconcile(key)``
reads current state, converges, writes only what changed, and returns ``Result`` — or raises
to be retried with per-key exponential backoff. ``TerminalError`` stops retrying (the
reconciler has recorded the problem in status).
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter, OrderedDict
from collections.abc import Callable, Hashable, Mapping, Sequence
from dataclasses import dataclass
from typing import Generic, Protocol, TypeVar

from api.objects import JSON
from controller.runtime.metrics import RuntimeMetrics
from controller.runtime.queue import WorkQueue
from engine.logfields import log_fields
from kube import KubeError

log = logging.getLogger(__name__)

K = TypeVar("K", bound=Hashable)


@dataclass(frozen=True)
class Result:
    requeue_after: float | None = None


WRITES_REMEMBERED = 10_000  # unechoed writes kept to recognise their echo
EVENTS_REMEMBERED = 1_000  # recent watch events, for a write whose echo came before it returned


class Writes:
    """The API writes a reconciler made, per namespace: how a test proves that reconciling a
    converged object writes nothing, undisturbed by other namespaces' work.

    Given the object the API server returned, a write is also remembered by its
    resourceVersion: the watch event that brings that version back is the reconciler hearing
    its own write (``echo``), which needs no reconcile. Anyone else's change, and a deletion,
    carries another version and is acted on (what controller-runtime users filter with
    predicates, said exactly)."""

    def __init__(self, remembered: int = WRITES_REMEMBERED) -> None:
        self._by_namespace: Counter[str] = Counter()
        # Writes whose echo has not come back (yet: an object deleted or written again first
        # never echoes), oldest first: at most ``remembered``; one forgotten costs one
        # reconcile that finds nothing to do.
        self._versions: OrderedDict[tuple[str, str, str], str] = OrderedDict()
        # The last few watch events that were no echo: the watch can bring a write back before
        # the API server's answer reaches the writer, and that write then has nothing to await.
        self._seen: OrderedDict[tuple[str, str, str], str] = OrderedDict()
        self._remembered = remembered
        self._lock = threading.Lock()

    def record(self, namespace: str, written: JSON | None = None) -> None:
        with self._lock:
            self._by_namespace[namespace] += 1
            if written is None:
                return
            key, version = _identity(written)
            if not version or self._seen.get(key) == version:
                return  # its echo already came
            self._versions[key] = version
            self._versions.move_to_end(key)
            while len(self._versions) > self._remembered:
                self._versions.popitem(last=False)

    def echo(self, obj: JSON) -> bool:
        """Is ``obj`` (from a watch) exactly what one of our writes stored? Said once."""
        key, version = _identity(obj)
        with self._lock:
            if not version:
                return False
            if self._versions.get(key) == version:
                del self._versions[key]
                return True
            self._seen[key] = version
            self._seen.move_to_end(key)
            while len(self._seen) > EVENTS_REMEMBERED:
                self._seen.popitem(last=False)
        return False

    def forget(self, obj: JSON) -> None:
        """``obj`` was deleted: none of our writes to it will echo now."""
        key, _ = _identity(obj)
        with self._lock:
            self._versions.pop(key, None)
            self._seen.pop(key, None)

    def awaited(self) -> int:
        """How many writes await their echo (each costs memory until it comes)."""
        with self._lock:
            return len(self._versions)

    def in_namespace(self, namespace: str) -> int:
        with self._lock:
            return self._by_namespace[namespace]


def _identity(obj: JSON) -> tuple[tuple[str, str, str], str]:
    meta = obj.get("metadata") or {}
    key = (str(obj.get("kind", "")), str(meta.get("namespace", "")), str(meta.get("name", "")))
    return key, str(meta.get("resourceVersion") or "")


class TerminalError(Exception):
    """Do not retry: the problem is recorded where users see it."""


class Reconciler(Protocol[K]):  # type: ignore[misc]
    def reconcile(self, key: K) -> Result | None: ...


class Controller(Generic[K]):
    """One reconciler, its queue and its workers."""

    def __init__(
        self,
        name: str,
        reconciler: Reconciler[K],
        workers: int = 2,
        fields: Callable[[K], Mapping[str, str]] | None = None,
        metrics: RuntimeMetrics | None = None,
    ) -> None:
        self.name = name
        self.reconciler = reconciler
        # what a reconcile's log lines are about (its key in words), for JSON logs
        self.fields = fields or (lambda key: {"key": str(key)})
        self.queue: WorkQueue[K] = WorkQueue()
        self.workers = workers
        self.reconciles = 0
        self._threads: list[threading.Thread] = []
        self._stopping = False
        self.metrics = metrics or RuntimeMetrics()
        self.queue.observer = self.metrics.queue(name, lambda: len(self.queue), self.queue.running)
        self.metrics.max_workers.labels(controller=name).set(workers)
        self._active = self.metrics.active_workers.labels(controller=name)
        self._time = self.metrics.reconcile_time.labels(controller=name)
        self._errors = self.metrics.reconcile_errors.labels(controller=name)
        self._terminal = self.metrics.terminal_errors.labels(controller=name)
        self._results = {
            result: self.metrics.reconcile_total.labels(controller=name, result=result)
            for result in ("success", "error", "requeue_after")
        }

    def enqueue(self, key: K) -> None:
        self.queue.add(key)

    def handler(self, key_of: Callable[[JSON], K | None]) -> Callable[[JSON], None]:
        """An informer callback that enqueues ``key_of(obj)`` (None: not ours)."""

        def on_event(obj: JSON) -> None:
            key = key_of(obj)
            if key is not None:
                self.queue.add(key)

        return on_event

    def replace_handler(
        self, key_of: Callable[[JSON], K | None]
    ) -> Callable[[Sequence[JSON]], None]:
        one = self.handler(key_of)

        def on_replace(items: Sequence[JSON]) -> None:
            for item in items:
                one(item)

        return on_replace

    def start(self) -> None:
        self._stopping = False
        self._threads = [thread for thread in self._threads if thread.is_alive()]
        for i in range(self.workers):
            thread = threading.Thread(target=self._work, name=f"{self.name}-{i}", daemon=True)
            thread.start()
            self._threads.append(thread)

    def wedged(self, limit: float) -> str | None:
        """Why this controller no longer reconciles, or None: a worker thread ended, or a
        reconcile has run longer than ``limit`` seconds (stuck on something that never
        returns)."""
        if self._stopping:
            return None
        if any(not thread.is_alive() for thread in self._threads):
            return f"a worker of controller {self.name} stopped"
        longest = max(self.queue.running(), default=0.0)
        if longest > limit:
            return f"a reconcile of controller {self.name} has run for {longest:.0f}s"
        return None

    def stop(self, timeout: float = 10.0) -> None:
        self._stopping = True
        self.queue.shutdown()
        for thread in self._threads:
            thread.join(timeout)

    def _work(self) -> None:
        while True:
            key = self.queue.get()
            if key is None:
                return
            with log_fields(controller=self.name, **self.fields(key)):
                self._reconcile(key)

    def _reconcile(self, key: K) -> None:
        started = time.perf_counter()
        self._active.inc()
        outcome = "error"
        try:
            result = self.reconciler.reconcile(key)
            self.reconciles += 1
            self.queue.forget(key)
            self.queue.cancel_delayed(key)  # this reconcile says when to look again
            outcome = "success"
            if result is not None and result.requeue_after is not None:
                self.queue.add_after(key, result.requeue_after)
                outcome = "requeue_after"
        except TerminalError as exc:
            self.queue.forget(key)
            self._terminal.inc()
            log.warning("%s %s: %s (not retried)", self.name, key, exc)
        except KubeError as exc:
            delay = self.queue.retry(key)
            log.warning("%s %s: %s (retrying in %.1fs)", self.name, key, exc, delay)
        except Exception:
            delay = self.queue.retry(key)
            log.exception("%s %s: unexpected error (retrying in %.1fs)", self.name, key, delay)
        finally:
            self.queue.done(key)
            self._active.dec()
            self._time.observe(time.perf_counter() - started)
            self._results[outcome].inc()
            if outcome == "error":
                self._errors.inc()
