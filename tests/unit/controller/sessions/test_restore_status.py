"""The RestoreSession's and RestoreBatch's next status, and their restore Jobs."""

from __future__ import annotations

import copy
import datetime as dt
from typing import Any

import pytest

from api import constants as c
from api.conditions import get_condition, is_true
from api.objects import JSON
from api.repository import Repository
from api.tenancy import PRIVILEGES_ANNOTATION, NamespacePolicy, Tenancy
from controller.invokers.evaluation import InvokerFacts
from controller.jobs.builtin_tasks import builtin_objects
from controller.jobs.member_job import JobInputs, build_job
from controller.sessions.machine import Observed, decide, fail_member
from controller.sessions.restore_status import RESTORE, restore_members_of
from engine.reporting import with_restore_host
from engine.restore import HostRule, rule_for_host
from engine.results import HookOutcome, HostResult
from tests.factories import restore_batch, restore_member, restore_session
from tests.manifests import manifest_id, stash_manifests

T0 = dt.datetime(2026, 1, 1, 10, 0, 0, tzinfo=dt.UTC)
REPO = Repository.model_validate(
    {
        "apiVersion": "stash.appscode.com/v1alpha1",
        "kind": "Repository",
        "metadata": {"name": "repo", "namespace": "demo"},
        "spec": {
            "backend": {
                "local": {"mountPath": "/repo", "hostPath": {"path": "/srv/repo"}},
                "storageSecretName": "repo-secret",
            },
        },
    }
)


def created(obj: JSON) -> JSON:
    obj = copy.deepcopy(obj)
    obj["metadata"].update(creationTimestamp="2026-01-01T10:00:00Z", uid="u-1", generation=1)
    return obj


# An admin let namespace demo keep its repository on the node (REPO is a hostPath backend).
HOST_PATH_ALLOWED = Tenancy(
    "stash", {"demo": NamespacePolicy("demo", annotations={PRIVILEGES_ANNOTATION: "hostPath"})}
)


def facts(
    found: bool = True,
    repository: Repository | None = REPO,
    tenancy: Tenancy = HOST_PATH_ALLOWED,
    **more: Any,
) -> InvokerFacts:
    return InvokerFacts(
        tenancy=tenancy,
        repository=repository,
        secret_found=repository is not None,
        secret_keys=frozenset({"RESTIC_PASSWORD"}),
        targets_found={0: found, 1: found},
        tasks_found={"pvc-restore": True},
        **more,
    )


def observe(invoker: JSON, jobs: dict[int, JSON | None] | None = None, **fact: Any) -> Observed:
    """What the reconciler sees: each member's one Job (None: absent)."""
    members = restore_members_of(invoker)
    return Observed(
        kind=RESTORE,
        members=members,
        facts=facts(**fact),
        total_hosts={m.index: 1 for m in members},
        jobs={m.index: [(jobs or {}).get(m.index)] for m in members},
    )


def step(invoker: JSON, seen: Observed, now: dt.datetime = T0) -> tuple[JSON, tuple[int, ...]]:
    """The next status, and the members whose (one) Job is to be created."""
    decision = decide(invoker, seen, now)
    invoker["status"] = decision.status
    assert all(at == 0 for _, at in decision.create_jobs)
    return decision.status, tuple(index for index, _ in decision.create_jobs)


def job(name: str, condition: str | None = None) -> JSON:
    status: JSON = {}
    if condition:
        status["conditions"] = [
            {"type": condition, "status": "True", "reason": "X", "message": "m"}
        ]
    return {"metadata": {"name": name}, "status": status}


def report(invoker: JSON, name: str, result: HostResult) -> None:
    invoker["status"] = with_restore_host(
        invoker["kind"], invoker["status"], c.PVC_KIND, name, result
    )


