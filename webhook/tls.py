"""The webhook's TLS: the serving certificate, swapped for a new one only once that one verified.

The listening socket keeps one *front* context for its whole life; its SNI callback hands every
new handshake the *current* context. A reload reads the certificate and key once, builds a
brand-new context from those bytes (OpenSSL checks that the key matches the certificate), and
only then makes it current: a half-written file or a new certificate beside the old key is
refused and the old pair keeps being served. Nothing is ever loaded into a context that is
serving (loading into a live context drops its old key before a mismatch is refused, which
left every new handshake failing). Connections already open keep their session.

``problem()`` feeds ``/readyz``: no certificate, an expired one, or a pair on disk that differs
from the one served and does not verify.

With a client CA (``client_ca_file``), every handshake must present a certificate that CA
signed — the API server's, given to it by its ``AdmissionConfiguration`` — so no pod can post
reviews (docs/security.md, "Network"). The CA file is read with the pair and swapped with it:
a CA bundle that does not parse keeps the old one.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import logging
import os
import ssl
import tempfile
from pathlib import Path

from cryptography import x509

log = logging.getLogger(__name__)
READ_ATTEMPTS = 3


def _context(client_ca: bytes | None = None) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    if client_ca is not None:
        context.verify_mode = ssl.CERT_REQUIRED
        context.load_verify_locations(cadata=client_ca.decode("ascii", errors="replace"))
    return context


def context_from_pem(cert: bytes, key: bytes, client_ca: bytes | None = None) -> ssl.SSLContext:
    """A new server context serving ``cert`` with ``key`` (and, with ``client_ca``, requiring a
    client certificate it signed); ssl.SSLError when they do not pair or the CA does not
    parse."""
    context = _context(client_ca)
    _load_pem(context, cert, key)
    return context


def _load_pem(context: ssl.SSLContext, cert: bytes, key: bytes) -> None:
    """``load_cert_chain`` reads only files: the bytes go to a private temporary directory (on
    tmpfs where there is one) that is removed at once."""
    shm = Path("/dev/shm")  # noqa: S108 - tmpfs: the key never reaches a disk
    with tempfile.TemporaryDirectory(dir=shm if shm.is_dir() else None) as tmp:
        cert_path, key_path = Path(tmp) / "tls.crt", Path(tmp) / "tls.key"
        for path, data in ((cert_path, cert), (key_path, key)):
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            try:
                os.write(fd, data)
            finally:
                os.close(fd)
        context.load_cert_chain(str(cert_path), str(key_path))


class CertificateReloader:
    def __init__(
        self,
        cert_file: Path,
        key_file: Path,
        interval: float = 2.0,
        client_ca_file: Path | None = None,
    ) -> None:
        self.cert_file = cert_file
        self.key_file = key_file
        self.client_ca_file = client_ca_file
        self.interval = interval
        self.current: ssl.SSLContext | None = None
        # What the listening socket holds; see _select. OpenSSL takes a handshake's verify mode
        # from this context (the SNI callback swaps only certificates and the CA store), so
        # with a client CA it requires a client certificate from the start.
        self.front = _context()
        if client_ca_file is not None:
            self.front.verify_mode = ssl.CERT_REQUIRED
        self.front.sni_callback = self._select
        self.not_after: dt.datetime | None = None
        self.reloads = 0
        self.last_error: str | None = None
        self._digest = b""
        self._refused = b""

    @property
    def context(self) -> ssl.SSLContext:
        """The context to give the server's listening socket."""
        return self.front

    def _select(
        self, connection: ssl.SSLObject | ssl.SSLSocket, _server_name: str | None, _: object
    ) -> None:
        current = self.current
        if current is not None:
            connection.context = current

    def _read(self) -> tuple[bytes, bytes]:
        """Certificate and key as one snapshot. Published as one version directory behind a
        symlink (``certs.files``, a Secret volume): both are read from the version they
        resolve to, which is never rewritten, only replaced (read again if it went meanwhile).
        Plain files: read again while the certificate changes under us."""
        if self.cert_file.is_symlink() or self.key_file.is_symlink():
            for _ in range(READ_ATTEMPTS * 100):
                cert_path = Path(os.path.realpath(self.cert_file))
                key_path = Path(os.path.realpath(self.key_file))
                if cert_path.parent != key_path.parent:
                    continue  # resolved across a swap (or not one version directory at all)
                try:
                    return cert_path.read_bytes(), key_path.read_bytes()
                except FileNotFoundError:
                    continue  # that version was replaced and removed between resolving and reading
        cert = self.cert_file.read_bytes()
        for _ in range(READ_ATTEMPTS):
            key = self.key_file.read_bytes()
            again = self.cert_file.read_bytes()
            if again == cert:
                return cert, key
            cert = again
        return cert, self.key_file.read_bytes()

    def load(self) -> bool:
        """Serve the files' pair if it changed and verifies; True when a new one is served."""
        try:
            cert, key = self._read()
            client_ca = self.client_ca_file.read_bytes() if self.client_ca_file else None
        except OSError as exc:
            self.last_error = f"certificate files not readable: {exc}"
            log.warning("%s", self.last_error)
            return False
        digest = hashlib.sha256(cert + b"\0" + key + b"\0" + (client_ca or b"")).digest()
        if digest == self._digest:
            self.last_error = None  # the files are (back to) the pair being served
            return False
        if digest == self._refused:
            return False
        try:
            not_after = x509.load_pem_x509_certificate(cert).not_valid_after_utc
            context = context_from_pem(cert, key, client_ca)
        except (ValueError, ssl.SSLError, OSError) as exc:
            self._refused = digest
            self.last_error = f"the certificate on disk is not served: {exc}"
            log.warning("not loading the new certificate (keeping the old one): %s", exc)
            return False
        if self.current is None:  # not serving yet; handshakes the SNI callback misses get it
            _load_pem(self.front, cert, key)
            if client_ca is not None:
                self.front.load_verify_locations(cadata=client_ca.decode("ascii", "replace"))
        self.current = context
        self._digest = digest
        self._refused = b""
        self.last_error = None
        self.not_after = not_after
        self.reloads += 1
        log.info("serving certificate loaded (valid until %s)", not_after.isoformat())
        return True

    def problem(self) -> str | None:
        """Why the certificate cannot be served, or None when it is fine."""
        self.load()  # a renewal is picked up at once; a broken pair on disk is reported
        if self.current is None or self.not_after is None:
            return self.last_error or "no certificate loaded"
        if self.not_after <= dt.datetime.now(dt.UTC):
            return f"certificate expired at {self.not_after.isoformat()}"
        if self.last_error:
            return self.last_error
        return None

    async def watch(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            self.load()
