"""Local stand-ins for Slack, PagerDuty and an SMTP server, speaking the providers' real protocols.

Each is a real server on 127.0.0.1 with an OS-assigned port, started and stopped
by `async with`, so relay can be pointed at it in-process or as a subprocess.
Tests wait on conditions (`await fake.wait_for(n)`), never on sleeps.
`FakeHttpServer` holds what the two HTTP fakes share: scripted answers,
outages (`fail_all`, `stall`, `go_offline`), a channel table row's answer
(`answering`) and the record of every request.
"""

from __future__ import annotations

import asyncio
import json
import ssl
import time
from collections import deque
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import trustme
from aiohttp import web

from relay.alerts import Notification, WebhookMessage
from tests.helpers import FIXTURES

DEFAULT_TIMEOUT = 10.0


@dataclass(frozen=True)
class Answer:
    """A scripted reply: `body` is text or a JSON-able dict; `stall` holds the request open until `recover()`."""

    status: int
    body: str | dict[str, Any] | None = None
    headers: dict[str, str] = field(default_factory=dict)
    stall: bool = False


STALL = Answer(0, stall=True)  # no answer at all: the request is held open (a client timeout)
# Not answers of the provider, for a table row: nothing listens on its port; a certificate nobody trusts answers.
REFUSED, UNTRUSTED = "refused", "untrusted-certificate"


@dataclass(frozen=True)
class Request:
    """One request as the fake saw it, with the status it answered."""

    at: float  # time.time()
    monotonic: float  # time.monotonic()
    method: str
    path: str
    headers: dict[str, str]
    body: Any  # parsed JSON, or the raw text when it was not JSON
    status: int


async def wait_until(condition: asyncio.Condition, predicate: Callable[[], bool], timeout: float,
                     describe: Callable[[], str]) -> None:
    """Await `predicate()` under `condition`; on timeout raise TimeoutError saying what was seen instead."""
    try:
        async with asyncio.timeout(timeout):
            async with condition:
                await condition.wait_for(predicate)
    except TimeoutError:
        raise TimeoutError(f"condition not met within {timeout}s; {describe()}") from None


