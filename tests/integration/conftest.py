"""Integration fixtures: one real control plane (etcd, kube-apiserver, kube-controller-manager)
per test session, with the Stash CRDs installed, and a fresh namespace per test."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from api.constants import WEBHOOK_NAME
from api.crd import all_crds
from devcluster import ControlPlane, ensure_binaries
from kube import Client
from kube.crds import install_crds
from kube.types import NAMESPACES, WEBHOOK_CONFIGS
from tests.integration.helpers import WebhookProcess


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/integration/" in str(item.fspath):
            item.add_marker(pytest.mark.integration)


@pytest.fixture(scope="session")
def control_plane(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ControlPlane]:
    # The binaries are normally built before pytest starts (scripts/test builds them with
    # progress on the terminal); building here only happens when pytest is run directly.
    binaries = ensure_binaries(progress=lambda msg: print(msg, flush=True))
    plane = ControlPlane(Path(tmp_path_factory.mktemp("control-plane")), binaries)
    plane.start()
    try:
        client = Client.from_kubeconfig(str(plane.kubeconfig))
        install_crds(client, all_crds(), field_manager="stash-tests")
        client.close()
        yield plane
    finally:
        plane.stop()


@pytest.fixture(scope="session")
def kube(control_plane: ControlPlane) -> Iterator[Client]:
    client = Client.from_kubeconfig(str(control_plane.kubeconfig))
    yield client
    client.close()


@pytest.fixture
def namespace(kube: Client) -> Iterator[str]:
    name = f"test-{uuid.uuid4().hex[:8]}"
    kube.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})
    yield name
    kube.delete(NAMESPACES, name, missing_ok=True)


@pytest.fixture(scope="module")
def webhook(
    control_plane: ControlPlane, kube: Client, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[WebhookProcess]:
    """``stash webhook`` as its own process, registered by URL, for one test module."""
    hook = WebhookProcess.start(control_plane.kubeconfig, tmp_path_factory.mktemp("webhook"))
    yield hook
    hook.stop()
    kube.delete(WEBHOOK_CONFIGS, WEBHOOK_NAME, missing_ok=True)
