"""Repository ``wipeOut``: deleting the Repository deletes its data from REST and S3 backends,
never from local ones, and never blocks the deletion when it cannot wipe. The wipe runs as a Job
in the Repository's namespace (the operator fixture's real image, on the node), never in the
operator."""

from __future__ import annotations

from pathlib import Path

import pytest

from api.objects import JSON
from api.repository import Repository
from controller.operator import Operator
from controller.repository import WIPE_OUT_FINALIZER
from devcluster.services import Service
from engine.backend import backend_config
from engine.restic import Restic
from kube import Client, NotFound
from kube.types import EVENTS, REPOSITORIES, SECRETS
from tests.integration.conftest import REST_PASSWORD, REST_USER, S3_ACCESS_KEY, S3_SECRET_KEY
from tests.integration.helpers import eventually
from tests.integration.test_restic import make_data

PASSWORD = "wipe-pw-81c2"


def _create(kube: Client, namespace: str, backend: JSON, secret: dict[str, str]) -> Repository:
    kube.create(
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": "creds"},
            "stringData": secret,
        },
        namespace,
    )
    obj = {
        "apiVersion": "stash.appscode.com/v1alpha1",
        "kind": "Repository",
        "metadata": {"name": "repo", "namespace": namespace},
        "spec": {"backend": {"storageSecretName": "creds", **backend}, "wipeOut": True},
    }
    kube.create(obj, namespace)
    return Repository.model_validate(obj)


def _finalizers(kube: Client, namespace: str) -> list[str]:
    return list(kube.get(REPOSITORIES, "repo", namespace)["metadata"].get("finalizers") or [])


def _gone(kube: Client, namespace: str) -> bool:
    try:
        kube.get(REPOSITORIES, "repo", namespace)
    except NotFound:
        return True
    return False


def _events(kube: Client, namespace: str) -> list[str]:
    return [
        f"{e['reason']}: {e['message']}"
        for e in kube.list(EVENTS, namespace)["items"]
        if e["involvedObject"]["name"] == "repo"
    ]


def _backed_up(repo: Repository, secret: dict[str, str], tmp_path: Path) -> None:
    with Restic(backend_config(repo, secret)) as restic:
        restic.init_if_missing()
        restic.backup([str(make_data(tmp_path / "data"))], host="host-0")
        assert restic.exists()


@pytest.mark.parametrize("backend", ["rest", "s3"])
def test_deleting_a_wipe_out_repository_deletes_its_backend_data(
    operator: Operator,
    kube: Client,
    namespace: str,
    rest_server: Service,
    s3_server: Service,
    tmp_path: Path,
    backend: str,
) -> None:
    secret = {"RESTIC_PASSWORD": PASSWORD}
    if backend == "rest":
        spec: JSON = {"rest": {"url": f"{rest_server.url}/{namespace}/"}}
        secret.update(REST_SERVER_USERNAME=REST_USER, REST_SERVER_PASSWORD=REST_PASSWORD)
    else:
        spec = {"s3": {"endpoint": s3_server.url, "bucket": "wipe", "prefix": namespace}}
        secret.update(AWS_ACCESS_KEY_ID=S3_ACCESS_KEY, AWS_SECRET_ACCESS_KEY=S3_SECRET_KEY)
    repo = _create(kube, namespace, spec, secret)
    _backed_up(repo, secret, tmp_path)
    eventually(lambda: WIPE_OUT_FINALIZER in _finalizers(kube, namespace), 30, "the finalizer")

    kube.delete(REPOSITORIES, "repo", namespace)
    eventually(lambda: _gone(kube, namespace), 60, "the Repository to be deleted")
    with Restic(backend_config(repo, secret)) as restic:
        assert not restic.exists(), "the repository's data is still in the backend"
    events = _events(kube, namespace)
    assert any(e.startswith("WipeOutStarted: Job stash-wipe-repo") for e in events), events
    assert any(e.startswith("WipedOut: deleted") for e in events), events


def test_a_local_repository_keeps_its_data_and_is_deleted_at_once(
    operator: Operator, kube: Client, namespace: str, tmp_path: Path
) -> None:
    secret = {"RESTIC_PASSWORD": PASSWORD}
    repo = _create(kube, namespace, {"local": {"mountPath": str(tmp_path / "repo")}}, secret)
    _backed_up(repo, secret, tmp_path)
    kube.delete(REPOSITORIES, "repo", namespace)
    eventually(lambda: _gone(kube, namespace), 30, "the Repository to be deleted")
    with Restic(backend_config(repo, secret)) as restic:
        assert restic.exists()


def test_without_its_secret_the_data_is_kept_and_the_deletion_is_not_blocked(
    operator: Operator, kube: Client, namespace: str, rest_server: Service, tmp_path: Path
) -> None:
    secret = {
        "RESTIC_PASSWORD": PASSWORD,
        "REST_SERVER_USERNAME": REST_USER,
        "REST_SERVER_PASSWORD": REST_PASSWORD,
    }
    repo = _create(kube, namespace, {"rest": {"url": f"{rest_server.url}/{namespace}/"}}, secret)
    _backed_up(repo, secret, tmp_path)
    eventually(lambda: WIPE_OUT_FINALIZER in _finalizers(kube, namespace), 30, "the finalizer")
    kube.delete(SECRETS, "creds", namespace)
    kube.delete(REPOSITORIES, "repo", namespace)
    eventually(lambda: _gone(kube, namespace), 60, "the Repository to be deleted")
    with Restic(backend_config(repo, secret)) as restic:
        assert restic.exists()
    assert any(
        e.startswith(f"WipeOutSkipped: storage Secret {namespace}/creds not found")
        for e in _events(kube, namespace)
    ), _events(kube, namespace)
