"""Certificates on disk, where the webhook reads them: ``tls.crt``, ``tls.key``, ``ca.crt``.

Writes are atomic per file (temp file + rename), so a reader never sees a half-written PEM;
a reader that catches a new certificate with the old key refuses the pair and tries again.
"""

from __future__ import annotations

import datetime as dt
import os
import tempfile
from pathlib import Path

from certs.authority import CertificateAuthority, KeyPair

CERT_FILE = "tls.crt"
KEY_FILE = "tls.key"
CA_FILE = "ca.crt"
CA_KEY_FILE = "ca.key"


def _atomic_write(path: Path, data: bytes, mode: int) -> bool:
    if path.exists() and path.read_bytes() == data:
        return False
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        os.fchmod(fd, mode)
        os.write(fd, data)
    finally:
        os.close(fd)
    os.replace(tmp, path)
    return True


def write_serving_files(directory: Path, pair: KeyPair, ca_pem: bytes) -> bool:
    """Write the serving pair and CA; True when anything changed. The key goes last."""
    directory.mkdir(parents=True, exist_ok=True)
    changed = _atomic_write(directory / CA_FILE, ca_pem, 0o644)
    changed |= _atomic_write(directory / CERT_FILE, pair.cert_pem, 0o644)
    changed |= _atomic_write(directory / KEY_FILE, pair.key_pem, 0o600)
    return changed


def ensure_local_files(
    directory: Path,
    dns_names: tuple[str, ...] = ("localhost",),
    ip_addresses: tuple[str, ...] = ("127.0.0.1",),
    validity: dt.timedelta = dt.timedelta(days=30),
    renew: bool = False,
) -> bytes:
    """A local CA and serving certificate in ``directory`` (for development and tests).

    The CA is created once and kept (``ca.key`` beside it); the serving certificate is issued
    when missing, or again when ``renew`` is set. Returns the CA certificate (the caBundle).
    """
    directory.mkdir(parents=True, exist_ok=True)
    ca_cert, ca_key = directory / CA_FILE, directory / CA_KEY_FILE
    if ca_cert.exists() and ca_key.exists():
        ca = CertificateAuthority.load(KeyPair(ca_cert.read_bytes(), ca_key.read_bytes()))
    else:
        ca = CertificateAuthority.create("stash-webhook-local-ca")
        _atomic_write(ca_key, ca.pair.key_pem, 0o600)
        _atomic_write(ca_cert, ca.cert_pem, 0o644)
    if renew or not (directory / CERT_FILE).exists() or not (directory / KEY_FILE).exists():
        pair = ca.issue(
            dns_names[0] if dns_names else "localhost",
            dns_names=dns_names,
            ip_addresses=ip_addresses,
            valid_for=validity,
        )
        write_serving_files(directory, pair, ca.cert_pem)
    return ca.cert_pem
