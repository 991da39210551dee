"""Slow side effects off the reconcile workers: a wipe-out of a large repository (one request
per thousand objects, minutes for a big one) must not hold the worker every other object of its
controller waits for.

A reconciler hands such work to ``Background`` under the object's key and returns; the work runs
on a thread of its own (one at a time per key), and when it ends the key is enqueued again. The
next reconcile takes the outcome and writes what it means (guarded, as before, by the object's
own state: a finalizer, a condition), so a crash between the two repeats the work rather than
losing it.
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Generic, TypeVar

log = logging.getLogger(__name__)

K = TypeVar("K", bound=Hashable)
T = TypeVar("T")


@dataclass(frozen=True)
class Outcome(Generic[T]):
    """What a finished piece of work gave: its value, or the exception it raised."""

    value: T | None = None
    error: BaseException | None = None


OUTCOMES_REMEMBERED = 10_000


class Background(Generic[K, T]):
    def __init__(self, name: str, workers: int = 2, remembered: int = OUTCOMES_REMEMBERED) -> None:
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix=name)
        self._lock = threading.Lock()
        self._running: dict[K, Future[T]] = {}
        # Outcomes not taken yet, oldest first: a key whose object went before its reconcile
        # took the outcome is never taken, so at most ``remembered`` are kept (one dropped for
        # a live key means its work is done once more).
        self._done: OrderedDict[K, Outcome[T]] = OrderedDict()
        self._remembered = remembered

    def running(self, key: K) -> bool:
        with self._lock:
            return key in self._running

    def submit(self, key: K, work: Callable[[], T], when_done: Callable[[K], None]) -> None:
        """Run ``work`` for ``key`` unless it already runs; ``when_done(key)`` after."""
        with self._lock:
            if key in self._running:
                return
            self._done.pop(key, None)
            future = self._pool.submit(work)
            self._running[key] = future

        def finished(done: Future[T]) -> None:
            error = done.exception()
            outcome = Outcome(error=error) if error else Outcome(value=done.result())
            with self._lock:
                self._running.pop(key, None)
                self._done[key] = outcome
                while len(self._done) > self._remembered:
                    self._done.popitem(last=False)
            when_done(key)

        future.add_done_callback(finished)

    def take(self, key: K) -> Outcome[T] | None:
        """The outcome of the work for ``key`` that ended since it was last taken, if any."""
        with self._lock:
            return self._done.pop(key, None)

    def forget(self, key: K) -> None:
        with self._lock:
            self._done.pop(key, None)
