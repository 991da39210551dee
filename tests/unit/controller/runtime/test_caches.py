"""What the operator's caches keep of workloads and PVCs: only what its readers use, and their
answers the same on the kept view as on the whole object."""

from __future__ import annotations

import copy

import pytest

from api.objects import JSON
from controller.invokers.facts import volume_names
from controller.invokers.optin import desired_patch
from controller.runtime.caches import DAEMONSETS, PVCS, TRANSFORMS, metadata_view, workload_view
from kube.informer import LAST_APPLIED, slim
from pods.workloads import match_labels_selector, pods_of
from tests.factories import pod


def deployment(kind: str = "Deployment") -> JSON:
    return {
        "apiVersion": "apps/v1",
        "kind": kind,
        "metadata": {
            "name": "web",
            "namespace": "demo",
            "uid": "u-1",
            "generation": 4,
            "resourceVersion": "77",
            "annotations": {"team": "a", LAST_APPLIED: '{"a huge": "copy"}'},
            "managedFields": [{"manager": "kubectl"}],
        },
        "spec": {
            "replicas": 3,
            "selector": {"matchLabels": {"app": "web"}},
            "template": {
                "metadata": {"labels": {"app": "web"}, "annotations": {"x": "y"}},
                "spec": {
                    "serviceAccountName": "web-sa",
                    "containers": [{"name": "app", "image": "nginx", "env": [{"name": "A"}]}],
                    "volumes": [
                        {"name": "data", "persistentVolumeClaim": {"claimName": "d"}},
                        {"name": "cache", "emptyDir": {}},
                    ],
                },
            },
        },
        "status": {
            "replicas": 3,
            "desiredNumberScheduled": 2,
            "conditions": [{"type": "Available", "status": "True", "message": "long " * 40}],
        },
    }


def test_a_workload_is_kept_without_containers_status_or_kubectls_copy() -> None:
    view = workload_view(slim(deployment()))
    assert "containers" not in view["spec"]["template"]["spec"]
    assert "managedFields" not in view["metadata"]
    assert LAST_APPLIED not in view["metadata"]["annotations"]
    assert view["metadata"]["annotations"] == {"team": "a"}
    assert view["spec"]["template"]["spec"] == {
        "serviceAccountName": "web-sa",
        "volumes": [{"name": "data"}, {"name": "cache"}],
    }
    assert view["status"] == {"desiredNumberScheduled": 2}
    assert view["spec"]["replicas"] == 3


@pytest.mark.parametrize("kind", ["Deployment", "StatefulSet", "DaemonSet"])
def test_every_reader_answers_the_same_from_the_view(kind: str) -> None:
    whole = deployment(kind)
    view = workload_view(copy.deepcopy(whole))
    other = pod(name="api-1")
    other["metadata"]["labels"]["app"] = "api"
    pods = [pod(name="web-1"), other]
    assert volume_names(view) == volume_names(whole)
    assert match_labels_selector(view) == match_labels_selector(whole)
    assert pods_of(view, pods) == pods_of(whole, pods) == pods[:1]
    for fingerprint, restores in ((None, ()), ("abc", ()), (None, ("uid-9",))):
        assert desired_patch(view, fingerprint, restores) == desired_patch(
            whole, fingerprint, restores
        )


def test_a_workload_without_service_account_or_volumes_stays_without() -> None:
    bare = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "w"}}
    view = workload_view(bare)
    assert view["spec"]["template"]["spec"] == {"volumes": []}
    assert "status" not in view


def test_a_pvc_is_kept_as_its_metadata() -> None:
    claim = {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": {"name": "data", "namespace": "demo", "uid": "u"},
        "spec": {"resources": {"requests": {"storage": "1Gi"}}},
        "status": {"phase": "Bound"},
    }
    assert metadata_view(claim) == {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": {"name": "data", "namespace": "demo", "uid": "u"},
    }
    assert TRANSFORMS[PVCS] is metadata_view
    assert TRANSFORMS[DAEMONSETS] is workload_view
