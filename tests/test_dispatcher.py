"""Dispatcher outcomes a user sees: permanent errors dead-letter at once, give-up, fallback, reload, rate limits."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from relay.dispatcher import Dispatcher, DispatcherOptions
from relay.pacing.ratelimit import TokenBucket
from relay.pacing.retry import RetryPolicy, next_attempt
from relay.store.sqlite import SqliteStore
from tests.conftest import Providers
from tests.doubles import NoReceivers
from tests.e2e.test_routing_table import webhook
from tests.fakes.slack import SlackWebhookServer
from tests.helpers import fixture, poll_until, relay_settings, running_relay, seconds


async def states(relay: Any) -> list[str]:
    return [row["state"] for row in await relay.history()]


async def test_permanent_error_dead_letters_at_once_and_frees_the_lane(tmp_path: Path, providers: Providers) -> None:
    providers.slack.respond_with(403)  # invalid_token
    async with running_relay(relay_settings(tmp_path, providers.routes)) as relay:
        await relay.post(webhook("Warn01", "warning"))
        await relay.post(webhook("Warn01", "warning", "resolved"))
        await providers.slack.wait_for(1)
        await poll_until(lambda: _has(relay, ["delivered", "dead"]))
        dead = (await relay.history(state="dead"))[0]
        metrics = (await relay.client.get("/metrics")).text
    assert dead["attempts"] == 1 and dead["last_error"] == "auth: HTTP 403 invalid_token"
    assert [r.status for r in providers.slack.requests] == [403, 200]
    assert 'relay_notifications_failed_total{integration="slack",reason="auth",receiver="slack-alerts"}' in metrics
    assert providers.slack.url() not in metrics and "XXXXSECRET" not in dead["last_error"]


async def _failed_once(relay: Any) -> bool:
    return any(r["state"] == "pending" and r["attempts"] == 1 for r in await relay.history())


async def _has(relay: Any, expected: list[str]) -> bool:
    return await states(relay) == expected


async def test_gives_up_after_give_up_after_then_dead_letters(tmp_path: Path, providers: Providers) -> None:
    routes = providers.routes
    routes.write_text(routes.read_text().replace('channel: "#ojeomneo-alerts"',
                                                 'channel: "#ojeomneo-alerts"\n    give_up_after: 1s'))
    providers.slack.fail_all(503)
    async with running_relay(relay_settings(tmp_path, routes)) as relay:
        await relay.post(webhook("Warn02", "warning"))
        await poll_until(lambda: _has(relay, ["dead"]), timeout=15)
        [row] = await relay.history()
    assert row["last_error"].startswith("gave_up")
    assert row["attempts"] >= 2
    assert providers.slack.messages == []


async def test_fallback_receiver_gets_what_the_primary_dead_letters(tmp_path: Path, providers: Providers) -> None:
    routes = providers.routes
    routes.write_text(routes.read_text().replace('channel: "#ojeomneo-alerts"',
                                                 'channel: "#ojeomneo-alerts"\n    fallback: ops-email'))
    providers.slack.respond_with(404)  # channel_not_found
    async with running_relay(relay_settings(tmp_path, routes)) as relay:
        await relay.post(webhook("Warn03", "warning"))
        [mail] = await providers.smtp.wait_for(1)
    assert "Warn03" in mail.message["Subject"]


async def test_when_a_provider_answers_again_what_backed_off_is_sent_at_once(tmp_path: Path,
                                                                            providers: Providers) -> None:
    # Backoff long enough that, without the recovery, the first page would wait far past this test's bounds.
    settings = relay_settings(tmp_path, providers.routes, retry_initial_seconds=600, retry_max_seconds=600)
    providers.slack.fail_all(503)
    async with running_relay(settings) as relay:
        await relay.post(webhook("Outage01", "warning"))
        await providers.slack.wait_for_requests(1)
        await poll_until(lambda: _has(relay, ["pending"]))
        [waiting] = await relay.history()
        assert waiting["attempts"] == 1 and seconds(waiting["next_attempt_at"]) > time.time() + 500
        providers.slack.recover()
        await relay.post(webhook("Outage02", "warning"))  # another group: its first send finds Slack back
        messages = await providers.slack.wait_for(2)
        assert await states(relay) == ["delivered", "delivered"]
        assert ["Outage02" in json.dumps(messages[0]), "Outage01" in json.dumps(messages[1])] == [True, True]

        # It flaps: down again and back within 30 s. This time the backlog keeps its backoff (no retry storm on
        # every success of a flapping provider).
        providers.slack.fail_all(503)
        await relay.post(webhook("Outage03", "warning"))
        await poll_until(lambda: _failed_once(relay))
        providers.slack.recover()
        await relay.post(webhook("Outage04", "warning"))
        await providers.slack.wait_for(3)
        await poll_until(lambda: not relay.app.state.services.dispatcher.in_flight)  # its outcome and what follows done
        waiting = [r for r in await relay.history() if r["state"] != "delivered"]
    assert [(r["attempts"], seconds(r["next_attempt_at"]) > time.time() + 500) for r in waiting] == [(1, True)]


async def test_broken_reload_keeps_the_last_good_routes(tmp_path: Path, providers: Providers) -> None:
    async with running_relay(relay_settings(tmp_path, providers.routes)) as relay:
        good = providers.routes.read_text()
        broken = good.replace("receivers: [slack-alerts]\n\ndefault", "receivers: [nope]\n\ndefault")
        providers.routes.write_text(broken)
        answer = await relay.admin("POST", "/-/reload")
        assert answer.status_code == 400
        lines = broken.splitlines()
        line = lines.index("    receivers: [nope]") + 1
        route = sum(text.startswith("  - matchers:") for text in lines[:line])  # 1-based
        assert f"{providers.routes}:{line}: route {route} names unknown receiver 'nope'" in answer.json()["error"]
        assert "relay_config_last_reload_successful 0.0" in (await relay.client.get("/metrics")).text
        assert (await relay.post(fixture("firing-poddown.json"))).status_code == 200
        await providers.pagerduty.wait_for(1)
        assert (await relay.client.get("/readyz")).status_code == 200


def test_backoff_grows_and_honours_retry_after() -> None:
    policy = RetryPolicy(initial=1, maximum=60, jitter=0)
    assert [policy.delay(n) for n in range(1, 8)] == [1, 2, 4, 8, 16, 32, 60]
    assert policy.delay(1, retry_after=30) == 30
    assert next_attempt(policy, 1, now=100, give_up_at=100.5) is None
    assert next_attempt(policy, 1, now=100, give_up_at=200) == 101


def test_token_bucket_allows_burst_then_rate() -> None:
    bucket = TokenBucket(rate=1.0, burst=5, updated=0.0)
    assert [bucket.take(now=0.0) for _ in range(5)] == [0.0] * 5
    assert bucket.take(now=0.0) == 1.0
    assert bucket.take(now=0.5) == 0.5
    assert bucket.take(now=1.0) == 0.0


async def test_a_hanging_provider_does_not_hold_every_worker(tmp_path: Path, providers: Providers) -> None:
    providers.slack.stall(times=4)  # Slack accepts connections and never answers
    settings = relay_settings(tmp_path, providers.routes, workers=4, workers_per_receiver=2)
    async with running_relay(settings) as relay:
        for i in range(6):
            await relay.post(webhook(f"Warn{i:02d}", "warning"))
        await providers.slack.wait_for_held(2)
        await relay.post(fixture("firing-poddown.json"))
        [event] = await providers.pagerduty.wait_for(1, timeout=5)  # paged while Slack hangs (its timeout is 10 s)
        [mail] = await providers.smtp.wait_for(1, timeout=5)
        assert providers.slack.held == 2 and providers.slack.messages == []
        providers.slack.recover()
        await providers.slack.wait_for(7)
    assert event["event_action"] == "trigger" and "PodDown" in mail.message["Subject"]


async def test_concurrent_webhooks_cannot_take_more_than_the_worker_limits(tmp_path: Path) -> None:
    store = SqliteStore(str(tmp_path / "relay.db"))  # offers are decided before the store is touched
    dispatcher = Dispatcher(store, NoReceivers(), DispatcherOptions(workers=5, workers_per_receiver=3))
    offers = [dispatcher.handoff(["pagerduty", "slack"]) for _ in range(4)]  # enqueues in progress at once
    granted = [o for o in offers if o is not None]
    assert sum(o.room["pagerduty"] for o in granted) == 3  # the per-receiver cap
    assert sum(o.limit for o in granted) == 5  # the worker limit
    assert dispatcher.handoff(["email"]) is None
    for offer in offers:
        dispatcher.adopt([], offer)  # the enqueues finished without leasing anything
    again = dispatcher.handoff(["pagerduty", "pagerduty"])
    assert again is not None and again.room == {"pagerduty": 2}


async def test_a_fallback_copy_of_relays_own_notice_keeps_its_rank(tmp_path: Path) -> None:
    """relay's own notice goes first and is never folded (issue 20 #8): also its copy to the fallback receiver when
    the heartbeat's receiver dead-letters it. The copy was written with the default rank of its labels, so critical
    alerts already waiting at the fallback went ahead of it (and with a custom priority.label it ranked last)."""
    from relay.store import open_store

    async with SlackWebhookServer() as primary, SlackWebhookServer() as backup:
        primary.fail_all(404)  # channel_not_found: a dead letter at once
        backup.fail_all(503)  # an outage: what reaches it waits
        routes = tmp_path / "routes.yaml"
        routes.write_text(f"""
receivers:
  - name: alerts
    slack: {{webhook_url: "{primary.url()}"}}
    fallback: backup
  - name: backup
    slack: {{webhook_url: "{backup.url()}"}}
default_receivers: [backup]
heartbeats:
  - name: watchdog
    matchers: ['alertname="Watchdog"']
    max_silence: 1s
    receivers: [alerts]
    arm: start
""")
        settings = relay_settings(tmp_path, routes, retry_initial_seconds=600, retry_max_seconds=600)
        async with running_relay(settings) as relay:
            for name in ("Crit01", "Crit02", "Crit03"):
                await relay.post(webhook(name, "critical"))

            async def copied() -> bool:
                return any(row["receiver"] == "backup" and row["alertnames"] == ["RelayHeartbeatMissing"]
                           for row in await relay.history())

            await poll_until(copied, timeout=15)
        store = open_store(settings.database_url)
        await store.open()
        try:
            [first] = (await store.claim("test", 1, time.time() + 3600, 60)).claimed
        finally:
            await store.close()
        assert first.notification.receiver == "backup"
        assert [a.name for a in first.notification.alerts] == ["RelayHeartbeatMissing"]
