"""A host's result: Stash's stats format, and the file passed between Job steps."""

from __future__ import annotations

from pathlib import Path

import pytest

from engine.results import HostResult, SnapshotResult, go_duration, human_size

SNAP = SnapshotResult("abcd1234", "/data", 1536, 512, 0.25, 3, 1, 1, 1)


@pytest.mark.parametrize(
    ("size", "text"), [(0, "0 B"), (1023, "1023 B"), (1536, "1.500 KiB"), (5 * 2**30, "5.000 GiB")]
)
def test_sizes_are_human_binary_units(size: int, text: str) -> None:
    assert human_size(size) == text


@pytest.mark.parametrize(
    ("seconds", "text"), [(0.25, "250ms"), (3.5, "3.5s"), (75.5, "1m15.5s"), (3725, "1h2m5s")]
)
def test_durations_are_go_durations(seconds: float, text: str) -> None:
    assert go_duration(seconds) == text


def test_a_host_result_becomes_stashs_host_backup_stats() -> None:
    result = HostResult("host-0", "Succeeded", 2.0, (SNAP,))
    assert result.to_status() == {
        "hostname": "host-0",
        "phase": "Succeeded",
        "duration": "2s",
        "snapshots": [
            {
                "name": "abcd1234",
                "path": "/data",
                "totalSize": "1.500 KiB",
                "uploaded": "512 B",
                "processingTime": "250ms",
                "fileStats": {
                    "totalFiles": 3,
                    "newFiles": 1,
                    "modifiedFiles": 1,
                    "unmodifiedFiles": 1,
                },
            }
        ],
    }
    failed = HostResult("host-1", "Failed", 0.5, error="restic backup: could not read /x")
    assert failed.to_status()["error"] == "restic backup: could not read /x"


def test_a_result_survives_the_trip_between_job_steps(tmp_path: Path) -> None:
    result = HostResult("host-0", "Succeeded", 2.0, (SNAP, SNAP))
    result.save(tmp_path / "out")
    assert HostResult.load(tmp_path / "out") == result
    assert result.totals().total_bytes == 3072
