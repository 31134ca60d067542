"""A deadline for a client to send its request, and a bound on connections still sending one.

uvicorn itself waits forever: a client that connects and sends nothing, trickles its headers a byte at a time
(slowloris) or declares a 1 GB body and trickles that, holds a connection and a file descriptor for good, with or
without a token and on any path (`/healthz` answers at once, then reads the rest of the body). Enough of them and
relay can accept no webhook at all. So the whole request, headers and body, must arrive within the deadline of
the connection's first byte or, for a further request on a kept-alive connection, of that request's first byte;
otherwise the connection is closed. And connections that are still sending a request (or idle between requests)
may hold at most half the process's open-file limit: past that, a new connection closes the one that has been at
it longest, so slow clients cannot take every descriptor and a real webhook, which sends its request in
milliseconds, still gets in.
"""

from __future__ import annotations

import asyncio
import logging
import resource
import time
from typing import ClassVar

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

log = logging.getLogger(__name__)

MIN_SENDING = 8
WARN_EVERY = 60.0


class _DeadlineProtocol(HttpToolsProtocol):
    read_timeout = 30.0
    # Connections sending a request or idle between requests, oldest first; one dict per server (http_protocol).
    sending: ClassVar[dict[_DeadlineProtocol, None]] = {}
    warned_at: ClassVar[list[float]] = [0.0]
    _deadline: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._join()
        self._arm()

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._join()
        if self._deadline is None:  # a further request on a kept-alive connection
            self._arm()

    def on_message_complete(self) -> None:
        self._disarm()  # the request is all here: what follows is relay's work, not the client's
        self.sending.pop(self, None)
        super().on_message_complete()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if not self.transport.is_closing():
            self._join()  # idle, waiting for a further request (uvicorn's keep-alive timeout ends that)

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        self.sending.pop(self, None)
        super().connection_lost(exc)

    def _join(self) -> None:
        if self in self.sending:
            return
        limit = _sending_limit()
        while len(self.sending) >= limit:
            oldest = next(iter(self.sending))
            self.sending.pop(oldest)
            oldest._close()
            now = time.monotonic()
            if now - self.warned_at[0] >= WARN_EVERY:
                self.warned_at[0] = now
                log.warning("%d connections are still sending a request (half the open-file limit): closing the "
                            "oldest of them as new ones arrive", limit)
        self.sending[self] = None

    def _arm(self) -> None:
        self._deadline = self.loop.call_later(self.read_timeout, self._expired)

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _expired(self) -> None:
        self._deadline = None
        self._close()

    def _close(self) -> None:
        if not self.transport.is_closing():
            self.transport.close()


def _sending_limit() -> int:
    """Half the open-file limit in force now (it can be changed while relay runs, e.g. with prlimit)."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    return max(MIN_SENDING, (65536 if soft == resource.RLIM_INFINITY else soft) // 2)


def http_protocol(read_timeout: float) -> type[asyncio.Protocol]:
    """uvicorn's HTTP protocol (httptools), closing connections whose request is late or that hold too many."""
    return type("HttpProtocol", (_DeadlineProtocol,), {"read_timeout": read_timeout, "sending": {},
                                                       "warned_at": [0.0]})
