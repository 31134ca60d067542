"""The dead man's switch with a real relay and the suite's Slack and PagerDuty servers (max_silence 1 s).

A heartbeat that keeps arriving sends nothing; its absence pages once, its return resolves that page; a restart
neither forgets a missing heartbeat nor pages just because relay itself was down, and a crash loop does not
postpone the page; replicas on one PostgreSQL database send one notice.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

from tests.conftest import Providers
from tests.e2e.process import RelayProcess
from tests.helpers import (
    RunningRelay,
    fixture,
    poll_until,
    postgres_database,
    relay_settings,
    repo_routes,
    running_relay,
    slack_text,
)
from tests.test_heartbeat import heartbeat_section, watchdog


def routes_with_heartbeat(tmp_path: Path, providers: Providers, max_silence: str = "1s", arm: str | None = None
                          ) -> Path:
    return repo_routes(tmp_path, providers.pagerduty.url, extra=heartbeat_section(max_silence=max_silence, arm=arm))


@contextlib.asynccontextmanager
async def beating(client: httpx.AsyncClient, first_after: float = 0.0) -> AsyncIterator[list[dict[str, Any]]]:
    """Alertmanager re-sending the Watchdog (every 0.2 s here) to the relay at `client`; yields its answers."""
    answers: list[dict[str, Any]] = []

    async def beat() -> None:
        await asyncio.sleep(first_after)
        while True:
            answers.append((await client.post("/webhook", json=watchdog())).json())
            await asyncio.sleep(0.2)

    task = asyncio.create_task(beat())
    try:
        yield answers
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def checked_after(relay: RunningRelay, moment: float) -> None:
    """Wait until the relay's dead man's switch has run a check that began after `moment`."""
    await poll_until(lambda: relay.app.state.services.deadman.checked_at > moment, timeout=10)


async def gauge(client: httpx.AsyncClient, name: str) -> float:
    text = (await client.get("/metrics")).text
    found = re.search(rf'^{name}\{{heartbeat="watchdog"\}} (\S+)$', text, re.MULTILINE)
    assert found, f"{name} not exported"
    return float(found.group(1))


async def all_delivered(relay: RunningRelay) -> bool:
    return all(row["state"] == "delivered" for row in await relay.history())


async def test_missing_heartbeat_pages_once_and_its_return_resolves_the_page(tmp_path: Path, providers: Providers,
                                                                            database_url: str) -> None:
    settings = relay_settings(tmp_path, routes_with_heartbeat(tmp_path, providers), database_url=database_url)
    async with running_relay(settings) as relay:
        started = time.time()
        async with beating(relay.client) as answers:
            await checked_after(relay, started + 2)  # two silences' worth of checks while it arrives
        assert answers and all(a["heartbeats"] == ["watchdog"] and a["receivers"] == {} for a in answers)
        assert providers.slack.messages == [] and providers.pagerduty.events == [] and await relay.history() == []
        # When relay itself last saw the heartbeat (the test's own clock reads later than the last post arrived).
        last_beat = await gauge(relay.client, "relay_heartbeat_last_seen_timestamp_seconds")

        [missing] = await providers.slack.wait_for(1)
        [trigger] = await providers.pagerduty.wait_for(1)
        assert time.time() - last_beat >= 1  # not before max_silence
        text = slack_text(missing)
        assert "RelayHeartbeatMissing" in text and "FIRING" in text
        assert "No Watchdog heartbeat from Alertmanager for 1s — Prometheus or Alertmanager may be down" in text
        assert trigger["event_action"] == "trigger" and trigger["payload"]["severity"] == "critical"
        assert "No Watchdog heartbeat" in trigger["payload"]["summary"]
        assert await gauge(relay.client, "relay_heartbeat_missing") == 1
        await checked_after(relay, time.time() + 1)  # still missing a while later: still one notice
        assert len(providers.slack.messages) == 1 and len(providers.pagerduty.events) == 1

        async with beating(relay.client) as answers:
            [_, resolved] = await providers.slack.wait_for(2)
            [_, resolve] = await providers.pagerduty.wait_for(2)
            await checked_after(relay, time.time() + 1.5)  # it keeps arriving: nothing more
        assert answers[0]["heartbeats"] == ["watchdog"] and answers[0]["notifications_enqueued"] == 0
        assert "RESOLVED" in slack_text(resolved) and "RelayHeartbeatMissing" in slack_text(resolved)
        assert (resolve["event_action"], resolve["dedup_key"]) == ("resolve", trigger["dedup_key"])
        assert providers.pagerduty.open_incidents() == {}
        await poll_until(lambda: all_delivered(relay))
        history = await relay.history()
        assert sorted((row["receiver"], row["status"]) for row in history) == [
            ("pagerduty-oncall", "firing"), ("pagerduty-oncall", "resolved"),
            ("slack-alerts", "firing"), ("slack-alerts", "resolved")]
        assert all(row["alertnames"] == ["RelayHeartbeatMissing"] for row in history)
        assert await gauge(relay.client, "relay_heartbeat_missing") == 0
        assert await gauge(relay.client, "relay_heartbeat_last_seen_timestamp_seconds") > last_beat
    assert len(providers.slack.messages) == 2 and len(providers.pagerduty.events) == 2


async def test_restart_while_missing_keeps_the_state_and_sends_no_second_page(tmp_path: Path, providers: Providers,
                                                                             database_url: str) -> None:
    settings = relay_settings(tmp_path, routes_with_heartbeat(tmp_path, providers, arm="start"),
                              database_url=database_url)
    async with running_relay(settings) as relay:  # none ever arrives (arm: start): missing 1 s after relay watched
        await providers.slack.wait_for(1)
        await providers.pagerduty.wait_for(1)
        await poll_until(lambda: all_delivered(relay))
    async with running_relay(settings) as relay:
        await checked_after(relay, time.time() + 1.5)  # past this relay's own grace: it would page now if it forgot
        assert len(providers.slack.messages) == 1 and len(providers.pagerduty.events) == 1
        assert await gauge(relay.client, "relay_heartbeat_missing") == 1
        async with beating(relay.client):
            [_, resolved] = await providers.slack.wait_for(2)
            await providers.pagerduty.wait_for(2)
        assert "RESOLVED" in slack_text(resolved)


async def test_restart_after_a_long_downtime_waits_for_the_heartbeat_before_paging(tmp_path: Path,
                                                                                   providers: Providers) -> None:
    settings = relay_settings(tmp_path, routes_with_heartbeat(tmp_path, providers))
    async with running_relay(settings) as relay:
        assert (await relay.post(watchdog())).json()["heartbeats"] == ["watchdog"]
        seen = time.time()
    await poll_until(lambda: time.time() > seen + 2, timeout=5)  # relay is down for twice max_silence
    async with running_relay(settings) as relay:
        restarted = time.time()
        async with beating(relay.client, first_after=0.5):  # Alertmanager's next re-send reaches it within max_silence
            await checked_after(relay, restarted + 2)
        assert providers.slack.messages == [] and providers.pagerduty.events == []


async def test_a_relay_restarting_more_often_than_max_silence_still_pages(tmp_path: Path,
                                                                          providers: Providers) -> None:
    """Issue 20 #9: each process waited max_silence from its own start, so a relay that crashed every second or so
    never reported the Watchdog (max_silence 2s here) that had stopped. The deadline is the store's."""
    settings = relay_settings(tmp_path, routes_with_heartbeat(tmp_path, providers, max_silence="2s"))
    async with running_relay(settings) as relay:
        assert (await relay.post(watchdog())).json()["heartbeats"] == ["watchdog"]
        seen = time.time()
    lives = 0
    while not providers.slack.messages and time.time() < seen + 12:
        async with running_relay(settings):  # a process that lives 0.8 s, then crashes
            lives += 1
            with contextlib.suppress(TimeoutError):
                await providers.slack.wait_for(1, timeout=0.8)
    assert providers.slack.messages, f"no page while relay restarted {lives} times"
    [missing] = providers.slack.messages
    assert "RelayHeartbeatMissing" in slack_text(missing) and "FIRING" in slack_text(missing)
    assert time.time() - seen >= 2


