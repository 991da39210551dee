"""Tenancy on the real API server: an invoker reaches another namespace only where that
namespace's annotation allows it, never the operator's namespace or kube-system, and a refused
member is Invalid, named by field, with nothing written to the other namespace."""

from __future__ import annotations

import http.client
import json
import ssl
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from api import constants as c
from api.conditions import get_condition
from api.constants import WEBHOOK_PATH
from api.tenancy import ALLOW_ANNOTATION, HOST_PATH, PRIVILEGES_ANNOTATION
from certs.authority import CertificateAuthority
from controller.operator import Operator
from devcluster import ControlPlane
from kube import Client
from kube.sessions import create_session
from kube.types import (
    BACKUP_BATCHES,
    BACKUP_SESSIONS,
    CRONJOBS,
    DEPLOYMENTS,
    JOBS,
    NAMESPACES,
    REPOSITORIES,
    RESTORE_SESSIONS,
    ROLE_BINDINGS,
    ROLES,
    SECRETS,
    SERVICE_ACCOUNTS,
)
from tests.factories import batch, member, restore_member, restore_session, review
from tests.integration.helpers import (
    WebhookProcess,
    eventually,
    fresh_namespace,
    running_operator,
    tenant,
    wait_until_injected,
)
from tests.integration.objects import allow_host_path, claim
from tests.integration.test_operator import _setup
from tests.integration.test_webhook import _probe_pod


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


# -- the tenant boundary, tried as a tenant would (a ServiceAccount with only stash-edit) --------


def _plain_repository(kube: Client, namespace: str, **spec: Any) -> None:
    """A Secret and a Repository ``repo`` whose data lives on a PVC (nothing an admin must
    allow), usable by its own namespace only unless ``spec`` says more."""
    kube.create(
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": "repo-secret"},
            "stringData": {"RESTIC_PASSWORD": "a-password-of-" + namespace},
        },
        namespace,
    )
    kube.create(
        {
            "apiVersion": c.V1ALPHA1,
            "kind": "Repository",
            "metadata": {"name": "repo"},
            "spec": {
                "backend": {
                    "local": {"mountPath": "/r", "persistentVolumeClaim": {"claimName": "r"}},
                    "storageSecretName": "repo-secret",
                },
                **spec,
            },
        },
        namespace,
    )


def _versions(kube: Client, namespace: str) -> dict[str, Any]:
    """Every object of ``namespace`` the operator could read-and-write or grant: their
    resourceVersions (Secrets, Repositories, RBAC, Jobs, ...)."""
    seen = _other_objects(kube, namespace)
    for rt in (SECRETS, REPOSITORIES):
        for obj in kube.list(rt, namespace)["items"]:
            seen[f"{rt.kind}/{obj['metadata']['name']}"] = obj["metadata"]["resourceVersion"]
    return seen


def _restore(kube: Client, namespace: str, name: str) -> dict[str, Any]:
    return kube.get(RESTORE_SESSIONS, name, namespace).get("status") or {}


def test_a_running_restore_pointed_at_another_namespaces_repository_fails_touching_nothing_there(
    operator: Operator, kube: Client, namespace: str, other_namespace: str
) -> None:
    _plain_repository(kube, other_namespace)  # the other team's, for its own namespace only
    _plain_repository(kube, namespace)
    claim(kube, namespace, "data")
    with tenant(kube, namespace) as team:
        team.create(
            restore_session(
                "back",
                namespace,
                restore_member(),
            ),
            namespace,
        )
        eventually(
            lambda: _restore(kube, namespace, "back").get("phase") == "Running",
            30,
            "the restore running on its own Repository",
        )
        job = eventually(lambda: kube.list(JOBS, namespace)["items"], 30, "its restore Job")[0][
            "metadata"
        ]["name"]
        before = _versions(kube, other_namespace)
        # The tenant re-points it at the other team's Repository while it runs.
        team.patch(
            RESTORE_SESSIONS,
            "back",
            {"spec": {"repository": {"name": "repo", "namespace": other_namespace}}},
            namespace=namespace,
        )
    status = eventually(
        lambda: (s := _restore(kube, namespace, "back")).get("phase") == "Failed" and s,
        30,
        "the restore Failed",
    )
    found = get_condition(status["conditions"], c.REPOSITORY_FOUND) or {}
    assert found.get("reason") == "RepositoryUsageNotAllowed"
    assert f"Repository {other_namespace}/repo only allows its own namespace" in found["message"]
    failed = get_condition(status["conditions"], "RestoreFailed") or {}
    assert "spec.repository:" in failed.get("message", ""), status
    # Its Job stopped; nothing of the other namespace read-and-written, nothing granted there.
    eventually(
        lambda: all(
            j["metadata"]["name"] != job or j["metadata"].get("deletionTimestamp")
            for j in kube.list(JOBS, namespace)["items"]
        ),
        30,
        "the restore Job stopped",
    )
    assert _versions(kube, other_namespace) == before
    assert not kube.list(ROLES, other_namespace)["items"]


