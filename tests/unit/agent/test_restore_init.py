"""stash-init: which restores a workload's new pods wait for, their injection, and what a host
does for a restore at each point of it."""

from __future__ import annotations

import threading
import time
from typing import Any

from agent.restore_init import (
    InitOptions,
    Restore,
    RestoreInit,
    ended,
    host_step,
    unfinished_restores_of,
)
from api.constants import LOCAL_BACKEND_VOLUME, RESTORE_INIT_CONTAINER, SIDECAR_CONTAINER
from api.hosts import Identity
from api.objects import JSON
from pods.invokers import SidecarIndex, init_targets_of, sidecar_targets_of
from pods.sidecar import SidecarSettings, inject, inject_init, plan_for
from tests.factories import (
    batch,
    deadline_exceeded,
    pod,
    restore_batch,
    restore_member,
    restore_session,
)

SETTINGS = SidecarSettings(image="stash-py:test")


def web_restore(phase: str | None = None, **more: Any) -> JSON:
    rs = restore_session(member=restore_member("Deployment", "web"), **more)
    rs["spec"]["target"]["volumeMounts"] = [{"name": "data", "mountPath": "/data"}]
    rs["metadata"].update(uid="uid-1", creationTimestamp="2026-01-01T10:00:00Z")
    if phase:
        rs["status"] = {"phase": phase}
    return rs


def test_an_unfinished_restore_of_a_workload_targets_it_and_a_finished_one_does_not() -> None:
    for phase in (None, "Pending", "Running"):
        found = init_targets_of(web_restore(phase))
        assert [t.invoker_uid for t in found[("demo", "Deployment", "web")]] == ["uid-1"]
    for phase in ("Succeeded", "Failed", "Invalid"):
        assert init_targets_of(web_restore(phase)) == {}


def test_a_restore_of_a_pvc_or_into_another_namespace_gets_no_init_container() -> None:
    assert init_targets_of(restore_session()) == {}
    other = restore_session(member=restore_member("Deployment", "web", namespace="other"))
    assert init_targets_of(other) == {}


def test_the_index_keeps_restores_apart_from_backups() -> None:
    index = SidecarIndex()
    index.upsert(batch())
    index.upsert(web_restore("Running"))
    assert [t.invoker_kind for t in index.targets("demo", "Deployment", "web")] == ["BackupBatch"]
    restoring = index.init_targets("demo", "Deployment", "web")
    assert [t.invoker_kind for t in restoring] == ["RestoreSession"]
    index.upsert(web_restore("Succeeded"))
    assert index.init_targets("demo", "Deployment", "web") == ()


def _init_plan(*restores: JSON, repositories: tuple[JSON, ...] = ()) -> Any:
    index = SidecarIndex()
    for repo in repositories:
        index.upsert_repository(repo)
    for restore in restores:
        index.upsert(restore)
    targets = index.init_targets("demo", "Deployment", "web")
    return plan_for("Deployment", "web", targets, index.local_backends(targets))


LOCAL_REPO = {
    "apiVersion": "stash.appscode.com/v1alpha1",
    "kind": "Repository",
    "metadata": {"name": "repo", "namespace": "demo"},
    "spec": {
        "backend": {
            "local": {"mountPath": "/repo", "hostPath": {"path": "/srv/repo"}},
            "storageSecretName": "s",
        }
    },
}


def test_stash_init_runs_first_with_the_members_mounts_and_the_repository() -> None:
    base = pod()
    base["spec"]["initContainers"] = [{"name": "migrate", "image": "app"}]
    plan = _init_plan(web_restore("Running"), repositories=(LOCAL_REPO,))
    mutated, warnings = inject_init(base, plan, SETTINGS)
    assert warnings == []
    names = [c["name"] for c in mutated["spec"]["initContainers"]]
    assert names == [RESTORE_INIT_CONTAINER, "migrate"]
    init = mutated["spec"]["initContainers"][0]
    assert init["args"][:3] == ["restore-init", "--target-kind=Deployment", "--target-name=web"]
    assert {"name": "data", "mountPath": "/data"} in init["volumeMounts"]
    assert {"name": LOCAL_BACKEND_VOLUME, "mountPath": "/repo"} in init["volumeMounts"]
    assert base["spec"]["initContainers"] == [{"name": "migrate", "image": "app"}]  # untouched


