"""Alert storms end to end (relay.storms): a flood into a rate-limited Slack or an SMTP server becomes summaries.

relay runs in-process against the suite's Slack (at Slack's own limit: SlackLimit) and aiosmtpd servers, with
its default rate limits. Each test posts warnings as Alertmanager would in a storm (each alert its own group, one
webhook each) and checks what a person sees: few messages, each storm alert named in a message or in the history
that message links to, the Slack limit (nearly) never hit, nothing summarised twice.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from pathlib import Path
from typing import Any

from relay.alerts import WebhookMessage
from relay.config.settings import Settings
from relay.store import open_store
from relay.store.base import Candidate
from relay.store.records import HistoryFilter
from relay.storms.stage import Storms
from tests.fakes.slack import DEFAULT_TOKEN, SlackLimit, SlackWebhookServer
from tests.fakes.smtp import SmtpServer
from tests.helpers import RunningRelay, poll_until, postgres_database, relay_settings, running_relay, slack_text

EXTERNAL_URL = "https://relay.ojeomneo.example"
SUMMARY_LINK = re.compile(re.escape(EXTERNAL_URL) + r"/api/v1/notifications\?summary=(\d+)")


def body(i: int, severity: str = "warning", status: str = "firing") -> dict[str, Any]:
    labels = {"alertname": "HighLatency" if i % 3 else "RedisMemoryHigh", "severity": severity,
              "pod": f"api-{i:03d}", "namespace": "ojeomneo"}
    return {"version": "4", "groupKey": f'{{}}:{{pod="api-{i:03d}"}}', "status": status, "receiver": "relay",
            "groupLabels": {"pod": labels["pod"]}, "commonLabels": labels, "commonAnnotations": {},
            "externalURL": "http://alertmanager.example", "truncatedAlerts": 0,
            "alerts": [{"status": status, "labels": labels, "annotations": {"summary": f"{labels['pod']} is slow"},
                        "startsAt": "2026-12-01T10:00:00Z",
                        "endsAt": "0001-01-01T00:00:00Z" if status == "firing" else "2026-12-01T10:09:00Z",
                        "generatorURL": "", "fingerprint": f"{i:016x}"}]}


def routes(tmp_path: Path, receiver: str) -> Path:
    path = tmp_path / "routes.yaml"
    path.write_text(f"receivers:\n{receiver}\ndefault_receivers: [alerts]\n")
    return path


def storm_settings(tmp_path: Path, receiver: str) -> Settings:
    """relay with its default rate limits, honouring Slack's Retry-After (the suite's default caps it at 0.5 s)."""
    return relay_settings(tmp_path, routes(tmp_path, receiver), rate_limits=True, external_url=EXTERNAL_URL,
                          retry_max_seconds=5)


async def storm(relay: RunningRelay, numbers: range, **kwargs: Any) -> None:
    """Alertmanager's flush of many groups at once: concurrent webhooks, each answered 200."""
    for start in range(0, len(numbers), 20):
        answers = await asyncio.gather(*(relay.post(body(i, **kwargs)) for i in numbers[start:start + 20]))
        assert {a.status_code for a in answers} == {200}


async def settled(relay: RunningRelay) -> bool:
    """Nothing waits any more: every notification was delivered on its own or in a summary that was sent."""
    return not await relay.history(state="pending", limit="1000")


async def named(relay: RunningRelay, texts: list[str], pods: set[str]) -> set[str]:
    """The pods a person can find: in a message's text, or in the history of a summary a message links to."""
    found = {pod for pod in pods if any(pod in text for text in texts)}
    for summary in {int(s) for text in texts for s in SUMMARY_LINK.findall(text)}:
        for row in await relay.history(summary=str(summary), limit="1000"):
            [alert] = (await relay.admin("GET", f"/api/v1/notifications/{row['id']}")).json()["alerts"]
            found.add(alert["labels"]["pod"])
    return found & pods


def summaries(history: list[dict[str, Any]]) -> dict[int, set[int]]:
    """Summary id -> the notifications folded into it."""
    out: dict[int, set[int]] = {}
    for row in history:
        if row["summary_id"] is not None:
            out.setdefault(row["summary_id"], set()).add(row["id"])
    return out


def coalesced_so_far(metrics: str) -> float:
    """The process-wide counter for receiver "alerts" (in-process relays of earlier tests share it: compare deltas)."""
    found = re.search(r'relay_notifications_coalesced_total\{receiver="alerts"\} (\S+)', metrics)
    return float(found.group(1)) if found else 0.0


