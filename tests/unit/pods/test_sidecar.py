"""The sidecar plan merges members; injection adds exactly one valid container."""

from __future__ import annotations

from typing import Any

from api.constants import LOCAL_BACKEND_VOLUME, SIDECAR_CONTAINER, TMP_DIR_VOLUME
from pods.hardening import with_image_group
from pods.invokers import SidecarIndex, SidecarTarget, sidecar_targets_of
from pods.sidecar import SidecarPlan, SidecarSettings, inject, plan_for
from tests.factories import batch, configuration, member, pod

SETTINGS = SidecarSettings(image="stash-py:test")


def _plan(*invokers: dict[str, Any], kind: str = "Deployment", name: str = "web") -> SidecarPlan:
    targets: list[SidecarTarget] = []
    for obj in invokers:
        targets += sidecar_targets_of(obj).get(("demo", kind, name), [])
    targets.sort(key=lambda t: (t.invoker, t.member_index))
    return plan_for(kind, name, tuple(targets))


def test_the_sidecar_carries_the_target_identity_env_and_mounts() -> None:
    mutated, warnings = inject(pod(), _plan(batch()), SETTINGS)
    assert warnings == []
    sidecar = mutated["spec"]["containers"][-1]
    assert sidecar["name"] == SIDECAR_CONTAINER
    assert sidecar["image"] == "stash-py:test"
    assert sidecar["args"] == [
        "run-backup",
        "--target-kind=Deployment",
        "--target-name=web",
        "--cache-dir=/tmp/restic-cache",
    ]
    assert [e["name"] for e in sidecar["env"]] == ["POD_NAME", "POD_NAMESPACE", "NODE_NAME"]
    assert sidecar["volumeMounts"] == [
        {"name": TMP_DIR_VOLUME, "mountPath": "/tmp"},
        {"name": "data", "mountPath": "/data"},
    ]
    assert {"name": TMP_DIR_VOLUME, "emptyDir": {}} in mutated["spec"]["volumes"]


def test_the_sidecar_skips_the_cache_when_caching_is_disabled_and_is_given_no_pushgateway() -> None:
    obj = batch()
    obj["spec"]["members"][0]["tempDir"] = {"disableCaching": True}
    mutated, _ = inject(pod(), _plan(obj), SidecarSettings(image="x"))
    args = mutated["spec"]["containers"][-1]["args"]
    assert not any(a.startswith("--cache-dir") for a in args)
    # the operator alone pushes metrics, from the status the sidecar writes
    assert not any(a.startswith("--pushgateway-url") for a in args)


def test_injection_leaves_the_original_pod_untouched() -> None:
    original = pod()
    before = repr(original)
    inject(original, _plan(batch()), SETTINGS)
    assert repr(original) == before


def test_two_invokers_share_one_sidecar_with_the_union_of_their_mounts() -> None:
    plan = _plan(
        batch("a", "demo", member(mounts=(("data", "/data"),))),
        configuration("b", mounts=(("logs", "/logs"), ("data", "/data"))),
    )
    mutated, warnings = inject(pod(volumes=("data", "logs")), plan, SETTINGS)
    sidecars = [c for c in mutated["spec"]["containers"] if c["name"] == SIDECAR_CONTAINER]
    assert len(sidecars) == 1
    assert [m["mountPath"] for m in sidecars[0]["volumeMounts"]] == ["/tmp", "/data", "/logs"]
    assert warnings == []
    assert plan.invokers == ("BackupBatch/a", "BackupConfiguration/b")


def test_a_mount_of_a_volume_the_pod_lacks_is_skipped_with_a_warning() -> None:
    plan = _plan(batch("a", "demo", member(mounts=(("missing", "/x"), ("data", "/data")))))
    mutated, warnings = inject(pod(), plan, SETTINGS)
    mounts = mutated["spec"]["containers"][-1]["volumeMounts"]
    assert [m["name"] for m in mounts] == [TMP_DIR_VOLUME, "data"]
    assert warnings == ["volume 'missing' is not in the pod: not mounted into the stash sidecar"]


def test_conflicting_mounts_keep_the_first_invoker_and_say_so() -> None:
    plan = _plan(
        batch("a", "demo", member(mounts=(("data", "/data"),))),
        batch("b", "demo", member(mounts=(("other", "/data"),))),
    )
    assert [m["name"] for m in plan.volume_mounts] == ["data"]
    assert "BackupBatch/b mounts 'other' at /data" in plan.warnings[0]


def test_container_runtime_settings_apply_but_stash_only_keys_do_not() -> None:
    settings = {
        "resources": {"limits": {"memory": "256Mi"}},
        "securityContext": {"runAsUser": 2000},
        "env": [{"name": "GOGC", "value": "50"}],
        "nice": {"adjustment": 5},
        "ionice": {"class": 2},
    }
    mutated, _ = inject(pod(), _plan(batch("a", "demo", member(container=settings))), SETTINGS)
    sidecar = mutated["spec"]["containers"][-1]
    assert sidecar["resources"] == {"limits": {"memory": "256Mi"}}
    assert sidecar["securityContext"] == {"runAsUser": 2000}
    assert sidecar["env"][-1] == {"name": "GOGC", "value": "50"}
    assert "nice" not in sidecar
    assert "ionice" not in sidecar


