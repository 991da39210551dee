"""Restoring into new PVCs: the claims per ordinal, their Jobs, and what a wrong spec says."""

from __future__ import annotations

import copy
import datetime as dt
from collections.abc import Sequence
from typing import Any

import pytest

from api import constants as c
from api.conditions import is_true
from api.objects import JSON
from controller.invokers.evaluation import RestoreView
from controller.jobs import claims
from controller.jobs.builtin_tasks import builtin_objects
from controller.jobs.member_job import JobInputs, build_job
from controller.sessions.machine import Observed, decide
from controller.sessions.restore_status import RESTORE, restore_members_of
from engine.reporting import with_restore_host
from engine.results import HostResult
from tests.factories import restore_batch, restore_session
from tests.unit.controller.sessions.test_restore_status import REPO, T0, created, facts


def template(name: str) -> JSON:
    return {
        "metadata": {"name": name, "labels": {"app": "db", "ordinal": "${POD_ORDINAL}"}},
        "spec": {
            "accessModes": ["ReadWriteOnce"],
            "storageClassName": "",
            "resources": {"requests": {"storage": "1Gi"}},
        },
    }


def clone(
    replicas: int | None = 3,
    templates: tuple[str, ...] = ("data-db-${POD_ORDINAL}",),
    mounts: tuple[tuple[str, str], ...] = (("data-db", "/var/lib/db"),),
    **target: Any,
) -> JSON:
    member: JSON = {
        "target": {
            "volumeClaimTemplates": [template(t) for t in templates],
            "volumeMounts": [{"name": n, "mountPath": p} for n, p in mounts],
            **target,
        }
    }
    if replicas is not None:
        member["target"]["replicas"] = replicas
    return created(restore_session("db-back", "demo", member))


def view_of(rs: JSON) -> RestoreView:
    (view,) = restore_members_of(rs)
    return view


def jobs_of(rs: JSON) -> list[JSON]:
    view = view_of(rs)
    functions = {
        o["metadata"]["name"]: o for o in builtin_objects("stash:1") if o["kind"] == "Function"
    }
    task = claims.restore_task(view)
    return [
        build_job(JobInputs(rs, rs, view, REPO, task, functions, "stash:1", ordinal=n))
        for n in claims.ordinals(view)
    ]


def test_each_ordinal_gets_its_own_claims_named_by_the_templates() -> None:
    rs = clone()
    view = view_of(rs)
    assert list(claims.ordinals(view)) == [0, 1, 2]
    made = claims.claims_for(view, 2, rs)
    assert [m["metadata"]["name"] for m in made] == ["data-db-2"]
    pvc = made[0]
    assert pvc["metadata"]["namespace"] == "demo"
    assert pvc["metadata"]["labels"] == {"app": "db", "ordinal": "2"}
    assert pvc["metadata"]["annotations"][claims.RESTORED_BY] == "RestoreSession/db-back"
    assert "ownerReferences" not in pvc["metadata"]  # the restored data outlives the restore
    assert pvc["spec"]["resources"] == {"requests": {"storage": "1Gi"}}


def test_ordinals_restore_their_own_hosts_and_without_replicas_one_host() -> None:
    assert [claims.hostname(view_of(clone()), n) for n in range(3)] == [
        "host-0",
        "host-1",
        "host-2",
    ]
    aliased = view_of(clone(alias="db"))
    assert claims.hostname(aliased, 1) == "db-1"
    single = view_of(clone(None, ("restore-data",), (("restore-data", "/source/data"),)))
    assert list(claims.ordinals(single)) == [0]
    assert claims.hostname(single, 0) == "host-0"
    single_alias = view_of(
        clone(None, ("restore-data",), (("restore-data", "/source/data"),), alias="web")
    )
    assert claims.hostname(single_alias, 0) == "web"


def test_the_restore_names_its_target_after_the_first_template_when_it_has_no_ref() -> None:
    view = view_of(clone())
    assert view.ref == {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "name": "data-db-${POD_ORDINAL}",
    }
    assert view.task == "pvc-restore"  # a Job's work, even without a Task
    with_ref = clone(ref={"apiVersion": "apps/v1", "kind": "StatefulSet", "name": "db"})
    assert view_of(with_ref).kind == "StatefulSet"
    assert view_of(with_ref).task == "pvc-restore"  # not stash-init: the pods do not exist


