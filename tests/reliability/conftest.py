"""Reliability runs: one profile of durations per run length, providers holding secrets, and the figures each test
measured (printed at the end of the run, and written as JSON when RELAY_RELIABILITY_FIGURES names a file).

The same tests run short in every `pytest` run and long with `pytest -m slow tests/reliability`.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.fakes.pagerduty import PagerDutyServer
from tests.fakes.slack import SlackWebhookServer
from tests.fakes.smtp import SmtpServer


@dataclass(frozen=True)
class Profile:
    """How long and how hard each reliability test pushes; `short` fits CI, `long` is the documented soak."""

    name: str
    load_seconds: float  # steady load while relay is SIGKILLed
    rate: float  # alerts per second offered by the load generator
    kill_every: float  # seconds between SIGKILLs
    restart_every: float  # seconds between PostgreSQL restarts
    outage_seconds: float  # a provider down or refusing
    slow_seconds: float  # how late a slow provider answers
    slow_notifications: int  # notifications queued for the slow provider
    hostile_examples: int  # generated webhook requests
    idle_connections: int  # connections opened and left idle


SHORT = Profile("short", load_seconds=12, rate=15, kill_every=3, restart_every=5, outage_seconds=4, slow_seconds=10,
                slow_notifications=12, hostile_examples=5000, idle_connections=1100)
LONG = Profile("long", load_seconds=300, rate=40, kill_every=5, restart_every=20, outage_seconds=60, slow_seconds=10,
               slow_notifications=40, hostile_examples=50000, idle_connections=3000)


@pytest.fixture(params=[pytest.param(SHORT, id="short"),
                        pytest.param(LONG, id="long", marks=[pytest.mark.slow, pytest.mark.timeout(1800)])])
def profile(request: pytest.FixtureRequest) -> Profile:
    assert isinstance(request.param, Profile)
    return request.param


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Long runs are opt-in: they run only when the caller chose markers (`-m slow`)."""
    if config.option.markexpr:
        return
    skip = pytest.mark.skip(reason="long reliability run; run it with: pytest -m slow tests/reliability")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)


# -- figures -----------------------------------------------------------------------------------------------------

FIGURES: list[dict[str, Any]] = []
SCANNED = {"tests": 0, "texts": 0, "bytes": 0, "leaks": 0}  # the secret scan, over the whole run


def record(test: str, **figures: Any) -> None:
    """Keep a measured figure for the run's summary (and docs/reliability.md)."""
    FIGURES.append({"test": test, **figures})


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if not FIGURES:
        return
    terminalreporter.section("reliability figures")
    FIGURES.append({"test": "secret scan", **SCANNED})
    for entry in FIGURES:
        rest = ", ".join(f"{k}={v}" for k, v in entry.items() if k != "test")
        terminalreporter.write_line(f"{entry['test']}: {rest}")
    target = os.environ.get("RELAY_RELIABILITY_FIGURES")
    if target:
        Path(target).write_text(json.dumps(FIGURES, indent=2) + "\n")


# -- providers holding secrets -----------------------------------------------------------------------------------

WEBHOOK_TOKEN = "WEBHOOKTOKEN-rel-5ecret-0001"
ADMIN_TOKEN = "ADMINTOKEN-rel-5ecret-0001"
ADMIN_HEADERS = {"Authorization": f"Bearer {ADMIN_TOKEN}", "X-Relay-Request": "1"}
SLACK_PATH = "/services/T0REL/B0REL/SLACKURLSECRET0001"
ROUTING_KEY = "R0UTINGKEYREL5ECRET000000000001"
SMTP_USER = "relay"
SMTP_PASSWORD = "SMTPPASSW0RD-rel-5ecret"
SECRETS = (WEBHOOK_TOKEN, "SLACKURLSECRET0001", ROUTING_KEY, SMTP_PASSWORD, ADMIN_TOKEN)

ROUTES = """\
global:
  smtp_smarthost: ${SMTP_SMARTHOST}
  smtp_from: relay@reliability.example
  smtp_auth_username: %(user)s
  smtp_auth_password: ${SMTP_PASSWORD}
  smtp_require_tls: true
receivers:
  - name: slack-alerts
    slack:
      webhook_url: ${SLACK_WEBHOOK_URL}
  - name: ops-email
    email:
      to: [ops@reliability.example]
      tls_ca_file: %(ca_file)s
  - name: pagerduty-oncall
    pagerduty:
      routing_key: ${PAGERDUTY_ROUTING_KEY}
      url: %(pd_url)s
routes:
  - matchers: ['to=~".*slack.*"']
    receivers: [slack-alerts]
    continue: true
  - matchers: ['to=~".*email.*"']
    receivers: [ops-email]
    continue: true
  - matchers: ['to=~".*pagerduty.*"']
    receivers: [pagerduty-oncall]
"""