def test_temp_dir_settings_shape_the_tmp_dir_volume() -> None:
    obj = batch()
    obj["spec"]["members"][0]["tempDir"] = {"medium": "Memory", "sizeLimit": "1Gi"}
    mutated, _ = inject(pod(), _plan(obj), SETTINGS)
    assert {
        "name": TMP_DIR_VOLUME,
        "emptyDir": {"medium": "Memory", "sizeLimit": "1Gi"},
    } in mutated["spec"]["volumes"]


def test_a_pod_that_already_has_the_sidecar_is_left_alone() -> None:
    once, _ = inject(pod(), _plan(batch()), SETTINGS)
    twice, _ = inject(once, _plan(batch()), SETTINGS)
    assert twice == once


def test_the_fingerprint_changes_with_mounts_but_not_with_more_invokers() -> None:
    one = _plan(batch("a"))
    two = _plan(batch("a"), batch("b"))
    other_mounts = _plan(batch("a", "demo", member(mounts=(("data", "/srv"),))))
    assert one.fingerprint() == two.fingerprint()
    assert one.fingerprint() != other_mounts.fingerprint()


def _repository(name: str, backend: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": "stash.appscode.com/v1alpha1",
        "kind": "Repository",
        "metadata": {"name": name, "namespace": "demo"},
        "spec": {"backend": {**backend, "storageSecretName": "s"}},
    }


def _indexed(*invokers: dict[str, Any], repositories: tuple[dict[str, Any], ...]) -> SidecarPlan:
    index = SidecarIndex()
    for obj in invokers:
        index.upsert(obj)
    for repo in repositories:
        index.upsert_repository(repo)
    targets = index.targets("demo", "Deployment", "web")
    return plan_for("Deployment", "web", targets, index.local_backends(targets))


def test_a_local_backend_is_mounted_into_the_sidecar_where_the_repository_says() -> None:
    local = {
        "local": {"mountPath": "/safe/data", "subPath": "x", "nfs": {"server": "n", "path": "/"}}
    }
    obj = batch()
    obj["spec"]["repository"] = {"name": "repo"}
    plan = _indexed(obj, repositories=(_repository("repo", local),))
    mutated, warnings = inject(pod(), plan, SETTINGS)
    assert warnings == []
    assert {"name": LOCAL_BACKEND_VOLUME, "nfs": {"server": "n", "path": "/"}} in mutated["spec"][
        "volumes"
    ]
    mounts = mutated["spec"]["containers"][-1]["volumeMounts"]
    # The whole volume: the repository lives in its subPath directory (engine.backend._local).
    assert {"name": LOCAL_BACKEND_VOLUME, "mountPath": "/safe/data"} in mounts
    # Only the sidecar gets it, never the application's containers.
    assert all(
        m["name"] != LOCAL_BACKEND_VOLUME
        for m in mutated["spec"]["containers"][0].get("volumeMounts") or []
    )


def test_other_backends_and_unknown_repositories_mount_nothing_and_the_plan_hash_follows() -> None:
    obj = batch()
    obj["spec"]["repository"] = {"name": "repo"}
    s3 = _indexed(obj, repositories=(_repository("repo", {"s3": {"bucket": "b"}}),))
    none = _indexed(obj, repositories=())
    local = _indexed(
        obj, repositories=(_repository("repo", {"local": {"mountPath": "/r", "emptyDir": {}}}),)
    )
    assert s3.local_backends == none.local_backends == ()
    assert s3.fingerprint() == none.fingerprint() != local.fingerprint()


def test_a_repository_volume_at_a_target_path_is_left_out_with_a_warning() -> None:
    obj = batch()
    obj["spec"]["repository"] = {"name": "repo"}
    plan = _indexed(
        obj, repositories=(_repository("repo", {"local": {"mountPath": "/data", "emptyDir": {}}}),)
    )
    mutated, warnings = inject(pod(), plan, SETTINGS)
    assert LOCAL_BACKEND_VOLUME not in {v["name"] for v in mutated["spec"]["volumes"]}
    assert "collides with a target volume" in warnings[0]


def test_the_index_says_whether_it_has_seen_the_targets_repositories() -> None:
    index = SidecarIndex()
    obj = batch()
    obj["spec"]["repository"] = {"name": "repo"}
    index.upsert(obj)
    targets = index.targets("demo", "Deployment", "web")
    assert not index.repositories_known(targets)
    index.upsert_repository(_repository("repo", {"s3": {"bucket": "b"}}))
    assert index.repositories_known(targets)


def test_a_container_asking_for_the_images_user_gets_its_group_not_group_root() -> None:
    obj = batch()
    obj["spec"]["members"][0]["runtimeSettings"] = {
        "container": {"securityContext": {"runAsUser": 65532}}
    }
    mutated, _ = inject(pod(), _plan(obj), SETTINGS)
    assert mutated["spec"]["containers"][-1]["securityContext"] == {
        "runAsUser": 65532,
        "runAsGroup": 65532,
    }


def test_another_user_or_an_explicit_group_is_left_as_the_user_wrote_it() -> None:
    assert with_image_group({"runAsUser": 0}) == {"runAsUser": 0}
    assert with_image_group({"runAsUser": 65532, "runAsGroup": 7}) == {
        "runAsUser": 65532,
        "runAsGroup": 7,
    }