def test_a_restore_session_of_a_pvc_gets_its_job_and_succeeds_when_its_host_reports() -> None:
    rs = created(restore_session())
    status, create = step(rs, observe(rs))
    assert status["phase"] == "Running"
    assert create == (0,)
    assert status["totalHosts"] == 1
    assert is_true(status["conditions"], c.RESTORE_JOB_CREATED)
    assert is_true(status["conditions"], c.RESTORE_EXECUTOR_ENSURED)
    assert is_true(status["conditions"], c.RESTORE_TARGET_FOUND)
    assert status["sessionDeadline"] == "2026-01-02T10:00:00Z"  # 24 h without a timeOut
    running = observe(rs, jobs={0: job("stash-restore-restore-0")})
    status, create = step(rs, running)
    assert (status["phase"], create) == ("Running", ())
    report(rs, "data", HostResult("host-0", "Succeeded", 2.5))
    later = T0 + dt.timedelta(seconds=42)
    status, _ = step(rs, running, later)
    assert status["phase"] == "Succeeded"
    assert status["sessionDuration"] == "42s"
    assert status["stats"] == [{"hostname": "host-0", "phase": "Succeeded", "duration": "2.5s"}]
    completed = get_condition(status["conditions"], c.RESTORE_COMPLETED)
    assert completed is not None
    assert completed["message"] == "restored 1 host(s)"


def test_reconciling_a_restore_twice_changes_nothing() -> None:
    rs = created(restore_session())
    step(rs, observe(rs))
    seen = observe(rs, jobs={0: job("stash-restore-restore-0")})
    first, _ = step(rs, seen)
    second, create = step(rs, seen)
    assert (second, create) == (first, ())


def test_a_host_that_failed_fails_the_restore_with_its_error() -> None:
    rs = created(restore_session())
    step(rs, observe(rs))
    report(
        rs,
        "data",
        HostResult("host-0", "Failed", 1.0, error="Fatal: wrong password or no key found"),
    )
    status, _ = step(rs, observe(rs, jobs={0: job("stash-restore-restore-0", "Failed")}))
    assert status["phase"] == "Failed"
    failed = get_condition(status["conditions"], "RestoreFailed")
    assert failed is not None
    assert failed["message"] == "host host-0: Fatal: wrong password or no key found"


def test_a_job_that_failed_without_reporting_fails_the_restore_saying_so() -> None:
    rs = created(restore_session())
    step(rs, observe(rs))
    status, _ = step(rs, observe(rs, jobs={0: job("stash-restore-restore-0", "Failed")}))
    assert status["phase"] == "Failed"
    failed = get_condition(status["conditions"], "RestoreFailed")
    assert failed is not None
    assert "restore Job stash-restore-restore-0 failed" in failed["message"]


def test_a_job_deleted_before_it_finished_fails_the_restore() -> None:
    rs = created(restore_session())
    step(rs, observe(rs))
    status, create = step(rs, observe(rs, jobs={0: None}))
    assert (status["phase"], create) == ("Failed", ())


def test_a_restore_waits_for_its_repository_and_its_target_until_its_deadline() -> None:
    rs = created(restore_session(timeOut="10m"))
    status, create = step(rs, observe(rs, found=False, repository=None))
    assert (status["phase"], create) == ("Pending", ())
    assert not is_true(status["conditions"], c.REPOSITORY_FOUND)
    found = get_condition(status["conditions"], c.RESTORE_TARGET_FOUND)
    assert found is not None
    assert found["status"] == "False"
    status, create = step(rs, observe(rs), T0 + dt.timedelta(minutes=1))
    assert (status["phase"], create) == ("Running", (0,))


def test_a_restore_still_waiting_at_its_deadline_fails() -> None:
    rs = created(restore_session(timeOut="10m"))
    step(rs, observe(rs, repository=None))
    status, _ = step(rs, observe(rs, repository=None), T0 + dt.timedelta(minutes=11))
    assert status["phase"] == "Failed"
    assert is_true(status["conditions"], c.DEADLINE_EXCEEDED)


