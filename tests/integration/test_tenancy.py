"""Tenancy on the real API server: an invoker reaches another namespace only where that
namespace's annotation allows it, never the operator's namespace or kube-system, and a refused
member is Invalid, named by field, with nothing written to the other namespace."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from api import constants as c
from api.conditions import get_condition
from controller.operator import Operator
from controller.tenancy import ALLOW_ANNOTATION
from devcluster import ControlPlane
from kube import Client
from kube.types import (
    BACKUP_BATCHES,
    CRONJOBS,
    DEPLOYMENTS,
    JOBS,
    NAMESPACES,
    ROLE_BINDINGS,
    ROLES,
    SERVICE_ACCOUNTS,
)
from tests.factories import batch, member
from tests.integration.helpers import eventually, fresh_namespace, running_operator
from tests.integration.test_operator import _setup


@pytest.fixture
def operator(control_plane: ControlPlane) -> Iterator[Operator]:
    with running_operator(control_plane.kubeconfig, namespace="stash") as op:
        yield op


@pytest.fixture
def other_namespace(kube: Client) -> Iterator[str]:
    with fresh_namespace(kube, "other") as name:
        yield name


def _service_member(namespace: str) -> dict[str, Any]:
    """A Job-model member: a database's Service in ``namespace``, backed up by a Task."""
    return {
        "task": {"name": "pvc-backup"},
        "target": {
            "ref": {"apiVersion": "v1", "kind": "Service", "name": "db", "namespace": namespace}
        },
    }


def _other_objects(kube: Client, namespace: str) -> dict[str, Any]:
    """Everything the operator could have written in ``namespace``: each object's version, and
    a Deployment's metadata and spec (its controllers keep writing its status)."""
    seen: dict[str, Any] = {}
    for rt in (DEPLOYMENTS, SERVICE_ACCOUNTS, ROLES, ROLE_BINDINGS, CRONJOBS, JOBS):
        for obj in kube.list(rt, namespace)["items"]:
            meta = obj["metadata"]
            if rt is DEPLOYMENTS:
                seen[f"Deployment/{meta['name']}"] = (
                    meta.get("generation"),
                    meta.get("labels"),
                    meta.get("annotations"),
                    obj["spec"],
                )
            else:
                seen[f"{rt.kind}/{meta['name']}"] = meta["resourceVersion"]
    return seen


def _validation(kube: Client, namespace: str) -> dict[str, Any]:
    status = kube.get(BACKUP_BATCHES, "nightly", namespace).get("status") or {}
    return get_condition(status.get("conditions"), c.VALIDATION_PASSED) or {}


def test_a_member_in_another_namespace_is_invalid_and_nothing_is_written_there(
    operator: Operator, kube: Client, namespace: str, other_namespace: str
) -> None:
    _setup(kube, namespace)
    _setup(kube, other_namespace)  # a Deployment "web" and a PVC "shared" in the other tenant
    before = _other_objects(kube, other_namespace)
    kube.create(
        batch(
            "nightly",
            namespace,
            member("Deployment", "web", namespace=other_namespace),
            member("PersistentVolumeClaim", "shared", task="pvc-backup", namespace=other_namespace),
            _service_member(other_namespace),
            member("Deployment", "coredns", namespace="kube-system"),
            member("Deployment", "stash-operator", namespace="stash"),
        ),
        namespace,
    )
    condition = eventually(
        lambda: (v := _validation(kube, namespace)).get("status") == "False" and v,
        30,
        "ValidationPassed False",
    )
    message = condition["message"]
    for index in range(5):
        assert f"spec.members[{index}].target.ref.namespace:" in message
    assert f"namespace {other_namespace} does not allow invokers from {namespace}" in message
    assert "namespace kube-system is never a backup target" in message
    assert "namespace stash is never a backup target" in message
    status = kube.get(BACKUP_BATCHES, "nightly", namespace)["status"]
    assert status["phase"] == "Invalid"

    # Converged on Invalid: still nothing of any kind in the other namespace, no opt-in label.
    assert _other_objects(kube, other_namespace) == before
    web = kube.get(DEPLOYMENTS, "web", other_namespace)
    assert c.BACKUP_LABEL not in web["spec"]["template"]["metadata"]["labels"]
    assert not kube.list(CRONJOBS, namespace)["items"]  # an Invalid invoker gets no trigger


def test_a_namespace_that_allows_the_invoker_namespace_lets_its_job_model_member_in(
    operator: Operator, kube: Client, namespace: str, other_namespace: str
) -> None:
    _setup(kube, namespace)
    kube.create(
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": "db"},
            "spec": {"ports": [{"port": 5432}]},
        },
        other_namespace,
    )
    kube.create(batch("nightly", namespace, _service_member(other_namespace)), namespace)
    eventually(
        lambda: _validation(kube, namespace).get("status") == "False", 30, "refused at first"
    )
    kube.patch(
        NAMESPACES,
        other_namespace,
        {"metadata": {"annotations": {ALLOW_ANNOTATION: f"someone-else, {namespace}"}}},
    )
    eventually(
        lambda: kube.get(BACKUP_BATCHES, "nightly", namespace)["status"]["phase"] == "Ready",
        30,
        "Ready once allowed",
    )
    # The grant withdrawn: refused again.
    kube.patch(NAMESPACES, other_namespace, {"metadata": {"annotations": {ALLOW_ANNOTATION: None}}})
    eventually(
        lambda: kube.get(BACKUP_BATCHES, "nightly", namespace)["status"]["phase"] == "Invalid",
        30,
        "Invalid once the grant is gone",
    )