async def test_two_replicas_on_one_postgres_database_send_one_notice(tmp_path: Path, providers: Providers) -> None:
    routes = routes_with_heartbeat(tmp_path, providers)
    async with postgres_database() as url:
        replica = RelayProcess(tmp_path, routes, providers.env, database_url=url)
        await replica.start()
        try:
            async with running_relay(relay_settings(tmp_path, routes, database_url=url)) as relay, \
                    httpx.AsyncClient(base_url=replica.url, timeout=10) as other:
                before = time.time()
                await relay.post(watchdog())
                # Only this relay received it; the other replica exports the same time, read from the store.
                seen = await gauge(other, "relay_heartbeat_last_seen_timestamp_seconds")
                assert seen > before and seen == await gauge(relay.client,
                                                             "relay_heartbeat_last_seen_timestamp_seconds")
                await providers.slack.wait_for(1)
                await providers.pagerduty.wait_for(1)
                await checked_after(relay, time.time() + 1.5)  # both replicas kept checking meanwhile
                assert len(providers.slack.messages) == 1 and len(providers.pagerduty.events) == 1
                assert await gauge(other, "relay_heartbeat_missing") == 1

                async with beating(other):  # it returns, at the other replica
                    await providers.slack.wait_for(2)
                    await providers.pagerduty.wait_for(2)
                    await checked_after(relay, time.time() + 1.5)
                assert len(providers.slack.messages) == 2 and len(providers.pagerduty.events) == 2
                assert await gauge(relay.client, "relay_heartbeat_missing") == 0
        finally:
            await replica.terminate()
        log = replica.log.read_text()
        assert "Traceback" not in log, log


