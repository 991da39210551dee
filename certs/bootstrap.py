"""Self-signed mode: a CA kept in a Secret, a serving certificate renewed before expiry, and
the CA written into the MutatingWebhookConfiguration's ``caBundle``.

Every step reads the current state and converges; writes use create-or-read and
resourceVersion preconditions, so two replicas racing end with one CA and one certificate.
``renewal_reason`` is the pure decision; ``bootstrap`` applies it.
"""

from __future__ import annotations

import base64
import datetime as dt
import ipaddress
import logging
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.exceptions import InvalidSignature

from certs.authority import DEFAULT_LEAF_VALIDITY, CertificateAuthority, KeyPair
from certs.files import write_serving_files
from kube import AlreadyExists, Client, Conflict, NotFound
from kube.types import SECRETS, WEBHOOK_CONFIGS

log = logging.getLogger(__name__)

CERTS_FIELD_MANAGER = "stash-certs"
CONFLICT_RETRIES = 5


@dataclass(frozen=True)
class CertificateSpec:
    namespace: str
    ca_secret: str
    tls_secret: str
    dns_names: tuple[str, ...]
    ip_addresses: tuple[str, ...] = ()
    validity: dt.timedelta = DEFAULT_LEAF_VALIDITY
    # Renew when less than this share of the lifetime is left (cert-manager renews at 1/3).
    renew_fraction: float = 1 / 3


def service_dns_names(service: str, namespace: str) -> tuple[str, ...]:
    return (
        service,
        f"{service}.{namespace}",
        f"{service}.{namespace}.svc",
        f"{service}.{namespace}.svc.cluster.local",
    )


def renewal_reason(  # noqa: PLR0911 - one return per reason, in the order they are checked
    pair: KeyPair | None, ca: CertificateAuthority, spec: CertificateSpec, now: dt.datetime
) -> str | None:
    """Why the serving certificate must be (re)issued, or None when it is good."""
    if pair is None:
        return "no serving certificate yet"
    try:
        cert = pair.certificate
    except ValueError:
        return "the stored certificate does not parse"
    try:
        cert.verify_directly_issued_by(ca.pair.certificate)
    except (ValueError, TypeError, InvalidSignature):
        return "the certificate was not issued by the current CA"
    lifetime = cert.not_valid_after_utc - cert.not_valid_before_utc
    if cert.not_valid_after_utc - now < lifetime * spec.renew_fraction:
        return f"the certificate expires at {cert.not_valid_after_utc.isoformat()}"
    try:
        sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return "the certificate has no subject alternative names"
    if set(sans.get_values_for_type(x509.DNSName)) != set(spec.dns_names) or set(
        sans.get_values_for_type(x509.IPAddress)
    ) != {ipaddress.ip_address(ip) for ip in spec.ip_addresses}:
        return "the certificate's names differ from the service's"
    return None


def _decode(secret: dict[str, Any], key: str) -> bytes | None:
    value = (secret.get("data") or {}).get(key)
    return base64.b64decode(value) if value else None


def _encode(data: dict[str, bytes]) -> dict[str, str]:
    return {k: base64.b64encode(v).decode() for k, v in data.items()}


def _secret(name: str, namespace: str, type_: str, data: dict[str, bytes]) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "labels": {"app.kubernetes.io/name": "stash", "app.kubernetes.io/component": "webhook"},
        },
        "type": type_,
        "data": _encode(data),
    }


def ensure_ca(client: Client, spec: CertificateSpec) -> CertificateAuthority:
    """The CA from its Secret, creating it once (the first replica to create it wins)."""
    for _ in range(CONFLICT_RETRIES):
        try:
            secret = client.get(SECRETS, spec.ca_secret, spec.namespace)
        except NotFound:
            ca = CertificateAuthority.create("stash-webhook-ca")
            body = _secret(
                spec.ca_secret,
                spec.namespace,
                "kubernetes.io/tls",
                {"tls.crt": ca.cert_pem, "tls.key": ca.pair.key_pem},
            )
            try:
                client.create(body)
                log.info("created CA secret %s/%s", spec.namespace, spec.ca_secret)
                return ca
            except AlreadyExists:
                continue  # another replica won: read theirs
        cert, key = _decode(secret, "tls.crt"), _decode(secret, "tls.key")
        if not cert or not key:
            raise ValueError(f"Secret {spec.namespace}/{spec.ca_secret} has no tls.crt/tls.key")
        return CertificateAuthority.load(KeyPair(cert, key))
    raise Conflict(message=f"could not settle Secret {spec.namespace}/{spec.ca_secret}")