@dataclass
class Exposure:
    """Everything relay showed the outside world during a test: logs, metrics, history, error bodies."""

    texts: dict[str, list[str]] = field(default_factory=dict)

    def add(self, where: str, text: str) -> None:
        self.texts.setdefault(where, []).append(text)

    def leaks(self) -> list[tuple[str, int]]:
        """(where, secret number) for every secret found; the secret itself is not repeated."""
        return [(where, i) for where, texts in self.texts.items() for text in texts
                for i, secret in enumerate(SECRETS) if secret in text]


@dataclass
class Stack:
    slack: SlackWebhookServer
    smtp: SmtpServer
    pagerduty: PagerDutyServer
    routes: Path
    env: dict[str, str]
    exposure: Exposure

    @property
    def token(self) -> str:
        return WEBHOOK_TOKEN


class _Capture(logging.Handler):
    """In-process relay logs, formatted with tracebacks, as an operator would read them."""

    def __init__(self, exposure: Exposure) -> None:
        super().__init__(logging.DEBUG)
        self.exposure = exposure
        self.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        self.exposure.add("log", self.format(record))


@pytest.fixture
def exposure() -> Iterator[Exposure]:
    seen = Exposure()
    handler = _Capture(seen)
    root = logging.getLogger()
    level = root.level
    root.addHandler(handler)
    root.setLevel(logging.INFO)  # what `relay serve` logs by default
    try:
        yield seen
    finally:
        root.removeHandler(handler)
        root.setLevel(level)
    texts = [text for group in seen.texts.values() for text in group]
    SCANNED["tests"] += 1
    SCANNED["texts"] += len(texts)
    SCANNED["bytes"] += sum(len(text) for text in texts)
    SCANNED["leaks"] += len(seen.leaks())
    assert seen.leaks() == [], "a secret appeared in: " + ", ".join(f"{w} (secret #{i})" for w, i in seen.leaks())


@pytest.fixture
async def stack(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, exposure: Exposure) -> AsyncIterator[Stack]:
    async with (SlackWebhookServer() as slack, SmtpServer(require_starttls=True, auth={SMTP_USER: SMTP_PASSWORD})
                as smtp, PagerDutyServer(routing_keys={ROUTING_KEY}) as pagerduty):
        # Providers are reached by name, as in production (hooks.slack.com): relay must resolve them.
        env = {
            "SLACK_WEBHOOK_URL": f"http://localhost:{slack.port}{SLACK_PATH}",
            "SMTP_SMARTHOST": f"localhost:{smtp.port}",
            "SMTP_PASSWORD": SMTP_PASSWORD,
            "PAGERDUTY_ROUTING_KEY": ROUTING_KEY,
            "RELAY_WEBHOOK_TOKEN": WEBHOOK_TOKEN,
            "RELAY_ADMIN_TOKEN": ADMIN_TOKEN,
        }
        for key, value in env.items():
            monkeypatch.setenv(key, value)
        routes = tmp_path / "routes.yaml"
        routes.write_text(ROUTES % {"user": SMTP_USER, "pd_url": f"http://localhost:{pagerduty.port}/v2/enqueue",
                                 "ca_file": smtp.ca_file})
        yield Stack(slack, smtp, pagerduty, routes, env, exposure)


async def expose(stack: Stack, url: str, log: Path | None = None) -> None:
    """Collect what an operator sees of relay: metrics, history and its log, for the secret scan."""
    import httpx

    async with httpx.AsyncClient(base_url=url, timeout=10, headers=ADMIN_HEADERS) as client:
        stack.exposure.add("metrics", (await client.get("/metrics")).text)
        for state in ("pending", "delivered", "dead"):
            answer = await client.get("/api/v1/notifications", params={"state": state, "limit": "1000"})
            stack.exposure.add("history", answer.text)
        stack.exposure.add("error body", (await client.get("/api/v1/notifications")).text)
    if log is not None:
        stack.exposure.add("log", log.read_text(errors="replace"))