def _phase(kube: Client, namespace: str) -> str:
    return str((kube.get(BACKUP_BATCHES, "nightly", namespace).get("status") or {}).get("phase"))


@pytest.mark.parametrize(
    ("settings", "field", "privilege"),
    [
        (
            {"container": {"securityContext": {"privileged": True}}},
            "container.securityContext.privileged",
            "privileged",
        ),
        ({"pod": {"hostPID": True}}, "pod.hostPID", "privileged"),
        (
            {"container": {"securityContext": {"capabilities": {"add": ["SYS_ADMIN"]}}}},
            "container.securityContext.capabilities.add",
            "privileged",
        ),
        ({"pod": {"serviceAccountName": "deployer"}}, "pod.serviceAccountName", "identity"),
        (
            {"pod": {"priorityClassName": "system-node-critical"}},
            "pod.priorityClassName",
            "identity",
        ),
    ],
)
def test_privileged_or_identity_settings_need_the_admins_decision_also_on_a_ready_invoker(
    operator: Operator,
    kube: Client,
    namespace: str,
    settings: dict[str, Any],
    field: str,
    privilege: str,
) -> None:
    _plain_repository(kube, namespace)
    claim(kube, namespace, "data")
    plain = member("PersistentVolumeClaim", "data", task="pvc-backup")
    with tenant(kube, namespace) as team:
        team.create(batch("nightly", namespace, plain), namespace)
        eventually(lambda: _phase(kube, namespace) == "Ready", 30, "Ready without settings")
        # The tenant adds the setting to the Ready invoker: judged again, refused.
        team.patch(
            BACKUP_BATCHES,
            "nightly",
            {"spec": {"members": [{**plain, "runtimeSettings": settings}]}},
            namespace=namespace,
        )
    eventually(lambda: _phase(kube, namespace) == "Invalid", 30, "Invalid with the setting")
    message = _validation(kube, namespace)["message"]
    assert f"spec.members[0].runtimeSettings.{field}" in message
    assert f"{PRIVILEGES_ANNOTATION} of namespace {namespace} must list {privilege!r}" in message
    assert not kube.list(CRONJOBS, namespace)["items"]
    # A cluster admin decides for the namespace: allowed.
    kube.patch(
        NAMESPACES, namespace, {"metadata": {"annotations": {PRIVILEGES_ANNOTATION: privilege}}}
    )
    eventually(lambda: _phase(kube, namespace) == "Ready", 30, "Ready once the admin allows it")


def test_the_namespaces_pod_security_level_holds_whatever_the_admin_allowed(
    operator: Operator, kube: Client, namespace: str
) -> None:
    _plain_repository(kube, namespace)
    claim(kube, namespace, "data")
    kube.patch(
        NAMESPACES,
        namespace,
        {
            "metadata": {
                "annotations": {PRIVILEGES_ANNOTATION: "*"},
                "labels": {"pod-security.kubernetes.io/enforce": "baseline"},
            }
        },
    )
    settings = {"container": {"securityContext": {"privileged": True}}}
    kube.create(
        batch(
            "nightly",
            namespace,
            {
                **member("PersistentVolumeClaim", "data", task="pvc-backup"),
                "runtimeSettings": settings,
            },
        ),
        namespace,
    )
    eventually(lambda: _phase(kube, namespace) == "Invalid", 30, "Invalid")
    assert (
        "enforces Pod Security level 'baseline', which forbids it"
        in _validation(kube, namespace)["message"]
    )


