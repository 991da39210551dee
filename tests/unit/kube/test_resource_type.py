"""Resource paths follow the API server's URL layout."""

from __future__ import annotations

from api.crd import KINDS
from kube import ResourceType
from kube.types import STASH


def test_core_resources_live_under_api() -> None:
    pods = ResourceType("v1", "pods", True, "Pod")
    assert pods.path("demo", "web-0") == "/api/v1/namespaces/demo/pods/web-0"
    assert pods.path() == "/api/v1/pods"


def test_group_resources_live_under_apis_with_subresources() -> None:
    sessions = ResourceType("stash.appscode.com/v1beta1", "backupsessions", True)
    assert (
        sessions.path("demo", "nightly-1", "status")
        == "/apis/stash.appscode.com/v1beta1/namespaces/demo/backupsessions/nightly-1/status"
    )


def test_cluster_scoped_resources_ignore_the_namespace() -> None:
    tasks = ResourceType("stash.appscode.com/v1beta1", "tasks", False)
    assert tasks.path("demo", "pvc-backup") == "/apis/stash.appscode.com/v1beta1/tasks/pvc-backup"


def test_names_are_escaped() -> None:
    pods = ResourceType("v1", "pods", True)
    assert pods.path("demo", "a/b") == "/api/v1/namespaces/demo/pods/a%2Fb"


def test_the_stash_kinds_are_where_their_crds_put_them() -> None:
    expected = {
        info.kind: ResourceType(info.model.API_VERSION, info.plural, info.namespaced, info.kind)
        for info in KINDS
    }
    assert expected == STASH
