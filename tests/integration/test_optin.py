"""The operator labels targeted workloads' pod templates, the controllers roll the pods, the
webhook injects; when the invoker goes, so do the label and the sidecar."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from api.constants import BACKUP_LABEL
from controller.invokers.optin import HASH_ANNOTATION, MANAGED_ANNOTATION
from controller.operator import Operator, OperatorOptions
from devcluster import ControlPlane
from kube import Client
from kube.types import DEPLOYMENTS, PODS, REPLICASETS
from tests.factories import batch, member
from tests.integration.helpers import (
    WebhookProcess,
    container_names,
    eventually,
    wait_until_injected,
)


@pytest.fixture
def operator(control_plane: ControlPlane) -> Iterator[Operator]:
    client = Client.from_kubeconfig(str(control_plane.kubeconfig))
    operator = Operator(client, OperatorOptions(image="stash-py:test", leader_elect=False))
    stop = threading.Event()
    thread = threading.Thread(target=operator.run, args=(stop,), daemon=True)
    thread.start()
    eventually(operator.caches.synced, 30, "the operator's caches")
    yield operator
    stop.set()
    thread.join(15)
    client.close()


def _deployment(name: str, labelled: bool = False) -> dict[str, Any]:
    labels = {"app": name}
    if labelled:
        labels[BACKUP_LABEL] = "enabled"
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": labels},
                "spec": {
                    "containers": [{"name": "app", "image": "nginx:1.27"}],
                    "volumes": [{"name": "data", "emptyDir": {}}],
                },
            },
        },
    }


def _repository(kube: Client, namespace: str) -> None:
    """The batches' Repository: until the operator has seen it, it opts nothing in (the
    sidecar would lack its local backend and change once it came)."""
    kube.create(
        {
            "apiVersion": "stash.appscode.com/v1alpha1",
            "kind": "Repository",
            "metadata": {"name": "repo"},
            "spec": {"backend": {"s3": {"bucket": "b"}, "storageSecretName": "s"}},
        },
        namespace,
    )


def _template_meta(kube: Client, namespace: str, name: str) -> dict[str, Any]:
    meta: dict[str, Any] = kube.get(DEPLOYMENTS, name, namespace)["spec"]["template"]["metadata"]
    return meta


def _live_pods(kube: Client, namespace: str, name: str) -> list[dict[str, Any]]:
    return [
        p
        for p in kube.list(PODS, namespace, label_selector=f"app={name}")["items"]
        if not p["metadata"].get("deletionTimestamp")
    ]


def test_a_targeted_workload_is_opted_in_rolled_and_injected_then_released(
    webhook: WebhookProcess, operator: Operator, kube: Client, namespace: str
) -> None:
    _repository(kube, namespace)
    kube.create(_deployment("web"), namespace)
    eventually(lambda: _live_pods(kube, namespace, "web"), 60, "the first pod")
    invoker = kube.create(batch("nightly", namespace, member("Deployment", "web")), namespace)

    meta = eventually(
        lambda: (m := _template_meta(kube, namespace, "web"))["labels"].get(BACKUP_LABEL) and m,
        30,
        "the opt-in label on the pod template",
    )
    assert HASH_ANNOTATION in meta["annotations"]
    eventually(
        lambda: [p for p in _live_pods(kube, namespace, "web") if "stash" in container_names(p)],
        60,
        "a rolled pod with the sidecar",
    )

    # Converged: reconciling again writes nothing. (The resourceVersion may still move: the
    # Deployment controller keeps writing the rollout's status; the spec's generation may not.)
    before = kube.get(DEPLOYMENTS, "web", namespace)
    writes = operator.optin.writes.in_namespace(namespace)
    operator.controllers[1].enqueue((namespace, "Deployment", "web"))
    time.sleep(1.5)
    assert operator.optin.writes.in_namespace(namespace) == writes
    after = kube.get(DEPLOYMENTS, "web", namespace)
    assert after["metadata"]["generation"] == before["metadata"]["generation"]
    assert after["spec"] == before["spec"]

    kube.delete(kube.type_of(invoker), "nightly", namespace)
    eventually(
        lambda: BACKUP_LABEL not in _template_meta(kube, namespace, "web")["labels"],
        30,
        "the opt-in label to go",
    )
    deployment = kube.get(DEPLOYMENTS, "web", namespace)
    assert MANAGED_ANNOTATION not in deployment["metadata"].get("annotations", {})
    assert HASH_ANNOTATION not in _template_meta(kube, namespace, "web").get("annotations", {})


def test_a_label_written_by_the_user_survives_the_invoker(
    operator: Operator, kube: Client, namespace: str
) -> None:
    _repository(kube, namespace)
    kube.create(_deployment("gitops", labelled=True), namespace)
    invoker = kube.create(batch("nightly", namespace, member("Deployment", "gitops")), namespace)

    def hashes() -> list[str]:
        """Where the sidecar hash is: on the template (its pods rolled for it) or, when its pods
        already carried the sidecar, on the Deployment itself."""
        deployment = kube.get(DEPLOYMENTS, "gitops", namespace)
        template = deployment["spec"]["template"]["metadata"].get("annotations") or {}
        own = deployment["metadata"].get("annotations") or {}
        return [
            where
            for where, found in (("template", template), ("own", own))
            if HASH_ANNOTATION in found
        ]

    eventually(hashes, 30, "the sidecar hash")
    kube.delete(kube.type_of(invoker), "nightly", namespace)
    eventually(lambda: not hashes(), 30, "the sidecar hash to go")
    assert _template_meta(kube, namespace, "gitops")["labels"][BACKUP_LABEL] == "enabled"


def test_a_workload_created_already_opted_in_with_current_pods_is_not_rolled(
    webhook: WebhookProcess, operator: Operator, kube: Client, namespace: str
) -> None:
    # GitOps: the invoker first, then a Deployment whose own manifest carries the label.
    _repository(kube, namespace)
    kube.create(batch("nightly", namespace, member("Deployment", "gitops")), namespace)
    probe = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "generateName": "probe-",
            "labels": {BACKUP_LABEL: "enabled", "pod-template-hash": "5d8f7b9c4"},
            "ownerReferences": [
                {
                    "apiVersion": "apps/v1",
                    "kind": "ReplicaSet",
                    "name": "gitops-5d8f7b9c4",
                    "uid": "00000000-0000-0000-0000-000000000000",
                    "controller": True,
                }
            ],
        },
        "spec": {"containers": [{"name": "app", "image": "probe"}]},
    }
    wait_until_injected(kube, namespace, probe)  # the webhook knows the invoker
    kube.create(_deployment("gitops", labelled=True), namespace)
    (first,) = eventually(
        lambda: [p for p in _live_pods(kube, namespace, "gitops") if "stash" in container_names(p)],
        60,
        "its first pod, with the sidecar",
    )
    assert first["metadata"]["annotations"][HASH_ANNOTATION]

    def recorded() -> str | None:
        meta = kube.get(DEPLOYMENTS, "gitops", namespace)["metadata"]
        return (meta.get("annotations") or {}).get(HASH_ANNOTATION)

    assert (
        eventually(recorded, 30, "the hash its pods carry, on the Deployment")
        == (first["metadata"]["annotations"][HASH_ANNOTATION])
    )
    # Its template was never changed (a Deployment's generation also counts its annotations):
    # one ReplicaSet, the first pod still there.
    assert HASH_ANNOTATION not in _template_meta(kube, namespace, "gitops").get("annotations", {})
    assert len(kube.list(REPLICASETS, namespace, label_selector="app=gitops")["items"]) == 1
    assert [p["metadata"]["uid"] for p in _live_pods(kube, namespace, "gitops")] == [
        first["metadata"]["uid"]
    ]
    # Converged: one more reconcile writes nothing.
    writes = operator.optin.writes.in_namespace(namespace)
    operator.optin.reconcile((namespace, "Deployment", "gitops"))
    assert operator.optin.writes.in_namespace(namespace) == writes