def test_a_repository_on_the_nodes_files_needs_the_admins_decision(
    operator: Operator, kube: Client, namespace: str
) -> None:
    claim(kube, namespace, "data")
    kube.create(
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": "repo-secret"},
            "stringData": {"RESTIC_PASSWORD": "x"},
        },
        namespace,
    )
    with tenant(kube, namespace) as team:
        team.create(
            {
                "apiVersion": c.V1ALPHA1,
                "kind": "Repository",
                "metadata": {"name": "repo"},
                "spec": {
                    "backend": {
                        "local": {"mountPath": "/host", "hostPath": {"path": "/"}},
                        "storageSecretName": "repo-secret",
                    }
                },
            },
            namespace,
        )
        team.create(
            batch("nightly", namespace, member("PersistentVolumeClaim", "data", task="pvc-backup")),
            namespace,
        )
    eventually(lambda: _phase(kube, namespace) == "Invalid", 30, "Invalid")
    message = _validation(kube, namespace)["message"]
    assert (
        f"spec.repository: Repository {namespace}/repo spec.backend.local.hostPath needs" in message
    )
    assert not kube.list(CRONJOBS, namespace)["items"]
    # A session the tenant makes by hand runs nothing: skipped, its invoker being Invalid.
    with tenant(kube, namespace) as team:
        session = create_session(team, "BackupBatch", "nightly", namespace)["metadata"]["name"]

    def skipped() -> dict[str, Any] | None:
        status = kube.get(BACKUP_SESSIONS, session, namespace).get("status") or {}
        return status if status.get("phase") == "Skipped" else None

    conditions = eventually(skipped, 30, "the hand-made session Skipped")["conditions"]
    assert "BackupBatch nightly is Invalid" in str(conditions)
    assert not kube.list(JOBS, namespace)["items"]  # no pod ever mounted the node's files
    allow_host_path(kube, namespace)
    eventually(lambda: _phase(kube, namespace) == "Ready", 30, "Ready once the admin allows it")


def test_an_invoker_refused_another_namespaces_repository_writes_nothing_there(
    operator: Operator, kube: Client, namespace: str, other_namespace: str
) -> None:
    _plain_repository(kube, other_namespace)  # its own namespace only
    claim(kube, namespace, "data")
    # The other team's own invoker, so that its Repository lists a reference already.
    claim(kube, other_namespace, "data")
    kube.create(
        batch(
            "nightly", other_namespace, member("PersistentVolumeClaim", "data", task="pvc-backup")
        ),
        other_namespace,
    )
    eventually(lambda: _phase(kube, other_namespace) == "Ready", 30, "the other team's Ready")
    eventually(
        lambda: (kube.get(REPOSITORIES, "repo", other_namespace).get("status") or {}).get(
            "references"
        ),
        30,
        "its reference listed",
    )
    before = _versions(kube, other_namespace)
    with tenant(kube, namespace) as team:
        team.create(
            batch(
                "nightly",
                namespace,
                member("PersistentVolumeClaim", "data", task="pvc-backup"),
                repository={"name": "repo", "namespace": other_namespace},
            ),
            namespace,
        )
    status = eventually(
        lambda: (
            (s := kube.get(BACKUP_BATCHES, "nightly", namespace).get("status") or {}).get("phase")
            == "NotReady"
            and s
        ),
        30,
        "NotReady",
    )
    found = get_condition(status["conditions"], c.REPOSITORY_FOUND) or {}
    assert found.get("reason") == "RepositoryUsageNotAllowed"
    secret = get_condition(status["conditions"], c.BACKEND_SECRET_FOUND) or {}
    assert secret.get("reason") == "BackendSecretNotRead"
    assert _versions(kube, other_namespace) == before
    refs = kube.get(REPOSITORIES, "repo", other_namespace)["status"]["references"]
    assert all(r["namespace"] == other_namespace for r in refs)


def test_a_running_session_whose_invoker_is_pointed_at_another_namespaces_repository_fails(
    operator: Operator, kube: Client, namespace: str, other_namespace: str
) -> None:
    _plain_repository(kube, other_namespace)  # its own namespace only
    _plain_repository(kube, namespace)
    claim(kube, namespace, "data")
    plain = member("PersistentVolumeClaim", "data", task="pvc-backup")
    with tenant(kube, namespace) as team:
        team.create(batch("nightly", namespace, plain), namespace)
        eventually(lambda: _phase(kube, namespace) == "Ready", 30, "Ready")
        session = create_session(team, "BackupBatch", "nightly", namespace)["metadata"]["name"]
        job = eventually(lambda: kube.list(JOBS, namespace)["items"], 30, "its backup Job")[0]
        before = _versions(kube, other_namespace)
        team.patch(
            BACKUP_BATCHES,
            "nightly",
            {"spec": {"repository": {"name": "repo", "namespace": other_namespace}}},
            namespace=namespace,
        )

    def failed() -> dict[str, Any] | None:
        status = kube.get(BACKUP_SESSIONS, session, namespace).get("status") or {}
        return status if status.get("phase") == "Failed" else None

    status = eventually(failed, 30, "the session Failed")
    (target,) = status["targets"]
    assert "refused: spec.repository:" in str(target["conditions"]), target
    assert "only allows its own namespace" in str(target["conditions"])
    eventually(
        lambda: all(
            j["metadata"]["uid"] != job["metadata"]["uid"] or j["metadata"].get("deletionTimestamp")
            for j in kube.list(JOBS, namespace)["items"]
        ),
        30,
        "its Job stopped",
    )
    assert _versions(kube, other_namespace) == before