def test_a_job_per_ordinal_mounts_that_ordinals_claims_where_the_member_says() -> None:
    rs = clone(
        templates=("data-db-${POD_ORDINAL}", "conf-db-${POD_ORDINAL}"),
        mounts=(("conf-db", "/etc/db"), ("data-db", "/var/lib/db")),
    )
    jobs = jobs_of(rs)
    assert [j["metadata"]["name"] for j in jobs] == [
        "stash-restore-db-back-0-0",
        "stash-restore-db-back-0-1",
        "stash-restore-db-back-0-2",
    ]
    pod = jobs[1]["spec"]["template"]["spec"]
    assert sorted(
        (v["name"], v["persistentVolumeClaim"]["claimName"])
        for v in pod["volumes"]
        if "persistentVolumeClaim" in v
    ) == [
        ("conf-db", "conf-db-1"),
        ("data-db", "data-db-1"),
    ]
    for container in [*pod["initContainers"], *pod["containers"]]:
        paths = [m["mountPath"] for m in container["volumeMounts"]]
        assert len(paths) == len(set(paths)), container["volumeMounts"]
        assert {"name": "data-db", "mountPath": "/var/lib/db"} in container["volumeMounts"]
        assert {"name": "conf-db", "mountPath": "/etc/db"} in container["volumeMounts"]
        assert {"name": "POD_ORDINAL", "value": "1"} in container["env"]
    restore = pod["initContainers"][0]["args"]
    assert restore[0] == "restore"
    assert "--hostname=host-1" in restore
    assert "--target-kind=PersistentVolumeClaim" in restore
    assert "--target-name=data-db-${POD_ORDINAL}" in restore
    assert pod["containers"][0]["args"][0] == "update-status"
    assert "--hostname=host-1" in pod["containers"][0]["args"]
    # Every volume of the pod is mounted by a container (no Task volume left dangling).
    mounted = {
        m["name"] for ct in [*pod["initContainers"], *pod["containers"]] for m in ct["volumeMounts"]
    }
    assert {v["name"] for v in pod["volumes"]} <= mounted


def test_a_named_task_gets_the_claims_mounted_into_its_own_steps() -> None:
    rs = clone(ref={"apiVersion": "v1", "kind": "Service", "name": "db"})
    rs["spec"]["task"] = {"name": "db-restore"}
    view = view_of(rs)
    assert view.task == "db-restore"
    task = {
        "metadata": {"name": "db-restore"},
        "spec": {"steps": [{"name": "db-restore"}]},
    }
    function = {
        "metadata": {"name": "db-restore"},
        "spec": {"image": "db:1", "args": ["restore", "--host=${HOSTNAME}", "--to=${TARGET_NAME}"]},
    }
    job = build_job(
        JobInputs(rs, rs, view, REPO, task, {"db-restore": function}, "stash:1", ordinal=0)
    )
    (container,) = job["spec"]["template"]["spec"]["containers"]
    assert container["args"] == ["restore", "--host=host-0", "--to=db"]
    assert {"name": "data-db", "mountPath": "/var/lib/db"} in container["volumeMounts"]


def observe(rs: JSON, jobs: Sequence[JSON | None]) -> Observed:
    members = restore_members_of(rs)
    return Observed(
        kind=RESTORE, members=members, facts=facts(), total_hosts={0: 3}, jobs={0: list(jobs)}
    )


def job(name: str, condition: str | None = None) -> JSON:
    status: JSON = {}
    if condition:
        status["conditions"] = [
            {"type": condition, "status": "True", "reason": "X", "message": "m"}
        ]
    return {"metadata": {"name": name, "ownerReferences": [{"uid": "u-1"}]}, "status": status}


NAMES = [f"stash-restore-db-back-0-{n}" for n in range(3)]


def test_a_restore_into_new_pvcs_creates_every_ordinals_job_and_succeeds_with_every_host() -> None:
    rs = clone()
    decision = decide(rs, observe(rs, [None, None, None]), T0)
    assert decision.status["phase"] == "Running"
    assert decision.create_jobs == ((0, 0), (0, 1), (0, 2))
    assert decision.status["totalHosts"] == 3
    assert is_true(decision.status["conditions"], c.RESTORE_JOB_CREATED)
    rs["status"] = decision.status
    running = [job(n) for n in NAMES]
    decision = decide(rs, observe(rs, running), T0)
    assert (decision.status["phase"], decision.create_jobs) == ("Running", ())
    for host in ("host-0", "host-2", "host-1"):
        rs["status"] = with_restore_host(
            "RestoreSession",
            rs["status"],
            "PersistentVolumeClaim",
            "data-db-${POD_ORDINAL}",
            HostResult(host, "Succeeded", 1.5),
        )
        decision = decide(rs, observe(rs, running), T0 + dt.timedelta(seconds=9))
        rs["status"] = decision.status
    assert rs["status"]["phase"] == "Succeeded"
    assert [s["hostname"] for s in rs["status"]["stats"]] == ["host-0", "host-1", "host-2"]
    again = decide(rs, observe(rs, running), T0 + dt.timedelta(seconds=20))
    assert again.status == rs["status"]


