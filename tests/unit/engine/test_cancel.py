"""Stopping restic's work from another thread (``engine.restic.Cancel``): the work of a session
that ended meanwhile."""

from __future__ import annotations

import sys
import threading
import time
from pathlib import Path

import pytest

from engine.backend import BackendConfig
from engine.restic import Cancel, Restic, ResticError

CONFIG = BackendConfig(repository="/nonexistent-repository", env={})


def _fake_restic(tmp_path: Path) -> Path:
    """A restic that notes each start, reads its stdin if it has one, and never ends."""
    script = tmp_path / "restic"
    script.write_text(
        f"#!{sys.executable}\n"
        "import sys, time\n"
        f"open({str(tmp_path / 'started')!r}, 'a').write(' '.join(sys.argv[1:2]) + '\\n')\n"
        "if '--stdin' in sys.argv:\n"
        "    sys.stdin.buffer.read()\n"
        "while True:\n"
        "    time.sleep(0.1)\n"
    )
    script.chmod(0o755)
    return script


def _stop_later(cancel: Cancel, reason: str, after: float = 0.3) -> None:
    threading.Timer(after, cancel.stop, args=(reason,)).start()


def test_a_cancelled_restic_is_stopped_and_says_why(tmp_path: Path) -> None:
    cancel = Cancel()
    restic = Restic(CONFIG, binary=str(_fake_restic(tmp_path)), cancel=cancel)
    (tmp_path / "data").mkdir()
    _stop_later(cancel, "session s-1 ended Failed at its deadline")
    started = time.monotonic()
    with pytest.raises(ResticError) as failed:
        restic.backup([str(tmp_path / "data")], host="host-0")
    assert time.monotonic() - started < 5
    assert "stopped: session s-1 ended Failed at its deadline" in str(failed.value)


def test_no_restic_command_starts_once_the_work_is_cancelled(tmp_path: Path) -> None:
    cancel = Cancel()
    restic = Restic(CONFIG, binary=str(_fake_restic(tmp_path)), cancel=cancel)
    cancel.stop("session s-1 was deleted")
    with pytest.raises(ResticError, match="not started: session s-1 was deleted"):
        restic.snapshots()
    with pytest.raises(ResticError, match="not started"), restic.dump("latest", "/dump.sql"):
        pass
    assert not (tmp_path / "started").exists()


def test_the_first_reason_given_is_the_one_kept() -> None:
    cancel = Cancel()
    assert cancel.reason is None
    cancel.stop("first")
    cancel.stop("second")
    assert cancel.reason == "first"


def test_a_stream_producer_that_waits_is_stopped_with_its_cancelled_restic(
    tmp_path: Path,
) -> None:
    cancel = Cancel()
    restic = Restic(CONFIG, binary=str(_fake_restic(tmp_path)), cancel=cancel)
    _stop_later(cancel, "session s-2 ended Failed at its deadline")
    started = time.monotonic()
    with pytest.raises(ResticError, match="stopped: session s-2"):
        # a dump that writes a little and then stalls, holding its stdout open
        restic.backup_stdin(
            [sys.executable, "-c", "import time; print('x', flush=True); time.sleep(600)"],
            filename="/dump.sql",
            host="host-0",
        )
    assert time.monotonic() - started < 5