def test_a_running_restore_past_its_deadline_fails() -> None:
    rs = created(restore_session(timeOut="10m"))
    step(rs, observe(rs))
    seen = observe(rs, jobs={0: job("stash-restore-restore-0")})
    status, _ = step(rs, seen, T0 + dt.timedelta(minutes=11))
    assert status["phase"] == "Failed"
    failed = get_condition(status["conditions"], "RestoreFailed")
    assert failed is not None
    assert "deadline 2026-01-01T10:10:00Z passed" in failed["message"]


def test_an_invalid_restore_names_the_field_and_why() -> None:
    rs = created(restore_session(member=restore_member("Service", "db")))
    rs["spec"]["repository"] = {}
    status, create = step(rs, observe(rs))
    assert (status["phase"], create) == ("Invalid", ())
    message = get_condition(status["conditions"], c.VALIDATION_PASSED)
    assert message is not None
    assert "spec.repository.name: the Repository to restore from is required" in message["message"]
    assert "spec.task.name: a Service target needs a Task" in message["message"]


def test_a_restore_into_another_namespace_that_does_not_allow_it_is_invalid() -> None:
    rs = created(restore_session(member=restore_member(namespace="other")))
    status, _ = step(rs, observe(rs))
    assert status["phase"] == "Invalid"
    message = get_condition(status["conditions"], c.VALIDATION_PASSED)
    assert message is not None
    assert "spec.target.ref.namespace:" in message["message"]


def test_an_invalid_restore_starts_once_its_spec_is_right() -> None:
    rs = created(restore_session())
    rs["spec"]["repository"] = {}
    step(rs, observe(rs))
    rs["spec"]["repository"] = {"name": "repo"}
    status, create = step(rs, observe(rs))
    assert (status["phase"], create) == ("Running", (0,))
    assert is_true(status["conditions"], c.VALIDATION_PASSED)


def test_a_restore_batch_restores_its_members_in_parallel() -> None:
    rb = created(restore_batch("all", "demo", restore_member(name="a"), restore_member(name="b")))
    status, create = step(rb, observe(rb))
    assert create == (0, 1)
    assert [m["phase"] for m in status["members"]] == ["Running", "Running"]
    report(rb, "a", HostResult("host-0", "Succeeded", 1.0))
    jobs: dict[int, JSON | None] = {0: job("stash-restore-all-0"), 1: job("stash-restore-all-1")}
    status, _ = step(rb, observe(rb, jobs=jobs))
    assert [m["phase"] for m in status["members"]] == ["Succeeded", "Running"]
    assert status["phase"] == "Running"
    report(rb, "b", HostResult("host-0", "Succeeded", 1.0))
    status, _ = step(rb, observe(rb, jobs=jobs))
    assert status["phase"] == "Succeeded"
    assert all(is_true(m["conditions"], c.RESTORE_COMPLETED) for m in status["members"])


def test_a_sequential_restore_batch_starts_the_next_member_after_the_last_succeeded() -> None:
    members = (restore_member(name="a"), restore_member(name="b"))
    rb = created(restore_batch("all", "demo", *members, executionOrder="Sequential"))
    status, create = step(rb, observe(rb))
    assert create == (0,)
    assert [m["phase"] for m in status["members"]] == ["Running", "Pending"]
    report(rb, "a", HostResult("host-0", "Succeeded", 1.0))
    status, create = step(rb, observe(rb, jobs={0: job("stash-restore-all-0"), 1: None}))
    assert create == (1,)


def test_after_a_failed_member_a_sequential_batch_runs_no_more() -> None:
    members = (restore_member(name="a"), restore_member(name="b"))
    rb = created(restore_batch("all", "demo", *members, executionOrder="Sequential"))
    step(rb, observe(rb))
    report(rb, "a", HostResult("host-0", "Failed", 1.0, error="boom"))
    status, create = step(rb, observe(rb, jobs={0: job("stash-restore-all-0"), 1: None}))
    assert create == ()
    assert status["phase"] == "Failed"
    failed = get_condition(status["members"][1]["conditions"], "RestoreFailed")
    assert failed is not None
    assert failed["message"] == "not run: member 0 failed before it"


