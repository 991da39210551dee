"""Certificates: a CA, and the serving and client certificates it issues.

Used by the webhook (serving cert, caBundle) and by the local control plane (its whole PKI).
"""

from certs.authority import CertificateAuthority, KeyPair, generate_signing_key

__all__ = ["CertificateAuthority", "KeyPair", "generate_signing_key"]
