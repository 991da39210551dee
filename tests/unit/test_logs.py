"""How stash logs: JSON lines that parse one by one, with the fields of the work they are about
and a failure's traceback; the plain format with the same fields; a service's crash logged with
its traceback, an interactive command's in one line."""

from __future__ import annotations

import json
import logging
import threading
from typing import Any

import pytest

from cli import logs
from cli import main as cli_main
from cli import operator as cli_operator
from engine.logfields import current_fields, log_fields


@pytest.fixture
def captured(capsys: pytest.CaptureFixture[str]) -> Any:
    def lines() -> list[str]:
        return capsys.readouterr().err.splitlines()

    yield lines
    logging.getLogger().handlers.clear()


def test_json_lines_carry_the_fields_of_the_work_and_parse_one_by_one(captured: Any) -> None:
    logs.configure("json", "INFO")
    log = logging.getLogger("controller.sessions.restore")
    with log_fields(namespace="shop", invoker="RestoreSession/back"):
        log.info("created Job %s", "stash-restore-back-0")
        with log_fields(host="host-1", session=""):
            try:
                raise RuntimeError("boom\nsecond line")
            except RuntimeError:
                log.exception("restore failed")
    log.warning("outside")
    first, second, third = (json.loads(line) for line in captured())
    assert first["message"] == "created Job stash-restore-back-0"
    assert (first["level"], first["logger"]) == ("INFO", "controller.sessions.restore")
    assert (first["namespace"], first["invoker"]) == ("shop", "RestoreSession/back")
    assert first["time"].endswith("+00:00")
    assert second["host"] == "host-1"
    assert "session" not in second  # empty values are left out
    assert second["message"] == "restore failed"
    assert "RuntimeError: boom" in second["traceback"]
    assert "namespace" not in third  # the fields ended with their work


def test_each_thread_logs_its_own_fields() -> None:
    seen: dict[str, dict[str, str]] = {}

    def work(name: str) -> None:
        with log_fields(session=name):
            seen[name] = current_fields()

    with log_fields(invoker="BackupBatch/nightly"):
        threads = [threading.Thread(target=work, args=(n,)) for n in ("a", "b")]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    assert seen == {"a": {"session": "a"}, "b": {"session": "b"}}


def test_the_plain_format_ends_with_the_fields(captured: Any) -> None:
    logs.configure("text", "INFO")
    with log_fields(namespace="shop", target="Deployment/web"):
        logging.getLogger("agent.run_backup").info("backing up")
    (line,) = captured()
    assert line.endswith("INFO agent.run_backup: backing up [namespace=shop target=Deployment/web]")


def test_an_unknown_format_is_refused() -> None:
    with pytest.raises(ValueError, match="log format 'xml'"):
        logs.configure("xml")


def test_a_service_crash_logs_its_traceback_and_a_commands_one_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def broken(args: Any) -> int:
        raise KeyError("wedged")

    monkeypatch.setattr(cli_operator, "cmd_operator", broken)
    monkeypatch.setattr(cli_operator, "cmd_crds", broken)
    try:
        assert cli_main.main(["operator", "--log-format", "json"]) == 70
        (line,) = [json.loads(x) for x in capsys.readouterr().err.splitlines()]
        assert line["message"] == "stash operator crashed"
        assert "KeyError: 'wedged'" in line["traceback"]
        assert cli_main.main(["crds"]) == 70
        err = capsys.readouterr().err
        assert err.count("\n") == 1
        assert "internal error (KeyError: 'wedged')" in err
    finally:
        logging.getLogger().handlers.clear()
