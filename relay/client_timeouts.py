"""A deadline for a client to send its request: uvicorn itself waits forever for headers.

Without one, a client that connects and sends nothing, or trickles its headers
a byte at a time (slowloris), holds a connection and a file descriptor for
good; enough of them and relay can accept no webhook at all. Headers must be
complete within the deadline of the connection's first byte or, for a further
request on a kept-alive connection, of that request's first byte. The body
has the same deadline, enforced by the webhook handler (408).
"""

from __future__ import annotations

import asyncio

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol


class _DeadlineProtocol(HttpToolsProtocol):
    read_timeout = 30.0
    _deadline: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm()

    def on_message_begin(self) -> None:
        super().on_message_begin()
        if self._deadline is None:  # a further request on a kept-alive connection
            self._arm()

    def on_headers_complete(self) -> None:
        self._disarm()
        super().on_headers_complete()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def _arm(self) -> None:
        self._deadline = self.loop.call_later(self.read_timeout, self._expired)

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _expired(self) -> None:
        self._deadline = None
        if not self.transport.is_closing():
            self.transport.close()


def http_protocol(read_timeout: float) -> type[asyncio.Protocol]:
    """uvicorn's HTTP protocol (httptools), closing connections whose request headers are late."""
    return type("HttpProtocol", (_DeadlineProtocol,), {"read_timeout": read_timeout})
