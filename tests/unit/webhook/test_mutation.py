"""The admission decision: who gets a sidecar, and a patch that always applies cleanly."""

from __future__ import annotations

import copy
import json
from typing import Any

import jsonpatch
from hypothesis import given, settings
from hypothesis import strategies as st

from api.constants import (
    BACKUP_LABEL,
    RESTORE_ANNOTATION,
    SIDECAR_CONTAINER,
    SIDECAR_HASH_ANNOTATION,
)
from pods.invokers import SidecarIndex
from pods.sidecar import SidecarSettings
from tests.factories import batch, configuration, member, pod, review
from webhook.mutation import handle, rolled_for_restores, workload_of
from webhook.review import parse_review

SETTINGS = SidecarSettings(image="stash-py:test")


def _index(*invokers: dict[str, Any]) -> SidecarIndex:
    index = SidecarIndex()
    index.replace(invokers)
    return index


def _admit(obj: dict[str, Any], index: SidecarIndex, operation: str = "CREATE") -> Any:
    request = parse_review(json.dumps(review(obj, operation=operation)).encode())
    return handle(request, index, SETTINGS)


def _sidecars(obj: dict[str, Any], patch: list[dict[str, Any]]) -> list[dict[str, Any]]:
    patched = jsonpatch.apply_patch(obj, patch)
    return [c for c in patched["spec"]["containers"] if c["name"] == SIDECAR_CONTAINER]


def test_a_deployment_pod_is_found_through_its_replica_set() -> None:
    assert workload_of(pod()) == ("Deployment", "web")
    assert workload_of(pod(owner=("ReplicaSet", "my-app-v2-7c9d"), pod_hash="7c9d")) == (
        "Deployment",
        "my-app-v2",
    )


def test_statefulset_and_daemonset_pods_are_found_directly() -> None:
    assert workload_of(pod(owner=("StatefulSet", "db"), pod_hash=None)) == ("StatefulSet", "db")
    assert workload_of(pod(owner=("DaemonSet", "agent"), pod_hash=None)) == ("DaemonSet", "agent")


def test_a_replica_set_without_a_deployment_or_a_bare_pod_has_no_workload() -> None:
    assert workload_of(pod(owner=("ReplicaSet", "standalone"), pod_hash=None)) is None
    assert workload_of(pod(owner=None)) is None
    assert workload_of(pod(owner=("Job", "x"), pod_hash=None)) is None


def test_a_targeted_opted_in_pod_gets_exactly_one_sidecar() -> None:
    obj = pod()
    response = _admit(obj, _index(batch()))
    assert response.allowed
    assert len(_sidecars(obj, response.patch)) == 1
    assert response.warnings == ()


def test_a_pod_without_the_opt_in_label_is_left_alone() -> None:
    response = _admit(pod(opted_in=False), _index(batch()))
    assert response.allowed
    assert response.patch == []


def test_only_create_is_mutated() -> None:
    response = _admit(pod(), _index(batch()), operation="UPDATE")
    assert response.patch == []


def test_an_opted_in_pod_with_no_invoker_is_allowed_with_a_warning() -> None:
    response = _admit(pod(), _index(batch("other", "demo", member("Deployment", "api"))))
    assert response.allowed
    assert response.patch == []
    assert (
        "no BackupBatch or BackupConfiguration targets Deployment demo/web"
        in (response.warnings[0])
    )


def test_an_opted_in_pod_without_a_workload_is_allowed_with_a_warning() -> None:
    response = _admit(pod(owner=None), _index(batch()))
    assert response.patch == []
    assert "no Deployment, StatefulSet or DaemonSet owns it" in response.warnings[0]


def test_a_pod_that_already_has_the_sidecar_gets_no_patch() -> None:
    index = _index(batch())
    obj = pod()
    first = _admit(obj, index)
    patched = jsonpatch.apply_patch(obj, first.patch)
    assert _admit(patched, index).patch == []


def test_two_invokers_on_one_workload_give_one_sidecar() -> None:
    obj = pod()
    response = _admit(obj, _index(batch("a"), configuration("b")))
    assert len(_sidecars(obj, response.patch)) == 1


def test_the_response_echoes_the_uid_in_the_request_version() -> None:
    doc = review(pod())
    doc["apiVersion"] = "admission.k8s.io/v1beta1"
    request = parse_review(json.dumps(doc).encode())
    out = handle(request, _index(batch()), SETTINGS).to_review(request.api_version)
    assert out["apiVersion"] == "admission.k8s.io/v1beta1"
    assert out["kind"] == "AdmissionReview"
    assert out["response"]["uid"] == doc["request"]["uid"]
    assert out["response"]["patchType"] == "JSONPatch"


