"""A real SMTP server (aiosmtpd) on loopback, optionally demanding STARTTLS and AUTH.

The server runs in aiosmtpd's Controller thread, so it keeps answering even
while a test blocks its own event loop; arrivals are handed back to the test's
loop so `await smtp.wait_for(n)` can wait on them. Scripted replies make the
next RCPT or DATA fail with a chosen SMTP reply (`451 4.3.0 try again`).
"""

from __future__ import annotations

import asyncio
import socket
import ssl
import tempfile
import threading
import time
import weakref
from collections import deque
from dataclasses import dataclass
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any, Literal

import trustme
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session

from tests.fakes import DEFAULT_TIMEOUT

Stage = Literal["MAIL", "RCPT", "DATA"]


@dataclass(frozen=True)
class Mail:
    """One accepted message: parsed with the default email policy, plus its envelope and raw bytes."""

    message: EmailMessage
    mail_from: str
    rcpt_tos: list[str]
    raw: bytes
    at: float  # time.time()
    tls: bool  # arrived over TLS (after STARTTLS)
    auth_user: str | None


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


class _Handler:
    def __init__(self, server: SmtpServer) -> None:
        self.server = server

    async def handle_MAIL(self, smtp: SMTP, session: Session, envelope: Envelope, address: str,
                          options: list[str]) -> str:
        reply = self.server._scripted("MAIL")
        if reply:
            return reply
        envelope.mail_from = address
        envelope.mail_options.extend(options)
        return "250 OK"

    async def handle_RCPT(self, smtp: SMTP, session: Session, envelope: Envelope, address: str,
                          options: list[str]) -> str:
        reply = self.server._scripted("RCPT") or self.server.refuse.get(address)
        if reply:
            return reply
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, smtp: SMTP, session: Session, envelope: Envelope) -> str:
        reply = self.server._scripted("DATA")
        if reply:
            return reply
        raw = envelope.original_content or b""
        parsed = message_from_bytes(raw, policy=policy.default)
        assert isinstance(parsed, EmailMessage)
        auth = session.auth_data.login.decode() if isinstance(session.auth_data, LoginPassword) else None
        self.server._arrived(Mail(parsed, envelope.mail_from or "", list(envelope.rcpt_tos), raw, time.time(),
                                  session.ssl is not None, auth))
        return "250 Message accepted for delivery"


