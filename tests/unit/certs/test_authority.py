"""The CA issues serving and client certificates that verify against it."""

from __future__ import annotations

import datetime as dt
import ipaddress

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from certs import CertificateAuthority, generate_signing_key


@pytest.fixture(scope="module")
def ca() -> CertificateAuthority:
    return CertificateAuthority.create("test-ca")


def _verify(ca: CertificateAuthority, cert: x509.Certificate) -> None:
    public = ca.pair.certificate.public_key()
    assert isinstance(public, ec.EllipticCurvePublicKey)
    cert.verify_directly_issued_by(ca.pair.certificate)


def test_a_serving_certificate_carries_its_dns_and_ip_names(ca: CertificateAuthority) -> None:
    pair = ca.issue(
        "stash-webhook", dns_names=["stash-webhook.stash.svc"], ip_addresses=["127.0.0.1"]
    )
    cert = pair.certificate
    _verify(ca, cert)
    sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert sans.get_values_for_type(x509.DNSName) == ["stash-webhook.stash.svc"]
    assert sans.get_values_for_type(x509.IPAddress) == [ipaddress.ip_address("127.0.0.1")]
    usages = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(usages) == [ExtendedKeyUsageOID.SERVER_AUTH]


def test_a_client_certificate_names_its_groups_as_organizations(ca: CertificateAuthority) -> None:
    cert = ca.issue(
        "admin", organizations=["system:masters"], server=False, client=True
    ).certificate
    _verify(ca, cert)
    orgs = cert.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)
    assert [o.value for o in orgs] == ["system:masters"]
    usages = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(usages) == [ExtendedKeyUsageOID.CLIENT_AUTH]


def test_a_leaf_never_outlives_its_ca() -> None:
    short = CertificateAuthority.create("short", valid_for=dt.timedelta(days=1))
    leaf = short.issue("x", valid_for=dt.timedelta(days=90))
    assert leaf.not_after() <= short.pair.not_after()


def test_a_certificate_for_nothing_is_refused(ca: CertificateAuthority) -> None:
    with pytest.raises(ValueError, match="serving, for clients, or both"):
        ca.issue("x", server=False, client=False)


def test_a_ca_survives_a_round_trip_through_pem(ca: CertificateAuthority) -> None:
    again = CertificateAuthority.load(ca.pair)
    _verify(ca, again.issue("y").certificate)


def test_a_signing_key_pair_is_a_public_and_a_private_pem() -> None:
    pair = generate_signing_key()
    assert pair.cert_pem.startswith(b"-----BEGIN PUBLIC KEY-----")
    assert pair.key_pem.startswith(b"-----BEGIN PRIVATE KEY-----")