def test_a_repository_on_the_nodes_files_is_mounted_only_once_an_admin_allows_it(
    webhook: WebhookProcess, kube: Client, namespace: str
) -> None:
    repository: dict[str, Any] = {
        "apiVersion": "stash.appscode.com/v1alpha1",
        "kind": "Repository",
        "metadata": {"name": "repo"},
        "spec": {
            "backend": {
                "local": {"mountPath": "/repo", "persistentVolumeClaim": {"claimName": "r"}},
                "storageSecretName": "s",
            }
        },
    }
    kube.create(repository, namespace)
    kube.create(batch("nightly", namespace, member("Deployment", "web")), namespace)
    wait_until_injected(kube, namespace, _probe_pod(namespace), timeout=60)
    # The tenant moves its Repository onto the node's files: refused, nothing injected.
    kube.patch(
        REPOSITORIES,
        "repo",
        {
            "spec": {
                "backend": {"local": {"persistentVolumeClaim": None, "hostPath": {"path": "/"}}}
            }
        },
        namespace=namespace,
    )
    refused = wait_until_injected(kube, namespace, _probe_pod(namespace), injected=False)
    assert not any(v.get("hostPath") for v in refused["spec"].get("volumes") or [])
    # A cluster admin allows it for the namespace: the sidecar mounts it.
    kube.patch(
        NAMESPACES,
        namespace,
        {"metadata": {"annotations": {PRIVILEGES_ANNOTATION: HOST_PATH}}},
    )
    allowed = wait_until_injected(kube, namespace, _probe_pod(namespace))
    local = [v for v in allowed["spec"]["volumes"] if v["name"] == "stash-local"]
    assert [v["hostPath"]["path"] for v in local] == ["/"]


def test_only_the_api_server_may_post_reviews_to_the_webhook(
    webhook: WebhookProcess, kube: Client, namespace: str, tmp_path: Path
) -> None:
    """A pod of any namespace that reaches the webhook's port would otherwise learn another
    namespace's invokers and Repository volumes by posting a review that names them."""
    kube.create(batch("nightly", namespace, member("Deployment", "web")), namespace)
    # The API server presents its client certificate: pods are still injected.
    wait_until_injected(kube, namespace, _probe_pod(namespace), timeout=60)
    doc = review(_probe_pod(namespace), namespace=namespace)
    body = json.dumps(doc).encode()
    as_apiserver = webhook.request("POST", WEBHOOK_PATH, body=body)
    assert as_apiserver[0] == 200
    # A client with no certificate, or one the API server's CA did not sign, gets no answer.
    stranger = CertificateAuthority.create("a-tenants-ca").issue("pod", server=False, client=True)
    cert, key = tmp_path / "pod.crt", tmp_path / "pod.key"
    cert.write_bytes(stranger.cert_pem)
    key.write_bytes(stranger.key_pem)
    for credentials in (None, (cert, key)):
        context = webhook.ssl_context(as_apiserver=False)
        if credentials is not None:
            context.load_cert_chain(*(str(p) for p in credentials))
        with pytest.raises((ssl.SSLError, ConnectionError)):
            _post_review(webhook.port, context, body)
    # The kubelet and Prometheus, which hold no such certificate, use the plain health port.
    assert webhook.probe("/readyz") == (200, b"ok")
    status, metrics_text = webhook.probe("/metrics")
    assert status == 200
    assert b"stash_webhook" in metrics_text
    assert webhook.probe(WEBHOOK_PATH)[0] in (404, 405)  # reviews are not served there


def _post_review(port: int, context: ssl.SSLContext, body: bytes) -> bytes:
    conn = http.client.HTTPSConnection("127.0.0.1", port, context=context, timeout=10)
    try:
        conn.request("POST", WEBHOOK_PATH, body=body)
        return conn.getresponse().read()
    finally:
        conn.close()
