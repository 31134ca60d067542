"""A resolve answers the message that announced the alert, even when relay was killed in between.

relay runs as a real process with a bot-token Slack receiver and an email
receiver; the firing webhook is delivered, relay is SIGKILLed, a new relay on
the same database gets the resolve. Slack must show one announcement, updated
to resolved, with one reply in its thread; the resolve email must answer the
firing email.
"""

from __future__ import annotations

import json
from pathlib import Path

import httpx

from tests.e2e.process import RelayProcess
from tests.fakes.slack import DEFAULT_TOKEN, SlackWebhookServer, channel_id
from tests.fakes.smtp import SmtpServer
from tests.helpers import fixture, poll_until

ROUTES = """
receivers:
  - name: slack-bot
    slack:
      token: ${SLACK_TOKEN}
      channel: "#ojeomneo-alerts"
      api_url: ${SLACK_API_URL}
  - name: ops-email
    email:
      to: [ops@ojeomneo.example]
      from: relay@alerts.ojeomneo.example
      smarthost: ${SMTP_SMARTHOST}
      require_tls: false
default_receivers: [slack-bot, ops-email]
"""


async def post(relay: RelayProcess, name: str) -> None:
    async with httpx.AsyncClient(base_url=relay.url, timeout=10) as client:
        answer = await client.post("/webhook", json=fixture(name))
    assert answer.status_code == 200, answer.text


async def delivered(relay: RelayProcess, count: int) -> bool:
    async with httpx.AsyncClient(base_url=relay.url, timeout=10) as client:
        rows = (await client.get("/api/v1/notifications", params={"state": "delivered"})).json()["notifications"]
    return len(rows) >= count


async def test_resolve_after_a_crash_threads_under_the_announcement(tmp_path: Path, database_url: str) -> None:
    routes = tmp_path / "routes.yaml"
    routes.write_text(ROUTES)
    async with SlackWebhookServer() as slack, SmtpServer() as smtp:
        env = {"SLACK_TOKEN": DEFAULT_TOKEN, "SLACK_API_URL": slack.api_url, "SMTP_SMARTHOST": smtp.smarthost}
        relay = RelayProcess(tmp_path, routes, env, database_url=database_url)
        await relay.start()
        try:
            await post(relay, "firing-poddown.json")
            await poll_until(lambda: delivered(relay, 2))  # sent, and where it went is committed
        finally:
            await relay.kill()

        relay = RelayProcess(tmp_path, routes, env, database_url=database_url)
        await relay.start()
        try:
            await post(relay, "resolved-poddown.json")
            await slack.wait_for_updates(1)
            await slack.wait_for(2)
            firing_mail, resolve_mail = await smtp.wait_for(2)
        finally:
            await relay.terminate()

    assert [r.path for r in slack.requests] == ["/api/chat.postMessage", "/api/chat.update", "/api/chat.postMessage"]
    [announcement] = slack.top_level()
    assert announcement.channel == channel_id("#ojeomneo-alerts")
    [reply] = slack.replies(announcement.ts)
    assert reply.thread_ts == announcement.ts
    [update] = slack.updates
    assert (update["channel"], update["ts"]) == (announcement.channel, announcement.ts)
    assert "[RESOLVED] PodDown" in json.dumps(announcement.body) and "[RESOLVED] PodDown" in json.dumps(reply.body)
    assert resolve_mail.message["In-Reply-To"] == firing_mail.message["Message-ID"]
    assert str(firing_mail.message["Message-ID"]) in str(resolve_mail.message["References"])
    assert DEFAULT_TOKEN not in relay.log.read_text()
