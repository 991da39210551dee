"""What a restore would do, read from restic's dry run: bounded, and tolerant of anything else
in a termination log."""

from __future__ import annotations

import json

from hypothesis import given, settings
from hypothesis import strategies as st

from engine.preview import LISTED, Preview, preview_of


def line(action: str, item: str, size: int) -> str:
    return json.dumps(
        {"message_type": "verbose_status", "action": action, "item": item, "size": size}
    )


def test_each_file_is_counted_as_restic_would_treat_it_and_folders_are_not() -> None:
    lines = [
        '{"message_type":"status","percent_done":0.5}',
        line("restored", "/data/sub/b.bin", 200000),
        line("updated", "/data/a.txt", 6),
        line("unchanged", "/data/sub/deeper/c.txt", 6000),
        line("restored", "/data/sub", 0),
        line("deleted", "/data/old", 10),
        '{"message_type":"summary","total_files":5}',
        "not json",
    ]
    found = preview_of(lines, Preview("PersistentVolumeClaim/data", "host-0"))
    assert (found.add.count, found.add.bytes, found.add.paths) == (1, 200000, ["/data/sub/b.bin"])
    assert (found.overwrite.count, found.overwrite.paths) == (1, ["/data/a.txt"])
    assert (found.leave.count, found.leave.bytes) == (1, 6000)


def test_the_paths_kept_are_bounded_and_the_counts_are_not() -> None:
    found = Preview("PersistentVolumeClaim/data", "host-0")
    for index in range(1000):
        found.take(line("restored", f"/data/f{index}", 1))
    assert found.add.count == 1000
    assert len(found.add.paths) == LISTED
    back = Preview.from_termination(found.to_termination())
    assert back is not None
    assert back.add.count == 1000
    assert len(found.to_termination().encode()) <= 4000


def test_long_paths_still_fit_a_termination_log() -> None:
    found = Preview("PersistentVolumeClaim/data", "host-0", "abcd1234")
    for kind in ("restored", "updated", "unchanged"):
        for index in range(LISTED):
            found.take(line(kind, "/data/" + "x" * 250 + str(index), 1))
    text = found.to_termination()
    assert len(text.encode()) <= 3900
    back = Preview.from_termination(text)
    assert back is not None
    assert (back.add.count, back.overwrite.count, back.leave.count) == (LISTED, LISTED, LISTED)


def test_a_preview_survives_its_termination_log() -> None:
    found = preview_of(
        [line("restored", "/a", 1), line("updated", "/b", 2)],
        Preview("Deployment/web", "host-0", "abcd1234", "2026-12-07T10:00:00"),
    )
    assert Preview.from_termination(found.to_termination()) == found
    failed = Preview("Deployment/web", "host-0", error="no snapshot latest of Deployment/web")
    assert Preview.from_termination(failed.to_termination()) == failed


@settings(max_examples=200, deadline=None)
@given(
    st.recursive(
        st.none() | st.booleans() | st.integers() | st.text(max_size=40),
        lambda children: (
            st.lists(children, max_size=4)
            | st.dictionaries(st.text(max_size=8), children, max_size=4)
        ),
        max_leaves=25,
    )
)
def test_a_termination_log_of_any_shape_never_breaks_the_reader(doc: object) -> None:
    wrapped = {"target": "x", "add": doc, "overwrite": {"paths": doc, "count": doc}, "host": doc}
    back = Preview.from_termination(json.dumps(wrapped))
    assert back is not None
    assert back.overwrite.count >= 0
    assert Preview.from_termination(json.dumps(doc)) is None or isinstance(doc, dict)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.text(max_size=120), max_size=30))
def test_any_output_of_restic_is_read_without_error(lines: list[str]) -> None:
    found = preview_of(lines, Preview())
    assert found.add.count + found.overwrite.count + found.leave.count <= len(lines)