async def test_a_storm_into_a_slack_webhook_is_folded_and_every_alert_is_named(tmp_path: Path) -> None:
    async with SlackWebhookServer(limit=SlackLimit()) as slack:
        receiver = f"  - name: alerts\n    slack:\n      webhook_url: {slack.url()}\n    storm: {{window: 5s}}\n"
        settings = storm_settings(tmp_path, receiver)
        async with running_relay(settings) as relay:
            before = coalesced_so_far((await relay.client.get("/metrics")).text)
            await storm(relay, range(200))
            await poll_until(lambda: settled(relay), timeout=30)
            texts = [slack_text(m) for m in slack.messages]
            pods = {f"api-{i:03d}" for i in range(200)}
            assert await named(relay, texts, pods) == pods
            history = await relay.history(limit="1000")
            folded = summaries(history)
            assert folded and sum(len(ids) for ids in folded.values()) >= 150
            assert len(slack.messages) <= 15  # instead of 200, one a second
            assert slack.rate_limited <= 5
            metrics = (await relay.client.get("/metrics")).text
            assert 'relay_storm_active{receiver="alerts"} 1.0' in metrics
            assert coalesced_so_far(metrics) - before == sum(len(ids) for ids in folded.values())
            # A folded notification says where it was delivered.
            some = next(iter(next(iter(folded.values()))))
            shown = (await relay.admin("GET", f"/api/v1/notifications/{some}")).json()
            assert shown["state"] == "delivered" and shown["summary_id"] in folded
            assert shown["attempt_log"][-1]["reason"] == "folded"


async def test_a_bot_token_summary_is_one_message_updated_in_place(tmp_path: Path) -> None:
    async with SlackWebhookServer(limit=SlackLimit()) as slack:
        receiver = (f"  - name: alerts\n    slack:\n      token: {DEFAULT_TOKEN}\n      channel: '#ojeomneo-alerts'\n"
                    f"      api_url: {slack.api_url}\n    storm: {{window: 6s}}\n")
        settings = storm_settings(tmp_path, receiver)
        async with running_relay(settings) as relay:
            await storm(relay, range(100))
            await poll_until(lambda: any("Alert storm" in slack_text(p.body) for p in slack.top_level()), timeout=20)
            await storm(relay, range(100, 160))
            await poll_until(lambda: settled(relay), timeout=30)
            await poll_until(lambda: bool(slack.updates), timeout=20)
            tops = [p for p in slack.top_level() if "Alert storm" in slack_text(p.body)]
            assert len(tops) == 1  # one summary message for the storm ...
            [summary] = tops
            assert summary.updates  # ... updated in place as it grew
            assert all(u["ts"] == summary.ts for u in slack.updates)
            alone = [p for p in slack.top_level() if p is not summary]
            assert f": {160 - len(alone)} alerts folded" in slack_text(summary.body)  # the whole storm, in one
            details = slack.replies(summary.ts)
            assert len(details) == 1 + len(summary.updates)  # each summary's own alerts in the thread
            texts = [slack_text(p.body) for p in slack.posted]
            pods = {f"api-{i:03d}" for i in range(160)}
            assert await named(relay, texts, pods) == pods
            assert len(slack.top_level()) <= 12  # the burst before the storm was seen, the summary, little else
            assert slack.rate_limited <= 5
            # The storm ends (a window with nothing to fold): its message says so, in place.
            await poll_until(lambda: "Alert storm over: " in slack_text(summary.body), timeout=20)
            # A folded alert resolves after the storm: the answer is in the summary's thread, which stays as it was.
            tops, updates, shown = len(slack.top_level()), len(slack.updates), slack_text(summary.body)
            folded = next(i for i in range(100, 160) if f"api-{i:03d}" not in "".join(
                slack_text(p.body) for p in slack.top_level() if p is not summary))
            assert (await relay.post(body(folded, status="resolved"))).status_code == 200
            await poll_until(lambda: any(f"api-{folded:03d}" in slack_text(p.body) and "RESOLVED" in
                                         slack_text(p.body).upper() for p in slack.replies(summary.ts)), timeout=20)
            assert (len(slack.top_level()), len(slack.updates), slack_text(summary.body)) == (tops, updates, shown)


async def test_a_storm_into_email_becomes_a_digest(tmp_path: Path) -> None:
    async with SmtpServer() as smtp:
        receiver = (f"  - name: alerts\n    email:\n      to: [ops@ojeomneo.example]\n"
                    f"      from: relay@ojeomneo.example\n      smarthost: {smtp.smarthost}\n"
                    f"      require_tls: false\n    storm: {{window: 5s}}\n")
        settings = storm_settings(tmp_path, receiver)
        async with running_relay(settings) as relay:
            await storm(relay, range(200))
            await poll_until(lambda: settled(relay), timeout=30)
            texts = [m.message.get_body(("plain",)).get_content() for m in smtp.messages]  # type: ignore[union-attr]
            digests = [m for m in smtp.messages if "[relay] Alert storm" in str(m.message["Subject"])]
            # Email goes 5 a second (burst 20): about 50 went one by one before the backlog outgrew the window.
            assert len(digests) >= 1 and len(smtp.messages) <= 70
            pods = {f"api-{i:03d}" for i in range(200)}
            assert await named(relay, texts, pods) == pods