def test_stash_init_shares_the_sidecars_volumes_instead_of_leaving_them_out() -> None:
    backup_targets = sidecar_targets_of(batch())[("demo", "Deployment", "web")]
    index = SidecarIndex()
    index.upsert_repository(LOCAL_REPO)
    sidecar_plan = plan_for(
        "Deployment", "web", tuple(backup_targets), index.local_backends(backup_targets)
    )
    with_sidecar, _ = inject(pod(), sidecar_plan, SETTINGS)
    assert SIDECAR_CONTAINER in [c["name"] for c in with_sidecar["spec"]["containers"]]
    mutated, warnings = inject_init(
        with_sidecar, _init_plan(web_restore("Running"), repositories=(LOCAL_REPO,)), SETTINGS
    )
    assert warnings == []
    init = mutated["spec"]["initContainers"][0]
    assert {"name": LOCAL_BACKEND_VOLUME, "mountPath": "/repo"} in init["volumeMounts"]
    volumes = [v["name"] for v in mutated["spec"]["volumes"]]
    assert len(volumes) == len(set(volumes))  # nothing added twice


def test_probes_and_lifecycle_of_the_runtime_settings_stay_out_of_the_init_container() -> None:
    restore = web_restore("Running")
    restore["spec"]["runtimeSettings"] = {
        "container": {
            "resources": {"limits": {"memory": "256Mi"}},
            "livenessProbe": {"exec": {"command": ["true"]}},
        }
    }
    mutated, _ = inject_init(pod(), _init_plan(restore), SETTINGS)
    init = mutated["spec"]["initContainers"][0]
    assert init["resources"] == {"limits": {"memory": "256Mi"}}
    assert "livenessProbe" not in init


def test_a_pod_that_has_stash_init_is_left_as_it_is() -> None:
    once, _ = inject_init(pod(), _init_plan(web_restore("Running")), SETTINGS)
    twice, _ = inject_init(once, _init_plan(web_restore("Running")), SETTINGS)
    assert twice is once


def test_the_restores_a_workload_waits_for_are_the_unfinished_ones_oldest_first() -> None:
    older = web_restore("Running")
    newer = restore_batch("later", "demo", restore_member("Deployment", "web"))
    newer["metadata"].update(creationTimestamp="2026-01-02T10:00:00Z")
    done = web_restore("Succeeded")
    done["metadata"]["name"] = "done"
    pvc_only = restore_session("pvc")
    found = unfinished_restores_of([newer, done, older, pvc_only], "Deployment", "web")
    assert [(r.kind, r.name, r.index) for r in found] == [
        ("RestoreSession", "restore", 0),
        ("RestoreBatch", "later", 0),
    ]


def test_a_host_waits_until_its_member_runs_then_restores_once() -> None:
    rs = web_restore("Pending")
    assert host_step(rs, 0, "host-0") == "wait"
    rs["status"] = {"phase": "Running"}
    assert host_step(rs, 0, "host-0") == "restore"
    rs["status"]["stats"] = [{"hostname": "host-0", "phase": "Succeeded"}]
    assert host_step(rs, 0, "host-0") == "done"


def test_a_batch_member_waits_for_its_turn() -> None:
    rb = restore_batch("all", "demo", restore_member(name="a"), restore_member("Deployment", "web"))
    rb["status"] = {"phase": "Running", "members": [{"phase": "Running"}, {"phase": "Pending"}]}
    assert host_step(rb, 1, "host-0") == "wait"
    rb["status"]["members"][1]["phase"] = "Running"
    assert host_step(rb, 1, "host-0") == "restore"


