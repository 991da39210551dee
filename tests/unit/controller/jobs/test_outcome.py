"""Why a Job's pod does not start, from the pod itself, and what the target then says."""

from __future__ import annotations

import datetime as dt
from typing import Any

from api import constants as c
from api.conditions import get_condition
from controller.jobs.outcome import STUCK_GRACE, job_trouble, pod_trouble
from controller.sessions.backup_status import BACKUP_EXECUTOR as BACKUP
from controller.sessions.targets import jobs_target

NOW = dt.datetime(2026, 12, 7, 12, 0, tzinfo=dt.UTC)


def _pod(age: dt.timedelta, *, waiting: str = "", unschedulable: bool = False) -> dict[str, Any]:
    created = (NOW - age).strftime("%Y-%m-%dT%H:%M:%SZ")
    status: dict[str, Any] = {}
    if waiting:
        status["containerStatuses"] = [
            {"name": "f", "state": {"waiting": {"reason": waiting, "message": "said the kubelet"}}}
        ]
    if unschedulable:
        status["conditions"] = [
            {
                "type": "PodScheduled",
                "status": "False",
                "reason": "Unschedulable",
                "message": "0/1 nodes are available: 1 node(s) didn't match Pod's node affinity",
            }
        ]
    return {"metadata": {"name": "job-abc", "creationTimestamp": created}, "status": status}


def test_an_image_that_is_not_a_name_gives_up_at_once() -> None:
    trouble = pod_trouble(_pod(dt.timedelta(seconds=5), waiting="InvalidImageName"), NOW)
    assert trouble is not None
    assert trouble.final
    assert trouble.reason == "InvalidImageName: said the kubelet"


def test_a_reason_that_may_resolve_itself_is_said_then_given_up_after_the_grace() -> None:
    young = pod_trouble(_pod(dt.timedelta(seconds=30), waiting="ImagePullBackOff"), NOW)
    assert young is not None
    assert not young.final
    old = pod_trouble(_pod(STUCK_GRACE, waiting="ImagePullBackOff"), NOW)
    assert old is not None
    assert old.final


def test_a_pod_no_node_fits_says_the_schedulers_words() -> None:
    trouble = pod_trouble(_pod(dt.timedelta(seconds=10), unschedulable=True), NOW)
    assert trouble is not None
    assert trouble.reason.startswith("Unschedulable: 0/1 nodes are available")


def test_container_creating_is_said_only_after_a_minute() -> None:
    assert pod_trouble(_pod(dt.timedelta(seconds=20), waiting="ContainerCreating"), NOW) is None
    late = pod_trouble(_pod(dt.timedelta(seconds=90), waiting="ContainerCreating"), NOW)
    assert late is not None
    assert "still ContainerCreating after 90 s" in late.reason


def test_a_job_one_of_whose_pods_runs_has_no_trouble() -> None:
    stuck = _pod(dt.timedelta(seconds=5), waiting="InvalidImageName")
    running = _pod(dt.timedelta(seconds=5))
    assert job_trouble([stuck, running], NOW) is None
    assert job_trouble([], NOW) is None


def _running_target() -> dict[str, Any]:
    return {
        "phase": "Running",
        "totalHosts": 1,
        "conditions": [{"type": c.BACKUP_EXECUTOR_ENSURED, "status": "True", "message": "made"}],
    }


JOB = {"metadata": {"name": "stash-backup-s-0"}, "status": {}}


def test_the_target_says_why_its_jobs_pod_waits_and_fails_when_it_cannot_start() -> None:
    waiting = pod_trouble(_pod(dt.timedelta(seconds=30), waiting="ErrImagePull"), NOW)
    assert waiting is not None
    target = _running_target()
    jobs_target(target, [JOB], BACKUP, NOW, {"stash-backup-s-0": waiting})
    assert target["phase"] == "Running"
    said = get_condition(target["conditions"], c.BACKUP_EXECUTOR_ENSURED) or {}
    assert "stash-backup-s-0's pod job-abc cannot start: ErrImagePull" in said["message"]
    # once the pod starts, the words go
    jobs_target(target, [JOB], BACKUP, NOW, {})
    said = get_condition(target["conditions"], c.BACKUP_EXECUTOR_ENSURED) or {}
    assert "cannot start" not in said["message"]
    hopeless = pod_trouble(_pod(dt.timedelta(seconds=5), waiting="InvalidImageName"), NOW)
    assert hopeless is not None
    jobs_target(target, [JOB], BACKUP, NOW, {"stash-backup-s-0": hopeless})
    assert target["phase"] == "Failed"