def ensure_serving_cert(
    client: Client,
    ca: CertificateAuthority,
    spec: CertificateSpec,
    now: dt.datetime | None = None,
) -> KeyPair:
    """The serving certificate from its Secret, (re)issued when ``renewal_reason`` says so."""
    for _ in range(CONFLICT_RETRIES):
        when = now or dt.datetime.now(dt.UTC)
        try:
            secret: dict[str, Any] | None = client.get(SECRETS, spec.tls_secret, spec.namespace)
        except NotFound:
            secret = None
        current = None
        if secret is not None:
            cert, key = _decode(secret, "tls.crt"), _decode(secret, "tls.key")
            current = KeyPair(cert, key) if cert and key else None
        reason = renewal_reason(current, ca, spec, when)
        if reason is None and current is not None:
            return current
        pair = ca.issue(
            spec.dns_names[0] if spec.dns_names else "stash-webhook",
            dns_names=spec.dns_names,
            ip_addresses=spec.ip_addresses,
            valid_for=spec.validity,
        )
        body = _secret(
            spec.tls_secret,
            spec.namespace,
            "kubernetes.io/tls",
            {"tls.crt": pair.cert_pem, "tls.key": pair.key_pem, "ca.crt": ca.cert_pem},
        )
        try:
            if secret is None:
                client.create(body)
            else:
                body["metadata"]["resourceVersion"] = secret["metadata"]["resourceVersion"]
                client.request("PUT", SECRETS.path(spec.namespace, spec.tls_secret), body=body)
        except (AlreadyExists, Conflict):
            continue  # another replica wrote first: judge theirs
        log.info("issued serving certificate (%s)", reason)
        return pair
    raise Conflict(message=f"could not settle Secret {spec.namespace}/{spec.tls_secret}")


def inject_ca_bundle(client: Client, webhook_config: str, ca_pem: bytes) -> bool:
    """Write the CA into every webhook of the configuration; False when it was already there."""
    bundle = base64.b64encode(ca_pem).decode()
    for _ in range(CONFLICT_RETRIES):
        config = client.get(WEBHOOK_CONFIGS, webhook_config)
        hooks = config.get("webhooks") or []
        if all(h.get("clientConfig", {}).get("caBundle") == bundle for h in hooks):
            return False
        for hook in hooks:
            hook.setdefault("clientConfig", {})["caBundle"] = bundle
        try:
            client.request("PUT", WEBHOOK_CONFIGS.path(name=webhook_config), body=config)
            return True
        except Conflict:
            continue
    raise Conflict(message=f"could not update caBundle of {webhook_config}")


def bootstrap(
    client: Client, spec: CertificateSpec, webhook_configs: Sequence[str] = ()
) -> tuple[CertificateAuthority, KeyPair]:
    """Converge CA, serving certificate and caBundles; safe to run again at any time."""
    ca = ensure_ca(client, spec)
    pair = ensure_serving_cert(client, ca, spec)
    for name in webhook_configs:
        try:
            if inject_ca_bundle(client, name, ca.cert_pem):
                log.info("wrote the CA into %s", name)
        except NotFound:
            log.warning("MutatingWebhookConfiguration %s not found: caBundle not written", name)
    return ca, pair


class CertificateKeeper:
    """Re-runs ``bootstrap`` every ``interval`` and writes the result where the server reads it.

    Run by every webhook replica in self-signed mode: the Secrets make them agree, the files
    let each reload without a restart (see ``webhook.tls``).
    """

    def __init__(
        self,
        client: Client,
        spec: CertificateSpec,
        directory: Path,
        webhook_configs: Sequence[str] = (),
        interval: float = 600.0,
    ) -> None:
        self.client = client
        self.spec = spec
        self.directory = directory
        self.webhook_configs = tuple(webhook_configs)
        self.interval = interval
        self._stop = threading.Event()

    def converge(self) -> bool:
        """One round; True when the files changed."""
        ca, pair = bootstrap(self.client, self.spec, self.webhook_configs)
        return write_serving_files(self.directory, pair, ca.cert_pem)

    def run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.converge()
            except Exception:  # keep serving the current certificate; try again next round
                log.exception("certificate renewal round failed")

    def start(self) -> CertificateKeeper:
        threading.Thread(target=self.run, name="certificate-keeper", daemon=True).start()
        return self

    def stop(self) -> None:
        self._stop.set()
