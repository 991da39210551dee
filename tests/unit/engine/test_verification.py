"""A verified restore's pure parts: what restic lists, what a budget reads, how the copy
compares, and the verdict a verification Job leaves for the operator."""

from __future__ import annotations

import json
import os
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from engine.verification import (
    PROBLEMS_KEPT,
    TERMINATION_LIMIT,
    CopySize,
    ListedEntry,
    RestoreSummary,
    SnapshotVerdict,
    Verdict,
    choose,
    compare,
    copy_size,
    listed_entries,
    listed_snapshot_id,
    restore_problems,
    restore_summary,
    summary_problems,
    verified_session,
)

LS = [
    '{"time":"2026-12-07T10:00:00Z","paths":["/data"],"hostname":"host-0","struct_type":"snapshot"}',
    '{"name":"data","type":"dir","path":"/data","mode":2147484141,"struct_type":"node"}',
    '{"name":"a.txt","type":"file","path":"/data/a.txt","size":5,"struct_type":"node"}',
    '{"name":"link","type":"symlink","path":"/data/link","struct_type":"node"}',
    "not json at all",
    '{"name":"odd","type":7,"path":"/data/odd","struct_type":"node"}',
]


def test_the_listing_keeps_each_entry_with_its_type_and_size_and_skips_the_rest() -> None:
    assert listed_entries(LS) == [
        ListedEntry("/data", "dir", 0),
        ListedEntry("/data/a.txt", "file", 5),
        ListedEntry("/data/link", "symlink", 0),
    ]


def entries(sizes: dict[str, int]) -> list[ListedEntry]:
    return [ListedEntry("/d", "dir")] + [ListedEntry(p, "file", s) for p, s in sizes.items()]


def test_a_snapshot_within_the_budget_is_read_whole() -> None:
    chosen = choose(entries({"/d/a": 10, "/d/b": 20}), 30, "2026-12-07")
    assert chosen.whole
    assert chosen.files == 2
    assert chosen.bytes == 30
    assert len(chosen.entries) == 3  # the folder too


def test_a_larger_snapshot_is_sampled_within_the_budget_and_the_sample_moves_with_the_seed() -> (
    None
):
    sizes = {f"/d/f{i}": 100 for i in range(50)}
    first = choose(entries(sizes), 1000, "2026-12-07")
    assert not first.whole
    assert first.files == 10
    assert first.bytes == 1000
    assert first.total_files == 50
    assert first.total_bytes == 5000
    again = choose(entries(sizes), 1000, "2026-12-07")
    other = choose(entries(sizes), 1000, "2026-12-08")
    assert again == first  # the same day reads the same files
    assert other.entries != first.entries


def test_a_file_larger_than_the_budget_is_skipped_for_ones_that_fit() -> None:
    chosen = choose(entries({"/d/huge": 10_000, "/d/small": 10}), 100, "x")
    assert [e.path for e in chosen.entries] == ["/d/small"]


def test_include_patterns_name_each_chosen_file_literally() -> None:
    chosen = choose(entries({"/d/a*b": 10, "/d/[x]": 10, "/d/big": 1000}), 20, "x")
    assert sorted(chosen.includes()) == ["/d/[[]x]", "/d/a[*]b"]


@settings(max_examples=200, deadline=None)
@given(
    st.dictionaries(
        st.text(min_size=1, max_size=8).map(lambda s: "/d/" + s.replace("/", "_")),
        st.integers(min_value=0, max_value=10_000),
        max_size=30,
    ),
    st.integers(min_value=0, max_value=50_000),
    st.text(max_size=10),
)
def test_a_selection_never_reads_more_than_its_budget_unless_it_is_whole(
    sizes: dict[str, int], budget: int, seed: str
) -> None:
    chosen = choose(entries(sizes), budget, seed)
    assert chosen.whole or chosen.bytes <= budget
    assert chosen.bytes == sum(e.size for e in chosen.entries if e.kind == "file")
    assert chosen.total_bytes == sum(sizes.values())


def test_the_copy_is_compared_by_presence_type_and_size(tmp_path: Path) -> None:
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "same").write_bytes(b"12345")
    (tmp_path / "d" / "short").write_bytes(b"12")
    (tmp_path / "d" / "was-a-dir").write_bytes(b"")
    os.symlink("same", tmp_path / "d" / "link")
    listed = [
        ListedEntry("/d", "dir"),
        ListedEntry("/d/same", "file", 5),
        ListedEntry("/d/short", "file", 5),
        ListedEntry("/d/gone", "file", 1),
        ListedEntry("/d/was-a-dir", "dir"),
        ListedEntry("/d/link", "symlink"),
    ]
    assert compare(listed, tmp_path) == [
        "/d/short: 2 bytes restored, the snapshot lists 5",
        "/d/gone: missing from the restored copy",
        "/d/was-a-dir: restored as another type than the snapshot's dir",
    ]


def test_restics_own_words_name_the_files_it_could_not_restore_or_verify() -> None:
    stderr = [
        json.dumps(
            {
                "message_type": "error",
                "error": {"message": "decrypting blob 1234: ciphertext verification failed"},
                "during": "restore",
                "item": "/data/a.txt",
            }
        ),
        json.dumps(
            {
                "message_type": "error",
                "error": {"message": "lchown /scratch/data/a.txt: no such file or directory"},
                "during": "restore",
                "item": "/data/a.txt",
            }
        ),
        "ignoring error for /data/b.txt: StreamPack: ciphertext verification failed",
        "Error verifying /data/c.txt: Invalid file size for /data/c.txt: expected 5, got 2",
        "unrelated progress",
        '{"message_type":"exit_error","code":1,"message":"Fatal: There were 3 errors"}',
    ]
    said = restore_problems(stderr)
    assert said[0] == "/data/a.txt: restic: decrypting blob 1234: ciphertext verification failed"
    assert any("/data/b.txt" in s for s in said)
    assert any("/data/c.txt" in s for s in said)
    assert len(said) == 3


