"""The webhook against the real API server and controllers, registered by URL.

The tests run in file order on one webhook process; the last one stops it.
"""

from __future__ import annotations

import json
import socket
import ssl
import threading
import time
import uuid
from typing import Any

import pytest
from cryptography import x509

from api.constants import BACKUP_LABEL, WEBHOOK_NAME
from certs.files import ensure_local_files
from kube import Client
from kube.types import PODS, WEBHOOK_CONFIGS
from tests.factories import batch, configuration, member, review
from tests.factories import pod as pod_factory
from tests.integration.helpers import (
    WebhookProcess,
    container_names,
    eventually,
    wait_until_injected,
)

SIDECAR = "stash"


def _workload(
    kind: str, name: str, *, labelled: bool = True, volumes: tuple[str, ...] = ("data",)
) -> dict[str, Any]:
    labels = {"app": name}
    if labelled:
        labels[BACKUP_LABEL] = "enabled"
    spec: dict[str, Any] = {
        "selector": {"matchLabels": {"app": name}},
        "template": {
            "metadata": {"labels": labels},
            "spec": {
                "containers": [{"name": "app", "image": "nginx:1.27"}],
                "volumes": [{"name": v, "emptyDir": {}} for v in volumes],
            },
        },
    }
    if kind != "DaemonSet":
        spec["replicas"] = 1
    if kind == "StatefulSet":
        spec["serviceName"] = name
    return {"apiVersion": "apps/v1", "kind": kind, "metadata": {"name": name}, "spec": spec}


def _probe_pod(namespace: str, name: str = "web") -> dict[str, Any]:
    """A pod as a Deployment's ReplicaSet would create it (for dry-run probes)."""
    return pod_factory(
        namespace=namespace, owner=("ReplicaSet", f"{name}-abc123"), pod_hash="abc123"
    )


def _pods_of_deployment(kube: Client, namespace: str, name: str) -> list[dict[str, Any]]:
    pods = kube.list(PODS, namespace, label_selector=f"app={name}")["items"]
    return [p for p in pods if not p["metadata"].get("deletionTimestamp")]


def _sidecar(pod: dict[str, Any]) -> dict[str, Any]:
    sidecars: list[dict[str, Any]] = [c for c in pod["spec"]["containers"] if c["name"] == SIDECAR]
    assert len(sidecars) == 1, container_names(pod)
    return sidecars[0]


def _our_mounts(pod: dict[str, Any]) -> list[str]:
    """The sidecar's mount paths, less the token the ServiceAccount admission plugin adds."""
    return [
        m["mountPath"]
        for m in _sidecar(pod)["volumeMounts"]
        if not m["mountPath"].startswith("/var/run/secrets/kubernetes.io/")
    ]


def test_a_targeted_deployment_gets_one_sidecar_and_its_sibling_none(
    webhook: WebhookProcess, kube: Client, namespace: str
) -> None:
    kube.create(batch("nightly", namespace, member("Deployment", "web")), namespace)
    wait_until_injected(kube, namespace, _probe_pod(namespace))
    kube.create(_workload("Deployment", "web"), namespace)
    kube.create(_workload("Deployment", "sibling", labelled=False), namespace)
    web = eventually(lambda: _pods_of_deployment(kube, namespace, "web"), 60, "web's pod")
    sibling = eventually(
        lambda: _pods_of_deployment(kube, namespace, "sibling"), 60, "sibling's pod"
    )
    sidecar = _sidecar(web[0])
    assert sidecar["args"] == [
        "run-backup",
        "--target-kind=Deployment",
        "--target-name=web",
        "--cache-dir=/tmp/restic-cache",
    ]
    assert sidecar["image"] == "stash-py:test"
    assert {"name": "data", "mountPath": "/data"} in sidecar["volumeMounts"]
    assert {"name": "tmp-dir", "mountPath": "/tmp"} in sidecar["volumeMounts"]
    assert container_names(sibling[0]) == ["app"]


