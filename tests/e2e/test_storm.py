"""Alert storms into one rate-limited Slack channel (issue 14), against the suite's Slack with Slack's own limit on.

A critical gets the channel's next token ahead of a warning backlog, a lane keeps its order (a resolve never
overtakes its firing), two replicas on one PostgreSQL database keep to one budget, and a restart in the middle of
a backlog loses nothing and keeps the order. Positions are read from what Slack received, never from wall time.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.e2e.process import RelayProcess
from tests.e2e.test_routing_table import webhook
from tests.fakes.slack import SlackLimit, SlackWebhookServer
from tests.helpers import relay_settings, running_relay, slack_text

RATE, BURST = 10.0, 2  # relay's limit for the channel; the suite's Slack allows one message more at once
SLACK_LIMIT = SlackLimit(rate=RATE, burst=BURST + 1)


@pytest.fixture
async def slack() -> AsyncIterator[SlackWebhookServer]:
    async with SlackWebhookServer(limit=SLACK_LIMIT) as server:
        yield server


def storm_routes(tmp_path: Path, slack: SlackWebhookServer, rate: float = RATE, burst: int = BURST) -> Path:
    path = tmp_path / "routes.yaml"
    path.write_text(f"""receivers:
  - name: storm-slack
    slack:
      webhook_url: "{slack.url()}"
    rate_limit: {{rate: {rate}, burst: {burst}}}
routes: []
default_receivers: [storm-slack]
""")
    return path


def received(slack: SlackWebhookServer) -> list[tuple[str, str]]:
    """(alertname, firing|resolved) of each message Slack accepted, in arrival order."""
    out = []
    for message in slack.messages:
        text = slack_text(message)
        names = [w.strip('"*_ ') for w in text.replace("\\n", " ").split() if w.strip('"*_ ').startswith(
            ("Warn", "PodDown", "Flap"))]
        assert names, text
        out.append((names[0], "resolved" if "RESOLVED" in text.upper() else "firing"))
    return out


def warning(i: int, status: str = "firing", prefix: str = "Warn") -> dict[str, Any]:
    return webhook(f"{prefix}{i:03d}", "warning", status)


async def accepted(post: Any, body: dict[str, Any]) -> None:
    response = await post(body)
    assert response.status_code == 200, response.text


async def test_a_critical_reaches_slack_ahead_of_a_warning_backlog_and_lanes_keep_their_order(
        tmp_path: Path, slack: SlackWebhookServer, database_url: str) -> None:
    n = 40
    settings = relay_settings(tmp_path, storm_routes(tmp_path, slack), database_url=database_url)
    async with running_relay(settings) as relay:
        for i in range(n):
            await accepted(relay.post, warning(i))
        for i in range(5):  # lanes whose resolve is queued right behind their firing, inside the storm
            await accepted(relay.post, warning(i, prefix="Flap"))
            await accepted(relay.post, warning(i, "resolved", prefix="Flap"))
        await slack.wait_for(3)
        assert len(slack.messages) < n - 10, "the backlog should still be waiting"
        await accepted(relay.post, webhook("PodDown", "critical"))
        before = len(slack.messages)  # at most the sends already under way may still arrive ahead of it
        await accepted(relay.post, webhook("PodDown", "critical", "resolved"))
        await slack.wait_for(n + 10 + 2, timeout=30)

    got = received(slack)
    assert len(got) == n + 12 and len(set(got)) == n + 12  # each once
    page, page_resolved = got.index(("PodDown", "firing")), got.index(("PodDown", "resolved"))
    assert page <= before + 2, f"the critical came {page - before} messages after it was posted"
    assert page < page_resolved <= page + 3  # its resolve follows it, ahead of the warnings too
    assert sum(1 for name, _ in got[page_resolved:] if name.startswith("Warn")) >= n // 2
    for i in range(5):  # a resolve never overtakes the firing it closes
        assert got.index((f"Flap{i:03d}", "firing")) < got.index((f"Flap{i:03d}", "resolved"))
    assert slack.rate_limited <= 2  # relay keeps to the channel's limit: no 429 storm


@pytest.mark.parametrize("database_url", ["postgres"], indirect=True)
async def test_two_replicas_on_one_postgres_database_keep_to_one_budget(
        tmp_path: Path, slack: SlackWebhookServer, database_url: str) -> None:
    n, rate, burst = 40, 8.0, 2
    routes = storm_routes(tmp_path, slack, rate, burst)
    replicas = [RelayProcess(tmp_path / f"r{k}", routes, {}, database_url=database_url) for k in range(2)]
    for k, replica in enumerate(replicas):
        (tmp_path / f"r{k}").mkdir()
        await replica.start()
    try:
        async with httpx.AsyncClient() as client:
            for i in range(n):
                response = await client.post(f"{replicas[i % 2].url}/webhook", json=warning(i))
                assert response.status_code == 200
        await slack.wait_for(n, timeout=30)
    finally:
        for replica in replicas:
            await replica.terminate()

    times = sorted(at for at, _, _ in slack.received)
    # One budget: the whole storm takes what one bucket allows (two would drain it in half the time), and no
    # stretch of it went faster than one bucket (two tokens of slack for the time from a token to Slack, which
    # varies with the machine's load).
    assert times[-1] - times[0] >= (n - burst - 2) / rate
    worst = max(j - i + 1 - rate * (times[j] - times[i]) for i in range(n) for j in range(i, n))
    assert worst <= burst + 2, f"{worst:.1f} messages over the budget"
    assert slack.rate_limited <= 2
    assert len({name for name, _ in received(slack)}) == n


async def test_a_restart_in_the_middle_of_a_backlog_loses_nothing_and_keeps_the_order(
        tmp_path: Path, slack: SlackWebhookServer, database_url: str) -> None:
    n = 30
    routes = storm_routes(tmp_path, slack)
    relay = RelayProcess(tmp_path, routes, {}, database_url=database_url)
    await relay.start()
    async with httpx.AsyncClient(base_url=relay.url) as client:
        for i in range(n):
            assert (await client.post("/webhook", json=warning(i))).status_code == 200
        for i in range(5):
            assert (await client.post("/webhook", json=warning(i, prefix="Flap"))).status_code == 200
            assert (await client.post("/webhook", json=warning(i, "resolved", prefix="Flap"))).status_code == 200
        await slack.wait_for(8)
        await relay.terminate()  # graceful: sends under way finish (a repeat after the restart is counted below)
        stopped_at = len(slack.messages)
        assert stopped_at < n, "the restart should come in the middle of the backlog"
        await relay.start()
        assert (await client.post("/webhook", json=webhook("PodDown", "critical"))).status_code == 200
        await slack.wait_for(n + 11, timeout=30)
        await relay.terminate()

    got = received(slack)
    assert len(got) == len(set(got)) == n + 11  # nothing lost, nothing twice
    assert got.index(("PodDown", "firing")) <= stopped_at + 3 + 2  # after the restart, still ahead of the rest
    for i in range(5):
        assert got.index((f"Flap{i:03d}", "firing")) < got.index((f"Flap{i:03d}", "resolved"))
    assert slack.rate_limited <= 2

