"""The operator's probes and metrics on a small HTTP server thread: ``/healthz`` fails while
the operator is wedged (an informer or a worker stopped, a reconcile never returns) so that the
kubelet restarts it, ``/readyz`` while its caches are not in sync (a standby replica that is not
leading is ready too), ``/metrics`` serves its own metrics (``controller.runtime.metrics``)."""

from __future__ import annotations

import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest


class HealthServer:
    def __init__(
        self,
        port: int,
        *,
        ready: Callable[[], bool],
        wedged: Callable[[], str | None] = lambda: None,
        registry: CollectorRegistry | None = None,
        host: str = "0.0.0.0",  # noqa: S104 - probed by the kubelet on the pod IP
    ) -> None:
        def healthz() -> tuple[int, bytes]:
            why = wedged()
            return (200, b"ok\n") if why is None else (503, why.encode() + b"\n")

        def readyz() -> tuple[int, bytes]:
            return (200, b"ok\n") if ready() else (503, b"not ready\n")

        checks: dict[str, Callable[[], tuple[int, bytes]]] = {
            "/healthz": healthz,
            "/readyz": readyz,
        }

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                if self.path == "/metrics" and registry is not None:
                    self._answer(200, generate_latest(registry), CONTENT_TYPE_LATEST)
                    return
                check = checks.get(self.path)
                if check is None:
                    self._answer(404, b"not found\n")
                    return
                self._answer(*check())

            def _answer(self, code: int, body: bytes, content_type: str = "text/plain") -> None:
                self.send_response(code)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer((host, port), Handler)
        self.port = self.server.server_address[1]

    def start(self) -> HealthServer:
        threading.Thread(target=self.server.serve_forever, name="health", daemon=True).start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