def test_two_invokers_share_one_sidecar_and_deleting_them_stops_injection(
    webhook: WebhookProcess, kube: Client, namespace: str
) -> None:
    bb = kube.create(batch("nightly", namespace, member("Deployment", "web")), namespace)
    bc = kube.create(
        configuration("hourly", namespace, mounts=(("logs", "/logs"), ("data", "/data"))),
        namespace,
    )
    probe = _probe_pod(namespace)
    probe["spec"]["volumes"].append({"name": "logs", "emptyDir": {}})
    eventually(
        lambda: "/logs" in _our_mounts(kube.create(probe, namespace, dry_run=True)),
        20,
        "both invokers in the webhook's cache",
    )
    kube.create(_workload("Deployment", "web", volumes=("data", "logs")), namespace)
    first = eventually(lambda: _pods_of_deployment(kube, namespace, "web"), 60, "web's pod")[0]
    assert _our_mounts(first) == ["/tmp", "/data", "/logs"]

    for obj in (bb, bc):
        kube.delete(kube.type_of(obj), obj["metadata"]["name"], namespace)
    wait_until_injected(kube, namespace, probe, injected=False)
    kube.delete(PODS, first["metadata"]["name"], namespace)
    replacement = eventually(
        lambda: [
            p
            for p in _pods_of_deployment(kube, namespace, "web")
            if p["metadata"]["name"] != first["metadata"]["name"]
        ],
        60,
        "the ReplicaSet to replace the deleted pod",
    )
    assert container_names(replacement[0]) == ["app"]


def test_a_statefulset_pod_created_by_its_controller_gets_the_sidecar(
    webhook: WebhookProcess, kube: Client, namespace: str
) -> None:
    kube.create(batch("db-backup", namespace, member("StatefulSet", "db")), namespace)
    wait_until_injected(
        kube,
        namespace,
        pod_factory(namespace=namespace, owner=("StatefulSet", "db"), pod_hash=None),
    )
    kube.create(_workload("StatefulSet", "db"), namespace)
    pod = eventually(
        lambda: kube.get(PODS, "db-0", namespace) if _exists(kube, namespace, "db-0") else None,
        60,
        "db-0",
    )
    assert _sidecar(pod)["args"][1:3] == ["--target-kind=StatefulSet", "--target-name=db"]


def _exists(kube: Client, namespace: str, name: str) -> bool:
    return any(p["metadata"]["name"] == name for p in kube.list(PODS, namespace)["items"])


def test_a_daemonset_pod_gets_the_sidecar(
    webhook: WebhookProcess, kube: Client, namespace: str
) -> None:
    # Without nodes the DaemonSet controller creates no pods: create one as it would.
    kube.create(batch("node-logs", namespace, member("DaemonSet", "agent")), namespace)
    ds = kube.create(_workload("DaemonSet", "agent"), namespace)
    pod = pod_factory(namespace=namespace, owner=("DaemonSet", "agent"), pod_hash=None)
    pod["metadata"]["ownerReferences"][0]["uid"] = ds["metadata"]["uid"]
    wait_until_injected(kube, namespace, pod)
    created = kube.create(pod, namespace)
    assert _sidecar(created)["args"][1:3] == ["--target-kind=DaemonSet", "--target-name=agent"]


def _served_serial(hook: WebhookProcess) -> int:
    context = ssl.create_default_context(cafile=str(hook.cert_dir / "ca.crt"))
    with (
        socket.create_connection(("127.0.0.1", hook.port), timeout=5) as raw,
        context.wrap_socket(raw, server_hostname="127.0.0.1") as tls,
    ):
        der = tls.getpeercert(binary_form=True)
    assert der is not None
    return x509.load_der_x509_certificate(der).serial_number


def test_certificate_rotation_while_pods_are_created_fails_no_admission(
    webhook: WebhookProcess, kube: Client, namespace: str
) -> None:
    kube.create(batch("nightly", namespace, member("Deployment", "web")), namespace)
    wait_until_injected(kube, namespace, _probe_pod(namespace))
    serials = {_served_serial(webhook)}
    results: list[bool] = []
    errors: list[str] = []
    stop = threading.Event()

    def create_pods() -> None:
        while not stop.is_set():
            try:
                created = kube.create(_probe_pod(namespace), namespace, dry_run=True)
                # failurePolicy is Ignore: a failed call would admit the pod *without* sidecar.
                results.append(SIDECAR in container_names(created))
            except Exception as exc:
                errors.append(repr(exc))

    workers = [threading.Thread(target=create_pods) for _ in range(2)]
    for worker in workers:
        worker.start()
    try:
        for _ in range(3):
            time.sleep(1.0)
            ensure_local_files(webhook.cert_dir, renew=True)
            eventually(
                lambda: _served_serial(webhook) not in serials, 15, "the renewed certificate"
            )
            serials.add(_served_serial(webhook))
        time.sleep(1.0)
    finally:
        stop.set()
        for worker in workers:
            worker.join()
    assert errors == []
    assert len(serials) == 4
    assert len(results) > 20
    assert all(results), (
        f"{results.count(False)} of {len(results)} pods were admitted without sidecar"
    )
    _, body = webhook.request("GET", "/metrics")
    assert b'stash_webhook_requests_total{outcome="error"}' not in body
    assert b"stash_webhook_certificate_loads 4.0" in body


