"""No client holds the webhook's connections: an idle TCP connection that never starts TLS, an
idle TLS connection, a head sent a byte a second and a TLS record that never completes are all
closed within their deadlines, while healthy reviews are answered at once; and more
connections than the cap make room instead of locking the API server out
(``webhook/connections.py``), against ``stash webhook`` as its own process over TLS."""

from __future__ import annotations

import json
import socket
import ssl
import threading
import time
from collections.abc import Callable

from tests.factories import pod, review
from tests.integration.helpers import WebhookProcess
from webhook.connections import HANDSHAKE_TIMEOUT, HEAD_TIMEOUT, MAX_CONNECTIONS

SLACK = 4.0  # the server's timers and this machine's load


def _closed_within(sock: socket.socket | ssl.SSLSocket, limit: float) -> float | None:
    """Seconds until the server closed ``sock`` (reading until EOF or a reset), None if it
    was still open after ``limit``."""
    started = time.monotonic()
    sock.settimeout(0.5)
    while time.monotonic() - started < limit:
        try:
            if not sock.recv(4096):
                return time.monotonic() - started
        except (TimeoutError, ssl.SSLWantReadError):
            continue
        except (ConnectionError, ssl.SSLError, OSError):
            return time.monotonic() - started
    return None


def _tls(webhook: WebhookProcess) -> ssl.SSLSocket:
    raw = socket.create_connection(("127.0.0.1", webhook.port), timeout=10)
    return webhook.ssl_context().wrap_socket(raw, server_hostname="127.0.0.1")


def _tls_then_partial_record(webhook: WebhookProcess) -> socket.socket:
    """A handshake done by hand over a plain socket, then the first 10 bytes of a TLS
    application-data record announcing 1000."""
    raw = socket.create_connection(("127.0.0.1", webhook.port), timeout=10)
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    tls = webhook.ssl_context().wrap_bio(incoming, outgoing, server_hostname="127.0.0.1")
    while True:
        try:
            tls.do_handshake()
            break
        except ssl.SSLWantReadError:
            raw.sendall(outgoing.read())
            incoming.write(raw.recv(65536))
    raw.sendall(outgoing.read())
    raw.sendall(b"\x17\x03\x03\x03\xe8" + b"\x00" * 10)
    return raw


def _healthy(webhook: WebhookProcess) -> float:
    doc = review(pod(opted_in=False))
    started = time.monotonic()
    status, _ = webhook.request("POST", "/mutate/pods", body=json.dumps(doc).encode())
    assert status == 200
    return time.monotonic() - started


def test_connections_that_never_complete_a_request_are_closed_and_others_are_served(
    webhook: WebhookProcess,
) -> None:
    plain = socket.create_connection(("127.0.0.1", webhook.port), timeout=10)  # no handshake
    idle = _tls(webhook)
    trickle = _tls(webhook)
    partial = _tls_then_partial_record(webhook)
    stop = threading.Event()

    def byte_a_second() -> None:
        head = b"POST /mutate/pods HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n"
        for byte in head * 10:
            if stop.wait(1.0):
                return
            try:
                trickle.sendall(bytes([byte]))
            except OSError:
                return

    sender = threading.Thread(target=byte_a_second, daemon=True)
    sender.start()
    try:
        # Meanwhile healthy reviews are answered at once.
        assert max(_healthy(webhook) for _ in range(5)) < 1.0
        checks: list[tuple[str, socket.socket | ssl.SSLSocket, float]] = [
            ("TCP without a handshake", plain, HANDSHAKE_TIMEOUT),
            ("idle TLS", idle, HEAD_TIMEOUT),
            ("a head a byte a second", trickle, HEAD_TIMEOUT),
            ("a TLS record never completed", partial, HEAD_TIMEOUT),
        ]
        results: dict[str, float | None] = {}

        def watch(
            name: str, sock: socket.socket | ssl.SSLSocket, limit: float
        ) -> Callable[[], None]:
            return lambda: results.__setitem__(name, _closed_within(sock, limit + SLACK))

        watchers = [threading.Thread(target=watch(*check)) for check in checks]
        for thread in watchers:
            thread.start()
        for thread in watchers:
            thread.join()
        for name, _, limit in checks:
            closed = results[name]
            assert closed is not None, f"{name}: still open after {limit + SLACK:g} s"
    finally:
        stop.set()
        for sock in (plain, idle, trickle, partial):
            sock.close()
    assert _healthy(webhook) < 1.0


def test_more_idle_connections_than_the_cap_make_room_for_the_api_server(
    webhook: WebhookProcess,
) -> None:
    crowd = [_tls(webhook) for _ in range(MAX_CONNECTIONS + 20)]
    try:
        assert _healthy(webhook) < 2.0
        assert _healthy(webhook) < 2.0
        # the room was made by closing idle ones: at least the excess is gone
        closed = sum(1 for sock in crowd if _closed_within(sock, 0.05) is not None)
        assert closed >= 20
    finally:
        for sock in crowd:
            sock.close()
