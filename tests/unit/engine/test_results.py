"""A host's result: Stash's stats format, and the file passed between Job steps."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from api.units import go_duration, human_size, parse_duration
from engine.results import HostResult, SnapshotResult

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


def test_a_host_result_is_read_back_from_the_status_it_wrote() -> None:
    result = HostResult("host-0", "Succeeded", 2.0, (SNAP,))
    assert HostResult.from_status(result.to_status()) == result
    failed = HostResult("host-1", "Failed", 0.5, error="restic backup: could not read /x")
    assert HostResult.from_status(failed.to_status()) == failed


def test_sizes_read_back_from_the_status_are_within_stashs_three_decimals() -> None:
    for size in (0, 1, 1023, 1024, 123_456_789, 5 * 2**40 + 12345):
        snap = SnapshotResult("id", "/d", size, size, 1.0, 1, 1, 0, 0)
        back = SnapshotResult.from_status(snap.to_status())
        assert abs(back.total_bytes - size) <= max(1, size) * 0.0005


@given(
    st.recursive(
        st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
        lambda inner: (
            st.lists(inner, max_size=4)
            | st.dictionaries(
                st.sampled_from(
                    [
                        "hostname",
                        "phase",
                        "duration",
                        "snapshots",
                        "error",
                        "totalSize",
                        "uploaded",
                        "processingTime",
                        "fileStats",
                        "totalFiles",
                        "name",
                        "path",
                    ]
                ),
                inner,
                max_size=6,
            )
        ),
        max_leaves=20,
    )
)
def test_whatever_a_pod_wrote_as_its_stats_reads_back_as_a_result_or_zeroes(doc: object) -> None:
    # The operator turns these into metrics; a pod of the tenant's wrote them.
    result = HostResult.from_status(doc)
    assert result.phase in ("Succeeded", "Failed")
    totals = result.totals()
    assert totals.total_bytes >= 0
    assert totals.files_total >= 0
    assert result.duration >= 0


@pytest.mark.parametrize("text", ["inf KiB", "nan B", "-1 MiB", "1e999 GiB", "x", ""])
def test_a_size_that_is_not_one_reads_as_zero(text: str) -> None:
    assert SnapshotResult.from_status({"totalSize": text}).total_bytes == 0


def test_a_duration_with_more_digits_than_a_float_holds_is_capped_not_an_error() -> None:
    assert parse_duration("9" * 400 + "h").days == 36500
