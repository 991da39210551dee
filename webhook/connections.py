"""Deadlines and a cap for the webhook's connections, so no client can hold them open.

uvicorn bounds a connection's idle time only after a response (keep-alive) and the body only
through the app (``webhook.app``). Here the rest is bounded, at no cost to a healthy review (a
timer armed and cancelled per request):

- the TLS handshake: ``HANDSHAKE_TIMEOUT`` (the event loop's own handshake deadline, which
  uvicorn leaves at asyncio's 60 s);
- the request head: complete within ``HEAD_TIMEOUT`` of the connection being made or of the
  previous response — an idle connection, a head sent a byte at a time and a TLS record that
  never completes all end there;
- keep-alive idle after a response: ``KEEP_ALIVE`` (uvicorn's own timer);
- the number of connections: beyond ``MAX_CONNECTIONS``, the oldest connections waiting for a
  request are closed to make room, and a new one is refused only when every one is busy.

The API server reconnects on its own; a closed idle connection costs it one handshake.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Callable
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

log = logging.getLogger(__name__)

HANDSHAKE_TIMEOUT = 5.0
HEAD_TIMEOUT = 10.0
KEEP_ALIVE = 5.0
MAX_CONNECTIONS = 256


class GuardedProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with a deadline on each request head and a connection cap."""

    head_timeout = HEAD_TIMEOUT
    max_connections = MAX_CONNECTIONS

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._head_deadline: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm()
        if len(self.connections) > self.max_connections:
            self._make_room()

    def on_headers_complete(self) -> None:
        self._disarm()
        super().on_headers_complete()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if not self.transport.is_closing():
            self._arm()  # the next request's head, if one comes before keep-alive ends

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    # -- the head deadline ---------------------------------------------------------------------

    def _arm(self) -> None:
        self._disarm()
        self._head_deadline = self.loop.call_later(self.head_timeout, self._head_overdue)

    def _disarm(self) -> None:
        if self._head_deadline is not None:
            self._head_deadline.cancel()
            self._head_deadline = None

    def _head_overdue(self) -> None:
        self._head_deadline = None
        if not self.transport.is_closing():
            log.info("closing a connection whose request head took over %g s", self.head_timeout)
            # abort, not close: a TLS close waits (30 s) for the client's close_notify, which a
            # client stuck mid-record never sends
            self.transport.abort()

    # -- the cap -------------------------------------------------------------------------------

    def _waiting(self) -> bool:
        """No request in progress: between requests, or before the first head arrived."""
        return self.cycle is None or self.cycle.response_complete

    def _make_room(self) -> None:
        excess = len(self.connections) - self.max_connections
        idle = [c for c in self.connections if c is not self and isinstance(c, GuardedProtocol)]
        for other in [c for c in idle if c._waiting()][:excess]:
            other.transport.close()
            excess -= 1
        if excess > 0:
            log.warning("%d connections, every one busy: refusing a new one", len(self.connections))
            self.transport.close()


def loop_factory(
    base: Callable[[], asyncio.AbstractEventLoop] | None,
) -> Callable[[], asyncio.AbstractEventLoop]:
    """``base`` (uvicorn's choice: uvloop where installed), whose TLS servers bound the
    handshake by ``HANDSHAKE_TIMEOUT``."""

    def make() -> asyncio.AbstractEventLoop:
        loop = base() if base is not None else asyncio.new_event_loop()
        create_server = loop.create_server

        @functools.wraps(create_server)
        async def bounded(*args: Any, **kwargs: Any) -> asyncio.Server:
            if kwargs.get("ssl") is not None:
                kwargs.setdefault("ssl_handshake_timeout", HANDSHAKE_TIMEOUT)
            return await create_server(*args, **kwargs)

        loop.create_server = bounded  # type: ignore[method-assign]
        return loop

    return make
