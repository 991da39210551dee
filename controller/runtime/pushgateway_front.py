"""The Pushgateway's only public door: reads pass, writes are refused.

The Pushgateway in the operator's pod listens on the pod's loopback only; the operator, its only
writer, pushes there (``controller.sessions.metric_groups``). This small server, in the operator's
process, answers on the Pushgateway's public port (56789, the Service Prometheus scrapes): a
``GET`` or ``HEAD`` of ``/metrics``, ``/-/healthy`` or ``/-/ready`` is passed through, every
other method gets 405 and every other path 404, with a sentence saying why. A pod in a tenant's
namespace can then neither push, overwrite nor delete anyone's metrics (docs/security.md).
"""

from __future__ import annotations

import logging
import threading
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.error import HTTPError, URLError

log = logging.getLogger(__name__)

READ_PATHS = frozenset({"/metrics", "/-/healthy", "/-/ready"})
UPSTREAM_TIMEOUT = 10.0
CLIENT_TIMEOUT = 15.0  # a connection that sends nothing for this long is closed
CHUNK = 64 * 1024
WRITE_REFUSED = (
    b"this Pushgateway takes no pushes: the stash operator alone writes its metrics, from the "
    b"sessions' status\n"
)


class _FrontHandler(BaseHTTPRequestHandler):
    """Relays reads to the Pushgateway at ``upstream``; refuses every write."""

    upstream = ""
    timeout = CLIENT_TIMEOUT

    def do_GET(self) -> None:
        self._read(body=True)

    def do_HEAD(self) -> None:
        self._read(body=False)

    def do_PUT(self) -> None:
        self._refuse()

    def do_POST(self) -> None:
        self._refuse()

    def do_DELETE(self) -> None:
        self._refuse()

    def do_PATCH(self) -> None:
        self._refuse()

    def _refuse(self) -> None:
        self._answer(405, WRITE_REFUSED, allow="GET, HEAD")

    def _read(self, *, body: bool) -> None:
        path = self.path.split("?", 1)[0]
        if path not in READ_PATHS:
            self._answer(404, b"not found: only /metrics, /-/healthy and /-/ready\n")
            return
        request = urllib.request.Request(f"{self.upstream}{path}", method="GET")  # noqa: S310
        try:
            with urllib.request.urlopen(request, timeout=UPSTREAM_TIMEOUT) as reply:  # noqa: S310 - the pod's own Pushgateway
                self._relay(reply.status, reply, body=body)
        except HTTPError as exc:
            self._relay(exc.code, exc, body=body)
        except (URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            self._answer(502, f"the Pushgateway does not answer: {reason}\n".encode())

    def _relay(self, code: int, reply: Any, *, body: bool) -> None:
        self.send_response(code)
        self.send_header("Content-Type", reply.headers.get("Content-Type", "text/plain"))
        length = reply.headers.get("Content-Length")
        if length is None:
            data = reply.read()
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            if body:
                self.wfile.write(data)
            return
        self.send_header("Content-Length", length)
        self.end_headers()
        while body and (chunk := reply.read(CHUNK)):
            self.wfile.write(chunk)

    def _answer(self, code: int, text: bytes, allow: str = "") -> None:
        self.send_response(code)
        self.send_header("Content-Type", "text/plain; charset=utf-8")
        self.send_header("Content-Length", str(len(text)))
        if allow:
            self.send_header("Allow", allow)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(text)

    def log_message(self, *args: Any) -> None:
        pass


class PushgatewayFront:
    """Serves ``upstream``'s read paths on ``port``; refuses everything else."""

    def __init__(self, upstream: str, port: int, host: str = "0.0.0.0") -> None:  # noqa: S104 - scraped on the pod IP
        handler = type("Handler", (_FrontHandler,), {"upstream": upstream.rstrip("/")})
        self.server = ThreadingHTTPServer((host, port), handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]

    def start(self) -> PushgatewayFront:
        threading.Thread(
            target=self.server.serve_forever, name="pushgateway-front", daemon=True
        ).start()
        log.info("the Pushgateway's metrics are served read-only on port %d", self.port)
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