async def test_a_maintenance_window_over_everything_never_holds_relays_own_notice(tmp_path: Path,
                                                                                 providers: Providers) -> None:
    """Issue 20 #8 with issue 25's maintenance windows: a window whose matchers take every alert holds an alert
    (the control), but relay's own RelayHeartbeatMissing and its resolve still go out at once: they say that no
    other alert may be reaching anyone, so nothing that mutes alerts may mute them."""
    settings = relay_settings(tmp_path, routes_with_heartbeat(tmp_path, providers), admin_token="adm-token-0123")
    async with running_relay(settings) as relay:
        ends = datetime.fromtimestamp(time.time() + 3600, UTC).isoformat().replace("+00:00", "Z")
        made = await relay.client.post("/api/v1/maintenance", headers={"Authorization": "Bearer adm-token-0123"},
                                       json={"matchers": ['alertname=~".+"'], "ends_at": ends, "comment": "all",
                                             "created_by": "kim"})
        assert made.status_code == 201, made.text
        held = await relay.post(fixture("firing-poddown.json"))
        assert [m["alertname"] for m in held.json()["muted"]] == ["PodDown"]  # the window holds alerts
        assert (await relay.post(watchdog())).json()["heartbeats"] == ["watchdog"]  # armed; then none arrives
        [missing] = await providers.slack.wait_for(1)
        [trigger] = await providers.pagerduty.wait_for(1)
        assert "RelayHeartbeatMissing" in slack_text(missing) and trigger["event_action"] == "trigger"
        async with beating(relay.client):
            [_, resolved] = await providers.slack.wait_for(2)
            await providers.pagerduty.wait_for(2)
        assert "RESOLVED" in slack_text(resolved) and "RelayHeartbeatMissing" in slack_text(resolved)
    assert all("PodDown" not in slack_text(m) for m in providers.slack.messages)
