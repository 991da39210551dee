"""The work queue de-duplicates keys, re-processes keys added meanwhile, and backs off."""

from __future__ import annotations

import threading
import time

from controller.runtime.queue import WorkQueue


def test_a_key_added_twice_is_processed_once() -> None:
    queue: WorkQueue[str] = WorkQueue()
    queue.add("a")
    queue.add("a")
    queue.add("b")
    assert [queue.get(0), queue.get(0), queue.get(0)] == ["a", "b", None]


def test_a_key_added_while_processing_comes_back_after_done() -> None:
    queue: WorkQueue[str] = WorkQueue()
    queue.add("a")
    assert queue.get(0) == "a"
    queue.add("a")
    assert queue.get(0) is None  # not while it is being processed
    queue.done("a")
    assert queue.get(0) == "a"


def test_retry_backs_off_exponentially_and_forget_resets_it() -> None:
    queue: WorkQueue[str] = WorkQueue(base_delay=0.01, max_delay=0.04)
    assert [queue.retry("a") for _ in range(4)] == [0.01, 0.02, 0.04, 0.04]
    queue.forget("a")
    assert queue.retry("a") == 0.01


def test_a_delayed_key_arrives_after_its_delay() -> None:
    queue: WorkQueue[str] = WorkQueue()
    started = time.monotonic()
    queue.add_after("a", 0.05)
    assert queue.get(0) is None
    assert queue.get(1.0) == "a"
    assert time.monotonic() - started >= 0.05


def test_shutdown_wakes_a_waiting_worker() -> None:
    queue: WorkQueue[str] = WorkQueue()
    got: list[str | None] = []
    worker = threading.Thread(target=lambda: got.append(queue.get()))
    worker.start()
    queue.shutdown()
    worker.join(2)
    assert got == [None]


def test_a_key_waits_for_one_delayed_add_the_earliest() -> None:
    queue: WorkQueue[str] = WorkQueue()
    queue.add_after("a", 60)
    queue.add_after("a", 0.02)  # sooner: replaces the later one
    queue.add_after("a", 30)  # later than the one waiting: nothing more
    assert queue.delayed() == 1
    assert queue.get(1.0) == "a"
    queue.done("a")
    assert queue.delayed() == 0
    assert queue.get(0.1) is None  # the void entries never bring it back


def test_a_cancelled_delayed_add_never_comes() -> None:
    queue: WorkQueue[str] = WorkQueue()
    queue.add_after("a", 0.02)
    queue.cancel_delayed("a")
    assert queue.get(0.1) is None


def test_keys_requeued_and_gone_leave_the_queue_bounded() -> None:
    # A churned object's key requeued often, then reconciled once more after its deletion:
    # that last reconcile cancels its delayed add, and nothing of it stays.
    queue: WorkQueue[str] = WorkQueue()
    for n in range(10_000):
        for delay in (3600, 1800, 900):
            queue.add_after(f"ns/obj-{n}", delay)
        queue.cancel_delayed(f"ns/obj-{n}")
    assert queue.delayed() == 0
    assert len(queue._delayed) <= 64  # the heap itself was rebuilt without the void entries