class FakeHttpServer:
    """An aiohttp server on loopback with scripted answers; subclasses add the provider's routes."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self.host = host
        self.port = port
        self.requests: list[Request] = []
        self.held = 0  # requests stall() is holding open right now
        self.slowed = 0  # requests slow() is delaying right now
        self.slowed_peak = 0  # the most it delayed at once
        self._delay = 0.0
        self._script: deque[Answer] = deque()
        self._outage: Answer | None = None
        self._released = asyncio.Event()
        self._changed: asyncio.Condition | None = None
        self._runner: web.AppRunner | None = None
        self._site: web.TCPSite | None = None

    # lifecycle ----------------------------------------------------------------------------------------
    def routes(self, app: web.Application) -> None:
        raise NotImplementedError

    async def __aenter__(self) -> FakeHttpServer:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def start(self) -> None:
        self._changed = asyncio.Condition()
        self._released = asyncio.Event()
        app = web.Application()
        self.routes(app)
        self._runner = web.AppRunner(app, handle_signals=False, access_log=None)
        await self._runner.setup()
        await self.go_online()

    async def stop(self) -> None:
        self._released.set()  # let stalled handlers finish so shutdown does not wait for them
        if self._runner is not None:
            await self._runner.cleanup()
        self._runner = self._site = None

    async def go_offline(self) -> None:
        """Stop listening (connections are refused) but keep the port and everything recorded."""
        if self._site is not None:
            await self._site.stop()
            self._site = None

    async def go_online(self) -> None:
        """Listen again on the same port after `go_offline()`."""
        assert self._runner is not None, "server not started"
        if self._site is not None:
            return
        self._site = web.TCPSite(self._runner, self.host, self.port, reuse_address=True)
        await self._site.start()
        if self.port == 0:
            self.port = int(self._runner.addresses[0][1])

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    # scripting ----------------------------------------------------------------------------------------
    def respond_with(self, status: int, body: str | dict[str, Any] | None = None,
                     headers: dict[str, str] | None = None, times: int = 1) -> None:
        """Answer the next `times` requests like this (body None: the provider's usual body for `status`)."""
        for _ in range(times):
            self._script.append(Answer(status, body, dict(headers or {})))

    def script(self, *answers: Answer) -> None:
        """Answer the next requests like `answers`, in order (a table row's answer; STALL holds one open)."""
        self._script.extend(answers)

    @asynccontextmanager
    async def answering(self, answer: Answer | str) -> AsyncIterator[str]:
        """Answer the next request like a table row says: an Answer, REFUSED (this server goes offline) or UNTRUSTED
        (another server, with a certificate the client does not trust, takes the request). Yields the base URL."""
        if answer == UNTRUSTED:
            async with untrusted_https(self.host) as base_url:
                yield base_url
            return
        if answer == REFUSED:
            await self.go_offline()
        else:
            assert isinstance(answer, Answer), answer
            self.script(answer)
        yield self.base_url

    def stall(self, times: int = 1) -> None:
        """Hold the next `times` requests open without answering until `recover()` or stop (client timeouts)."""
        for _ in range(times):
            self._script.append(Answer(0, stall=True))

    def fail_all(self, status: int = 500, body: str | dict[str, Any] | None = None,
                 headers: dict[str, str] | None = None) -> None:
        """An outage: answer every request with `status` until `recover()`; scripted answers wait."""
        self._outage = Answer(status, body, dict(headers or {}))

    def slow(self, seconds: float) -> None:
        """A slow provider: answer every request `seconds` late until `recover()`."""
        self._delay = seconds

    def recover(self) -> None:
        """End an outage, stalls and slowness: held requests, and later ones, are answered normally."""
        self._outage = None
        self._delay = 0.0
        self._script = deque(a for a in self._script if not a.stall)
        self._released.set()
        self._released = asyncio.Event()

    async def next_answer(self) -> Answer | None:
        """The scripted answer for this request, or None for the normal behaviour."""
        if self._delay:
            self.slowed += 1
            self.slowed_peak = max(self.slowed_peak, self.slowed)
            await self.notify()
            try:
                await asyncio.sleep(self._delay)
            finally:
                self.slowed -= 1
        if self._outage is not None:
            return self._outage
        if not self._script:
            return None
        answer = self._script.popleft()
        if answer.stall:
            self.held += 1
            await self.notify()
            await self._released.wait()
            self.held -= 1
            return await self.next_answer() if self._outage is not None else None
        return answer

    async def record(self, request: web.Request, body: Any, status: int) -> None:
        now = time.time(), time.monotonic()
        self.requests.append(Request(now[0], now[1], request.method, request.path, dict(request.headers), body,
                                     status))
        await self.notify()

    async def notify(self) -> None:
        assert self._changed is not None
        async with self._changed:
            self._changed.notify_all()

    async def wait_for_held(self, count: int, timeout: float = DEFAULT_TIMEOUT) -> None:
        """Wait until `count` requests are being held open by `stall()`."""
        assert self._changed is not None, "server not started"
        await wait_until(self._changed, lambda: self.held >= count, timeout, lambda: f"{self.held} request(s) held")

    async def wait_for_slowed(self, count: int, timeout: float = DEFAULT_TIMEOUT) -> None:
        """Wait until `count` requests are being delayed by `slow()` at once."""
        assert self._changed is not None, "server not started"
        await wait_until(self._changed, lambda: self.slowed >= count, timeout,
                         lambda: f"{self.slowed} request(s) being slowed")

    async def wait_for_requests(self, count: int, timeout: float = DEFAULT_TIMEOUT) -> list[Request]:
        """Wait until `count` requests arrived, whatever they were answered."""
        assert self._changed is not None, "server not started"
        await wait_until(self._changed, lambda: len(self.requests) >= count, timeout,
                         lambda: f"{len(self.requests)} request(s) received: {[r.status for r in self.requests]}")
        return self.requests[:count]


@asynccontextmanager
async def untrusted_https(host: str = "127.0.0.1") -> AsyncIterator[str]:
    """An HTTPS endpoint whose certificate comes from a CA the client does not trust (a self-signed endpoint, a
    TLS-intercepting proxy): the handshake fails before any HTTP. Yields its base URL."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    trustme.CA().issue_cert(host).configure_cert(context)

    async def hang_up(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.close()

    server = await asyncio.start_server(hang_up, host, 0, ssl=context)
    try:
        yield f"https://{host}:{server.sockets[0].getsockname()[1]}"
    finally:
        server.close()
        await server.wait_closed()


async def read_body(request: web.Request) -> tuple[Any, bool]:
    """The request body as JSON when it parses, else its text; the flag says whether it was JSON."""
    text = await request.text()
    try:
        return json.loads(text), True
    except ValueError:
        return text, False


def answer_response(answer: Answer) -> web.Response:
    if isinstance(answer.body, dict):
        return web.json_response(answer.body, status=answer.status, headers=answer.headers)
    return web.Response(status=answer.status, text=answer.body or "", headers=answer.headers)


# Alertmanager itself is faked by the bodies a real one sent (see the fixtures README).

def webhook_message(fixture: str) -> WebhookMessage:
    """A fixture body (`firing-poddown.json` or just `firing-poddown`) parsed as relay parses it."""
    name = fixture if fixture.endswith(".json") else f"{fixture}.json"
    return WebhookMessage.model_validate_json((FIXTURES / name).read_text(encoding="utf-8"))


def notification(fixture: str | WebhookMessage, receiver: str = "test", integration: str = "slack",
                 id: int = 1) -> Notification:
    """A notification for `receiver` holding every alert of a fixture, as the dispatcher would hand it over."""
    group = webhook_message(fixture) if isinstance(fixture, str) else fixture
    return Notification(id=id, receiver=receiver, integration=integration, lane=f"{receiver}:{group.groupKey}",
                        group=group, received_at=datetime.now(UTC))
