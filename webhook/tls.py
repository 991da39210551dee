"""The webhook's TLS context, reloaded when the certificate files change.

The reload runs on the server's event loop (``watch()`` is an asyncio task), so it never
overlaps a TLS handshake; connections already open keep their session, new ones get the new
certificate: renewing never drops a request and never needs a restart.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import logging
import ssl
from pathlib import Path

from cryptography import x509

log = logging.getLogger(__name__)


class CertificateReloader:
    def __init__(self, cert_file: Path, key_file: Path, interval: float = 2.0) -> None:
        self.cert_file = cert_file
        self.key_file = key_file
        self.interval = interval
        self.context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.context.minimum_version = ssl.TLSVersion.TLSv1_2
        self.not_after: dt.datetime | None = None
        self.reloads = 0
        self._digest = b""

    def _read(self) -> tuple[bytes, bytes]:
        return self.cert_file.read_bytes(), self.key_file.read_bytes()

    def load(self) -> bool:
        """Load the files if they changed; True when a new certificate is now served.

        A half-written or mismatched pair is refused (the old certificate stays in use).
        """
        try:
            cert, key = self._read()
        except OSError as exc:
            log.warning("certificate files not readable: %s", exc)
            return False
        digest = hashlib.sha256(cert + b"\0" + key).digest()
        if digest == self._digest:
            return False
        try:
            not_after = x509.load_pem_x509_certificate(cert).not_valid_after_utc
            self.context.load_cert_chain(str(self.cert_file), str(self.key_file))
        except (ValueError, ssl.SSLError, OSError) as exc:
            log.warning("not loading the new certificate (keeping the old one): %s", exc)
            return False
        self._digest = digest
        self.not_after = not_after
        self.reloads += 1
        log.info("serving certificate loaded (valid until %s)", not_after.isoformat())
        return True

    def problem(self) -> str | None:
        """Why the certificate cannot be served, or None when it is fine."""
        if self.not_after is None:
            return "no certificate loaded"
        if self.not_after <= dt.datetime.now(dt.UTC):
            return f"certificate expired at {self.not_after.isoformat()}"
        return None

    async def watch(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            self.load()