def test_a_member_whose_job_cannot_be_built_fails_and_the_batch_settles() -> None:
    rb = created(restore_batch("all", "demo", restore_member(name="a")))
    status, _ = step(rb, observe(rb))
    seen = Observed(kind=RESTORE, members=restore_members_of(rb), facts=facts())
    failed = fail_member(rb, status, (0, "Function pvc-restore not found"), seen, T0)
    assert failed["phase"] == "Failed"
    ensured = get_condition(failed["members"][0]["conditions"], c.RESTORE_EXECUTOR_ENSURED)
    assert ensured is not None
    assert ensured["status"] == "False"


def test_a_restore_job_runs_the_tasks_functions_under_the_restore_service_account() -> None:
    rs = created(restore_session(member=restore_member(rules=[{"paths": ["/stash-data/a"]}])))
    rs["metadata"]["uid"] = "u-1"
    objects = {
        o["metadata"]["name"]: o for o in builtin_objects("stash:1") if o["kind"] == "Function"
    }
    task = next(
        o
        for o in builtin_objects("stash:1")
        if o["kind"] == "Task" and o["metadata"]["name"] == "pvc-restore"
    )
    view = restore_members_of(rs)[0]
    built = build_job(JobInputs(rs, rs, view, REPO, task, objects, "stash:1"))
    assert built["metadata"]["name"] == "stash-restore-restore-0"
    assert built["metadata"]["ownerReferences"][0]["kind"] == "RestoreSession"
    pod = built["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == "stash-restore-restore"
    restore_args = pod["initContainers"][0]["args"]
    assert restore_args[0] == "restore"
    assert "--restoresession=restore" in restore_args
    assert "--invoker-kind=RestoreSession" in restore_args
    update = pod["containers"][0]["args"]
    assert update[0] == "update-status"
    assert "--restoresession=restore" in update
    assert "--backupsession=" in update
    mounts = pod["initContainers"][0]["volumeMounts"]
    assert {"name": "target-volume", "mountPath": "/stash-data"} in mounts
    claim = next(v for v in pod["volumes"] if v["name"] == "target-volume")
    assert claim["persistentVolumeClaim"] == {"claimName": "data"}


def workload_restore(name: str = "web-back") -> JSON:
    rb = created(restore_batch(name, "demo", restore_member("StatefulSet", "db")))
    rb["spec"]["members"][0]["target"]["volumeMounts"] = [{"name": "data", "mountPath": "/data"}]
    return rb


def observe_workload(rb: JSON, **more: Any) -> Observed:
    members = restore_members_of(rb)
    return Observed(kind=RESTORE, members=members, facts=facts(), total_hosts={0: 2}, **more)


def test_a_statefulset_is_restored_host_by_host_by_its_pods_stash_init() -> None:
    rb = workload_restore()
    status, create = step(rb, observe_workload(rb, marked={0: False}))
    assert (status["phase"], create) == ("Running", ())
    entry = status["members"][0]
    assert entry["totalHosts"] == 2
    injected = get_condition(entry["conditions"], c.STASH_INIT_CONTAINER_INJECTED)
    assert injected is not None
    assert injected["status"] == "False"
    status, _ = step(rb, observe_workload(rb, marked={0: True}))
    assert is_true(status["members"][0]["conditions"], c.STASH_INIT_CONTAINER_INJECTED)
    rb["status"] = with_restore_host(
        "RestoreBatch", rb["status"], "StatefulSet", "db", HostResult("host-0", "Succeeded", 1.0)
    )
    status, _ = step(rb, observe_workload(rb, marked={0: True}))
    assert status["phase"] == "Running"
    rb["status"] = with_restore_host(
        "RestoreBatch", rb["status"], "StatefulSet", "db", HostResult("host-1", "Succeeded", 1.0)
    )
    status, _ = step(rb, observe_workload(rb, marked={0: True}))
    assert status["phase"] == "Succeeded"


def test_one_failed_host_fails_a_workload_restore_at_once() -> None:
    rb = workload_restore()
    step(rb, observe_workload(rb, marked={0: True}))
    rb["status"] = with_restore_host(
        "RestoreBatch",
        rb["status"],
        "StatefulSet",
        "db",
        HostResult("host-1", "Failed", 1.0, error="no snapshot of host host-1"),
    )
    status, _ = step(rb, observe_workload(rb, marked={0: True}))
    assert status["phase"] == "Failed"
    failed = get_condition(status["members"][0]["conditions"], "RestoreFailed")
    assert failed is not None
    assert failed["message"] == "host host-1: no snapshot of host host-1"


def test_a_workload_whose_pods_run_without_stash_init_fails_saying_why() -> None:
    rb = workload_restore()
    step(rb, observe_workload(rb, marked={0: True}))
    why = "2 pod(s) of StatefulSet demo/db run without the stash-init init container: ..."
    status, _ = step(rb, observe_workload(rb, marked={0: True}, absent={0: why}))
    assert status["phase"] == "Failed"
    failed = get_condition(status["members"][0]["conditions"], "RestoreFailed")
    assert failed is not None
    assert failed["message"] == why


def test_a_workload_restore_names_the_volumes_it_restores_into() -> None:
    rb = created(restore_batch("b", "demo", restore_member("Deployment", "web")))
    status, _ = step(rb, observe_workload(rb))
    assert status["phase"] == "Invalid"
    message = get_condition(status["conditions"], c.VALIDATION_PASSED)
    assert message is not None
    assert (
        "spec.members[0].target.volumeMounts: name the Deployment's volumes" in message["message"]
    )


def hooked_batch(**hooks: JSON) -> JSON:
    return created(restore_batch("hooked", "demo", restore_member(name="a"), hooks=hooks))


def test_a_restore_batchs_pre_hook_runs_before_any_member() -> None:
    rb = hooked_batch(preRestore={"exec": {"command": ["true"]}})
    decision = decide(rb, observe(rb), T0)
    assert decision.run_hook == "preRestore"
    assert decision.create_jobs == ()
    assert [m["phase"] for m in decision.status["members"]] == ["Pending"]
    rb["status"] = decision.status
    rb["status"]["conditions"].append(
        {
            "type": c.GLOBAL_PRE_RESTORE_HOOK_SUCCEEDED,
            "status": "True",
            "reason": "ok",
            "message": "",
        }
    )
    _status, create = step(rb, observe(rb))
    assert create == (0,)


def test_a_failed_pre_hook_fails_every_member_without_running_it() -> None:
    rb = hooked_batch(preRestore={"exec": {"command": ["false"]}})
    rb["status"] = decide(rb, observe(rb), T0).status
    rb["status"]["conditions"].append(
        {
            "type": c.GLOBAL_PRE_RESTORE_HOOK_SUCCEEDED,
            "status": "False",
            "reason": "x",
            "message": "exit 1",
        }
    )
    status, create = step(rb, observe(rb))
    assert (status["phase"], create) == ("Failed", ())
    failed = get_condition(status["members"][0]["conditions"], "RestoreFailed")
    assert failed is not None
    assert failed["message"] == "not run: the batch's preRestore hook failed"


def test_a_post_hook_runs_after_the_members_as_its_policy_says() -> None:
    rb = hooked_batch(postRestore={"exec": {"command": ["true"]}, "executionPolicy": "OnSuccess"})
    step(rb, observe(rb))
    report(rb, "a", HostResult("host-0", "Succeeded", 1.0))
    decision = decide(rb, observe(rb, jobs={0: job("stash-restore-hooked-0")}), T0)
    assert decision.run_hook == "postRestore"
    assert decision.status["phase"] == "Running"
    rb["status"] = decision.status
    rb["status"]["conditions"].append(
        {
            "type": c.GLOBAL_POST_RESTORE_HOOK_SUCCEEDED,
            "status": "True",
            "reason": "ok",
            "message": "",
        }
    )
    status, _ = step(rb, observe(rb, jobs={0: job("stash-restore-hooked-0")}))
    assert status["phase"] == "Succeeded"


def test_an_on_success_post_hook_is_skipped_after_a_failure() -> None:
    rb = hooked_batch(postRestore={"exec": {"command": ["true"]}, "executionPolicy": "OnSuccess"})
    step(rb, observe(rb))
    report(rb, "a", HostResult("host-0", "Failed", 1.0, error="boom"))
    decision = decide(rb, observe(rb, jobs={0: job("stash-restore-hooked-0")}), T0)
    assert decision.run_hook is None
    assert decision.status["phase"] == "Failed"


def test_a_member_hook_outcome_becomes_the_members_condition() -> None:
    rb = created(restore_batch("b", "demo", restore_member(name="a")))
    step(rb, observe(rb))
    outcome = HostResult(
        "host-0",
        "Failed",
        1.0,
        error="postRestore hook: exec chown exited with 1: denied",
        hooks=(
            HookOutcome("postRestore", False, "postRestore hook: exec chown exited with 1: denied"),
        ),
    )
    report(rb, "a", outcome)
    status, _ = step(rb, observe(rb, jobs={0: job("stash-restore-b-0")}))
    hook = get_condition(status["members"][0]["conditions"], c.POST_RESTORE_HOOK_SUCCEEDED)
    assert hook is not None
    assert hook["status"] == "False"
    assert status["phase"] == "Failed"


def test_a_member_whose_job_name_an_earlier_restore_still_holds_waits_for_it() -> None:
    rs = created(restore_session())
    seen = observe(rs)
    status, create = step(
        rs,
        Observed(
            kind=RESTORE,
            members=seen.members,
            facts=seen.facts,
            total_hosts={0: 1},
            jobs={0: [None]},
            leftover=frozenset({0}),
        ),
    )
    assert (status["phase"], create) == ("Running", ())
    assert not is_true(status["conditions"], c.RESTORE_JOB_CREATED)
    status, create = step(rs, observe(rs))
    assert create == (0,)


STASH_RESTORES = [d for d in stash_manifests() if d["kind"] in ("RestoreSession", "RestoreBatch")]


@pytest.mark.parametrize("doc", STASH_RESTORES, ids=manifest_id)
def test_stashs_documented_restores_are_valid_here(doc: JSON) -> None:
    restore = created({k: v for k, v in doc.items() if k != "status"})
    members = restore_members_of(restore)
    tasks = {m.task: True for m in members if m.task}
    volumes = {m.index: frozenset({"html", "data"}) for m in members}
    known = InvokerFacts(
        tenancy=HOST_PATH_ALLOWED,  # REPO keeps its data on the node, as an admin allowed
        repository=REPO,
        secret_found=True,
        targets_found={m.index: True for m in members},
        tasks_found=tasks,
        workload_volumes=volumes,
    )
    seen = Observed(
        kind=RESTORE, members=members, facts=known, total_hosts={m.index: 1 for m in members}
    )
    decision = decide(restore, seen, T0)
    assert decision.status["phase"] == "Running", decision.problems


def test_stashs_documented_rules_choose_what_stash_chooses() -> None:
    doc = next(d for d in STASH_RESTORES if d["metadata"]["name"] == "pvc-restore")
    (view,) = restore_members_of(created(doc))
    rules = view.member.target.rules if view.member.target else None
    # host-1 has its own rule: host-0's snapshot 4f2a9c1e; every other host the general one,
    # whose snapshots win over its paths (Stash ignores paths when snapshots are named).
    assert rule_for_host("host-1", rules) == HostRule("host-0", snapshots=("4f2a9c1e",))
    general = rule_for_host("host-0", rules)
    assert general.snapshots == ("latest",)
    assert general.exclude == ("/shared/tmp",)
