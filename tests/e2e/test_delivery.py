"""Delivery under trouble: crashes, provider outages, 429s and HA duplicates. Nothing accepted is lost."""

from __future__ import annotations

import asyncio
import json
import signal
from pathlib import Path
from typing import Any

import httpx

from relay.alerts.fingerprint import fingerprint
from tests.conftest import Providers
from tests.e2e.process import RelayProcess
from tests.e2e.test_routing_table import webhook
from tests.helpers import RunningRelay, fixture, poll_until, relay_settings, running_relay, slack_text


def names_in(messages: list[dict[str, Any]]) -> list[str]:
    out = []
    for message in messages:
        text = slack_text(message)
        out.extend(name for name in (f"Warn{i:02d}" for i in range(100)) if f'"{name}' in text or f" {name}" in text)
    return out


async def all_delivered(relay: RunningRelay) -> bool:
    return all(r["state"] == "delivered" for r in await relay.history())


async def test_sigkill_before_delivery_then_restart_delivers_everything(tmp_path: Path, providers: Providers,
                                                                       database_url: str) -> None:
    # Nothing can be delivered before the crash (a send that got out just before a SIGKILL would be sent again:
    # the duplicates such a crash may cause are counted by tests/reliability/test_crash.py).
    providers.slack.fail_all(500)
    providers.pagerduty.fail_all(500)
    providers.smtp.fail_all()
    relay = RelayProcess(tmp_path, providers.routes, providers.env, database_url=database_url)
    await relay.start()
    accepted = []
    async with httpx.AsyncClient(base_url=relay.url) as client:
        for i in range(20):
            answer = await client.post("/webhook", json=webhook(f"Warn{i:02d}", "warning"))
            assert answer.status_code == 200
            accepted.append(f"Warn{i:02d}")
        answer = await client.post("/webhook", json=fixture("firing-poddown.json"))
        assert answer.status_code == 200
    await poll_until(lambda: len(providers.slack.requests) >= 3 and len(providers.pagerduty.requests) >= 1)
    await relay.kill()

    providers.slack.recover()
    providers.pagerduty.recover()
    providers.smtp.recover()
    await relay.start()
    try:
        await providers.slack.wait_for(len(accepted) + 1, timeout=30)
        await providers.smtp.wait_for(1)
        await providers.pagerduty.wait_for(1)
    finally:
        await relay.terminate()
    assert sorted(names_in(providers.slack.messages)) == accepted
    assert len(providers.slack.messages) == len(accepted) + 1
    assert len(providers.smtp.messages) == 1 and len(providers.pagerduty.events) == 1
    log = relay.log.read_text()
    assert "delivered notification" in log and "retrying in" in log  # the log says what happened...
    assert "XXXXSECRET" not in log and providers.env["PAGERDUTY_ROUTING_KEY"] not in log  # ...and no secret


async def test_outage_then_recovery_delivers_in_lane_order_once(tmp_path: Path, providers: Providers,
                                                                database_url: str) -> None:
    providers.slack.fail_all(500)
    async with running_relay(relay_settings(tmp_path, providers.routes, database_url=database_url)) as relay:
        for i in range(3):
            assert (await relay.post(webhook(f"Warn{i:02d}", "warning"))).status_code == 200
            assert (await relay.post(webhook(f"Warn{i:02d}", "warning", "resolved"))).status_code == 200
        await poll_until(lambda: len(providers.slack.requests) >= 9)  # several failed rounds of retries
        assert providers.slack.messages == []
        providers.slack.recover()
        await providers.slack.wait_for(6)
        await poll_until(lambda: all_delivered(relay))
    delivered = [(names_in([m])[0], "RESOLVED" in slack_text(m).upper()) for m in providers.slack.messages]
    assert len(delivered) == len(set(delivered)) == 6  # none lost, none twice
    for i in range(3):
        lane = [resolved for name, resolved in delivered if name == f"Warn{i:02d}"]
        assert lane == [False, True]  # the resolve never overtakes its firing