class _Controller(Controller):
    """aiosmtpd's Controller stops its loop without closing open sessions (their sockets leak); this one resets
    them first, as a mail server going down does."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.sessions: weakref.WeakSet[SMTP] = weakref.WeakSet()

    def factory(self) -> SMTP:
        session = super().factory()
        self.sessions.add(session)
        return session

    def stop(self, no_assert: bool = False) -> None:
        async def reset() -> None:
            for session in list(self.sessions):
                if session.transport is not None:
                    session.transport.abort()
            await asyncio.sleep(0)  # let the aborted transports close their sockets

        if self._thread is not None and self.loop.is_running():
            asyncio.run_coroutine_threadsafe(reset(), self.loop).result(timeout=5)
        super().stop(no_assert)


class SmtpServer:
    """`async with SmtpServer(require_starttls=True, auth={"user": "pw"}) as smtp:`; point relay at `smtp.smarthost`.

    With `starttls` (implied by `require_starttls`) the server offers STARTTLS with a
    certificate from a throwaway trustme CA whose PEM file is `smtp.ca_file`.
    """

    def __init__(self, *, starttls: bool = False, require_starttls: bool = False,
                 auth: dict[str, str] | None = None, auth_require_tls: bool = True, host: str = "127.0.0.1") -> None:
        self.host = host
        self.port = 0
        self.starttls = starttls or require_starttls
        self.require_starttls = require_starttls
        self.auth = dict(auth or {})
        self.auth_require_tls = auth_require_tls and self.starttls
        self.messages: list[Mail] = []
        self.refuse: dict[str, str] = {}  # recipient -> reply, e.g. {"nobody@x": "550 5.1.1 no such user"}
        self.ca_file: str | None = None
        self._script: dict[str, deque[str]] = {"MAIL": deque(), "RCPT": deque(), "DATA": deque()}
        self._outage: tuple[Stage, str] | None = None
        self._lock = threading.Lock()
        self._controller: _Controller | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._changed: asyncio.Event | None = None
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        self._options: dict[str, Any] = {}

    @property
    def smarthost(self) -> str:
        return f"{self.host}:{self.port}"

    async def __aenter__(self) -> SmtpServer:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._changed = asyncio.Event()
        kwargs: dict[str, Any] = {"auth_require_tls": self.auth_require_tls}
        if self.starttls:
            kwargs["tls_context"] = self._tls_context()
            kwargs["require_starttls"] = self.require_starttls
        if self.auth:
            kwargs["authenticator"] = self._authenticate
            kwargs["auth_required"] = True
        self._options = kwargs
        self.port = free_port(self.host)
        await self.go_online()

    async def go_online(self) -> None:
        """Listen (again, after `go_offline()`) on the same port."""
        if self._controller is not None:
            return
        self._controller = _Controller(_Handler(self), hostname=self.host, port=self.port,
                                      server_hostname="smtp.relay.test", **self._options)
        await asyncio.to_thread(self._controller.start)

    async def go_offline(self) -> None:
        """The mail server is down: connections are refused until `go_online()`; what arrived is kept."""
        if self._controller is not None:
            await asyncio.to_thread(self._controller.stop)
            self._controller = None

    async def stop(self) -> None:
        await self.go_offline()
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None

    def _tls_context(self) -> ssl.SSLContext:
        ca = trustme.CA()
        cert = ca.issue_cert(self.host, "localhost")
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        cert.configure_cert(context)
        self._tmp = tempfile.TemporaryDirectory(prefix="relay-smtp-")
        path = Path(self._tmp.name) / "ca.pem"
        ca.cert_pem.write_to_path(str(path))
        self.ca_file = str(path)
        return context

    def _authenticate(self, server: SMTP, session: Session, envelope: Envelope, mechanism: str,
                      auth_data: Any) -> AuthResult:
        if isinstance(auth_data, LoginPassword):
            user, password = auth_data.login.decode(), auth_data.password.decode()
            if self.auth.get(user) == password:
                return AuthResult(success=True, auth_data=auth_data)
        return AuthResult(success=False, handled=False)

    # scripting ----------------------------------------------------------------------------------------
    def fail_next(self, reply: str = "451 4.3.0 try again", stage: Stage = "RCPT", times: int = 1) -> None:
        """Answer the next `times` commands of `stage` (MAIL, RCPT or DATA) with `reply`."""
        with self._lock:
            self._script[stage].extend([reply] * times)

    def fail_all(self, reply: str = "451 4.3.0 try again", stage: Stage = "RCPT") -> None:
        """An outage: every `stage` command gets `reply` until `recover()`."""
        with self._lock:
            self._outage = (stage, reply)

    def recover(self) -> None:
        with self._lock:
            self._outage = None

    def _scripted(self, stage: Stage) -> str | None:
        with self._lock:
            if self._outage is not None and self._outage[0] == stage:
                return self._outage[1]
            script = self._script[stage]
            return script.popleft() if script else None

    def _arrived(self, mail: Mail) -> None:
        """Runs in the controller thread: store, then wake waiters on the test's loop."""
        with self._lock:
            self.messages.append(mail)
        if self._loop is not None and self._changed is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self._changed.set)

    async def wait_for(self, count: int, timeout: float = DEFAULT_TIMEOUT) -> list[Mail]:
        """Wait until `count` messages were accepted; return them."""
        assert self._changed is not None, "server not started"
        try:
            async with asyncio.timeout(timeout):
                while len(self.messages) < count:
                    self._changed.clear()
                    if len(self.messages) >= count:
                        break
                    await self._changed.wait()
        except TimeoutError:
            raise TimeoutError(f"{len(self.messages)} of {count} message(s) arrived within {timeout}s") from None
        return self.messages[:count]
