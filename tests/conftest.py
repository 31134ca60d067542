"""Local providers for end-to-end runs: Slack webhook, SMTP and PagerDuty servers on loopback; and what the channel
tests share: an aiohttp session, a SQLite store for thread and message state, the packaged templates."""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import pytest

from relay.store import Store, open_store
from relay.templating import Templates
from tests.fakes.pagerduty import PagerDutyServer
from tests.fakes.slack import SlackWebhookServer
from tests.fakes.smtp import SmtpServer
from tests.helpers import TEMPLATES, postgres_database, provider_env, repo_routes

# `relay test-alert` remembers what it fired under $XDG_STATE_HOME (~/.local/state by default): the suite, and every
# relay it starts (subprocesses inherit this), keeps that in a directory of its own, never the user's real home.
STATE_HOME = tempfile.mkdtemp(prefix="relay-tests-state-")
os.environ["XDG_STATE_HOME"] = STATE_HOME
atexit.register(shutil.rmtree, STATE_HOME, ignore_errors=True)


@dataclass
class Providers:
    slack: SlackWebhookServer
    smtp: SmtpServer
    pagerduty: PagerDutyServer
    routes: Path
    env: dict[str, str]


@pytest.fixture
async def providers(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Providers]:
    async with SlackWebhookServer() as slack, SmtpServer() as smtp, PagerDutyServer() as pagerduty:
        env = provider_env(slack.url(), smtp.smarthost)
        for key, value in env.items():
            monkeypatch.setenv(key, value)
        yield Providers(slack, smtp, pagerduty, repo_routes(tmp_path, pagerduty.url), env)


@pytest.fixture(params=["sqlite", "postgres"])
async def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    """The same test on the embedded store and on a fresh PostgreSQL database (dropped afterwards)."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'relay.db'}"
    else:
        async with postgres_database() as url:
            yield url


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as client:
        yield client


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    """A SQLite store of its own (tests/contract's conftest gives its tests both stores instead)."""
    opened = open_store(f"sqlite:///{tmp_path / 'relay.db'}")
    await opened.open()
    yield opened
    await opened.close()


@pytest.fixture(scope="module")
def templates() -> Templates:
    return Templates(TEMPLATES)
