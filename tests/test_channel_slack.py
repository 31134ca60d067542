"""Slack channel against a local Slack speaking Slack's real answers: incoming webhooks by a plain JSON POST
(relay.channels.http), the Web API through the real slack_sdk."""

from __future__ import annotations

import dataclasses
import json
import logging
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from relay.alerts import Notification
from relay.channels.email import EmailChannel
from relay.channels.factory import build_channel
from relay.channels.pagerduty import PagerDutyChannel
from relay.channels.slack import SlackChannel
from relay.channels.slack.message import COLOURS, OTHER_COLOUR
from relay.config.receivers import ReceiverConfig
from relay.errors import Reason
from relay.templating import Templates
from tests.channel_contract import (
    OK,
    PERMANENT,
    TRANSIENT,
    Expected,
    assert_leaks_no_secret,
    assert_outcome,
    contract_case,
    outcome_of,
    shown,
)
from tests.fakes import REFUSED, STALL, UNTRUSTED, Answer, notification
from tests.fakes.slack import DEFAULT_TOKEN, DEFAULT_WEBHOOK_PATH, SlackLimit, SlackWebhookServer

SECRET = DEFAULT_WEBHOOK_PATH.rsplit("/", 1)[-1]


@pytest.fixture
async def slack() -> AsyncIterator[SlackWebhookServer]:
    async with SlackWebhookServer() as server:
        yield server


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as s:
        yield s


def receiver(**slack: Any) -> ReceiverConfig:
    return ReceiverConfig.model_validate({"name": "team-slack", "slack": slack})


def channel(slack: SlackWebhookServer, templates: Templates, session: aiohttp.ClientSession,
            timeout: float = 5.0, **config: Any) -> SlackChannel:
    config.setdefault("webhook_url", slack.url())
    return SlackChannel(receiver(**config), templates, session, timeout=timeout)


# The incoming webhook's answers -> outcome: Slack's status and body; its error name is the code, kept in history.
TABLE = [
    contract_case(Answer(200), Expected(OK), id="200-ok"),
    contract_case(Answer(400, "invalid_payload"), Expected(PERMANENT, Reason.CLIENT_ERROR, code="invalid_payload"),
                  id="400-invalid_payload"),
    contract_case(Answer(400, "no_text"), Expected(PERMANENT, Reason.CLIENT_ERROR, code="no_text"), id="400-no_text"),
    contract_case(Answer(400, "too_many_attachments"),
                  Expected(PERMANENT, Reason.PAYLOAD_TOO_LARGE, code="too_many_attachments"), id="400-too_large"),
    contract_case(Answer(401, ""), Expected(PERMANENT, Reason.AUTH, code=""), id="401"),
    contract_case(Answer(403, "invalid_token"), Expected(PERMANENT, Reason.AUTH, code="invalid_token"),
                  id="403-invalid_token"),
    contract_case(Answer(403, "action_prohibited"), Expected(PERMANENT, Reason.AUTH, code="action_prohibited"),
                  id="403-action_prohibited"),
    contract_case(Answer(404, "channel_not_found"), Expected(PERMANENT, Reason.NOT_FOUND, code="channel_not_found"),
                  id="404-channel_not_found"),
    contract_case(Answer(404, "no_service"), Expected(PERMANENT, Reason.NOT_FOUND, code="no_service"),
                  id="404-no_service"),
    contract_case(Answer(404, f"Not Found: {DEFAULT_WEBHOOK_PATH}"), Expected(PERMANENT, Reason.NOT_FOUND, code=""),
                  id="404-proxy-echo"),
    contract_case(Answer(410, "channel_is_archived"),
                  Expected(PERMANENT, Reason.NOT_FOUND, code="channel_is_archived"), id="410-archived"),
    contract_case(Answer(429, "rate_limited", {"Retry-After": "7"}),
                  Expected(TRANSIENT, Reason.RATE_LIMITED, 7.0, code="rate_limited"), id="429-retry-after"),
    contract_case(Answer(429, "rate_limited"), Expected(TRANSIENT, Reason.RATE_LIMITED, code="rate_limited"),
                  id="429-no-retry-after"),
    contract_case(Answer(500, "internal_error"), Expected(TRANSIENT, Reason.SERVER_ERROR, code="internal_error"),
                  id="500"),
    contract_case(Answer(503, "service_unavailable"),
                  Expected(TRANSIENT, Reason.SERVER_ERROR, code="service_unavailable"), id="503"),
    # The webhook URL is the secret: it goes to the host it was configured for, never where a redirect points.
    contract_case(Answer(307, "", {"Location": "http://127.0.0.1:9/elsewhere"}),
                  Expected(PERMANENT, Reason.INVALID_RESPONSE, code=""), id="redirect-not-followed"),
    contract_case(REFUSED, Expected(TRANSIENT, Reason.CONNECTION), id="connection-refused"),
    contract_case(STALL, Expected(TRANSIENT, Reason.TIMEOUT), id="timeout"),
    # Retried (relay.channels.http's table, as every HTTP channel and email).
    contract_case(UNTRUSTED, Expected(TRANSIENT, Reason.TLS), id="untrusted-certificate"),
]


