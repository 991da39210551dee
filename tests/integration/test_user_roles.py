"""Roles for people: ``stash-edit`` and ``stash-view`` join Kubernetes' ``admin``/``edit`` and
``view``, so a namespace's editors manage its backups and restores and its viewers read them;
judged by the API server's own authorizer (SubjectAccessReviews) after the aggregation
controller of the real kube-controller-manager has merged them."""

from __future__ import annotations

from typing import Any

from kube import Client
from kube.types import ROLE_BINDINGS
from tests.integration.helpers import eventually
from tests.manifests import ROOT, load_all

GROUP = "stash.appscode.com"


def _bind(kube: Client, namespace: str, user: str, role: str) -> None:
    kube.create(
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "RoleBinding",
            "metadata": {"name": f"{user}-{role}"},
            "roleRef": {
                "apiGroup": "rbac.authorization.k8s.io",
                "kind": "ClusterRole",
                "name": role,
            },
            "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": user}],
        },
        namespace,
    )


def _allowed(kube: Client, user: str, verb: str, resource: str, namespace: str) -> bool:
    plural, _, sub = resource.partition("/")
    attributes: dict[str, Any] = {
        "namespace": namespace,
        "verb": verb,
        "group": GROUP,
        "resource": plural,
    }
    if sub:
        attributes["subresource"] = sub
    review = kube.create(
        {
            "apiVersion": "authorization.k8s.io/v1",
            "kind": "SubjectAccessReview",
            "spec": {"user": user, "resourceAttributes": attributes},
        }
    )
    return bool((review.get("status") or {}).get("allowed"))


def test_a_namespaces_editors_manage_its_backups_and_its_viewers_only_read_them(
    kube: Client, namespace: str
) -> None:
    for doc in load_all(ROOT / "manifests" / "rbac" / "user-roles.yaml"):
        kube.apply(doc, field_manager="stash-tests")
    _bind(kube, namespace, "alice", "edit")
    _bind(kube, namespace, "bob", "view")
    assert kube.get(ROLE_BINDINGS, "alice-edit", namespace)

    eventually(
        lambda: _allowed(kube, "alice", "create", "backupbatches", namespace),
        60,
        "edit to take in stash-edit",
    )
    for verb, resource in (
        ("delete", "backupsessions"),
        ("create", "restoresessions"),
        ("update", "restorebatches"),
        ("patch", "repositories"),
        ("create", "backupconfigurations"),
    ):
        assert _allowed(kube, "alice", verb, resource, namespace), (verb, resource)
    # What the operator and its pods write, nobody else does; nor anything elsewhere.
    assert not _allowed(kube, "alice", "patch", "backupsessions/status", namespace)
    assert not _allowed(kube, "alice", "create", "backupbatches", "kube-system")

    eventually(
        lambda: _allowed(kube, "bob", "list", "backupsessions", namespace),
        60,
        "view to take in stash-view",
    )
    assert _allowed(kube, "bob", "get", "repositories", namespace)
    for verb, resource in (("create", "backupbatches"), ("delete", "restoresessions")):
        assert not _allowed(kube, "bob", verb, resource, namespace), (verb, resource)
