"""The command line's edge: errors become one line and an exit code, never a traceback."""

from __future__ import annotations

import argparse

import pytest

from cli import main as cli
from cli import operator


def test_a_known_failure_is_one_line_and_exit_1(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def fails(args: argparse.Namespace) -> int:
        raise RuntimeError("Repository demo/repo not found")

    monkeypatch.setattr(operator, "cmd_crds", fails)
    assert cli.main(["crds"]) == 1
    assert capsys.readouterr().err == "stash crds: Repository demo/repo not found\n"


def test_a_bug_is_one_line_too_and_exit_70(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def broken(args: argparse.Namespace) -> int:
        return int(args.no_such_option)

    monkeypatch.setattr(operator, "cmd_crds", broken)
    assert cli.main(["crds"]) == 70
    err = capsys.readouterr().err
    assert err.startswith("stash crds: internal error (AttributeError: ")
    assert "Traceback" not in err
    assert err.count("\n") == 1
