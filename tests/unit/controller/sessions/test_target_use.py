"""What the caches say about who uses a target: the running targets of a backup session and the
targets of an unfinished restore, read whatever shape they were written in."""

from __future__ import annotations

from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from controller.sessions.target_use import restoring_targets, running_targets, target_key
from tests.factories import restore_batch, restore_member, restore_session


def _session(phase: str, *targets: tuple[str, str, str]) -> dict[str, Any]:
    return {
        "metadata": {"name": "nightly-1", "namespace": "demo"},
        "status": {
            "phase": phase,
            "targets": [
                {"ref": {"kind": kind, "name": name}, "phase": target_phase}
                for kind, name, target_phase in targets
            ],
        },
    }


def test_a_session_uses_its_started_targets_until_it_ends_and_frees_failed_ones() -> None:
    session = _session(
        "Running",
        ("PersistentVolumeClaim", "a", "Running"),
        ("PersistentVolumeClaim", "b", "Pending"),
        ("Deployment", "web", "Succeeded"),  # backed up; retention and the check still to come
        ("PersistentVolumeClaim", "c", "Failed"),
    )
    assert list(running_targets(session)) == [
        target_key("demo", "PersistentVolumeClaim", "a"),
        target_key("demo", "Deployment", "web"),
    ]
    session["status"]["phase"] = "Failed"
    assert list(running_targets(session)) == []


def test_an_unfinished_restore_uses_every_target_it_names() -> None:
    restore = restore_batch(
        "back", "demo", restore_member(name="a"), restore_member("Deployment", "web")
    )
    assert sorted(restoring_targets(restore)) == [
        target_key("demo", "Deployment", "web"),
        target_key("demo", "PersistentVolumeClaim", "a"),
    ]
    for ended in ("Succeeded", "Failed", "Invalid"):
        restore["status"] = {"phase": ended}
        assert list(restoring_targets(restore)) == []
    pending = restore_session("one", "demo", restore_member(name="a"))
    pending["status"] = {"phase": "Pending"}
    assert list(restoring_targets(pending)) == [target_key("demo", "PersistentVolumeClaim", "a")]


JUNK = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=6),
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.dictionaries(
            st.sampled_from(["ref", "kind", "name", "phase", "target"]), inner, max_size=3
        )
    ),
    max_leaves=10,
)


@given(JUNK, JUNK)
def test_whatever_shape_the_objects_have_the_index_functions_do_not_raise(
    targets: object, spec: object
) -> None:
    # They run in the informer's thread on every event: raising there would stall the cache.
    list(running_targets({"metadata": {"namespace": "n"}, "status": {"targets": targets}}))
    list(
        restoring_targets({"kind": "RestoreSession", "metadata": {"namespace": "n"}, "spec": spec})
    )
    list(restoring_targets({"kind": "RestoreBatch", "metadata": {}, "spec": {"members": spec}}))