@pytest.mark.parametrize(
    ("body", "status", "message"),
    [
        (b"not json at all", 400, "body is not JSON"),
        (
            b'{"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": {}}',
            400,
            "request.uid must be a non-empty string",
        ),
        (
            json.dumps(
                {
                    "apiVersion": "admission.k8s.io/v1",
                    "kind": "AdmissionReview",
                    "request": {"uid": "x", "operation": 5},
                }
            ).encode(),
            400,
            "request.operation must be a string",
        ),
        (b"{" + b" " * (4 * 1024 * 1024) + b"}", 413, "exceeds the 3145728-byte limit"),
        (
            b'{"apiVersion": ' + b"[" * 1000 + b"]" * 1000 + b', "kind": "AdmissionReview"}',
            400,
            "apiVersion must be one of",
        ),
        (
            b'{"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": '
            b'{"uid": "x", "operation": "CREATE", "kind": {"kind": '
            + b"[" * 1000
            + b"]" * 1000
            + b"}}}",
            400,
            "request.kind.kind must be a string",
        ),
        (b"[" * 100_000 + b"]" * 100_000, 400, "body is not JSON"),
    ],
    ids=[
        "non-json",
        "missing-uid",
        "wrong-type",
        "huge",
        "deep-api-version",
        "deep-kind",
        "deeper",
    ],
)
def test_a_malformed_review_over_tls_gets_a_4xx_with_a_message(
    webhook: WebhookProcess, body: bytes, status: int, message: str
) -> None:
    got, text = webhook.request(
        "POST", "/mutate/pods", body=body, headers={"Content-Type": "application/json"}
    )
    assert got == status
    assert message in json.loads(text)["message"]


def test_a_stalled_body_is_cut_off_and_healthy_requests_pass_meanwhile(
    webhook: WebhookProcess,
) -> None:
    raw = socket.create_connection(("127.0.0.1", webhook.port), timeout=30)
    stalled = webhook.ssl_context().wrap_socket(raw, server_hostname="127.0.0.1")
    started = time.monotonic()
    stalled.sendall(
        b"POST /mutate/pods HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Content-Length: 1000\r\n\r\n" + b'{"apiVersion": '
    )
    # Meanwhile the webhook answers everyone else at once.
    doc = review(pod_factory(opted_in=False))
    for _ in range(5):
        got, _ = webhook.request("POST", "/mutate/pods", body=json.dumps(doc).encode())
        assert got == 200
    assert time.monotonic() - started < 5
    answer = b""
    while chunk := stalled.recv(65536):  # the server closes the connection after answering
        answer += chunk
    waited = time.monotonic() - started
    stalled.close()
    assert answer.startswith(b"HTTP/1.1 408"), answer[:200]
    assert b"did not arrive within 10 s" in answer
    assert 9 < waited < 20


def test_a_well_formed_review_over_tls_echoes_the_uid(webhook: WebhookProcess) -> None:
    doc = review(pod_factory(opted_in=False))
    got, text = webhook.request("POST", "/mutate/pods", body=json.dumps(doc).encode())
    assert got == 200
    assert json.loads(text)["response"] == {"uid": doc["request"]["uid"], "allowed": True}


def test_the_registration_follows_the_design(webhook: WebhookProcess, kube: Client) -> None:
    config = kube.get(WEBHOOK_CONFIGS, WEBHOOK_NAME)
    (hook,) = config["webhooks"]
    assert hook["clientConfig"]["url"] == f"{webhook.base_url}/mutate/pods"
    assert hook["objectSelector"] == {"matchLabels": {BACKUP_LABEL: "enabled"}}
    assert hook["namespaceSelector"]["matchExpressions"][0]["values"] == [
        "kube-system",
        "stash-system",
    ]
    assert (hook["sideEffects"], hook["failurePolicy"], hook["reinvocationPolicy"]) == (
        "None",
        "Ignore",
        "IfNeeded",
    )
    assert hook["admissionReviewVersions"] == ["v1"]


def test_with_the_webhook_stopped_pods_are_still_created(
    webhook: WebhookProcess, kube: Client, namespace: str
) -> None:
    kube.create(batch("nightly", namespace, member("Deployment", "web")), namespace)
    wait_until_injected(kube, namespace, _probe_pod(namespace))
    webhook.stop()
    labelled = kube.create(
        _probe_pod(namespace)
        | {"metadata": {**_probe_pod(namespace)["metadata"], "name": f"l-{uuid.uuid4().hex[:6]}"}},
        namespace,
    )
    unlabelled = kube.create(
        pod_factory(namespace=namespace, opted_in=False, name="plain"), namespace
    )
    assert container_names(labelled) == ["app"]
    assert container_names(unlabelled) == ["app"]
