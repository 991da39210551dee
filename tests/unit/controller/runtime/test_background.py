"""Slow side effects off the workers: one run per key at a time, the key enqueued again when it
ends, the outcome (value or exception) taken once."""

from __future__ import annotations

import threading

import pytest

from controller.runtime.background import Background


def test_work_runs_once_per_key_and_its_outcome_is_taken_once() -> None:
    background: Background[str, int] = Background("test")
    release = threading.Event()
    runs: list[str] = []
    done = threading.Event()

    def work() -> int:
        runs.append("x")
        release.wait(5)
        return 7

    background.submit("repo", work, lambda key: done.set())
    background.submit("repo", work, lambda key: done.set())  # already running: no second run
    assert background.running("repo")
    assert background.take("repo") is None
    release.set()
    assert done.wait(5)
    assert runs == ["x"]
    outcome = background.take("repo")
    assert outcome is not None
    assert (outcome.value, outcome.error) == (7, None)
    assert background.take("repo") is None


def test_an_exception_is_an_outcome_not_a_lost_thread() -> None:
    background: Background[str, int] = Background("test")
    done = threading.Event()

    def fails() -> int:
        raise ValueError("backend gone")

    background.submit("repo", fails, lambda key: done.set())
    assert done.wait(5)
    outcome = background.take("repo")
    assert outcome is not None
    with pytest.raises(ValueError, match="backend gone"):
        raise outcome.error or AssertionError


def test_outcomes_nobody_takes_are_not_kept_without_bound() -> None:
    # A key whose object went before its reconcile took the outcome never takes it.
    background: Background[int, int] = Background("test", remembered=50)
    ended = threading.Semaphore(0)
    for key in range(500):
        background.submit(key, lambda: 1, lambda key: ended.release())
    for _ in range(500):
        assert ended.acquire(timeout=5)
    assert len(background._done) == 50
    assert background.take(499) is not None  # the newest are there to take
    assert background.take(0) is None  # the oldest went: its work would be done once more
