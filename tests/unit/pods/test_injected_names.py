"""Injected names never collide with the pod's: a container name the pod uses for its own is
refused with a warning that says so; a volume name it uses gets the next free one."""

from __future__ import annotations

from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from api.constants import (
    LOCAL_BACKEND_VOLUME,
    RESTORE_INIT_CONTAINER,
    SIDECAR_CONTAINER,
    TMP_DIR_MOUNT_PATH,
    TMP_DIR_VOLUME,
)
from pods.sidecar import SidecarPlan, SidecarSettings, inject, inject_init
from tests.factories import pod

SETTINGS = SidecarSettings(image="stash-py:test")
LOCAL = (
    {"name": LOCAL_BACKEND_VOLUME, "persistentVolumeClaim": {"claimName": "repo"}},
    {"name": LOCAL_BACKEND_VOLUME, "mountPath": "/stash-repo"},
)
PLAN = SidecarPlan(
    target_kind="Deployment",
    target_name="web",
    invokers=("BackupBatch/nightly",),
    volume_mounts=({"name": "data", "mountPath": "/data"},),
    container_settings={},
    temp_dir={},
    local_backends=(LOCAL,),
)


def _names(obj: dict[str, Any], where: str) -> list[str]:
    return [c["name"] for c in obj["spec"].get(where) or []]


def _all_container_names(obj: dict[str, Any]) -> list[str]:
    return [n for where in ("containers", "initContainers") for n in _names(obj, where)]


def test_a_pod_with_an_init_container_named_stash_gets_no_sidecar_and_is_told_why() -> None:
    base = pod()
    base["spec"]["initContainers"] = [{"name": SIDECAR_CONTAINER, "image": "busybox"}]
    mutated, warnings = inject(base, PLAN, SETTINGS)
    assert mutated is base  # still creatable: no second container named stash
    assert any("its own init container named 'stash'" in w for w in warnings)


def test_a_pod_with_its_own_container_named_stash_gets_no_sidecar_and_is_told_why() -> None:
    base = pod(containers=("app", SIDECAR_CONTAINER))
    mutated, warnings = inject(base, PLAN, SETTINGS)
    assert mutated is base
    assert any("its own container named 'stash'" in w for w in warnings)


def test_a_restored_pod_with_a_container_named_stash_init_gets_no_init_and_is_told_why() -> None:
    base = pod(containers=("app", RESTORE_INIT_CONTAINER))
    mutated, warnings = inject_init(base, PLAN, SETTINGS)
    assert mutated is base
    assert any("its own container named 'stash-init'" in w for w in warnings)


def test_our_own_sidecar_and_init_are_recognised_when_reinvoked() -> None:
    once, _ = inject(pod(), PLAN, SETTINGS)
    both, _ = inject_init(once, PLAN, SETTINGS)
    assert inject(both, PLAN, SETTINGS)[0] is both
    assert inject_init(both, PLAN, SETTINGS)[0] is both


def test_a_pod_volume_named_tmp_dir_is_left_alone_and_the_sidecar_gets_its_own() -> None:
    base = pod()
    base["spec"]["volumes"].append({"name": TMP_DIR_VOLUME, "hostPath": {"path": "/"}})
    mutated, warnings = inject(base, PLAN, SETTINGS)
    volumes = {v["name"]: v for v in mutated["spec"]["volumes"]}
    assert volumes[TMP_DIR_VOLUME] == {"name": TMP_DIR_VOLUME, "hostPath": {"path": "/"}}
    assert volumes[f"{TMP_DIR_VOLUME}-2"] == {"name": f"{TMP_DIR_VOLUME}-2", "emptyDir": {}}
    sidecar = mutated["spec"]["containers"][-1]
    tmp = next(m for m in sidecar["volumeMounts"] if m["mountPath"] == TMP_DIR_MOUNT_PATH)
    assert tmp["name"] == f"{TMP_DIR_VOLUME}-2"
    assert not any("tmp-dir" in w for w in warnings)
    # stash-init shares the sidecar's volumes rather than adding a third
    both, _ = inject_init(mutated, PLAN, SETTINGS)
    assert len(both["spec"]["volumes"]) == len(mutated["spec"]["volumes"])


def test_a_pod_volume_named_like_the_repositorys_gets_the_repository_a_free_name() -> None:
    base = pod()
    base["spec"]["volumes"].append({"name": LOCAL_BACKEND_VOLUME, "emptyDir": {}})
    mutated, warnings = inject(base, PLAN, SETTINGS)
    volumes = {v["name"]: v for v in mutated["spec"]["volumes"]}
    assert volumes[LOCAL_BACKEND_VOLUME] == {"name": LOCAL_BACKEND_VOLUME, "emptyDir": {}}
    assert volumes[f"{LOCAL_BACKEND_VOLUME}-2"]["persistentVolumeClaim"] == {"claimName": "repo"}
    sidecar = mutated["spec"]["containers"][-1]
    repo = next(m for m in sidecar["volumeMounts"] if m["mountPath"] == "/stash-repo")
    assert repo["name"] == f"{LOCAL_BACKEND_VOLUME}-2"
    assert warnings == []


NAMES = st.sampled_from(
    ["app", SIDECAR_CONTAINER, RESTORE_INIT_CONTAINER, "tmp-dir", "tmp-dir-2", "stash-local",
     "stash-local-2", "data"]
)  # fmt: skip


@given(
    containers=st.lists(NAMES, max_size=3, unique=True),
    init_containers=st.lists(NAMES, max_size=2, unique=True),
    volumes=st.lists(NAMES, max_size=5, unique=True),
)
def test_whatever_names_the_pod_uses_the_result_has_unique_names_and_mounts_that_resolve(
    containers: list[str], init_containers: list[str], volumes: list[str]
) -> None:
    own = [*containers, "main"]  # a pod has at least one container
    if set(own) & set(init_containers):
        return  # the API server would refuse such a pod before the webhook sees it
    base = pod(containers=tuple(own), volumes=tuple(volumes))
    base["spec"]["initContainers"] = [{"name": n, "image": "busybox"} for n in init_containers]
    base["spec"]["volumes"] = [{"name": n, "hostPath": {"path": f"/{n}"}} for n in volumes]
    mutated, _ = inject(base, PLAN, SETTINGS)
    mutated, _ = inject_init(mutated, PLAN, SETTINGS)
    names = _all_container_names(mutated)
    assert len(names) == len(set(names))
    volume_names = [v["name"] for v in mutated["spec"]["volumes"]]
    assert len(volume_names) == len(set(volume_names))
    by_name = {v["name"]: v for v in mutated["spec"]["volumes"]}
    for where in ("containers", "initContainers"):
        for container in mutated["spec"].get(where) or []:
            for mount in container.get("volumeMounts") or []:
                assert mount["name"] in by_name
                if container["name"] in (SIDECAR_CONTAINER, RESTORE_INIT_CONTAINER) and (
                    mount["mountPath"] == TMP_DIR_MOUNT_PATH
                ):
                    assert "emptyDir" in by_name[mount["name"]]  # never the pod's own volume
    # the pod's own volumes are never changed
    for volume in base["spec"]["volumes"]:
        assert by_name[volume["name"]] == volume