async def test_429_retry_after_is_waited_for_not_hammered(tmp_path: Path, providers: Providers) -> None:
    providers.slack.respond_with(429, headers={"Retry-After": "1"})
    # Retry-After is honoured up to RELAY_RETRY_MAX_SECONDS (tests/test_retry.py): here it is within it.
    async with running_relay(relay_settings(tmp_path, providers.routes, retry_max_seconds=5)) as relay:
        await relay.post(webhook("Warn01", "warning"))
        await providers.slack.wait_for(1)
    first, second = providers.slack.requests
    assert (first.status, second.status) == (429, 200)
    assert second.monotonic - first.monotonic >= 1.0


async def test_ha_pair_posting_the_same_webhook_notifies_once(tmp_path: Path, providers: Providers) -> None:
    async with running_relay(relay_settings(tmp_path, providers.routes)) as relay:
        body = fixture("firing-highlatency-group2.json")
        answers = await asyncio.gather(relay.post(body), relay.post(json.loads(json.dumps(body))))
        assert [a.status_code for a in answers] == [200, 200]
        assert sorted(a.json()["notifications_enqueued"] for a in answers) == [0, 1]
        await providers.slack.wait_for(1)
        await poll_until(lambda: all_delivered(relay))
    assert len(providers.slack.messages) == 1


def pod_group(*pods: str) -> dict[str, Any]:
    """One PodDown group (every integration hears of it) with an alert per pod."""
    body = webhook("PodDown", "critical")
    template = body["alerts"][0]
    body["alerts"] = []
    for pod in pods:
        labels = {**template["labels"], "pod": pod}
        body["alerts"].append({**template, "labels": labels, "fingerprint": fingerprint(labels)})
    return body


async def test_a_group_resent_with_one_new_alert_tells_only_of_the_new_one(tmp_path: Path, providers: Providers,
                                                                          database_url: str) -> None:
    """Dedup is per alert, not per group: Alertmanager re-sending a group that gained an alert makes each
    integration tell of the new alert only, not of the one its people already heard about."""
    settings = relay_settings(tmp_path, providers.routes, database_url=database_url)
    async with running_relay(settings) as relay:
        assert (await relay.post(pod_group("api-7d9f"))).status_code == 200
        await providers.slack.wait_for(1)
        await providers.smtp.wait_for(1)
        await providers.pagerduty.wait_for(1)
        answer = await relay.post(pod_group("api-7d9f", "worker-5c2b"))
        assert answer.json()["alerts_deduplicated"] == 3  # the first pod, for each of the three receivers
        await providers.slack.wait_for(2)
        await providers.smtp.wait_for(2)
        await providers.pagerduty.wait_for(2)
        await poll_until(lambda: all_delivered(relay))
    second_slack = slack_text(providers.slack.messages[1])
    assert "worker-5c2b" in second_slack and "api-7d9f" not in second_slack
    mail = providers.smtp.messages[1].message
    second_mail = "".join(str(part.get_content()) for part in mail.walk() if not part.is_multipart())
    assert "worker-5c2b" in second_mail and "api-7d9f" not in second_mail
    assert [e["payload"]["custom_details"]["labels"]["pod"] for e in providers.pagerduty.events] == [
        "api-7d9f", "worker-5c2b"]


async def test_sigterm_lets_inflight_finish_and_keeps_the_rest(tmp_path: Path, providers: Providers) -> None:
    relay = RelayProcess(tmp_path, providers.routes, {**providers.env, "RELAY_SHUTDOWN_GRACE_SECONDS": "5"})
    await relay.start()
    providers.slack.fail_all(500)
    async with httpx.AsyncClient(base_url=relay.url) as client:
        assert (await client.post("/webhook", json=webhook("Warn07", "warning"))).status_code == 200
    await poll_until(lambda: len(providers.slack.requests) >= 1)
    # uvicorn re-raises SIGTERM after its graceful shutdown, so the exit status is the signal's.
    assert await relay.terminate() in (0, -signal.SIGTERM)
    providers.slack.recover()
    await relay.start()
    try:
        [message] = await providers.slack.wait_for(1, timeout=20)
    finally:
        await relay.terminate()
    assert names_in([message]) == ["Warn07"]
