"""A de-duplicating work queue of keys with delayed adds and per-key exponential backoff.

Semantics follow client-go's: a key is queued at most once; a key added while it is being
processed is processed again after ``done``; ``retry`` re-adds it after a growing delay, and
``forget`` resets that delay after a success. A key waits for at most one delayed add (the
earliest), and ``cancel_delayed`` drops it (a reconcile that just ran says anew when to look
again): what waits is bounded by the keys, not by how often they were requeued or how many
objects came and went. As client-go's, it tells an observer (its
metrics) of each add, how long a key waited and was worked on, and each retry; and it says how
long the keys being worked on have been.
"""

from __future__ import annotations

import heapq
import threading
import time
from collections import deque
from typing import Generic, Protocol, TypeVar

K = TypeVar("K")


class QueueObserver(Protocol):
    def added(self) -> None: ...
    def waited(self, seconds: float) -> None: ...
    def worked(self, seconds: float) -> None: ...
    def retried(self) -> None: ...


class _Unobserved:
    def added(self) -> None:
        pass

    def waited(self, seconds: float) -> None:
        pass

    def worked(self, seconds: float) -> None:
        pass

    def retried(self) -> None:
        pass


class WorkQueue(Generic[K]):
    def __init__(self, base_delay: float = 0.05, max_delay: float = 60.0) -> None:
        self._cond = threading.Condition()
        self._queue: deque[K] = deque()
        self._dirty: set[K] = set()
        self._processing: set[K] = set()
        self._delayed: list[tuple[float, int, K]] = []  # a heap; entries not in _due are void
        self._due: dict[K, float] = {}  # key -> when its one delayed add falls due
        self._counter = 0
        self._failures: dict[K, int] = {}
        self._base = base_delay
        self._max = max_delay
        self._shutdown = False
        self._queued_at: dict[K, float] = {}
        self._started_at: dict[K, float] = {}
        self.observer: QueueObserver = _Unobserved()

    def __len__(self) -> int:
        with self._cond:
            return len(self._queue)

    def add(self, key: K) -> None:
        with self._cond:
            if self._shutdown or key in self._dirty:
                return
            self._dirty.add(key)
            self.observer.added()
            if key not in self._processing:
                self._enqueue(key)
                self._cond.notify()

    def _enqueue(self, key: K) -> None:
        self._queue.append(key)
        self._queued_at.setdefault(key, time.monotonic())

    def add_after(self, key: K, delay: float) -> None:
        if delay <= 0:
            self.add(key)
            return
        with self._cond:
            due = time.monotonic() + delay
            if self._due.get(key, float("inf")) <= due:
                return  # it is looked at sooner already
            self._due[key] = due
            self._counter += 1
            heapq.heappush(self._delayed, (due, self._counter, key))
            self._compact()
            self._cond.notify()

    def cancel_delayed(self, key: K) -> None:
        """Drop ``key``'s delayed add, if it has one."""
        with self._cond:
            if self._due.pop(key, None) is not None:
                self._compact()

    def delayed(self) -> int:
        """How many keys wait for a delayed add."""
        with self._cond:
            return len(self._due)

    def _compact(self) -> None:
        """Rebuild the heap without void entries once they are most of it."""
        if len(self._delayed) > 2 * len(self._due) + 64:
            self._delayed = [e for e in self._delayed if self._due.get(e[2]) == e[0]]
            heapq.heapify(self._delayed)

    def retry(self, key: K) -> float:
        """Re-add ``key`` after its next backoff delay; returns the delay."""
        with self._cond:
            failures = self._failures.get(key, 0)
            self._failures[key] = failures + 1
        delay = float(min(self._base * 2.0**failures, self._max))
        self.observer.retried()
        self.add_after(key, delay)
        return delay

    def forget(self, key: K) -> None:
        with self._cond:
            self._failures.pop(key, None)

    def get(self, timeout: float | None = None) -> K | None:
        """The next key (now being processed), or None on timeout or shutdown."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            while True:
                self._promote_due()
                if self._queue:
                    key = self._queue.popleft()
                    self._dirty.discard(key)
                    self._processing.add(key)
                    now = time.monotonic()
                    self.observer.waited(now - self._queued_at.pop(key, now))
                    self._started_at[key] = now
                    return key
                if self._shutdown:
                    return None
                wait = None if deadline is None else deadline - time.monotonic()
                if self._delayed:
                    until_due = self._delayed[0][0] - time.monotonic()
                    wait = until_due if wait is None else min(wait, until_due)
                if wait is not None and wait <= 0:
                    if deadline is not None and time.monotonic() >= deadline:
                        return None
                    continue
                self._cond.wait(wait)

    def _promote_due(self) -> None:
        now = time.monotonic()
        while self._delayed and self._delayed[0][0] <= now:
            due, _, key = heapq.heappop(self._delayed)
            if self._due.get(key) != due:
                continue  # superseded or cancelled
            del self._due[key]
            if key not in self._dirty:
                self._dirty.add(key)
                self.observer.added()
                if key not in self._processing:
                    self._enqueue(key)

    def done(self, key: K) -> None:
        with self._cond:
            self._processing.discard(key)
            started = self._started_at.pop(key, None)
            if started is not None:
                self.observer.worked(time.monotonic() - started)
            if key in self._dirty:
                self._enqueue(key)
                self._cond.notify()

    def running(self) -> list[float]:
        """How long each key being worked on has been (seconds)."""
        now = time.monotonic()
        with self._cond:
            return [now - started for started in self._started_at.values()]

    def shutdown(self) -> None:
        with self._cond:
            self._shutdown = True
            self._cond.notify_all()