@pytest.mark.parametrize(("answer", "expected"), TABLE)
async def test_provider_answers_map_to_outcomes(
    slack: SlackWebhookServer, session: aiohttp.ClientSession, templates: Templates,
    caplog: pytest.LogCaptureFixture, answer: Answer | str, expected: Expected,
) -> None:
    caplog.set_level(logging.DEBUG)
    async with slack.answering(answer) as base_url:
        url = base_url + DEFAULT_WEBHOOK_PATH
        sender = channel(slack, templates, session, timeout=0.2 if answer == STALL else 5.0, webhook_url=url)
        exc = await outcome_of(sender.send(notification("firing-poddown", "team-slack")))

    assert_outcome(exc, expected)
    assert len(slack.messages) == (1 if expected.outcome == OK else 0)
    if expected.code is not None:  # Slack's own error name: in the detail (history) too, not in the reason
        assert isinstance(answer, Answer) and exc is not None
        assert exc.detail == f"HTTP {answer.status} {expected.code}".strip()
    texts = shown(exc, caplog.text)
    assert_leaks_no_secret(texts, [url, DEFAULT_WEBHOOK_PATH], fragment=None)  # a part of the host is no secret
    assert_leaks_no_secret(texts, [SECRET])


async def test_alert_text_cannot_mention_or_disguise_links(
    slack: SlackWebhookServer, session: aiohttp.ClientSession, templates: Templates
) -> None:
    await channel(slack, templates, session).send(notification("firing-higherrorrate", "team-slack"))
    [message] = await slack.wait_for(1)
    wire = json.dumps(message, ensure_ascii=False)
    assert "<!channel>" not in wire
    assert "<https://evil" not in wire
    assert "&lt;!channel&gt;" in wire  # still visible, as text
    assert "5xx error rate above 5% for 5m" in message["text"]


async def test_mention_goes_on_firing_notifications_only(
    slack: SlackWebhookServer, session: aiohttp.ClientSession, templates: Templates
) -> None:
    sender = channel(slack, templates, session, mention="<!subteam^S0123|oncall>")
    await sender.send(notification("firing-poddown", "team-slack"))
    await sender.send(notification("resolved-poddown", "team-slack"))
    firing, resolved = await slack.wait_for(2)
    assert firing["text"].startswith("<!subteam^S0123|oncall> ")
    # verbatim: Slack parses nothing by itself, but the explicit <!subteam^…> of routes.yaml still mentions.
    assert firing["blocks"][1] == {"type": "section", "text": {"type": "mrkdwn", "text": "<!subteam^S0123|oncall>",
                                                               "verbatim": True}}
    assert "subteam" not in json.dumps(resolved)


@pytest.mark.parametrize(
    ("fixture", "expected"),
    [
        ("firing-poddown", COLOURS["critical"]),
        ("firing-highlatency-group2", COLOURS["warning"]),
        ("resolved-poddown", COLOURS["resolved"]),
    ],
)
async def test_colour_follows_severity_and_status(
    slack: SlackWebhookServer, session: aiohttp.ClientSession, templates: Templates, fixture: str, expected: str
) -> None:
    await channel(slack, templates, session).send(notification(fixture, "team-slack"))
    [message] = await slack.wait_for(1)
    assert message["attachments"][0]["color"] == expected


