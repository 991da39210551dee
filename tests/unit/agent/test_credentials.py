"""A dump or restore command gets an AppBinding's password in the variable its tool reads, and
only when nothing set that variable already."""

from __future__ import annotations

import os

import pytest

from agent.job_steps import lend_password


def test_the_bindings_password_is_lent_to_the_tools_variable(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("TARGET_APP_PASSWORD", "from-secret")
    monkeypatch.delenv("PGPASSWORD", raising=False)
    lend_password("PGPASSWORD")
    assert os.environ["PGPASSWORD"] == "from-secret"


def test_a_password_the_user_set_wins_and_nothing_is_lent_without_one(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("TARGET_APP_PASSWORD", "from-secret")
    monkeypatch.setenv("PGPASSWORD", "from-runtime-settings")
    lend_password("PGPASSWORD")
    assert os.environ["PGPASSWORD"] == "from-runtime-settings"
    monkeypatch.delenv("TARGET_APP_PASSWORD")
    monkeypatch.delenv("MYSQL_PWD", raising=False)
    lend_password("MYSQL_PWD")
    assert "MYSQL_PWD" not in os.environ
    lend_password("")  # no variable asked for: nothing happens