def verdict(problems: int = 0, *, error: str = "") -> Verdict:
    return Verdict(
        "nightly-1765000000",
        snapshots=(
            SnapshotVerdict(
                "Deployment/app",
                "host-0",
                "abcd1234",
                files=3,
                bytes=2048,
                total_files=3,
                total_bytes=2048,
                problems=tuple(
                    f"/data/file-{i}: missing from the restored copy" for i in range(problems)
                ),
                error=error,
            ),
        ),
        check="no errors were found",
    )


def test_a_clean_verdict_says_what_was_read_and_that_it_is_identical() -> None:
    v = verdict()
    assert v.ok
    assert v.says() == (
        "session nightly-1765000000: Deployment/app host host-0 snapshot abcd1234: 3 files, "
        "2.0 KiB restored and identical; restic check: no errors were found"
    )


def test_a_verdict_with_differences_names_them_and_is_not_ok() -> None:
    v = verdict(2)
    assert not v.ok
    assert "2 differ: /data/file-0: missing from the restored copy; /data/file-1" in v.says()


def test_a_verdict_without_snapshots_or_with_a_failed_check_is_not_ok() -> None:
    assert not Verdict("s").ok
    assert not Verdict("s", snapshots=verdict().snapshots, check="x", check_ok=False).ok
    assert not verdict(error="restic ls failed").ok


def test_a_verdict_survives_its_termination_log() -> None:
    for v in (verdict(), verdict(3), verdict(error="boom"), Verdict("s", error="no Repository")):
        assert Verdict.from_termination(v.to_termination()) == v


def test_a_verdict_with_many_differences_fits_a_termination_log_and_counts_what_was_cut() -> None:
    v = verdict(5000)
    text = v.to_termination()
    assert len(text.encode()) <= TERMINATION_LIMIT
    back = Verdict.from_termination(text)
    assert back is not None
    assert not back.ok
    assert back.snapshots[0].differences == 5000
    assert len(back.snapshots[0].problems) <= PROBLEMS_KEPT


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=2000) | st.binary(max_size=500).map(lambda b: b.decode("latin-1")))
def test_anything_else_in_a_termination_log_reads_as_no_verdict_or_a_bounded_one(text: str) -> None:
    back = Verdict.from_termination(text)
    assert back is None or isinstance(back.says(), str)


@settings(max_examples=200, deadline=None)
@given(
    st.recursive(
        st.none() | st.booleans() | st.integers() | st.text(max_size=50),
        lambda children: (
            st.lists(children, max_size=5)
            | st.dictionaries(st.text(max_size=10), children, max_size=5)
        ),
        max_leaves=30,
    )
)
def test_a_termination_log_of_any_json_shape_never_breaks_the_reader(doc: object) -> None:
    wrapped = {"session": "s", "snapshots": [doc, {"problems": doc, "files": doc}], "error": doc}
    back = Verdict.from_termination(json.dumps(wrapped))
    assert back is not None
    assert all(s.files >= 0 for s in back.snapshots)
    back.says()


def test_the_listing_names_its_snapshot() -> None:
    line = '{"id":"073e4066aeda","short_id":"073e4066","struct_type":"snapshot"}'
    assert listed_snapshot_id(["noise", line, *LS[1:]]) == "073e4066aeda"
    assert listed_snapshot_id(LS[1:]) == ""


def test_restics_summary_of_a_restore_is_read_from_its_output() -> None:
    lines = [
        '{"message_type":"verbose_status","action":"restored","item":"/d","size":0}',
        '{"message_type":"summary","total_files":5,"files_restored":4,'
        '"total_bytes":3200006,"bytes_restored":1442990}',
    ]
    assert restore_summary(lines) == RestoreSummary(5, 4, 3200006, 1442990)
    assert restore_summary(lines[:1]) is None


def test_a_copy_is_counted_as_restic_counts_a_tree(tmp_path: Path) -> None:
    (tmp_path / "data" / "sub").mkdir(parents=True)
    (tmp_path / "data" / "a").write_bytes(b"12345")
    (tmp_path / "data" / "sub" / "b").write_bytes(b"1")
    os.symlink("a", tmp_path / "data" / "link")
    assert copy_size(tmp_path) == CopySize(entries=5, files=2, bytes=6)


def test_a_copy_that_falls_short_of_the_tree_is_named_even_when_restic_said_nothing() -> None:
    whole = RestoreSummary(5, 5, 100, 100)
    assert summary_problems(whole, CopySize(5, 3, 100)) == []
    short = summary_problems(whole, CopySize(4, 2, 60))
    assert short == [
        "the restored copy holds 4 files and folders, 60 bytes; the snapshot's tree lists 5, "
        "100 bytes"
    ]
    partial = summary_problems(RestoreSummary(5, 4, 100, 40), CopySize(5, 3, 100))
    assert partial[0] == "restic restored 4 of 5 files and folders, 40 of 100 bytes"
    assert summary_problems(None, CopySize(0, 0, 0))


def test_a_verified_condition_names_its_session() -> None:
    assert verified_session("session nightly-1: PersistentVolumeClaim/a host host-0 ...") == (
        "nightly-1"
    )
    assert verified_session("something else: x") == ""
    assert verified_session("") == ""