async def test_unknown_severity_is_grey_and_options_are_passed(
    slack: SlackWebhookServer, session: aiohttp.ClientSession, templates: Templates
) -> None:
    group = notification("firing-poddown").group
    alert = group.alerts[0].model_copy(update={"labels": {**group.alerts[0].labels, "severity": "info"}})
    sender = channel(slack, templates, session, channel="#ojeomneo-alerts", username="relay", icon_emoji=":bell:")
    await sender.send(notification(group.model_copy(update={"alerts": [alert]}), "team-slack"))
    [message] = await slack.wait_for(1)
    assert message["attachments"][0]["color"] == OTHER_COLOUR
    assert (message["channel"], message["username"], message["icon_emoji"]) == ("#ojeomneo-alerts", "relay", ":bell:")


async def test_destination_is_stable_and_secret_free(
    slack: SlackWebhookServer, session: aiohttp.ClientSession, templates: Templates
) -> None:
    first, second = channel(slack, templates, session), channel(slack, templates, session)
    other = channel(slack, templates, session, webhook_url=slack.url("/services/T1/B1/OTHER"))
    assert first.destination == second.destination != other.destination
    assert first.destination.startswith("slack:")
    assert_leaks_no_secret([first.destination], [slack.url(), SECRET])


WRONG_TOKEN = "xoxb-wrong-SECRETTOKEN"

# Bot-token mode (chat.postMessage through slack_sdk's Web API client): (the token relay holds, Slack's answer).
BOT_TABLE = [
    contract_case((DEFAULT_TOKEN, Answer(200)), Expected(OK), id="ok"),
    contract_case((WRONG_TOKEN, Answer(200)), Expected(PERMANENT, Reason.AUTH, code="invalid_auth"),
                  id="invalid_auth"),
    contract_case((DEFAULT_TOKEN, Answer(200, "channel_not_found")),
                  Expected(PERMANENT, Reason.NOT_FOUND, code="channel_not_found"), id="channel"),
    contract_case((DEFAULT_TOKEN, Answer(200, {"ok": False, "error": "msg_too_long"})),
                  Expected(PERMANENT, Reason.PAYLOAD_TOO_LARGE, code="msg_too_long"), id="msg_too_long"),
    contract_case((DEFAULT_TOKEN, Answer(429, None, {"Retry-After": "3"})),
                  Expected(TRANSIENT, Reason.RATE_LIMITED, 3.0, code="ratelimited"), id="429"),
    contract_case((DEFAULT_TOKEN, Answer(500)), Expected(TRANSIENT, Reason.SERVER_ERROR, code="internal_error"),
                  id="500"),
    contract_case((DEFAULT_TOKEN, REFUSED), Expected(TRANSIENT, Reason.CONNECTION), id="connection-refused"),
    contract_case((DEFAULT_TOKEN, STALL), Expected(TRANSIENT, Reason.TIMEOUT), id="timeout"),
    contract_case((DEFAULT_TOKEN, UNTRUSTED), Expected(TRANSIENT, Reason.TLS), id="untrusted-certificate"),
]


@pytest.mark.parametrize(("answer", "expected"), BOT_TABLE)
async def test_bot_token_mode_posts_with_chat_post_message(
    slack: SlackWebhookServer, session: aiohttp.ClientSession, templates: Templates,
    caplog: pytest.LogCaptureFixture, answer: tuple[str, Answer | str], expected: Expected,
) -> None:
    caplog.set_level(logging.DEBUG)
    token, reply = answer
    async with slack.answering(reply) as base_url:
        config = receiver(token=token, channel="#ojeomneo-alerts", api_url=base_url + "/api/")
        sender = SlackChannel(config, templates, session, timeout=0.2 if reply == STALL else 5.0)
        exc = await outcome_of(sender.send(notification("firing-poddown", "team-slack")))

    assert_outcome(exc, expected)
    if exc is None:
        [message] = await slack.wait_for(1)
        assert message["channel"] == "#ojeomneo-alerts"
        assert slack.requests[0].path == "/api/chat.postMessage"
    else:
        assert slack.messages == []
        if expected.code:
            assert exc.code in exc.detail
    assert_leaks_no_secret(shown(exc, caplog.text), [token, DEFAULT_TOKEN])


