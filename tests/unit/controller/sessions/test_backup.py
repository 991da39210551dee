"""Backup Jobs from Tasks and Functions, and the BackupSession's next status."""

from __future__ import annotations

import datetime as dt
import re
from typing import Any

import pytest

from api import constants as c
from api.appbinding import connection_variables
from api.conditions import get_condition, is_true
from api.repository import Repository
from api.substitution import SubstitutionError, substitute, substitute_all
from api.units import parse_duration
from controller.invokers.evaluation import evaluate, members_of
from controller.invokers.validation import OPERATOR_VARIABLES
from controller.jobs.builtin_tasks import builtin_objects
from controller.jobs.member_job import JobError, JobInputs, build_job, variables
from controller.sessions.backup_status import (
    BACKUP,
    history_to_delete,
    repository_outcome,
    session_outcome,
)
from controller.sessions.machine import Decision, Observed, decide, past_default_deadline
from controller.sessions.targets import (
    Liveness,
    format_duration,
    liveness_of,
    next_deadline_look,
)
from tests.factories import batch, member
from tests.unit.controller.invokers.test_evaluation import good_facts

T0 = dt.datetime(2026, 1, 1, 10, 0, 0, tzinfo=dt.UTC)
BUILTINS = {(o["kind"], o["metadata"]["name"]): o for o in builtin_objects("stash-py:1")}
FUNCTIONS = {name: o for (kind, name), o in BUILTINS.items() if kind == "Function"}


# -- substitution ---------------------------------------------------------------------------


def test_variables_and_defaults_are_substituted() -> None:
    assert substitute("--a=${A} --b=${B:=two} --c=${C:=}", {"A": "one"}) == "--a=one --b=two --c="


def test_a_variable_without_value_or_default_is_an_error_naming_every_one() -> None:
    with pytest.raises(SubstitutionError, match=r"no value for \$\{X\}, \$\{Y\}"):
        substitute_all({"args": ["${X}", "${Y}", "${X}"]}, {})


# -- Jobs ---------------------------------------------------------------------------------------


def _repo() -> Repository:
    return Repository.from_dict(
        {
            "apiVersion": "stash.appscode.com/v1alpha1",
            "kind": "Repository",
            "metadata": {"name": "repo", "namespace": "demo"},
            "spec": {
                "backend": {
                    "s3": {"bucket": "b", "endpoint": "https://s3", "prefix": "p"},
                    "storageSecretName": "s",
                }
            },
        }
    )


def _session(name: str = "nightly-1700000000", **status: Any) -> dict[str, Any]:
    return {
        "apiVersion": c.V1BETA1,
        "kind": "BackupSession",
        "metadata": {
            "name": name,
            "namespace": "demo",
            "uid": "s-uid",
            "creationTimestamp": "2026-01-01T10:00:00Z",
        },
        "spec": {"invoker": {"kind": "BackupBatch", "name": "nightly"}},
        **({"status": status} if status else {}),
    }


def _invoker(*members: dict[str, Any], **spec: Any) -> dict[str, Any]:
    obj = batch("nightly", "demo", *members, **spec)
    obj["metadata"]["uid"] = "i-uid"
    obj["status"] = {"phase": "Ready"}
    return obj