def test_jobs_lost_to_a_restart_before_the_status_said_so_are_created_the_rest_kept() -> None:
    rs = clone()
    decision = decide(rs, observe(rs, [job(NAMES[0]), None, None]), T0)
    assert decision.create_jobs == ((0, 1), (0, 2))


def test_one_ordinals_failed_job_fails_the_restore_with_its_reason() -> None:
    rs = clone()
    rs["status"] = decide(rs, observe(rs, [None] * 3), T0).status
    jobs = [job(NAMES[0]), job(NAMES[1], "Failed"), job(NAMES[2])]
    status = decide(rs, observe(rs, jobs), T0).status
    assert status["phase"] == "Failed"
    restore_failed = next(cd for cd in status["conditions"] if cd["type"] == "RestoreFailed")
    assert "stash-restore-db-back-0-1 failed" in restore_failed["message"]


def test_a_job_deleted_after_it_was_made_fails_the_restore() -> None:
    rs = clone()
    rs["status"] = decide(rs, observe(rs, [None] * 3), T0).status
    jobs: list[JSON | None] = [job(NAMES[0]), None, job(NAMES[2])]
    status = decide(rs, observe(rs, jobs), T0).status
    assert status["phase"] == "Failed"


def problems(rs: JSON) -> list[str]:
    return claims.claim_problems(view_of(rs))


def test_stashs_clone_examples_are_valid() -> None:
    assert problems(clone()) == []
    assert problems(clone(None, ("restore-data",), (("restore-data", "/source/data"),))) == []


@pytest.mark.parametrize(
    ("rs", "field", "says"),
    [
        (
            clone(templates=("data-db",), mounts=(("data-db", "/d"),)),
            "volumeClaimTemplates[0].metadata.name",
            "put ${POD_ORDINAL}",
        ),
        (clone(mounts=(("data", "/d"),)), "volumeMounts[0].name", "they give: data-db"),
        (clone(mounts=()), "volumeMounts", "say where each new PVC is mounted"),
        (clone(mounts=(("data-db", "/tmp"),)), "volumeMounts[0].mountPath", "scratch space"),
        (
            clone(templates=("data-${TARGET_NAME}",)),
            "volumeClaimTemplates[0].metadata.name",
            "only ${POD_ORDINAL}",
        ),
        (
            clone(templates=("Data_DB-${POD_ORDINAL}",)),
            "volumeClaimTemplates[0].metadata.name",
            "not a valid PVC name",
        ),
        (clone(replicas=0), "replicas", "restores nothing"),
        (clone(templates=("",)), "volumeClaimTemplates[0].metadata.name", "required"),
        (
            clone(
                templates=("a-${POD_ORDINAL}", "b-${POD_ORDINAL}"),
                mounts=(("a", "/data"), ("b", "/data/")),
            ),
            "volumeMounts[1].mountPath",
            "a pod mounts one volume per path",
        ),
    ],
    ids=[
        "no-ordinal",
        "mount-of-no-claim",
        "no-mounts",
        "at-tmp",
        "unknown-var",
        "bad-name",
        "zero",
        "no-name",
        "one-path-twice",
    ],
)
def test_a_wrong_clone_spec_names_the_field_and_why(rs: JSON, field: str, says: str) -> None:
    found = problems(rs)
    assert any(p.startswith(f"spec.target.{field}:") and says in p for p in found), found


def test_a_template_for_another_namespace_is_refused() -> None:
    rs = clone()
    rs["spec"]["target"]["volumeClaimTemplates"][0]["metadata"]["namespace"] = "other"
    found = problems(rs)
    assert any("made in the restore's own namespace demo, not other" in p for p in found)


def test_replicas_without_templates_is_refused_not_ignored() -> None:
    rs = created(restore_session("x", "demo"))
    rs["spec"]["target"]["replicas"] = 2
    (found,) = problems(rs)
    assert found.startswith("spec.target.replicas: only with volumeClaimTemplates")


def test_a_batch_members_clone_is_checked_in_its_place() -> None:
    rb = created(restore_batch("all", "demo", copy.deepcopy(clone(mounts=()))["spec"]))
    rb["spec"]["members"][0].pop("repository", None)
    (view,) = restore_members_of(rb)
    assert claims.claim_problems(view)[0].startswith("spec.members[0].target.volumeMounts:")
