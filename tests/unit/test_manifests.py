"""Hand-written manifests stay in step with the code that also builds them."""

from __future__ import annotations

import yaml

from tests.manifests import ROOT, load_all
from webhook.registration import webhook_configuration

WEBHOOK_DIR = ROOT / "manifests" / "webhook"


def test_the_webhook_manifest_is_what_registration_builds() -> None:
    (doc,) = load_all(WEBHOOK_DIR / "mutatingwebhookconfiguration.yaml")
    assert doc == webhook_configuration(operator_namespace="stash", service="stash-webhook")


def test_the_cert_manager_variant_differs_only_by_the_ca_injection_annotation() -> None:
    (plain,) = load_all(WEBHOOK_DIR / "mutatingwebhookconfiguration.yaml")
    (injected,) = load_all(WEBHOOK_DIR / "cert-manager" / "mutatingwebhookconfiguration.yaml")
    annotations = injected["metadata"].pop("annotations")
    assert annotations == {"cert-manager.io/inject-ca-from": "stash/stash-webhook"}
    assert injected == plain


def test_the_cert_manager_certificate_covers_the_service_names() -> None:
    docs = {
        (d["kind"], d["metadata"]["name"]): d
        for d in load_all(WEBHOOK_DIR / "cert-manager" / "certificate.yaml")
    }
    cert = docs[("Certificate", "stash-webhook")]
    assert cert["spec"]["secretName"] == "stash-webhook-tls"
    assert cert["spec"]["dnsNames"] == [
        "stash-webhook",
        "stash-webhook.stash",
        "stash-webhook.stash.svc",
        "stash-webhook.stash.svc.cluster.local",
    ]
    assert docs[("Issuer", "stash-ca")]["spec"]["ca"]["secretName"] == "stash-webhook-ca"


def test_no_rbac_rule_grants_wildcards() -> None:
    for path in (ROOT / "manifests" / "rbac").glob("*.yaml"):
        for doc in yaml.safe_load_all(path.read_text()):
            for rule in doc.get("rules", []) if doc else []:
                assert "*" not in rule["verbs"], path
                assert "*" not in rule["resources"], path
