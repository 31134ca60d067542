"""A local webhook consumer: takes POSTs on any path, checks the auth it was told to expect, keeps every body.

It answers 200 with an empty body like most Alertmanager webhook consumers, 401 when the Authorization header is
not the one expected, and whatever a test scripts (429 with Retry-After, 5xx, stalls). With `tls` it serves HTTPS
with a certificate from its own trustme CA (`ca_file` is that CA's PEM, for a receiver's `tls_config`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import trustme
from aiohttp import web

from tests.fakes import DEFAULT_TIMEOUT, FakeHttpServer, answer_response, read_body, wait_until


class WebhookServer(FakeHttpServer):
    """`bodies` holds what was accepted, in order (parsed JSON, or text); `requests` every attempt."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0, *, authorization: str | None = None,
                 tls_dir: Path | None = None) -> None:
        super().__init__(host, port)
        self.authorization = authorization
        self.bodies: list[Any] = []
        self.ca_file: str | None = None
        self._ssl = None
        if tls_dir is not None:
            ca = trustme.CA()
            import ssl

            self._ssl = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            ca.issue_cert(host).configure_cert(self._ssl)
            self.ca_file = str(tls_dir / "webhook-ca.pem")
            ca.cert_pem.write_to_path(self.ca_file)

    async def __aenter__(self) -> WebhookServer:
        await self.start()
        return self

    async def go_online(self) -> None:
        assert self._runner is not None, "server not started"
        if self._site is not None:
            return
        self._site = web.TCPSite(self._runner, self.host, self.port, reuse_address=True, ssl_context=self._ssl)
        await self._site.start()
        if self.port == 0:
            self.port = int(self._runner.addresses[0][1])

    @property
    def base_url(self) -> str:
        return f"{'https' if self._ssl else 'http'}://{self.host}:{self.port}"

    def url(self, path: str = "/alerts") -> str:
        return self.base_url + path

    def routes(self, app: web.Application) -> None:
        app.router.add_route("*", "/{tail:.*}", self._receive)

    async def wait_for(self, count: int, timeout: float = DEFAULT_TIMEOUT) -> list[Any]:
        assert self._changed is not None, "server not started"
        await wait_until(self._changed, lambda: len(self.bodies) >= count, timeout,
                         lambda: f"{len(self.bodies)} body(ies) accepted; answers: {[r.status for r in self.requests]}")
        return self.bodies[:count]

    async def _receive(self, request: web.Request) -> web.Response:
        body, _ = await read_body(request)
        answer = await self.next_answer()
        if answer is not None:
            if 200 <= answer.status < 300:
                self.bodies.append(body)
            await self.record(request, body, answer.status)
            return answer_response(answer)
        if self.authorization is not None and request.headers.get("Authorization") != self.authorization:
            await self.record(request, body, 401)
            return web.Response(status=401, text="Unauthorized")
        self.bodies.append(body)
        await self.record(request, body, 200)
        return web.Response(status=200)
