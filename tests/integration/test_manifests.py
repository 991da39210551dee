"""Every deployable manifest is accepted by the real API server (server-side dry run)."""

from __future__ import annotations

import contextlib
from typing import Any

import pytest

from kube import AlreadyExists, Client, NotFound
from tests.integration.helpers import eventually
from tests.manifests import ROOT, load_all

APPLIED = [
    *sorted((ROOT / "manifests" / "rbac").glob("*.yaml")),
    ROOT / "manifests" / "webhook" / "mutatingwebhookconfiguration.yaml",
    ROOT / "manifests" / "webhook" / "cert-manager" / "mutatingwebhookconfiguration.yaml",
]
DOCS = [doc for path in APPLIED for doc in load_all(path)]


@pytest.fixture(scope="module")
def stash_namespace(kube: Client) -> str:
    with contextlib.suppress(AlreadyExists):
        kube.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "stash"}})
    return "stash"


@pytest.mark.parametrize("doc", DOCS, ids=lambda d: f"{d['kind']}/{d['metadata']['name']}")
def test_a_manifest_is_accepted_by_the_api_server(
    kube: Client, stash_namespace: str, doc: dict[str, Any]
) -> None:
    def accepted() -> dict[str, Any] | None:
        try:
            return kube.apply(doc, field_manager="stash-tests", dry_run=True)
        except NotFound:
            return None  # the namespace's admission may lag its creation by a moment

    assert eventually(accepted, 10, f"{doc['kind']} accepted")["metadata"]["name"]