async def test_a_restart_in_a_storm_loses_nothing_and_summarises_nothing_twice(tmp_path: Path) -> None:
    async with SlackWebhookServer(limit=SlackLimit()) as slack:
        receiver = f"  - name: alerts\n    slack:\n      webhook_url: {slack.url()}\n    storm: {{window: 4s}}\n"
        settings = storm_settings(tmp_path, receiver)
        async with running_relay(settings) as relay:
            await storm(relay, range(150))
            await poll_until(lambda: any("Alert storm" in slack_text(m) for m in slack.messages), timeout=20)
        first = [m for m in slack.messages if "Alert storm" in slack_text(m)]
        async with running_relay(settings) as relay:  # the same database: the storm is still open
            await storm(relay, range(150, 250))
            await poll_until(lambda: settled(relay), timeout=30)
            texts = [slack_text(m) for m in slack.messages]
            pods = {f"api-{i:03d}" for i in range(250)}
            assert await named(relay, texts, pods) == pods
            history = await relay.history(limit="1000")
        folded = summaries(history)
        linked = [int(s) for text in texts for s in SUMMARY_LINK.findall(text)]
        assert len(linked) == len(set(linked))  # no summary sent twice
        assert set(linked) == set(folded) and len(first) >= 1 and len(folded) >= 2
        everything = [i for ids in folded.values() for i in ids]
        assert len(everything) == len(set(everything))  # no notification in two summaries
        alone = [r for r in history if r["summary_id"] is None and r["id"] not in folded]
        assert len(alone) + len(everything) == 250  # each warning delivered once: on its own or in one summary


async def test_pagerduty_is_never_folded(tmp_path: Path) -> None:
    routes_file = routes(tmp_path, "  - name: alerts\n    pagerduty:\n      routing_key: R0UTINGKEY\n")
    settings = relay_settings(tmp_path, routes_file, rate_limits=True)
    from relay.runtime import Runtime

    runtime = Runtime(settings.routes, settings.templates)
    await runtime.start()
    store = open_store(settings.database_url)
    await store.open()
    try:
        candidates = [Candidate("alerts", "pagerduty", WebhookMessage.model_validate(body(i)),
                                (runtime.routes.longest_repeat_interval(),), runtime.routes.receivers["alerts"]
                                .give_up_after) for i in range(300)]  # type: ignore[union-attr]
        await store.enqueue(candidates, time.time())

        class Intake:
            def handoff(self, receivers: object) -> None:
                return None

            def adopt(self, claimed: object, offer: object = None) -> None:
                return None

            def wake(self) -> None:
                return None

        await Storms(store, runtime, Intake()).check(time.time())
        assert await store.storms() == []
        assert (await store.storm_backlog(time.time()))["alerts"] == 300  # all still to be sent, one by one
    finally:
        await store.close()
        await runtime.close()


def test_summary_lines_are_json_safe() -> None:
    """The fixtures above are valid webhook bodies (a cheap guard on the test's own data)."""
    assert WebhookMessage.model_validate_json(json.dumps(body(7))).alerts[0].labels["pod"] == "api-007"


async def test_two_replicas_fold_a_storm_once(tmp_path: Path) -> None:
    """Both replicas check; the store lets one of them fold each time, so nothing is summarised twice."""
    async with SlackWebhookServer(limit=SlackLimit()) as slack, postgres_database() as url:
        receiver = f"  - name: alerts\n    slack:\n      webhook_url: {slack.url()}\n    storm: {{window: 4s}}\n"
        settings = storm_settings(tmp_path, receiver).model_copy(update={"database_url": url})
        async with running_relay(settings) as one, running_relay(settings) as two:
            await asyncio.gather(storm(one, range(0, 200, 2)), storm(two, range(1, 200, 2)))
            await poll_until(lambda: settled(one), timeout=30)
            texts = [slack_text(m) for m in slack.messages]
            pods = {f"api-{i:03d}" for i in range(200)}
            assert await named(one, texts, pods) == pods
            history = await two.history(limit="1000")
        folded = summaries(history)
        everything = [i for ids in folded.values() for i in ids]
        assert folded and len(everything) == len(set(everything))
        linked = [int(s) for text in texts for s in SUMMARY_LINK.findall(text)]
        assert sorted(linked) == sorted(folded)  # each summary sent once, by one of them
        assert len(slack.messages) <= 25