# -- property-based: any pod shape gives a patch that applies and yields a valid pod ------------

_names = st.from_regex(r"[a-z][a-z0-9-]{0,12}", fullmatch=True)
_json_leaf = st.one_of(st.none(), st.booleans(), st.integers(), st.text(max_size=8))
_json = st.recursive(
    _json_leaf,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=6), inner, max_size=3)
    ),
    max_leaves=8,
)


@st.composite
def _pods(draw: st.DrawFn) -> dict[str, Any]:
    volumes = draw(st.lists(_names, max_size=4, unique=True))
    obj = pod(
        volumes=tuple(volumes),
        containers=tuple(
            draw(
                st.lists(_names.filter(lambda n: n != "stash"), min_size=1, max_size=3, unique=True)
            )
        ),
    )
    if draw(st.booleans()):
        del obj["spec"]["volumes"]
    if draw(st.booleans()):
        obj["spec"]["initContainers"] = [{"name": "init", "image": "busybox"}]
    obj["metadata"]["annotations"] = draw(st.dictionaries(_names, st.text(max_size=10), max_size=3))
    obj["spec"]["extra"] = draw(_json)
    return obj


@st.composite
def _mounts(draw: st.DrawFn) -> tuple[tuple[str, str], ...]:
    names = draw(st.lists(_names, max_size=4))
    paths = draw(
        st.lists(
            st.from_regex(r"/[a-z]{1,6}(/[a-z]{1,6})?", fullmatch=True),
            min_size=len(names),
            max_size=len(names),
        )
    )
    return tuple(zip(names, paths, strict=True))


@settings(max_examples=300, deadline=None)
@given(obj=_pods(), mounts_a=_mounts(), mounts_b=_mounts())
def test_any_pod_shape_gets_a_patch_that_applies_and_is_valid(
    obj: dict[str, Any],
    mounts_a: tuple[tuple[str, str], ...],
    mounts_b: tuple[tuple[str, str], ...],
) -> None:
    original = copy.deepcopy(obj)
    index = _index(batch("a", "demo", member(mounts=mounts_a)), configuration("b", mounts=mounts_b))
    response = _admit(obj, index)
    assert obj == original  # the request's pod is never mutated in place
    # The patch is JSON, applies to the original, and touches nothing but the additions.
    json.loads(json.dumps(response.patch))
    patched = jsonpatch.apply_patch(original, response.patch)
    # Only the annotation saying which sidecar plan the pod carries is added to its metadata.
    annotations = dict(patched["metadata"].pop("annotations", None) or {})
    assert len(annotations.pop(SIDECAR_HASH_ANNOTATION)) == 16
    assert annotations == (original["metadata"].get("annotations") or {})
    assert patched["metadata"] == {
        k: v for k, v in original["metadata"].items() if k != "annotations"
    }
    assert patched["spec"]["containers"][:-1] == original["spec"]["containers"]
    sidecar = patched["spec"]["containers"][-1]
    assert sidecar["name"] == SIDECAR_CONTAINER
    # Every mount names a volume of the pod, every mountPath is unique: the API server accepts it.
    volume_names = [v["name"] for v in patched["spec"]["volumes"]]
    assert len(volume_names) == len(set(volume_names))
    assert all(m["name"] in volume_names for m in sidecar["volumeMounts"])
    paths = [m["mountPath"] for m in sidecar["volumeMounts"]]
    assert len(paths) == len(set(paths))
    assert BACKUP_LABEL in patched["metadata"]["labels"]


def _request(obj: Any, operation: str = "CREATE") -> Any:
    return parse_review(json.dumps(review(obj, operation=operation)).encode())


def test_the_restores_a_pod_was_rolled_for_are_read_from_its_annotation() -> None:
    rolled = pod()
    rolled["metadata"]["annotations"] = {RESTORE_ANNOTATION: "uid-1, uid-2,,"}
    assert rolled_for_restores(_request(rolled)) == ("uid-1", "uid-2")
    rolled["metadata"]["annotations"] = {RESTORE_ANNOTATION: ",".join(map(str, range(99)))}
    assert len(rolled_for_restores(_request(rolled))) == 16
    unlabelled = pod(opted_in=False)
    unlabelled["metadata"]["annotations"] = {RESTORE_ANNOTATION: "uid-1"}
    assert rolled_for_restores(_request(unlabelled)) == ()
    assert rolled_for_restores(_request(rolled, operation="UPDATE")) == ()
