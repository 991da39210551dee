"""A reconciler's writes: counted per namespace, and their watch echoes told apart from anyone
else's change."""

from __future__ import annotations

from api.objects import JSON
from controller.runtime.loop import Writes


def cronjob(version: str, name: str = "stash-trigger-nightly", namespace: str = "demo") -> JSON:
    return {
        "kind": "CronJob",
        "metadata": {"name": name, "namespace": namespace, "resourceVersion": version},
    }


def test_the_event_carrying_our_write_is_an_echo_once() -> None:
    writes = Writes()
    writes.record("demo", cronjob("41"))
    assert writes.echo(cronjob("41"))
    assert not writes.echo(cronjob("41"))  # said once: a relisted copy is not hidden again
    assert writes.in_namespace("demo") == 1


def test_a_change_by_anyone_else_is_no_echo() -> None:
    writes = Writes()
    writes.record("demo", cronjob("41"))
    assert not writes.echo(cronjob("42"))  # a user's edit after ours
    assert not writes.echo(cronjob("41", name="stash-trigger-weekly"))
    assert not writes.echo(cronjob("41", namespace="prod"))
    assert not writes.echo({"kind": "Role", "metadata": cronjob("41")["metadata"]})


def test_an_event_that_overtook_the_write_is_acted_on() -> None:
    writes = Writes()
    assert not writes.echo(cronjob("41"))  # the watch was faster than the write's response
    writes.record("demo", cronjob("41"))
    writes.record("demo", cronjob("43"))  # the next write replaces what was remembered
    assert not writes.echo(cronjob("41"))
    assert writes.echo(cronjob("43"))


def test_a_write_without_the_stored_object_is_only_counted() -> None:
    writes = Writes()
    writes.record("demo")
    writes.record("demo", {"kind": "CronJob", "metadata": {"name": "x", "namespace": "demo"}})
    assert writes.in_namespace("demo") == 2
    assert not writes.echo({"kind": "CronJob", "metadata": {"name": "x", "namespace": "demo"}})


def test_writes_whose_echo_never_comes_are_not_remembered_without_bound() -> None:
    # Objects written and deleted before their echo (churn) leave nothing behind for ever.
    writes = Writes(remembered=100)
    for n in range(10_000):
        writes.record("demo", cronjob(str(n), name=f"stash-trigger-{n}"))
    assert len(writes._versions) == 100
    assert writes.echo(cronjob("9999", name="stash-trigger-9999"))  # the newest still echo
    assert not writes.echo(cronjob("0", name="stash-trigger-0"))  # the oldest: one reconcile


def test_a_write_whose_echo_came_before_its_answer_is_not_awaited() -> None:
    writes = Writes()
    assert not writes.echo(cronjob("41"))  # the watch was faster than the write's response
    writes.record("demo", cronjob("41"))
    assert writes.awaited() == 0  # nothing left waiting for an echo that already came


def test_a_deleted_object_leaves_no_write_awaiting_its_echo() -> None:
    writes = Writes()
    writes.record("demo", cronjob("41"))
    writes.forget(cronjob("41"))
    assert writes.awaited() == 0
    assert not writes.echo(cronjob("41"))


def test_churned_objects_whose_echo_raced_their_write_leave_nothing_behind() -> None:
    writes = Writes()
    for n in range(5_000):
        name = f"stash-trigger-{n}"
        if n % 2:
            writes.echo(cronjob(str(n), name=name))  # overtaken
            writes.record("demo", cronjob(str(n), name=name))
        else:
            writes.record("demo", cronjob(str(n), name=name))
            writes.forget(cronjob(str(n), name=name))  # deleted before its echo
    assert writes.awaited() == 0