def test_a_host_that_failed_or_a_restore_that_is_invalid_keeps_the_app_from_starting() -> None:
    rs = web_restore("Running")
    rs["status"]["stats"] = [{"hostname": "host-0", "phase": "Failed", "error": "Fatal: boom"}]
    assert host_step(rs, 0, "host-0") == "fail:RestoreSession restore: host host-0: Fatal: boom"
    invalid = web_restore("Invalid")
    invalid["status"]["conditions"] = [
        {"type": "ValidationPassed", "status": "False", "message": "spec.repository.name: required"}
    ]
    assert host_step(invalid, 0, "host-0").startswith(
        "fail:RestoreSession restore is Invalid: spec.repository"
    )


def test_a_host_added_after_the_restore_succeeded_has_nothing_to_do() -> None:
    rs = web_restore("Succeeded")
    rs["status"]["stats"] = [{"hostname": "host-0", "phase": "Succeeded"}]
    assert host_step(rs, 0, "host-2") == "done"


def test_a_restore_seen_in_any_phase_or_deleted_is_not_unseen() -> None:
    index = SidecarIndex()
    assert index.unseen_restores(["uid-1", "uid-2"]) == ("uid-1", "uid-2")
    index.upsert(web_restore("Succeeded"))
    gone = web_restore("Running")
    gone["metadata"]["uid"] = "uid-2"
    index.delete(gone)
    assert index.unseen_restores(["uid-1", "uid-2"]) == ()


def test_a_restore_listed_at_start_is_seen() -> None:
    index = SidecarIndex()
    index.replace([web_restore("Running"), batch()], kind="RestoreSession")
    assert index.unseen_restores(["uid-1"]) == ()


def test_a_restore_never_seen_is_held_from_when_a_pod_first_named_it_until_given_up() -> None:
    index = SidecarIndex()
    assert index.unseen_since(["uid-gone"], now=100.0) == 100.0
    assert index.unseen_since(["uid-gone", "uid-new"], now=105.0) == 100.0
    index.give_up_restores(["uid-gone"])
    assert index.unseen_restores(["uid-gone", "uid-new"]) == ("uid-new",)


RESTORE = Restore("RestoreSession", "restore-web", 0, "2026-01-01T10:00:00Z")


def _at_deadline() -> JSON:
    rs = web_restore("Failed")
    rs["status"]["conditions"] = [
        deadline_exceeded("the restore did not finish by 2026-01-01T10:10:00Z")
    ]
    return rs


def test_a_restore_under_way_is_stopped_once_its_restore_ended_or_went() -> None:
    assert ended(web_restore("Running"), RESTORE) is None
    assert ended(_at_deadline(), RESTORE) == (
        "RestoreSession restore-web ended Failed at its deadline: the restore did not finish "
        "by 2026-01-01T10:10:00Z"
    )
    assert ended(None, RESTORE) == "RestoreSession restore-web was deleted"


class _Restores:
    """The API server as stash-init sees its restore: Running, then ended at its deadline."""

    def __init__(self) -> None:
        self.now = web_restore("Running")
        self.looks = 0

    def get(self, rt: Any, name: str, namespace: str) -> JSON:
        self.looks += 1
        return self.now


def _until(done: Any) -> None:
    deadline = time.monotonic() + 5
    while not done() and time.monotonic() < deadline:
        threading.Event().wait(0.01)


def test_stash_init_stops_its_restic_when_the_restore_ends_at_its_deadline() -> None:
    api = _Restores()
    init = RestoreInit(
        api,  # type: ignore[arg-type]
        Identity("demo", "Deployment", "web", "web-6d4cf-k2x9q"),
        InitOptions(poll=0.01),
    )
    with init._lookout(RESTORE) as cancel:
        _until(lambda: api.looks >= 3)
        assert cancel.reason is None  # still running: left alone
        api.now = _at_deadline()
        _until(lambda: cancel.reason is not None)
    assert cancel.reason is not None
    assert cancel.reason.startswith("RestoreSession restore-web ended Failed at its deadline")
