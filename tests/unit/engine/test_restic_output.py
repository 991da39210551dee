"""Reading restic's output: redaction, error tails, unreadable files, retention flags."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from api.common import RetentionPolicy
from engine.backend import BackendConfig
from engine.restic import (
    DENIED_LISTED,
    STDERR_LINES,
    BackupSummary,
    CheckResult,
    Redactor,
    Restic,
    ResticError,
    check_binary,
    denied_paths,
    retention_flags,
    tail,
    unreadable_items,
)


def test_every_secret_is_redacted_longest_first() -> None:
    redact = Redactor(["abc", "abcdef", ""])
    assert redact("key abcdef and abc") == "key *** and ***"


def test_the_tail_keeps_restics_last_words_and_drops_progress_lines() -> None:
    lines = ["[0:01] 10% 1 files", "Fatal: wrong password or no key found", ""]
    assert tail(lines) == "Fatal: wrong password or no key found"
    assert tail([]) == "no output"


def test_unreadable_items_come_from_restics_json_errors() -> None:
    lines = [
        json.dumps(
            {"message_type": "error", "error": {"Op": "open", "Err": 13}, "item": "/data/a"}
        ),
        "Warning: at least one source file could not be read",
        json.dumps({"message_type": "error", "error": {}, "item": "/data/b"}),
        json.dumps(
            {
                "message_type": "error",
                "error": {"message": "open /data/c: permission denied"},
                "during": "archival",
                "item": "/data/c",
            }
        ),
    ]
    assert unreadable_items(lines) == (
        "/data/a (Permission denied)",
        "/data/b",
        "/data/c (permission denied)",
    )


def test_an_unreadable_error_lists_the_paths_and_says_how_many_more() -> None:
    error = ResticError("backup", 3, "x", tuple(f"/f{i}" for i in range(12)))
    assert str(error) == (
        "restic backup: could not read /f0, /f1, /f2, /f3, /f4, /f5, /f6, /f7, /f8, /f9 and 2 more"
    )
    assert str(ResticError("check", 1, "Fatal: x")) == "restic check failed (exit 1): Fatal: x"


def test_retention_policy_becomes_forget_flags() -> None:
    policy = RetentionPolicy(
        name="p", keep_last=5, keep_daily=7, keep_tags=["keep"], prune=True, dry_run=True
    )
    assert retention_flags(policy) == [
        "--keep-last",
        "5",
        "--keep-daily",
        "7",
        "--keep-tag",
        "keep",
        "--prune",
        "--dry-run",
    ]


def test_a_backup_summary_reads_restics_json() -> None:
    summary = BackupSummary.from_json(
        {
            "message_type": "summary",
            "files_new": 2,
            "files_changed": 1,
            "files_unmodified": 3,
            "total_files_processed": 6,
            "total_bytes_processed": 600,
            "data_added": 120,
            "total_duration": 1.5,
            "snapshot_id": "abcd1234",
        }
    )
    assert (summary.total_files, summary.files_changed, summary.data_added) == (6, 1, 120)


def test_restics_output_is_kept_bounded_however_long_the_backup(tmp_path: Path) -> None:
    """A fake restic: 200,000 progress lines and 50,000 unreadable files, then its summary."""
    script = tmp_path / "restic"
    summary = {
        "message_type": "summary",
        "files_new": 1,
        "files_changed": 0,
        "files_unmodified": 0,
        "total_files_processed": 1,
        "total_bytes_processed": 1,
        "data_added": 1,
        "total_duration": 0.1,
        "snapshot_id": "abc",
    }
    script.write_text(
        "#!/usr/bin/env python3\n"
        "import json, sys\n"
        "for i in range(200000):\n"
        "    print(json.dumps({'message_type': 'status', 'percent_done': i},"
        " separators=(',', ':')))\n"
        "for i in range(50000):\n"
        "    print(json.dumps({'message_type': 'error', 'error': {}, 'item': f'/d/{i}'}),"
        " file=sys.stderr)\n"
        f"print(json.dumps({summary!r}))\n"
        "sys.exit(3)\n"
    )
    script.chmod(0o755)
    (tmp_path / "data").mkdir()
    restic = Restic(BackendConfig(repository="local:/nowhere", env={}), binary=str(script))
    seen: list[str] = []
    stdout, stderr, code = restic._run("backup", ["backup"], ok=(3,), on_line=seen.append)
    assert code == 3
    assert len(seen) == 200_000  # every progress line handed on…
    assert len(stdout) == 1  # …and none kept
    assert len(stderr) <= STDERR_LINES + 10
    assert restic.stderr_dropped > 48_000
    with pytest.raises(ResticError) as failed:
        restic.backup([str(tmp_path / "data")], host="h")
    assert "could not read /d/0, /d/1" in str(failed.value)
    assert str(failed.value).endswith(f" and {50_000 - 10} more")


def test_a_json_fatal_error_is_said_in_restics_words() -> None:
    line = (
        '{"message_type":"exit_error","code":10,"message":"Fatal: repository does not exist: '
        'unable to open config file\\nIs there a repository at the following location?\\n/repo"}'
    )
    assert tail(["[0:01] 10% done", line]) == (
        "Fatal: repository does not exist: unable to open config file Is there a repository at "
        "the following location? /repo"
    )


def _fake_restic(tmp_path: Path, says: str) -> str:
    binary = tmp_path / "restic"
    binary.write_text(f"#!/bin/sh\necho '{says}'\n")
    binary.chmod(0o755)
    return str(binary)


def test_a_restic_too_old_or_missing_is_refused_saying_what_to_install(tmp_path: Path) -> None:
    old = _fake_restic(tmp_path, "restic 0.14.0 compiled with go1.19.8 on linux/amd64")
    with pytest.raises(ValueError, match=r"is restic 0\.14\.0; 0\.18\.0 or later is needed"):
        check_binary(old)
    with pytest.raises(ValueError, match=r"not found: install restic 0\.18\.0 or later"):
        check_binary(str(tmp_path / "absent"))
    check_binary(_fake_restic(tmp_path, "restic 0.18.1 compiled with go1.26.8 on linux/amd64"))


def test_the_paths_restic_was_refused_are_read_from_its_words_each_once() -> None:
    detail = (
        "Load(<key/1a2b>, 0, 0) returned error, retrying after 1s: "
        "open /repo/keys/1a2b: permission denied\n"
        "Fatal: unable to open config file: Stat: stat /repo/config: permission denied\n"
        "open /repo/keys/1a2b: permission denied"
    )
    assert denied_paths(detail) == ("/repo/keys/1a2b", "/repo/config")
    assert denied_paths("Fatal: wrong password or no key found") == ()
    many = "\n".join(f"open /repo/data/{n}: permission denied" for n in range(20))
    assert len(denied_paths(many)) == DENIED_LISTED


def test_a_refused_check_names_each_path_with_its_owner_and_mode(tmp_path: Path) -> None:
    made = tmp_path / "config"
    made.write_text("x")
    made.chmod(0o600)
    gone = tmp_path / "data" / "ab" / "cd"  # shut away: the nearest directory that exists
    info = made.stat()
    result = CheckResult(False, "...", (str(made), str(gone)))
    words = result.says()
    assert f"{made} (owner {info.st_uid}:{info.st_gid}, mode 0600)" in words
    assert f"{gone} (under {tmp_path}: owner" in words
    assert "restic check could not read the repository: permission denied on" in words
    assert CheckResult(False, "pack 1234 is damaged").says() == "restic check: pack 1234 is damaged"
