"""Certificates on disk, where the webhook reads them: ``tls.crt``, ``tls.key``, ``ca.crt``.

The serving pair and its CA are written as the kubelet writes a mounted Secret: into a new
hidden directory, published by renaming one symlink (``..data``), with ``tls.crt``, ``tls.key``
and ``ca.crt`` links through it. A reader never sees a half-written file, nor a new certificate
beside the old key: every file it opens belongs to one published pair.
"""

from __future__ import annotations

import datetime as dt
import os
import shutil
import tempfile
import time
from pathlib import Path

from certs.authority import CertificateAuthority, KeyPair

CERT_FILE = "tls.crt"
KEY_FILE = "tls.key"
CA_FILE = "ca.crt"
CA_KEY_FILE = "ca.key"
DATA_LINK = "..data"


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


def _read_or_none(path: Path) -> bytes | None:
    try:
        return path.read_bytes()
    except OSError:
        return None


def _symlink_atomically(path: Path, target: str) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{time.monotonic_ns()}")
    os.symlink(target, tmp)
    os.replace(tmp, path)


def write_serving_files(directory: Path, pair: KeyPair, ca_pem: bytes) -> bool:
    """Publish the serving pair and CA as one; True when anything changed."""
    directory.mkdir(parents=True, exist_ok=True)
    files = {
        CA_FILE: (ca_pem, 0o644),
        CERT_FILE: (pair.cert_pem, 0o644),
        KEY_FILE: (pair.key_pem, 0o600),
    }
    if all(_read_or_none(directory / name) == data for name, (data, _) in files.items()):
        return False
    version = Path(tempfile.mkdtemp(dir=directory, prefix="..pair-"))
    for name, (data, mode) in files.items():
        fd = os.open(version / name, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
        try:
            os.write(fd, data)
        finally:
            os.close(fd)
    _symlink_atomically(directory / DATA_LINK, version.name)
    for name in files:
        link = directory / name
        if not (link.is_symlink() and os.readlink(link) == f"{DATA_LINK}/{name}"):
            _symlink_atomically(link, f"{DATA_LINK}/{name}")
    for old in directory.glob("..pair-*"):
        if old.name != version.name:
            shutil.rmtree(old, ignore_errors=True)
    return True


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
