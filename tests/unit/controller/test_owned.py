"""What counts as a change of an object the operator keeps for an invoker."""

from __future__ import annotations

import copy
from typing import Any

from controller.owned import contains, content_mark


def _cronjob() -> dict[str, Any]:
    return {
        "apiVersion": "batch/v1",
        "kind": "CronJob",
        "metadata": {
            "name": "stash-trigger-nightly",
            "uid": "u-1",
            "generation": 1,
            "resourceVersion": "10",
            "labels": {"app.kubernetes.io/managed-by": "stash"},
        },
        "spec": {"schedule": "0 * * * *", "suspend": False},
        "status": {},
    }


def test_status_and_bookkeeping_are_no_change_of_the_trigger() -> None:
    before = _cronjob()
    after = copy.deepcopy(before)
    after["status"] = {"lastScheduleTime": "2026-01-01T00:00:00Z"}
    after["metadata"]["resourceVersion"] = "11"
    after["metadata"]["managedFields"] = [{"manager": "kube-controller-manager"}]
    assert content_mark(after) == content_mark(before)


def test_a_spec_label_or_identity_change_is_a_change() -> None:
    base = content_mark(_cronjob())
    edited = _cronjob()
    edited["spec"]["schedule"] = "5 5 * * *"
    relabelled = _cronjob()
    relabelled["metadata"]["labels"] = {}
    recreated = _cronjob()
    recreated["metadata"]["uid"] = "u-2"
    marks = {content_mark(o) for o in (edited, relabelled, recreated)}
    assert base not in marks
    assert len(marks) == 3


def test_key_order_does_not_matter() -> None:
    one = _cronjob()
    other = _cronjob()
    other["spec"] = {"suspend": False, "schedule": "0 * * * *"}
    assert content_mark(one) == content_mark(other)


def test_an_object_holding_more_than_desired_still_contains_it() -> None:
    desired = {"spec": {"schedule": "0 * * * *"}}
    assert contains(_cronjob(), desired)
    assert not contains(_cronjob(), {"spec": {"schedule": "1 * * * *"}})
