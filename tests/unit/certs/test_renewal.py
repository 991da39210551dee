"""When the serving certificate must be reissued (the pure decision of self-signed mode)."""

from __future__ import annotations

import datetime as dt

import pytest

from certs import CertificateAuthority, KeyPair
from certs.bootstrap import CertificateSpec, renewal_reason, service_dns_names

SPEC = CertificateSpec(
    namespace="stash",
    ca_secret="stash-webhook-ca",
    tls_secret="stash-webhook-tls",
    dns_names=service_dns_names("stash-webhook", "stash"),
)
NOW = dt.datetime.now(dt.UTC)


@pytest.fixture(scope="module")
def ca() -> CertificateAuthority:
    return CertificateAuthority.create("ca")


def _issue(ca: CertificateAuthority, names: tuple[str, ...] = SPEC.dns_names) -> KeyPair:
    return ca.issue(names[0], dns_names=names, valid_for=dt.timedelta(days=90))


def test_a_fresh_certificate_for_the_service_is_kept(ca: CertificateAuthority) -> None:
    assert renewal_reason(_issue(ca), ca, SPEC, NOW) is None


def test_no_certificate_means_issue_one(ca: CertificateAuthority) -> None:
    assert renewal_reason(None, ca, SPEC, NOW) == "no serving certificate yet"


def test_a_certificate_in_its_last_third_is_renewed(ca: CertificateAuthority) -> None:
    assert renewal_reason(_issue(ca), ca, SPEC, NOW + dt.timedelta(days=59)) is None
    reason = renewal_reason(_issue(ca), ca, SPEC, NOW + dt.timedelta(days=61))
    assert reason is not None
    assert reason.startswith("the certificate expires at")


def test_a_certificate_from_another_ca_is_replaced(ca: CertificateAuthority) -> None:
    other = CertificateAuthority.create("other")
    assert renewal_reason(_issue(other), ca, SPEC, NOW) == (
        "the certificate was not issued by the current CA"
    )


def test_a_certificate_for_other_names_is_replaced(ca: CertificateAuthority) -> None:
    assert renewal_reason(_issue(ca, ("old-name.stash.svc",)), ca, SPEC, NOW) == (
        "the certificate's names differ from the service's"
    )


def test_garbage_in_the_secret_is_replaced(ca: CertificateAuthority) -> None:
    assert renewal_reason(KeyPair(b"junk", b"junk"), ca, SPEC, NOW) == (
        "the stored certificate does not parse"
    )
