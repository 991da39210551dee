"""Giving up on a failing backend: restic 0.17+ retries a failing request for up to 15 minutes;
the wrapper stops it at once on an error no retry mends, else after a bounded time of failures."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from engine.backend import BackendConfig
from engine.restic import BackendWatch, Restic, ResticError

STAT_RETRY = "Stat(<config/>) returned error, retrying after 1.2s: Stat: {}"


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_a_backend_that_keeps_failing_is_given_up_after_the_limit() -> None:
    clock = Clock()
    watch = BackendWatch(limit=60, clock=clock)
    watch.seen(STAT_RETRY.format("dial tcp 127.0.0.1:9: connect: connection refused"))
    clock.now += 59
    watch.seen(STAT_RETRY.format("dial tcp 127.0.0.1:9: connect: connection refused"))
    assert not watch.give_up()
    clock.now += 1
    assert watch.give_up()
    assert watch.reason() == (
        "the backend kept failing for 60s: "
        "Stat(<config/>): Stat: dial tcp 127.0.0.1:9: connect: connection refused"
    )


def test_a_success_between_failures_starts_the_count_again() -> None:
    clock = Clock()
    watch = BackendWatch(limit=60, clock=clock)
    watch.seen(STAT_RETRY.format("503 Service Unavailable"))
    clock.now += 50
    watch.seen("Save(<data/1234>) operation successful after 3 retries")
    clock.now += 50
    assert not watch.give_up()
    watch.seen(STAT_RETRY.format("503 Service Unavailable"))
    clock.now += 59
    assert not watch.give_up()


@pytest.mark.parametrize(
    "error",
    [
        "The Access Key Id you provided does not exist in our records.",
        "The specified bucket does not exist",
        "Access Denied.",
    ],
)
def test_an_error_no_retry_mends_is_given_up_on_at_once(error: str) -> None:
    watch = BackendWatch(limit=600, clock=Clock())
    watch.seen(STAT_RETRY.format(error))
    assert watch.give_up()
    assert watch.reason() == f"the backend refused: Stat(<config/>): Stat: {error}"


def test_lines_that_are_not_retries_change_nothing() -> None:
    watch = BackendWatch(limit=0, clock=Clock())
    watch.seen("Fatal: wrong password or no key found")
    watch.seen('{"message_type":"error","item":"/data/a"}')
    assert not watch.give_up()


def test_a_restic_retrying_forever_is_stopped_within_the_limit(tmp_path: Path) -> None:
    """A fake restic that retries a refused connection every 0.2 s and never ends."""
    script = tmp_path / "restic"
    script.write_text(
        "#!/usr/bin/env python3\n"
        "import sys, time\n"
        "while True:\n"
        "    print('Load(<config/>) returned error, retrying after 0.2s: '\n"
        "          'dial tcp 127.0.0.1:9: connect: connection refused', file=sys.stderr,"
        " flush=True)\n"
        "    time.sleep(0.2)\n"
    )
    script.chmod(0o755)
    config = BackendConfig(repository="rest:http://127.0.0.1:9/", env={})
    restic = Restic(config, binary=str(script), backend_retry_limit=2)
    started = time.monotonic()
    with pytest.raises(ResticError) as failed:
        restic.snapshots()
    assert time.monotonic() - started < 6
    assert str(failed.value).startswith(
        "restic snapshots failed (exit -15): the backend kept failing for 2s: Load(<config/>): "
        "dial tcp 127.0.0.1:9: connect: connection refused"
    )
