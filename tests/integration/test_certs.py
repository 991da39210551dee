"""Self-signed certificates kept in Secrets: created once, renewed before expiry, the CA
written into the webhook configuration; idempotent and safe with replicas racing."""

from __future__ import annotations

import base64
import datetime as dt
import threading

from certs import CertificateAuthority, KeyPair
from certs.bootstrap import (
    CertificateSpec,
    bootstrap,
    ensure_serving_cert,
    service_dns_names,
)
from kube import Client
from kube.types import SECRETS, WEBHOOK_CONFIGS
from webhook.registration import webhook_configuration


def _spec(namespace: str) -> CertificateSpec:
    return CertificateSpec(
        namespace=namespace,
        ca_secret="stash-webhook-ca",
        tls_secret="stash-webhook-tls",
        dns_names=service_dns_names("stash-webhook", namespace),
    )


def _config(kube: Client, namespace: str) -> str:
    config = webhook_configuration(operator_namespace=namespace, service="stash-webhook")
    config["metadata"]["name"] = f"stash-webhook-{namespace}"
    kube.create(config)
    return str(config["metadata"]["name"])


def _versions(kube: Client, namespace: str, config: str) -> tuple[str, str, str]:
    return (
        kube.get(SECRETS, "stash-webhook-ca", namespace)["metadata"]["resourceVersion"],
        kube.get(SECRETS, "stash-webhook-tls", namespace)["metadata"]["resourceVersion"],
        kube.get(WEBHOOK_CONFIGS, config)["metadata"]["resourceVersion"],
    )


def test_bootstrap_creates_the_ca_the_certificate_and_the_ca_bundle(
    kube: Client, namespace: str
) -> None:
    config = _config(kube, namespace)
    ca, pair = bootstrap(kube, _spec(namespace), [config])
    pair.certificate.verify_directly_issued_by(ca.pair.certificate)
    bundle = kube.get(WEBHOOK_CONFIGS, config)["webhooks"][0]["clientConfig"]["caBundle"]
    assert base64.b64decode(bundle) == ca.cert_pem
    tls = kube.get(SECRETS, "stash-webhook-tls", namespace)
    assert tls["type"] == "kubernetes.io/tls"
    assert base64.b64decode(tls["data"]["ca.crt"]) == ca.cert_pem


def test_bootstrap_again_changes_nothing(kube: Client, namespace: str) -> None:
    config = _config(kube, namespace)
    bootstrap(kube, _spec(namespace), [config])
    before = _versions(kube, namespace, config)
    bootstrap(kube, _spec(namespace), [config])
    assert _versions(kube, namespace, config) == before


def test_two_replicas_racing_end_with_one_ca_and_one_certificate(
    kube: Client, namespace: str
) -> None:
    results: list[tuple[CertificateAuthority, KeyPair]] = []
    start = threading.Barrier(3)

    def replica() -> None:
        start.wait()
        results.append(bootstrap(kube, _spec(namespace)))

    threads = [threading.Thread(target=replica) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(results) == 3
    assert len({ca.cert_pem for ca, _ in results}) == 1
    stored = base64.b64decode(kube.get(SECRETS, "stash-webhook-tls", namespace)["data"]["tls.crt"])
    # Every replica ends up serving what the Secret holds after it settled.
    again = bootstrap(kube, _spec(namespace))[1]
    assert again.cert_pem == stored


def test_a_certificate_near_its_expiry_is_renewed(kube: Client, namespace: str) -> None:
    spec = _spec(namespace)
    ca, first = bootstrap(kube, spec)
    soon = first.not_after() - dt.timedelta(days=1)
    renewed = ensure_serving_cert(kube, ca, spec, now=soon)
    assert renewed.certificate.serial_number != first.certificate.serial_number
    stored = base64.b64decode(kube.get(SECRETS, "stash-webhook-tls", namespace)["data"]["tls.crt"])
    assert stored == renewed.cert_pem
    # Far from expiry, nothing happens.
    assert ensure_serving_cert(kube, ca, spec).cert_pem == renewed.cert_pem