def test_a_pvc_member_gets_a_job_that_mounts_its_pvc_and_runs_the_function() -> None:
    invoker = _invoker(member("Deployment", "web"), member("PersistentVolumeClaim", "shared"))
    view = members_of(invoker)[1]
    job = build_job(
        JobInputs(
            _session(),
            invoker,
            view,
            _repo(),
            BUILTINS[("Task", "pvc-backup")],
            FUNCTIONS,
            "stash-py:1",
        )
    )
    assert job["metadata"]["name"] == "stash-backup-nightly-1700000000-1"
    assert job["metadata"]["ownerReferences"][0]["kind"] == "BackupSession"
    assert job["spec"]["backoffLimit"] == 0
    pod = job["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == "stash-backup-nightly"
    assert {"name": "target-volume", "persistentVolumeClaim": {"claimName": "shared"}} in pod[
        "volumes"
    ]
    (backup,) = pod["initContainers"]
    assert backup["args"][0] == "backup-pvc"
    assert "--target-name=shared" in backup["args"]
    assert "--backupsession=nightly-1700000000" in backup["args"]
    assert "--paths=/data" in backup["args"]
    # The PVC is mounted where the member's volumeMounts say, so its paths exist in the pod.
    assert {"name": "target-volume", "mountPath": "/data"} in backup["volumeMounts"]
    (status_step,) = pod["containers"]
    assert status_step["args"][0] == "update-status"


def test_a_missing_function_or_variable_is_named() -> None:
    invoker = _invoker(member("PersistentVolumeClaim", "shared"))
    view = members_of(invoker)[0]
    with pytest.raises(JobError, match=r"Function update-status .* not found"):
        build_job(
            JobInputs(
                _session(),
                invoker,
                view,
                _repo(),
                BUILTINS[("Task", "pvc-backup")],
                {"pvc-backup": FUNCTIONS["pvc-backup"]},
                "img",
            )
        )
    broken = {"spec": {"image": "x", "args": ["${NOT_A_STASH_VARIABLE}"]}}
    task = {"metadata": {"name": "t"}, "spec": {"steps": [{"name": "f"}]}}
    with pytest.raises(JobError, match=r"Function f: no value for \$\{NOT_A_STASH_VARIABLE\}"):
        build_job(JobInputs(_session(), invoker, view, _repo(), task, {"f": broken}, "img"))
    unnamed = {"metadata": {"name": "t"}, "spec": {"steps": [{"params": []}]}}
    with pytest.raises(JobError, match=r"Task t: spec.steps\[0\].name: the Function to run"):
        build_job(JobInputs(_session(), invoker, view, _repo(), unnamed, {}, "img"))


def test_stash_variables_reach_the_function() -> None:
    invoker = _invoker(member("PersistentVolumeClaim", "shared"))
    task = {
        "metadata": {"name": "t"},
        "spec": {"steps": [{"name": "f", "params": [{"name": "extra", "value": "from-step"}]}]},
    }
    fn = {
        "spec": {
            "image": "x",
            "args": [
                "${REPOSITORY_PROVIDER}",
                "${REPOSITORY_BUCKET}",
                "${RETENTION_KEEP_LAST}",
                "${extra}",
                "${INVOKER_KIND}/${INVOKER_NAME}",
                "${NAMESPACE}",
            ],
        }
    }
    job = build_job(
        JobInputs(_session(), invoker, members_of(invoker)[0], _repo(), task, {"f": fn}, "img")
    )
    assert job["spec"]["template"]["spec"]["containers"][0]["args"] == [
        "s3",
        "b",
        "5",
        "from-step",
        "BackupBatch/nightly",
        "demo",
    ]


def test_a_members_params_cannot_change_who_the_session_target_or_repository_are() -> None:
    shared = member("PersistentVolumeClaim", "shared")
    shared["task"] = {
        "name": "t",
        "params": [
            {"name": "BACKUP_SESSION", "value": "someone-elses-1700000000"},
            {"name": "TARGET_NAME", "value": "their-pvc"},
            {"name": "extra", "value": "from-member"},
        ],
    }
    invoker = _invoker(shared)
    task = {"metadata": {"name": "t"}, "spec": {"steps": [{"name": "f"}]}}
    fn = {"spec": {"image": "x", "args": ["${BACKUP_SESSION}", "${TARGET_NAME}", "${extra}"]}}
    job = build_job(
        JobInputs(_session(), invoker, members_of(invoker)[0], _repo(), task, {"f": fn}, "img")
    )
    args = job["spec"]["template"]["spec"]["containers"][0]["args"]
    assert args == ["nightly-1700000000", "shared", "from-member"]
    # and the invoker says so up front
    status = evaluate(invoker, good_facts(invoker), now=T0)
    assert status.phase == "Invalid"
    assert any(
        p.startswith("spec.members[0].task.params[0].name: BACKUP_SESSION is set by the operator")
        for p in status.problems
    ), status.problems


def test_every_variable_the_operator_sets_is_one_a_param_may_not_set() -> None:
    invoker = _invoker(member("PersistentVolumeClaim", "shared"))
    backup = JobInputs(
        _session(), invoker, members_of(invoker)[0], _repo(), {"metadata": {"name": "t"}}, {}, "i"
    )
    assert set(variables(backup)) <= OPERATOR_VARIABLES


# -- session status ------------------------------------------------------------------------


def _seen(invoker: dict[str, Any] | None, **kw: Any) -> Observed:
    """What the reconciler sees: each Job-model member's one Job (None: absent)."""
    jobs = {index: [job] for index, job in (kw.pop("jobs", None) or {}).items()}
    members = members_of(invoker) if invoker else []
    return Observed(kind=BACKUP, invoker=invoker, members=members, jobs=jobs, **kw)


def next_status(session: dict[str, Any], seen: Observed, now: dt.datetime) -> Decision:
    """The machine's decision for a BackupSession, with each member's Job at position 0."""
    decision = decide(session, seen, now)
    assert all(at == 0 for _, at in decision.create_jobs)
    return decision


def test_durations_read_and_print_like_go() -> None:
    assert parse_duration("1h30m") == dt.timedelta(minutes=90)
    assert format_duration(dt.timedelta(seconds=41.2)) == "41.2s"
    assert format_duration(dt.timedelta(seconds=123)) == "2m3s"


def test_a_session_is_skipped_while_another_of_its_invoker_runs() -> None:
    decision = next_status(_session(), _seen(_invoker(), other_running="nightly-1"), T0)
    assert decision.status["phase"] == "Skipped"
    assert is_true(decision.status["conditions"], c.BACKUP_SKIPPED)
    assert decision.create_jobs == ()


def test_a_session_of_an_invoker_that_is_not_ready_is_skipped_with_the_reason() -> None:
    invoker = _invoker()
    invoker["status"] = {"phase": "Invalid"}
    decision = next_status(_session(), _seen(invoker), T0)
    assert decision.status["phase"] == "Skipped"
    assert decision.status["conditions"][0]["message"] == "BackupBatch nightly is Invalid"


def test_targets_start_with_their_hosts_and_job_members_get_their_jobs() -> None:
    invoker = _invoker(
        member("StatefulSet", "db"), member("PersistentVolumeClaim", "shared"), timeOut="30m"
    )
    decision = next_status(_session(), _seen(invoker, total_hosts={0: 3}), T0)
    status = decision.status
    assert status["phase"] == "Running"
    assert [t["totalHosts"] for t in status["targets"]] == [3, 1]
    assert decision.create_jobs == ((1, 0),)
    assert status["sessionDeadline"] == "2026-01-01T10:30:00Z"
    assert is_true(status["targets"][1]["conditions"], c.BACKUP_EXECUTOR_ENSURED)


def test_a_session_without_a_time_out_still_has_a_deadline() -> None:
    decision = next_status(_session(), _seen(_invoker(member("Deployment", "web"))), T0)
    assert decision.status["sessionDeadline"] == "2026-01-02T10:00:00Z"  # created + 24h
    later = next_status(
        {**_session(), "status": decision.status},
        _seen(_invoker(member("Deployment", "web"))),
        T0 + dt.timedelta(hours=25),
    )
    assert later.status["phase"] == "Failed"
    assert is_true(later.status["conditions"], c.DEADLINE_EXCEEDED)


def _past_default_deadline(liveness: Liveness | None) -> tuple[Decision, bool]:
    """A session without timeOut, 25 h old, its one target at work; whether the reconciler
    would read its progress, and the decision with ``liveness``."""
    invoker = _invoker(member("PersistentVolumeClaim", "shared"))
    started = next_status(_session(), _seen(invoker), T0).status
    session = {**_session(), "status": started}
    now = T0 + dt.timedelta(hours=25)
    reads = past_default_deadline(session, _seen(invoker, jobs={0: _running_job()}), now)
    seen = _seen(invoker, jobs={0: _running_job()}, liveness=liveness)
    return next_status(session, seen, now), reads


def _running_job() -> dict[str, Any]:
    return {"metadata": {"name": "stash-backup-nightly-1700000000-0"}, "status": {"active": 1}}


def test_a_backup_still_making_progress_outlives_the_default_deadline() -> None:
    now = T0 + dt.timedelta(hours=25)
    moving = Liveness(
        now - dt.timedelta(minutes=2), "PersistentVolumeClaim/shared host host-0: 42%"
    )
    decision, reads = _past_default_deadline(moving)
    assert reads
    assert decision.status["phase"] == "Running"
    assert not is_true(decision.status.get("conditions"), c.DEADLINE_EXCEEDED)
    # looked at again once it could have stalled: 10 min after its last advance
    assert next_deadline_look(decision.status, moving, now) == 8 * 60 + 1


def test_a_stalled_backup_past_the_default_deadline_fails_saying_it_stalled() -> None:
    now = T0 + dt.timedelta(hours=25)
    said = "PersistentVolumeClaim/shared host host-0: 42% (1.2 GiB of 2.9 GiB)"
    decision, _ = _past_default_deadline(Liveness(now - dt.timedelta(minutes=11), said))
    status = decision.status
    assert status["phase"] == "Failed"
    cond = get_condition(status["conditions"], c.DEADLINE_EXCEEDED)
    assert cond is not None
    assert cond["reason"] == "Stalled"
    assert "stalled: no progress for over 10m0s" in cond["message"]
    assert said in cond["message"]
    target = get_condition(status["targets"][0]["conditions"], "BackupFailed")
    assert target is not None
    assert "stalled" in target["message"]
    never, _ = _past_default_deadline(Liveness(None))
    cond = get_condition(never.status["conditions"], c.DEADLINE_EXCEEDED)
    assert cond is not None
    assert "no host of the backup reported progress" in cond["message"]


def test_a_time_out_the_user_set_is_a_hard_deadline_whatever_the_progress() -> None:
    invoker = _invoker(member("PersistentVolumeClaim", "shared"), timeOut="1h")
    session = {**_session(), "status": next_status(_session(), _seen(invoker), T0).status}
    now = T0 + dt.timedelta(hours=2)
    assert not past_default_deadline(session, _seen(invoker), now)
    assert not past_default_deadline(session, _seen(invoker), T0 + dt.timedelta(minutes=30))


def test_the_newest_progress_event_of_this_session_is_its_liveness() -> None:
    def event(reason: str, when: str, uid: str = "u1", message: str = "m") -> dict[str, Any]:
        return {
            "reason": reason,
            "lastTimestamp": when,
            "message": message,
            "involvedObject": {"uid": uid},
        }

    events = [
        event("BackupProgress", "2026-01-01T10:05:00Z", message="older"),
        event("BackupProgress", "2026-01-01T10:09:00Z", message="newest"),
        event("BackupProgress", "2026-01-01T10:20:00Z", uid="earlier-session-same-name"),
        event("Failed", "2026-01-01T10:30:00Z"),
        event("RestoreProgress", "not a time"),
    ]
    found = liveness_of(events, "u1", 300.0)
    assert found == Liveness(dt.datetime(2026, 1, 1, 10, 9, tzinfo=dt.UTC), "newest", 300.0)
    assert liveness_of([], "u1", 300.0).last_advance is None


def _host(phase: str, name: str = "host-0") -> dict[str, Any]:
    return {"hostname": name, "phase": phase}


def test_the_session_succeeds_when_every_host_of_every_target_did() -> None:
    invoker = _invoker(member("StatefulSet", "db"), member("PersistentVolumeClaim", "shared"))
    first = next_status(_session(), _seen(invoker, total_hosts={0: 2}), T0).status
    first["targets"][0]["stats"] = [_host("Succeeded", "host-0"), _host("Succeeded", "host-1")]
    first["targets"][1]["stats"] = [_host("Succeeded")]
    job = {
        "metadata": {"name": "j"},
        "status": {"conditions": [{"type": "Complete", "status": "True"}]},
    }
    later = T0 + dt.timedelta(seconds=41.2)
    waiting = next_status(_session(**first), _seen(invoker, jobs={1: job}), later).status
    assert [t["phase"] for t in waiting["targets"]] == ["Succeeded", "Succeeded"]
    assert waiting["phase"] == "Running", "retention and the integrity check have not reported"
    waiting["conditions"] = _repository_conditions("True", "True")
    done = next_status(_session(**waiting), _seen(invoker, jobs={1: job}), later)
    assert done.status["phase"] == "Succeeded"
    assert done.status["sessionDuration"] == "41.2s"
    assert done.create_jobs == ()
    # Terminal: nothing changes any more.
    assert next_status(_session(**done.status), _seen(invoker), later).status == done.status


def _repository_conditions(retention: str, integrity: str) -> list[dict[str, Any]]:
    return [
        {"type": c.RETENTION_POLICY_APPLIED, "status": retention, "lastTransitionTime": "x"},
        {"type": c.REPOSITORY_INTEGRITY_VERIFIED, "status": integrity, "lastTransitionTime": "x"},
    ]


def test_a_failed_integrity_check_fails_a_session_whose_hosts_all_succeeded() -> None:
    invoker = _invoker(member("Deployment", "app"))
    first = next_status(_session(), _seen(invoker), T0).status
    first["targets"][0]["stats"] = [_host("Succeeded")]
    first["conditions"] = _repository_conditions("True", "False")
    done = next_status(_session(**first), _seen(invoker), T0).status
    assert done["targets"][0]["phase"] == "Succeeded"
    assert done["phase"] == "Failed"


def _awaiting_repository_work() -> tuple[dict[str, Any], dict[str, Any]]:
    """A session whose one sidecar target succeeded; retention and the check not recorded."""
    invoker = _invoker(member("Deployment", "app"))
    first = next_status(_session(), _seen(invoker), T0).status
    first["targets"][0]["stats"] = [_host("Succeeded")]
    return invoker, first


def test_a_session_whose_repository_work_claimer_is_gone_has_it_done_by_a_finish_job() -> None:
    invoker, first = _awaiting_repository_work()
    alive = next_status(_session(**first), _seen(invoker), T0)
    assert (alive.status["phase"], alive.finish) == ("Running", False)  # the last host works
    gone = next_status(_session(**first), _seen(invoker, work_holder_gone=True), T0)
    assert (gone.status["phase"], gone.finish) == ("Running", True)
    running = {"metadata": {"name": "stash-finish-nightly-1700000000"}, "status": {}}
    made = _seen(invoker, work_holder_gone=True, finish_job=running)
    assert next_status(_session(**first), made, T0).finish is False  # made once
    first["conditions"] = _repository_conditions("True", "True")  # the Job recorded the work
    done = next_status(_session(**first), made, T0)
    assert (done.status["phase"], done.finish) == ("Succeeded", False)


def test_repository_work_under_way_past_the_default_deadline_counts_as_progress() -> None:
    invoker, first = _awaiting_repository_work()
    late = T0 + dt.timedelta(hours=25)
    quiet = Liveness(late - dt.timedelta(hours=1), "Deployment/app host host-0: 100%")
    working = next_status(_session(**first), _seen(invoker, liveness=quiet), late)
    assert working.status["phase"] == "Running"  # the last host's retention and check go on
    gone = next_status(
        _session(**first), _seen(invoker, liveness=quiet, work_holder_gone=True), late
    )
    assert gone.status["phase"] == "Failed"  # nobody does it: a stall
    assert is_true(gone.status["conditions"], c.DEADLINE_EXCEEDED)


def test_a_finish_job_that_fails_or_records_nothing_fails_the_session_saying_so() -> None:
    invoker, first = _awaiting_repository_work()
    failed = {
        "metadata": {"name": "stash-finish-nightly-1700000000"},
        "status": {
            "conditions": [
                {"type": "Failed", "status": "True", "reason": "DeadlineExceeded", "message": "x"}
            ]
        },
    }
    complete = {
        "metadata": {"name": "stash-finish-nightly-1700000000"},
        "status": {"conditions": [{"type": "Complete", "status": "True"}]},
    }
    for job, words in ((failed, "DeadlineExceeded: x"), (complete, "without recording the work")):
        seen = _seen(invoker, work_holder_gone=True, finish_job=job)
        decision = next_status(_session(**first), seen, T0)
        assert decision.status["phase"] == "Failed"
        assert not decision.finish
        retention = get_condition(decision.status["conditions"], c.RETENTION_POLICY_APPLIED)
        assert retention is not None
        assert retention["status"] == "False"
        assert retention["reason"] == "RepositoryWorkFailed"
        assert words in retention["message"]


def test_a_failed_job_fails_its_target_with_the_reason() -> None:
    invoker = _invoker(member("PersistentVolumeClaim", "shared"))
    first = next_status(_session(), _seen(invoker), T0).status
    job = {
        "metadata": {"name": "stash-backup-x-0"},
        "status": {
            "conditions": [
                {
                    "type": "Failed",
                    "status": "True",
                    "reason": "BackoffLimitExceeded",
                    "message": "Job has reached the specified backoff limit",
                }
            ]
        },
    }
    status = next_status(_session(**first), _seen(invoker, jobs={0: job}), T0).status
    assert status["phase"] == "Failed"
    message = status["targets"][0]["conditions"][-1]["message"]
    assert message == (
        "backup Job stash-backup-x-0 failed (BackoffLimitExceeded: Job has reached "
        "the specified backoff limit)"
    )


def test_a_job_that_vanished_fails_its_target() -> None:
    invoker = _invoker(member("PersistentVolumeClaim", "shared"))
    first = next_status(_session(), _seen(invoker), T0).status
    status = next_status(_session(**first), _seen(invoker, jobs={0: None}), T0).status
    assert status["phase"] == "Failed"
    assert "deleted before it finished" in status["targets"][0]["conditions"][-1]["message"]


def test_sequential_members_run_one_after_another_and_stop_at_a_failure() -> None:
    invoker = _invoker(
        member("PersistentVolumeClaim", "a"),
        member("PersistentVolumeClaim", "b"),
        member("PersistentVolumeClaim", "c"),
        executionOrder="Sequential",
    )
    first = next_status(_session(), _seen(invoker), T0)
    assert first.create_jobs == ((0, 0),)
    assert [t["phase"] for t in first.status["targets"]] == ["Running", "Pending", "Pending"]
    first.status["targets"][0]["stats"] = [_host("Succeeded")]
    second = next_status(
        _session(**first.status), _seen(invoker, jobs={0: {"metadata": {"name": "j0"}}}), T0
    )
    assert second.create_jobs == ((1, 0),)
    second.status["targets"][1]["stats"] = [_host("Failed")]
    third = next_status(
        _session(**second.status),
        _seen(invoker, jobs={0: {"metadata": {"name": "j0"}}, 1: {"metadata": {"name": "j1"}}}),
        T0,
    )
    assert third.create_jobs == ()
    assert [t["phase"] for t in third.status["targets"]] == ["Succeeded", "Failed", "Failed"]
    assert third.status["phase"] == "Failed"


def test_a_session_past_its_deadline_fails_with_deadline_exceeded() -> None:
    invoker = _invoker(member("Deployment", "web"), timeOut="10m")
    first = next_status(_session(), _seen(invoker), T0).status
    late = next_status(_session(**first), _seen(invoker), T0 + dt.timedelta(minutes=11)).status
    assert late["phase"] == "Failed"
    assert is_true(late["conditions"], c.DEADLINE_EXCEEDED)
    assert late["targets"][0]["phase"] == "Failed"


def test_a_job_created_before_its_status_was_written_is_adopted_not_duplicated() -> None:
    invoker = _invoker(member("PersistentVolumeClaim", "shared"))
    first = next_status(_session(), _seen(invoker), T0)
    assert first.create_jobs == ((0, 0),)
    # The status write was lost (restart, stale cache); the Job exists.
    again = next_status(_session(), _seen(invoker, jobs={0: {"metadata": {"name": "j"}}}), T0)
    assert again.create_jobs == ()
    assert is_true(again.status["targets"][0]["conditions"], c.BACKUP_EXECUTOR_ENSURED)


def test_a_failed_hosts_error_becomes_its_targets_failure_message() -> None:
    invoker = _invoker(member("StatefulSet", "db"))
    first = next_status(_session(), _seen(invoker, total_hosts={0: 2}), T0).status
    first["targets"][0]["stats"] = [
        _host("Succeeded", "host-0"),
        {"hostname": "host-1", "phase": "Failed", "error": "could not read /data/x"},
    ]
    done = next_status(_session(**first), _seen(invoker), T0).status
    assert done["phase"] == "Failed"
    (failed,) = [c_ for c_ in done["targets"][0]["conditions"] if c_["type"] == "BackupFailed"]
    assert failed["message"] == "host host-1: could not read /data/x"


def test_session_metrics_take_last_success_times_from_history() -> None:
    ref_web = {"kind": "Deployment", "name": "web"}
    ref_db = {"kind": "StatefulSet", "name": "db"}
    earlier = {
        "metadata": {"name": "nightly-1", "creationTimestamp": "2026-01-01T08:00:00Z"},
        "status": {
            "phase": "Failed",
            "sessionDuration": "10s",
            "targets": [{"ref": ref_web, "phase": "Succeeded"}, {"ref": ref_db, "phase": "Failed"}],
        },
    }
    current = {
        "phase": "Failed",
        "sessionDuration": "1m0s",
        "targets": [{"ref": ref_web, "phase": "Failed"}, {"ref": ref_db, "phase": "Succeeded"}],
    }
    outcome = session_outcome(current, [earlier], T0)
    assert not outcome.succeeded
    assert outcome.duration == 60
    assert outcome.last_success is None
    web, db = outcome.targets
    assert web.last_success == dt.datetime(2026, 1, 1, 8, 0, 10, tzinfo=dt.UTC).timestamp()
    assert db.last_success == T0.timestamp()


HOOKS = {
    "preBackup": {"httpPost": {"host": "app", "port": 8080, "path": "/freeze"}},
    "postBackup": {"httpPost": {"host": "app", "port": 8080, "path": "/thaw"}},
}


def _condition(kind: str, ok: bool) -> dict[str, Any]:
    return {"type": kind, "status": "True" if ok else "False", "lastTransitionTime": "x"}


def test_the_batch_pre_hook_runs_before_any_target_starts() -> None:
    invoker = _invoker(member("PersistentVolumeClaim", "shared", task="pvc-backup"), hooks=HOOKS)
    first = next_status(_session(), _seen(invoker), T0)
    assert first.run_hook == "preBackup"
    assert first.create_jobs == ()
    assert [t["phase"] for t in first.status["targets"]] == ["Pending"]
    hooked = {**first.status, "conditions": [_condition(c.GLOBAL_PRE_BACKUP_HOOK_SUCCEEDED, True)]}
    second = next_status(_session(**hooked), _seen(invoker), T0)
    assert second.run_hook is None
    assert second.create_jobs == ((0, 0),)


def test_a_failed_pre_hook_fails_the_session_without_backing_up() -> None:
    invoker = _invoker(member("Deployment", "web"), hooks={"preBackup": HOOKS["preBackup"]})
    first = next_status(_session(), _seen(invoker), T0).status
    first["conditions"] = [_condition(c.GLOBAL_PRE_BACKUP_HOOK_SUCCEEDED, False)]
    done = next_status(_session(**first), _seen(invoker), T0)
    assert done.status["phase"] == "Failed"
    assert done.create_jobs == ()
    assert done.status["targets"][0]["phase"] == "Failed"
    # An "Always" post hook still runs (to undo what the pre hook may have half done).
    both = _invoker(member("Deployment", "web"), hooks=HOOKS)
    assert next_status(_session(**first), _seen(both), T0).run_hook == "postBackup"


def test_the_post_hook_runs_once_everything_else_is_done_and_its_outcome_counts() -> None:
    invoker = _invoker(member("Deployment", "web"), hooks=HOOKS)
    status = next_status(_session(), _seen(invoker), T0).status
    status["targets"][0]["stats"] = [_host("Succeeded")]
    status["conditions"] = [
        _condition(c.GLOBAL_PRE_BACKUP_HOOK_SUCCEEDED, True),
        *_repository_conditions("True", "True"),
    ]
    due = next_status(_session(**status), _seen(invoker), T0)
    assert due.run_hook == "postBackup"
    assert due.status["phase"] == "Running"
    for ok, phase in ((True, "Succeeded"), (False, "Failed")):
        ran = {
            **due.status,
            "conditions": [
                *due.status["conditions"],
                _condition(c.GLOBAL_POST_BACKUP_HOOK_SUCCEEDED, ok),
            ],
        }
        assert next_status(_session(**ran), _seen(invoker), T0).status["phase"] == phase


def test_a_post_hook_for_failures_only_is_skipped_after_a_success() -> None:
    hooks = {"postBackup": {**HOOKS["postBackup"], "executionPolicy": "OnFailure"}}
    invoker = _invoker(member("Deployment", "web"), hooks=hooks)
    status = next_status(_session(), _seen(invoker), T0).status
    status["targets"][0]["stats"] = [_host("Succeeded")]
    status["conditions"] = _repository_conditions("True", "True")
    done = next_status(_session(**status), _seen(invoker), T0)
    assert done.run_hook is None
    assert done.status["phase"] == "Succeeded"


def _finished(name: str, phase: str, minute: int) -> dict[str, Any]:
    return {
        "metadata": {"name": name, "creationTimestamp": f"2026-01-01T00:{minute:02d}:00Z"},
        "status": {"phase": phase},
    }


def test_a_skipped_slot_never_pushes_the_session_that_just_finished_out_of_the_history() -> None:
    sessions = [
        _finished("old", "Succeeded", 0),
        _finished("long", "Running", 1),  # just finished; the cache does not know yet
        _finished("slot", "Skipped", 2),  # a scheduled slot during the long session
    ]
    assert history_to_delete(sessions, 1, "long", "Succeeded") == ["old"]


def test_history_keeps_the_newest_results_and_the_newest_skipped_each_up_to_the_limit() -> None:
    sessions = [
        _finished("a", "Succeeded", 0),
        _finished("b", "Failed", 1),
        _finished("c", "Skipped", 2),
        _finished("d", "Succeeded", 3),
        _finished("e", "Skipped", 4),
        _finished("f", "Running", 5),  # not finished: never deleted
    ]
    assert history_to_delete(sessions, 2, "zzz", None) == ["a"]
    assert sorted(history_to_delete(sessions, 0, "zzz", None)) == ["a", "b", "c"]  # keeps one


def test_history_never_lets_the_last_successful_session_go() -> None:
    sessions = [
        _finished("a", "Succeeded", 0),
        _finished("b", "Succeeded", 1),
        _finished("c", "Failed", 2),
        _finished("d", "Failed", 3),
    ]
    assert sorted(history_to_delete(sessions, 1, "zzz", None)) == ["a", "c"]


def test_a_sidecar_target_no_sidecar_can_carry_out_fails_with_why_the_others_go_on() -> None:
    invoker = _invoker(member("Deployment", "web"), member("PersistentVolumeClaim", "shared"))
    started = next_status(_session(), _seen(invoker), T0).status
    why = "Deployment demo/web has no pods (scaled to 0?): no stash sidecar runs to back it up"
    running_job = {"metadata": {"name": "j"}, "status": {"active": 1}}
    seen = _seen(invoker, absent={0: why}, jobs={1: running_job})
    later = next_status(_session(**started), seen, T0 + dt.timedelta(minutes=3)).status
    web, shared = later["targets"]
    assert web["phase"] == "Failed"
    assert next(x for x in web["conditions"] if x["type"] == "BackupFailed")["message"] == why
    assert shared["phase"] != "Failed"
    assert later["phase"] == "Running", "the PVC member still runs"


def test_a_sidecar_target_whose_hosts_reported_is_not_failed_for_absent_pods() -> None:
    invoker = _invoker(member("Deployment", "web"))
    started = next_status(_session(), _seen(invoker), T0).status
    started["targets"][0]["stats"] = [_host("Succeeded")]
    later = next_status(_session(**started), _seen(invoker, absent={0: "gone"}), T0).status
    assert later["targets"][0]["phase"] == "Succeeded"


def test_a_function_named_beyond_a_container_names_limit_gets_a_shortened_container() -> None:
    long_name = "postgres-backup-with-a-very-long-name.example.com-" + "x" * 40
    invoker = _invoker(member("PersistentVolumeClaim", "shared"))
    task = {
        "metadata": {"name": "t"},
        "spec": {"steps": [{"name": long_name}, {"name": long_name}]},
    }
    fn = {"spec": {"image": "x"}}
    job = build_job(
        JobInputs(_session(), invoker, members_of(invoker)[0], _repo(), task, {long_name: fn}, "i")
    )
    pod_spec = job["spec"]["template"]["spec"]
    names = [c["name"] for c in pod_spec.get("initContainers", []) + pod_spec["containers"]]
    assert len(set(names)) == 2
    for name in names:
        assert len(name) <= 63
        assert re.fullmatch(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?", name), name


def _done_at(when: dt.datetime) -> list[dict[str, Any]]:
    stamp = when.strftime("%Y-%m-%dT%H:%M:%SZ")
    return [
        {"type": kind, "status": "True", "lastTransitionTime": stamp}
        for kind in (c.RETENTION_POLICY_APPLIED, c.REPOSITORY_INTEGRITY_VERIFIED)
    ]


def test_work_finished_before_the_deadline_succeeds_however_late_the_operator_looks() -> None:
    """The operator was scaled down (or restarting) across the deadline: the hosts' own record
    says the work was done 40 s before it."""
    invoker = _invoker(member("Deployment", "web"), timeOut="10m")
    first = next_status(_session(), _seen(invoker), T0).status
    first["targets"][0]["stats"] = [_host("Succeeded")]
    first["conditions"] = _done_at(T0 + dt.timedelta(minutes=9, seconds=20))
    back = next_status(_session(**first), _seen(invoker), T0 + dt.timedelta(hours=3)).status
    assert back["phase"] == "Succeeded"
    assert not is_true(back.get("conditions"), c.DEADLINE_EXCEEDED)
    assert back["sessionDuration"] == "9m20s"


def test_work_finished_after_the_deadline_still_fails_it() -> None:
    invoker = _invoker(member("Deployment", "web"), timeOut="10m")
    first = next_status(_session(), _seen(invoker), T0).status
    first["targets"][0]["stats"] = [_host("Succeeded")]
    first["conditions"] = _done_at(T0 + dt.timedelta(minutes=12))
    back = next_status(_session(**first), _seen(invoker), T0 + dt.timedelta(hours=3)).status
    assert back["phase"] == "Failed"
    assert is_true(back["conditions"], c.DEADLINE_EXCEEDED)


def test_a_held_forget_does_not_fail_the_backup_a_failed_one_does() -> None:
    check = {"type": c.REPOSITORY_INTEGRITY_VERIFIED, "status": "True"}
    held = {"type": c.RETENTION_POLICY_APPLIED, "status": "False", "reason": c.RETENTION_HELD}
    failed = {
        "type": c.RETENTION_POLICY_APPLIED,
        "status": "False",
        "reason": "FailedToApplyRetentionPolicy",
    }
    assert repository_outcome([held, check]) is True
    assert repository_outcome([failed, check]) is False
    assert repository_outcome([held]) is None  # the check is still to come


def test_an_appbinding_target_gives_where_and_who_and_its_secret_only_by_reference() -> None:
    db = {
        "target": {
            "ref": {
                "apiVersion": "appcatalog.appscode.com/v1alpha1",
                "kind": "AppBinding",
                "name": "shop",
            }
        },
        "task": {"name": "t"},
    }
    invoker = _invoker(db)
    binding = {
        "metadata": {"name": "shop", "namespace": "demo"},
        "spec": {
            "clientConfig": {"service": {"name": "shop-pg", "port": 5433}},
            "secret": {"name": "shop-auth"},
        },
    }
    task = {"metadata": {"name": "t"}, "spec": {"steps": [{"name": "f"}]}}
    fn = {
        "spec": {
            "image": "x",
            "args": ["${TARGET_APP_HOST}:${TARGET_APP_PORT}", "${TARGET_APP_USER}"],
        }
    }
    view = members_of(invoker)[0]
    inputs = JobInputs(
        _session(),
        invoker,
        view,
        _repo(),
        task,
        {"f": fn},
        "img",
        app_variables=connection_variables(binding),
    )
    container = build_job(inputs)["spec"]["template"]["spec"]["containers"][0]
    assert container["args"] == ["shop-pg.demo.svc:5433", "$(TARGET_APP_USERNAME)"]
    refs = {
        e["name"]: e["valueFrom"]["secretKeyRef"]
        for e in container["env"]
        if "valueFrom" in e and "secretKeyRef" in e["valueFrom"]
    }
    assert refs == {
        "TARGET_APP_USERNAME": {"name": "shop-auth", "key": "username", "optional": True},
        "TARGET_APP_PASSWORD": {"name": "shop-auth", "key": "password", "optional": True},
    }
    # A Service target: the host is the Service's name in its namespace, nothing else is said.
    service = _invoker(
        {
            "target": {"ref": {"apiVersion": "v1", "kind": "Service", "name": "pg"}},
            "task": {"name": "t"},
        }
    )
    plain = {"spec": {"image": "x", "args": ["${TARGET_APP_HOST}", "${TARGET_APP_PORT:=5432}"]}}
    job = build_job(
        JobInputs(_session(), service, members_of(service)[0], _repo(), task, {"f": plain}, "img")
    )
    assert job["spec"]["template"]["spec"]["containers"][0]["args"] == ["pg.demo.svc", "5432"]