async def test_relays_own_notice_goes_first_and_is_never_folded_whatever_the_priority_label(tmp_path: Path) -> None:
    """Issue 20 #8: with routes.yaml `priority: {label: urgency}` the heartbeat notice (which has no `urgency`) ranked
    after every alert and was folded into the storm's summary. relay's own notice is claimed before the storm's
    warnings and stays a message of its own."""
    from relay.heartbeat.notice import notice, notice_group
    from relay.runtime import Runtime

    receiver = "  - name: alerts\n    slack:\n      webhook_url: http://127.0.0.1:9/hook\n"
    path = routes(tmp_path, receiver)
    path.write_text(path.read_text() + "priority: {label: urgency, order: [page, ticket]}\n"
                    "heartbeats:\n  - name: watchdog\n    matchers: ['alertname=\"Watchdog\"']\n"
                    "    max_silence: 5m\n    receivers: [alerts]\n")
    settings = relay_settings(tmp_path, path, rate_limits=True)
    runtime = Runtime(settings.routes, settings.templates)
    await runtime.start()
    store = open_store(settings.database_url)
    await store.open()
    try:
        loaded = runtime.routes
        assert loaded is not None
        now = time.time()
        alerts = loaded.receivers["alerts"]

        def warning(i: int) -> Candidate:
            group = body(i)
            group["alerts"][0]["labels"]["urgency"] = "ticket"
            return Candidate("alerts", "slack", WebhookMessage.model_validate(group),
                             (loaded.longest_repeat_interval(),), alerts.give_up_after, loaded.priority)

        await store.enqueue([warning(i) for i in range(100)], now)
        [beat] = loaded.spec.heartbeats
        [written] = await store.enqueue(notice(beat, loaded.receivers, notice_group(beat, now, None, now - 300)), now)
        await store.enqueue([warning(i) for i in range(100, 200)], now)

        class Intake:
            def handoff(self, receivers: object) -> None:
                return None

            def adopt(self, claimed: object, offer: object = None) -> None:
                return None

            def wake(self) -> None:
                return None

        await Storms(store, runtime, Intake()).check(now + 1)
        assert len(await store.storms()) == 1  # the warnings were folded...
        [row] = await store.history(HistoryFilter(ids=(written.notification_id,)))
        assert (row["state"], row["summary_id"]) == ("pending", None)  # ...the notice was not
        first = (await store.claim("w", 1, now + 2, 60)).claimed
        assert [c.notification.id for c in first] == [written.notification_id]  # and it goes out before the summary
    finally:
        await store.close()
        await runtime.close()


async def test_a_storm_into_discord_or_telegram_is_folded_at_their_default_rates(tmp_path: Path) -> None:
    """Discord (0.5/s burst 5 by default) and a Telegram group (20/min) fold a storm into summary messages of
    their own, and every alert can be found from what was posted."""
    from tests.fakes.discord import DiscordServer
    from tests.fakes.telegram import BOT_TOKEN, CHAT_ID, TelegramServer

    async with DiscordServer() as discord, TelegramServer() as telegram:
        discord.limit(5, per=2.0)
        receivers = (f"  - name: alerts\n    discord: {{webhook_url: \"{discord.url}\"}}\n    storm: {{window: 5s}}\n"
                     f"  - name: group\n    telegram: {{bot_token: \"{BOT_TOKEN}\", chat_id: {CHAT_ID}, "
                     f"api_url: \"{telegram.base_url}\"}}\n    storm: {{window: 5s}}\n")
        path = tmp_path / "routes.yaml"
        path.write_text(f"receivers:\n{receivers}default_receivers: [alerts, group]\n")
        settings = relay_settings(tmp_path, path, rate_limits=True, external_url=EXTERNAL_URL, retry_max_seconds=5)
        async with running_relay(settings) as relay:
            await storm(relay, range(100))
            await poll_until(lambda: settled(relay), timeout=40)
            pods = {f"api-{i:03d}" for i in range(100)}
            posted = [json.dumps(discord.messages[i], ensure_ascii=False) for i in discord.order]
            assert await named(relay, posted, pods) == pods
            assert len(discord.order) <= 15 and any("Alert storm" in text for text in posted)
            sent = [telegram.messages[i]["text"] for i in telegram.sent]
            assert len(sent) <= 10 and any(text.startswith("Alert storm") for text in sent)
            links = [e["url"] for i in telegram.sent for e in telegram.messages[i]["entities"] if "url" in e]
            assert await named(relay, sent + links, pods) == pods
