"""Why no sidecar can back up a workload: no pods, pods without the sidecar, a sidecar not
ready; and the pods a workload's selector picks."""

from __future__ import annotations

from typing import Any

from api.constants import RESTORE_ANNOTATION, RESTORE_INIT_CONTAINER
from controller.sessions.sidecar_presence import rolled_without_init, why_absent
from pods.workloads import match_labels_selector, pods_of


def pod(name: str, sidecar: bool = True, ready: bool = True, **state: Any) -> dict[str, Any]:
    stash = {"name": "stash", "args": ["run-backup", "--target-kind=Deployment"]}
    containers = [{"name": "app"}, *([stash] if sidecar else [])]
    statuses = [{"name": "app", "ready": True}]
    if sidecar:
        statuses.append({"name": "stash", "ready": ready, "state": state})
    return {
        "metadata": {"name": name, "labels": {"app": "web", "tier": "front"}},
        "spec": {"containers": containers},
        "status": {"containerStatuses": statuses},
    }


def test_one_ready_sidecar_is_enough() -> None:
    pods = [pod("web-1", sidecar=False), pod("web-2")]
    assert why_absent("Deployment", "demo", "web", pods) is None


def test_a_workload_scaled_to_zero_is_named() -> None:
    assert why_absent("Deployment", "demo", "web", []) == (
        "Deployment demo/web has no pods (scaled to 0?): no stash sidecar runs to back it up"
    )


def test_pods_from_before_the_opt_in_are_counted_and_the_fix_is_said() -> None:
    message = why_absent("StatefulSet", "demo", "db", [pod("db-0", False), pod("db-1", False)])
    assert message == (
        "2 pod(s) of StatefulSet demo/db run without the stash sidecar: they were created before "
        "the opt-in label; restart them (kubectl rollout restart statefulset/db -n demo) to back "
        "them up"
    )


def test_a_sidecar_that_is_not_ready_says_what_its_container_is_doing() -> None:
    crashing = pod(
        "web-1", ready=False, waiting={"reason": "CrashLoopBackOff", "message": "back-off"}
    )
    assert why_absent("Deployment", "demo", "web", [crashing]) == (
        "no stash sidecar of Deployment demo/web is ready (pod web-1: CrashLoopBackOff: back-off)"
    )


def test_the_selector_picks_the_pods_and_leaves_terminating_ones_out() -> None:
    workload = {
        "spec": {
            "selector": {
                "matchLabels": {"app": "web"},
                "matchExpressions": [{"key": "tier", "operator": "In", "values": ["front"]}],
            }
        }
    }
    other = pod("api-1")
    other["metadata"]["labels"] = {"app": "web", "tier": "back"}
    leaving = pod("web-2")
    leaving["metadata"]["deletionTimestamp"] = "2026-12-01T10:00:00Z"
    assert match_labels_selector(workload) == "app=web"
    assert [p["metadata"]["name"] for p in pods_of(workload, [pod("web-1"), other, leaving])] == [
        "web-1"
    ]


def _restore_pod(name: str, marks: str | None, init: bool) -> dict[str, Any]:
    found = pod(name)
    if marks is not None:
        found["metadata"]["annotations"] = {RESTORE_ANNOTATION: marks}
    if init:
        found["spec"]["initContainers"] = [
            {"name": RESTORE_INIT_CONTAINER, "args": ["restore-init", "--target-kind=StatefulSet"]}
        ]
    return found


def test_a_pod_rolled_for_the_restore_without_stash_init_missed_it() -> None:
    pods = [
        _restore_pod("db-0", "uid-0,uid-1", init=True),  # restored
        _restore_pod("db-1", "uid-1", init=False),  # made before the webhook saw the restore
        _restore_pod("db-2", "uid-0", init=False),  # rolled for another restore only
        _restore_pod("db-3", None, init=False),  # not rolled yet
    ]
    assert [p["metadata"]["name"] for p in rolled_without_init(pods, "uid-1")] == ["db-1"]
    assert rolled_without_init(pods, "uid-9") == []


def test_pods_whose_own_container_is_named_stash_are_said_to_clash() -> None:
    own = pod("web-1", sidecar=False)
    own["spec"]["containers"].append({"name": "stash", "image": "their-own"})
    why = why_absent("Deployment", "demo", "web", [own])
    assert why == (
        "1 pod(s) of Deployment demo/web run without the stash sidecar: the pod has its own "
        "container named 'stash': stash is not injected (rename that container; 'stash' is the "
        "name Stash gives its own)"
    )
