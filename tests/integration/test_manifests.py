"""Every deployable manifest is accepted by the real API server (server-side dry run): both
kustomize variants as `kubectl apply -k` would send them, the example Task and the samples."""

from __future__ import annotations

import contextlib
import subprocess
from typing import Any

import pytest
import yaml

from api.crd import KINDS
from devcluster import ensure_binaries
from kube import AlreadyExists, Client, NotFound
from tests.integration.helpers import eventually
from tests.manifests import ROOT, load_all

CERT_MANAGER = "cert-manager.io/v1"  # not installed here: its kinds are checked by schema only


def kustomize(directory: str) -> list[dict[str, Any]]:
    kubectl = ensure_binaries(progress=lambda _: None).kubectl
    out = subprocess.run(
        [str(kubectl), "kustomize", str(ROOT / directory)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return [doc for doc in yaml.safe_load_all(out) if doc]


VARIANTS = {
    name: kustomize(path)
    for name, path in (("self-signed", "manifests"), ("cert-manager", "manifests/cert-manager"))
}
DOCS = [
    (variant, doc)
    for variant, docs in VARIANTS.items()
    for doc in docs
    if doc["apiVersion"] != CERT_MANAGER
] + [("example", doc) for doc in load_all(ROOT / "manifests" / "tasks" / "postgres.yaml")]
SAMPLES = [
    doc for p in sorted((ROOT / "manifests" / "samples").rglob("*.yaml")) for doc in load_all(p)
]


@pytest.fixture(scope="module")
def stash_namespace(kube: Client) -> str:
    with contextlib.suppress(AlreadyExists):
        kube.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "stash"}})
    return "stash"


def _accepted(kube: Client, doc: dict[str, Any], namespace: str | None = None) -> None:
    def accepted() -> dict[str, Any] | None:
        try:
            return kube.apply(doc, field_manager="stash-tests", dry_run=True, namespace=namespace)
        except NotFound:
            return None  # the namespace's admission may lag its creation by a moment

    assert eventually(accepted, 10, f"{doc['kind']} accepted")["metadata"]["name"]


@pytest.mark.parametrize(
    ("variant", "doc"),
    DOCS,
    ids=lambda d: d if isinstance(d, str) else f"{d['kind']}/{d['metadata']['name']}",
)
def test_a_deployable_manifest_is_accepted_by_the_api_server(
    kube: Client, stash_namespace: str, variant: str, doc: dict[str, Any]
) -> None:
    _accepted(kube, doc)


@pytest.mark.parametrize("doc", SAMPLES, ids=lambda d: f"{d['kind']}/{d['metadata']['name']}")
def test_a_sample_is_accepted_by_the_api_server(
    kube: Client, namespace: str, doc: dict[str, Any]
) -> None:
    _accepted(kube, doc, namespace)


def test_the_variants_hold_the_whole_product_and_differ_only_in_certificates() -> None:
    kinds = {(d["kind"], d["metadata"]["name"]) for d in VARIANTS["self-signed"]}
    assert ("Deployment", "stash-operator") in kinds
    assert ("MutatingWebhookConfiguration", "stash-webhook") in kinds
    assert {name for kind, name in kinds if kind == "ClusterRole"} == {
        "stash-operator",
        "stash-webhook",
        "stash-sidecar",
        "stash-backup-job",
        "stash-restore-job",
        "stash-restore-init",
        "stash-repository-init",
        "stash-edit",
        "stash-view",
    }
    crds = {name for kind, name in kinds if kind == "CustomResourceDefinition"}
    assert crds == {info.crd_name for info in KINDS}  # not the optional AppBinding's
    cert = {(d["kind"], d["metadata"]["name"]) for d in VARIANTS["cert-manager"]}
    assert cert - kinds == {
        ("Issuer", "stash-selfsigned"),
        ("Certificate", "stash-webhook-ca"),
        ("Issuer", "stash-ca"),
        ("Certificate", "stash-webhook"),
    }
    deployment = next(d for d in VARIANTS["cert-manager"] if d["kind"] == "Deployment")
    pod = deployment["spec"]["template"]["spec"]
    assert "--certs=files" in pod["containers"][1]["args"]
    assert {"name": "certs", "secret": {"secretName": "stash-webhook-tls"}} in pod["volumes"]
