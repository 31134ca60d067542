"""Shared test helpers: fixture bodies, the repo's routes.yaml pointed at local servers, an in-process relay."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import uvicorn

from relay.config.settings import Settings

REPO = Path(__file__).resolve().parent.parent
# An unchanged copy of ../shared/fixtures/alertmanager (real Alertmanager 0.25 bodies).
FIXTURES = REPO / "tests" / "fixtures" / "alertmanager"
TEMPLATES = REPO / "relay" / "templates"  # the packaged defaults
ROUTES = REPO / "routes.yaml"
PD_URL_COMMENT = "# url: defaults to https://events.pagerduty.com/v2/enqueue"


def fixture(name: str) -> dict[str, Any]:
    return dict(json.loads((FIXTURES / name).read_text()))


def slack_text(message: dict[str, Any]) -> str:
    """Everything a person could read in a Slack message (text, attachments, blocks)."""
    return json.dumps(message, ensure_ascii=False)


def without_heartbeats(text: str) -> str:
    """routes.yaml text with its top-level `heartbeats:` section left out (a test that brings its own, or none)."""
    lines = text.splitlines(keepends=True)
    if not any(line.startswith("heartbeats:") for line in lines):
        return text
    start = next(i for i, line in enumerate(lines) if line.startswith("heartbeats:"))
    end = next((i for i in range(start + 1, len(lines)) if lines[i].strip() and not lines[i][0].isspace()),
               len(lines))
    return "".join(lines[:start] + lines[end:])


def repo_routes(tmp_path: Path, pagerduty_url: str | None = None, extra: str = "", *,
                heartbeats: bool = True) -> Path:
    """The repository's routes.yaml, with PagerDuty's URL pointed at a local server when given; `extra` with a
    `heartbeats:` section replaces the repository's, and `heartbeats=False` leaves it out."""
    text = ROUTES.read_text()
    if not heartbeats or "heartbeats:" in extra:
        text = without_heartbeats(text)
    if pagerduty_url:
        assert PD_URL_COMMENT in text
        text = text.replace(PD_URL_COMMENT, f"url: {pagerduty_url}")
    path = tmp_path / "routes.yaml"
    path.write_text(text + extra)
    return path


def provider_env(slack_url: str, smtp_smarthost: str, routing_key: str = "R0UTINGKEYSECRET0000000000000000") -> dict[
        str, str]:
    return {
        "SLACK_WEBHOOK_URL": slack_url,
        "SMTP_SMARTHOST": smtp_smarthost,
        "SMTP_REQUIRE_TLS": "false",
        "PAGERDUTY_ROUTING_KEY": routing_key,
        "OPS_EMAIL": "ops@ojeomneo.example",
    }


def relay_settings(tmp_path: Path, routes: Path, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "routes": routes,
        "templates": TEMPLATES,
        "database_url": f"sqlite:///{tmp_path / 'relay.db'}",
        "retry_initial_seconds": 0.05,
        "retry_max_seconds": 0.5,
        "rate_limits": False,
        "shutdown_grace_seconds": 2,
    }
    values.update(overrides)
    return Settings(**values)


@dataclass
class RunningRelay:
    url: str
    client: httpx.AsyncClient
    app: Any
    token: str | None = None
    admin_token: str | None = None

    async def post(self, body: Any, token: str | None = None, **kwargs: Any) -> httpx.Response:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return await self.client.post("/webhook", json=body, headers=headers, **kwargs)

    @property
    def admin_headers(self) -> dict[str, str]:
        """What the relay command sends to the admin API (relay.cli.admin.admin_headers)."""
        return {"X-Relay-Request": "1", **({"Authorization": f"Bearer {self.admin_token}"} if self.admin_token else {})}

    async def admin(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        return await self.client.request(method, path, headers=self.admin_headers, **kwargs)

    async def history(self, **params: str) -> list[dict[str, Any]]:
        answer = await self.admin("GET", "/api/v1/notifications", params=params)
        return list(answer.json()["notifications"])


def seconds(rfc3339: str) -> float:
    """A time of the admin API (RFC 3339) as Unix seconds."""
    return datetime.fromisoformat(rfc3339).timestamp()


@contextlib.asynccontextmanager
async def running_relay(settings: Settings) -> AsyncIterator[RunningRelay]:
    """relay on a real loopback port, inside the test's event loop."""
    from relay.app import create_app

    app = create_app(settings)
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_config=None, lifespan="on"))
    task = asyncio.create_task(server.serve())
    await poll_until(lambda: server.started or task.done(), timeout=10)
    if task.done():
        task.result()
        raise RuntimeError("relay did not start")
    port = server.servers[0].sockets[0].getsockname()[1]
    url = f"http://127.0.0.1:{port}"
    async with httpx.AsyncClient(base_url=url, timeout=10) as client:
        try:
            yield RunningRelay(url, client, app, settings.token, settings.admin)
        finally:
            server.should_exit = True
            await task


async def poll_until(condition: Callable[[], bool | Awaitable[bool]], timeout: float = 10.0,
                     interval: float = 0.02) -> None:
    """Await a condition (polled; for state we cannot subscribe to), failing after `timeout`."""
    deadline = time.monotonic() + timeout
    while True:
        result = condition()
        if not isinstance(result, bool):
            result = await result
        if result:
            return
        if time.monotonic() > deadline:
            raise TimeoutError(f"condition not met in {timeout}s")
        await asyncio.sleep(interval)


POSTGRES_ADMIN_URL = os.environ.get("RELAY_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/postgres")


@contextlib.asynccontextmanager
async def postgres_database() -> AsyncIterator[str]:
    """A fresh, empty PostgreSQL database for one test on the local server, dropped afterwards."""
    import asyncpg

    name = f"relay_test_{uuid.uuid4().hex[:12]}"
    admin = await asyncpg.connect(POSTGRES_ADMIN_URL, timeout=10)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
        try:
            yield POSTGRES_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"
        finally:
            await admin.execute(f'DROP DATABASE "{name}" WITH (FORCE)')
    finally:
        await admin.close()
