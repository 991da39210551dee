"""Integration fixtures: one real cluster per test session — etcd, kube-apiserver,
kube-controller-manager, kube-scheduler and a real node (containerd, runc, kubelet) with the
project's image built from its Dockerfile — with the Stash CRDs installed, and a fresh namespace
per test."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from api.constants import WEBHOOK_NAME
from api.crd import all_crds
from controller.operator import Operator
from devcluster import ControlPlane, ensure_binaries, services
from devcluster.images import Builder, Images
from devcluster.node import Node
from devcluster.services import Service
from kube import Client
from kube.crds import install_crds
from kube.types import WEBHOOK_CONFIGS
from tests.integration.helpers import WebhookProcess, fresh_namespace, running_operator
from tests.manifests import load_all

REST_USER, REST_PASSWORD = "backup", "rest-secret-7f3a"
S3_ACCESS_KEY, S3_SECRET_KEY = "stash-access", "s3-secret-91bd"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/integration/" in str(item.fspath):
            item.add_marker(pytest.mark.integration)


@pytest.fixture(scope="session")
def images() -> Images:
    # Built before pytest starts (scripts/setup, with progress); cached by content.
    return Builder(progress=lambda msg: print(msg, flush=True)).all()


@pytest.fixture(scope="session")
def cluster(tmp_path_factory: pytest.TempPathFactory, images: Images) -> Iterator[Node]:
    """The control plane and its node, Ready."""
    # The binaries are normally built before pytest starts (scripts/test builds them with
    # progress on the terminal); building here only happens when pytest is run directly.
    binaries = ensure_binaries(progress=lambda msg: print(msg, flush=True))
    plane = ControlPlane(Path(tmp_path_factory.mktemp("control-plane")), binaries)
    plane.start()
    node = Node(plane, images, progress=lambda msg: print(msg, flush=True))
    try:
        client = Client.from_kubeconfig(str(plane.kubeconfig))
        install_crds(client, all_crds(), field_manager="stash-tests")
        # The roles a user installs with the operator, which it binds per invoker.
        for name in ("backup-job", "restore-job", "sidecar"):
            for obj in load_all(Path("manifests/rbac") / f"{name}.yaml"):
                client.apply(obj, field_manager="stash-tests")
        client.close()
        node.start()
        yield node
    finally:
        node.stop()
        plane.stop()


@pytest.fixture(scope="session")
def control_plane(cluster: Node) -> ControlPlane:
    return cluster.plane


@pytest.fixture(scope="session")
def kube(control_plane: ControlPlane) -> Iterator[Client]:
    client = Client.from_kubeconfig(str(control_plane.kubeconfig))
    yield client
    client.close()


@pytest.fixture
def namespace(kube: Client) -> Iterator[str]:
    with fresh_namespace(kube, "test") as name:
        yield name


@pytest.fixture(scope="module")
def webhook(
    control_plane: ControlPlane, kube: Client, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[WebhookProcess]:
    """``stash webhook`` as its own process, registered by URL, for one test module."""
    hook = WebhookProcess.start(control_plane.kubeconfig, tmp_path_factory.mktemp("webhook"))
    yield hook
    hook.stop()
    kube.delete(WEBHOOK_CONFIGS, WEBHOOK_NAME, missing_ok=True)


# -- the backup side's real components ------------------------------------------------------------


@pytest.fixture(scope="session")
def pushgateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    service = services.pushgateway(Path(tmp_path_factory.mktemp("pushgateway")))
    yield service
    service.stop()


@pytest.fixture(scope="session")
def rclone_binary() -> Path:
    return ensure_binaries(progress=lambda msg: print(msg, flush=True)).rclone


@pytest.fixture(scope="session")
def rest_server(rclone_binary: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    state = Path(tmp_path_factory.mktemp("rest-server"))
    service = services.rclone_rest(
        rclone_binary, state / "data", state, user=REST_USER, password=REST_PASSWORD
    )
    yield service
    service.stop()


@pytest.fixture(scope="session")
def s3_server(rclone_binary: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    state = Path(tmp_path_factory.mktemp("s3"))
    service = services.rclone_s3(rclone_binary, state / "data", state, S3_ACCESS_KEY, S3_SECRET_KEY)
    yield service
    service.stop()


@pytest.fixture(scope="session")
def postgres() -> Iterator[services.Postgres]:
    # Not under pytest's tmp dir: that is private to root, and PostgreSQL runs as postgres.
    state = Path(tempfile.mkdtemp(prefix="stash-pg-"))
    server = services.postgres(state)
    yield server
    server.stop()
    shutil.rmtree(state, ignore_errors=True)


# -- the operator and the webhook, for backups in real pods ---------------------------------------


@pytest.fixture
def operator(
    control_plane: ControlPlane, pushgateway: Service, images: Images
) -> Iterator[Operator]:
    """The operator, its Jobs and CronJobs running the image the node has."""
    with running_operator(
        control_plane.kubeconfig, pushgateway_url=pushgateway.url, image=images.stash.name
    ) as op:
        yield op


@pytest.fixture
def injecting_webhook(
    control_plane: ControlPlane,
    kube: Client,
    images: Images,
    pushgateway: Service,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[WebhookProcess]:
    """``stash webhook`` injecting sidecars of the image the node has; it and they log JSON."""
    hook = WebhookProcess.start(
        control_plane.kubeconfig,
        tmp_path_factory.mktemp("webhook"),
        image=images.stash.name,
        log_format="json",
    )
    yield hook
    hook.stop()
    kube.delete(WEBHOOK_CONFIGS, WEBHOOK_NAME, missing_ok=True)
