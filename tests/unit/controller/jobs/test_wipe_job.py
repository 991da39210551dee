"""The wipe Job: in the Repository's namespace, reading only that Repository and its Secret by
name, as a non-root pod with bounded retries; and how it ended, in the program's own words."""

from __future__ import annotations

from api.objects import JSON
from controller.jobs.wipe_job import WIPE_ATTEMPTS, WIPE_CONTAINER, wipe_objects, wipe_outcome
from engine.wipe import NOT_RETRIED

REPO: JSON = {
    "apiVersion": "stash.appscode.com/v1alpha1",
    "kind": "Repository",
    "metadata": {"name": "repo", "namespace": "team-a", "uid": "u-1"},
    "spec": {"backend": {"s3": {"bucket": "b"}, "storageSecretName": "creds"}, "wipeOut": True},
}


def test_the_wipe_runs_in_the_repositorys_namespace_reading_its_repository_and_secret_only() -> (
    None
):
    account, role, binding, job = wipe_objects(REPO, "stash:1")
    for obj in (account, role, binding, job):
        assert obj["metadata"]["namespace"] == "team-a"
        assert obj["metadata"]["ownerReferences"][0]["uid"] == "u-1"
    assert role["rules"] == [
        {
            "apiGroups": ["stash.appscode.com"],
            "resources": ["repositories"],
            "verbs": ["get"],
            "resourceNames": ["repo"],
        },
        {"apiGroups": [""], "resources": ["secrets"], "verbs": ["get"], "resourceNames": ["creds"]},
    ]
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": "stash-wipe-repo", "namespace": "team-a"}
    ]
    spec = job["spec"]
    assert spec["backoffLimit"] == WIPE_ATTEMPTS - 1
    assert spec["activeDeadlineSeconds"] > 0
    (rule,) = spec["podFailurePolicy"]["rules"]
    assert rule["action"] == "FailJob"
    assert rule["onExitCodes"]["values"] == [NOT_RETRIED]
    pod = spec["template"]["spec"]
    assert pod["serviceAccountName"] == "stash-wipe-repo"
    assert pod["securityContext"]["runAsNonRoot"] is True
    (container,) = pod["containers"]
    assert container["args"] == ["wipe-out", "--repository=repo"]
    assert container["securityContext"]["allowPrivilegeEscalation"] is False


def _pod(message: str, finished: str) -> JSON:
    terminated = {"exitCode": 1, "message": message, "finishedAt": finished}
    return {
        "status": {
            "containerStatuses": [{"name": WIPE_CONTAINER, "state": {"terminated": terminated}}]
        }
    }


def test_the_outcome_is_the_newest_pods_own_words_and_how_many_tried() -> None:
    running = {"status": {"failed": 1, "active": 1}}
    first = _pod("GET http://r/repo/data/: HTTP 503", "2026-01-01T10:00:01Z")
    outcome = wipe_outcome(running, [first])
    assert not outcome.done
    assert outcome.attempts == 1
    assert outcome.message == "GET http://r/repo/data/: HTTP 503"
    failed = {
        "status": {
            "failed": 3,
            "conditions": [{"type": "Failed", "status": "True", "reason": "BackoffLimitExceeded"}],
        }
    }
    last = _pod("GET http://r/repo/data/: HTTP 502", "2026-01-01T10:00:30Z")
    outcome = wipe_outcome(failed, [last, first])
    assert (outcome.done, outcome.ok, outcome.attempts) == (True, False, 3)
    assert not outcome.skipped
    assert outcome.message == "GET http://r/repo/data/: HTTP 502"
    complete = {"status": {"succeeded": 1, "conditions": [{"type": "Complete", "status": "True"}]}}
    done = _pod(
        "deleted the repository's data from the backend (7 objects)", "2026-01-01T10:01:00Z"
    )
    outcome = wipe_outcome(complete, [done])
    assert (outcome.done, outcome.ok) == (True, True)
    assert "7 objects" in outcome.message


def test_a_wipe_that_cannot_be_done_at_all_is_skipped_not_failed() -> None:
    refused = {
        "status": {
            "failed": 1,
            "conditions": [{"type": "Failed", "status": "True", "reason": "PodFailurePolicy"}],
        }
    }
    words = "storage Secret team-a/creds not found: no credentials to wipe with"
    outcome = wipe_outcome(refused, [_pod(words, "2026-01-01T10:00:01Z")])
    assert (outcome.done, outcome.ok, outcome.skipped) == (True, False, True)
    assert outcome.message == words


def test_the_wipe_pod_runs_as_the_images_user_and_group_never_group_root() -> None:
    job = wipe_objects(REPO, "stash:1")[-1]
    context = job["spec"]["template"]["spec"]["securityContext"]
    assert (context["runAsUser"], context["runAsGroup"]) == (65532, 65532)