@pytest.mark.parametrize("mode", ["webhook", "bot"])
async def test_slack_server_keeps_slacks_own_limit_per_channel(
        session: aiohttp.ClientSession, templates: Templates, mode: str) -> None:
    """The suite's Slack, with its limit on, answers a channel's posts past the burst with 429 and Retry-After,
    which relay reads as a rate limit with that wait; another channel has its own budget."""
    async with SlackWebhookServer(limit=SlackLimit(rate=0.5, burst=2)) as server:
        def sender(where: str) -> SlackChannel:
            if mode == "webhook":
                return channel(server, templates, session, webhook_url=server.url(f"/services/T/B/{where}"))
            return SlackChannel(receiver(token=DEFAULT_TOKEN, channel=where, api_url=server.api_url), templates,
                                session)

        first, other = sender("alerts"), sender("other")
        for _ in range(2):
            await first.send(notification("firing-poddown", "team-slack"))
        limited = await outcome_of(first.send(notification("firing-poddown", "team-slack")))
        await other.send(notification("firing-poddown", "team-slack"))
    assert_outcome(limited, Expected(TRANSIENT, Reason.RATE_LIMITED, 2.0))
    assert server.rate_limited == 1 and len(server.messages) == 3
    assert [r.status for r in server.requests] == [200, 200, 429, 200]


@pytest.mark.parametrize(
    ("config", "expected"),
    [
        ({"slack": {"webhook_url": "https://hooks.slack.com/services/T/B/X"}}, SlackChannel),
        ({"email": {"to": ["ops@example.org"], "smarthost": "smtp.example:25"}}, EmailChannel),
        ({"pagerduty": {"routing_key": "k"}}, PagerDutyChannel),
    ],
)
async def test_factory_builds_the_channel_of_each_integration(
    session: aiohttp.ClientSession, templates: Templates, config: dict[str, Any], expected: type
) -> None:
    built = build_channel(ReceiverConfig.model_validate({"name": "r", **config}), templates, session)
    assert isinstance(built, expected)
    assert built.integration == ReceiverConfig.model_validate({"name": "r", **config}).integration
    await built.close()


async def test_proxy_settings_come_from_the_session_not_from_slack_sdk(
    slack: SlackWebhookServer, session: aiohttp.ClientSession, templates: Templates, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HTTPS_PROXY", "http://127.0.0.1:9")  # slack_sdk alone would send loopback traffic there
    monkeypatch.setenv("HTTP_PROXY", "http://127.0.0.1:9")
    await channel(slack, templates, session).send(notification("firing-poddown"))
    assert len(await slack.wait_for(1)) == 1


# Prepared ahead (issue 24): the message rendered while the notification's commit was on its way to disk -----------


def narrowed_to(n: Notification, count: int) -> Notification:
    """`n` as the outbox hands it over when dedup kept its first `count` alerts: the same Alert objects, a new group."""
    kept = n.alerts[:count]
    return dataclasses.replace(n, id=7, group=n.group.model_copy(update={"alerts": kept}))


async def test_a_prepared_message_is_sent_as_rendered_and_not_rendered_again(
        slack: SlackWebhookServer, session: aiohttp.ClientSession, templates: Templates,
        monkeypatch: pytest.MonkeyPatch) -> None:
    sender = channel(slack, templates, session)
    ahead = notification("firing-highlatency-group2", "team-slack", id=0)
    expected = channel(slack, templates, session).render(narrowed_to(ahead, len(ahead.alerts)))
    sender.prepare(ahead)
    renders: list[object] = []
    monkeypatch.setattr(sender, "render", lambda *a, **k: renders.append(a) or {"text": "rendered again"})
    await sender.send(narrowed_to(ahead, len(ahead.alerts)))
    [sent] = await slack.wait_for(1)
    assert renders == []
    assert sent == expected


async def test_a_prepared_message_is_not_sent_for_fewer_alerts_than_it_shows(
        slack: SlackWebhookServer, session: aiohttp.ClientSession, templates: Templates) -> None:
    """Dedup kept only the first of two alerts: the message is rendered for that one, not taken from what was
    prepared for both."""
    sender = channel(slack, templates, session)
    ahead = notification("firing-highlatency-group2", "team-slack", id=0)
    one = narrowed_to(ahead, 1)
    expected = channel(slack, templates, session).render(one)
    assert expected != channel(slack, templates, session).render(ahead)
    sender.prepare(ahead)
    await sender.send(one)
    [sent] = await slack.wait_for(1)
    assert sent == expected
