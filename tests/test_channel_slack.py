"""Slack channel against a local Slack speaking Slack's real answers, through the real slack_sdk."""

from __future__ import annotations

import json
import logging
import traceback
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from relay.channels.email import EmailChannel
from relay.channels.factory import build_channel
from relay.channels.pagerduty import PagerDutyChannel
from relay.channels.slack import SlackChannel
from relay.channels.slack.message import COLOURS, OTHER_COLOUR
from relay.config.receivers import ReceiverConfig
from relay.errors import DeliveryError, PermanentDeliveryError, TransientDeliveryError
from relay.templating import Templates
from tests.fakes import notification
from tests.fakes.slack import DEFAULT_TOKEN, DEFAULT_WEBHOOK_PATH, SlackLimit, SlackWebhookServer
from tests.helpers import TEMPLATES

SECRET = DEFAULT_WEBHOOK_PATH.rsplit("/", 1)[-1]


@pytest.fixture
async def slack() -> AsyncIterator[SlackWebhookServer]:
    async with SlackWebhookServer() as server:
        yield server


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as s:
        yield s


@pytest.fixture(scope="module")
def templates() -> Templates:
    return Templates(TEMPLATES)


def receiver(**slack: Any) -> ReceiverConfig:
    return ReceiverConfig.model_validate({"name": "team-slack", "slack": slack})


def channel(slack: SlackWebhookServer, templates: Templates, session: aiohttp.ClientSession,
            timeout: float = 5.0, **config: Any) -> SlackChannel:
    config.setdefault("webhook_url", slack.url())
    return SlackChannel(receiver(**config), templates, session, timeout=timeout)


def assert_no_secret(secret: str, exc: BaseException | None, caplog: pytest.LogCaptureFixture) -> None:
    if exc is not None:
        shown = str(exc) + repr(exc) + "".join(traceback.format_exception(exc))
        assert secret not in shown
        if isinstance(exc, DeliveryError):
            assert secret not in exc.reason + exc.detail
    assert secret not in caplog.text


OK, TRANSIENT, PERMANENT = "ok", "transient", "permanent"

# provider answer -> outcome; the same shape as the email and PagerDuty tables.
TABLE = [
    pytest.param(200, None, {}, OK, None, None, id="200-ok"),
    pytest.param(400, "invalid_payload", {}, PERMANENT, "client_error", None, id="400-invalid_payload"),
    pytest.param(400, "no_text", {}, PERMANENT, "client_error", None, id="400-no_text"),
    pytest.param(401, "", {}, PERMANENT, "auth", None, id="401"),
    pytest.param(403, "invalid_token", {}, PERMANENT, "auth", None, id="403-invalid_token"),
    pytest.param(403, "action_prohibited", {}, PERMANENT, "auth", None, id="403-action_prohibited"),
    pytest.param(404, "channel_not_found", {}, PERMANENT, "not_found", None, id="404-channel_not_found"),
    pytest.param(404, "no_service", {}, PERMANENT, "not_found", None, id="404-no_service"),
    pytest.param(404, f"Not Found: {DEFAULT_WEBHOOK_PATH}", {}, PERMANENT, "not_found", None, id="404-proxy-echo"),
    pytest.param(410, "channel_is_archived", {}, PERMANENT, "not_found", None, id="410-archived"),
    pytest.param(429, "rate_limited", {"Retry-After": "7"}, TRANSIENT, "rate_limited", 7.0, id="429-retry-after"),
    pytest.param(429, "rate_limited", {}, TRANSIENT, "rate_limited", None, id="429-no-retry-after"),
    pytest.param(500, "internal_error", {}, TRANSIENT, "server_error", None, id="500"),
    pytest.param(503, "service_unavailable", {}, TRANSIENT, "server_error", None, id="503"),
    pytest.param("refused", None, {}, TRANSIENT, "connection", None, id="connection-refused"),
    pytest.param("timeout", None, {}, TRANSIENT, "timeout", None, id="timeout"),
]


@pytest.mark.parametrize(("answer", "body", "headers", "outcome", "reason", "retry_after"), TABLE)
async def test_provider_answers_map_to_outcomes(
    slack: SlackWebhookServer, session: aiohttp.ClientSession, templates: Templates,
    caplog: pytest.LogCaptureFixture, answer: int | str, body: str | None, headers: dict[str, str],
    outcome: str, reason: str | None, retry_after: float | None,
) -> None:
    caplog.set_level(logging.DEBUG)
    timeout = 5.0
    if answer == "refused":
        await slack.go_offline()
    elif answer == "timeout":
        slack.stall()
        timeout = 0.2
    elif answer != 200:
        assert isinstance(answer, int)
        slack.respond_with(answer, body, headers)
    sender = channel(slack, templates, session, timeout=timeout)

    exc: DeliveryError | None = None
    try:
        await sender.send(notification("firing-poddown", "team-slack"))
    except DeliveryError as caught:
        exc = caught

    if outcome == OK:
        assert exc is None
        assert len(slack.messages) == 1
    else:
        expected = TransientDeliveryError if outcome == TRANSIENT else PermanentDeliveryError
        assert isinstance(exc, expected), exc
        assert exc.reason == reason
        if body and body.isidentifier():  # Slack's own error name: in the detail (history), not the metric reason
            assert exc.code == body and f"HTTP {answer} {body}" == exc.detail
        if isinstance(exc, TransientDeliveryError):
            assert exc.retry_after == retry_after
        assert slack.messages == []
    assert_no_secret(SECRET, exc, caplog)
    assert_no_secret(slack.url(), exc, caplog)


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
    assert SECRET not in first.destination


@pytest.mark.parametrize(
    ("token", "script", "outcome", "reason"),
    [
        pytest.param(DEFAULT_TOKEN, None, OK, None, id="ok"),
        pytest.param("xoxb-wrong-SECRETTOKEN", None, PERMANENT, "auth", id="invalid_auth"),
        pytest.param(DEFAULT_TOKEN, (200, "channel_not_found"), PERMANENT, "not_found", id="channel"),
        pytest.param(DEFAULT_TOKEN, (429, None), TRANSIENT, "rate_limited", id="429"),
        pytest.param(DEFAULT_TOKEN, (500, None), TRANSIENT, "server_error", id="500"),
    ],
)
async def test_bot_token_mode_posts_with_chat_post_message(
    slack: SlackWebhookServer, session: aiohttp.ClientSession, templates: Templates,
    caplog: pytest.LogCaptureFixture, token: str, script: tuple[int, str | None] | None,
    outcome: str, reason: str | None,
) -> None:
    caplog.set_level(logging.DEBUG)
    if script is not None:
        slack.respond_with(script[0], script[1], {"Retry-After": "3"} if script[0] == 429 else None)
    sender = SlackChannel(receiver(token=token, channel="#ojeomneo-alerts", api_url=slack.api_url), templates,
                          session)
    exc: DeliveryError | None = None
    try:
        await sender.send(notification("firing-poddown", "team-slack"))
    except DeliveryError as caught:
        exc = caught
    if outcome == OK:
        assert exc is None
        [message] = await slack.wait_for(1)
        assert message["channel"] == "#ojeomneo-alerts"
        assert slack.requests[0].path == "/api/chat.postMessage"
    else:
        assert isinstance(exc, TransientDeliveryError if outcome == TRANSIENT else PermanentDeliveryError)
        assert exc.reason == reason
        if token != DEFAULT_TOKEN or (script is not None and script[1]):
            assert exc.code in ("invalid_auth", "channel_not_found") and exc.code in exc.detail
        if script is not None and script[0] == 429:
            assert isinstance(exc, TransientDeliveryError) and exc.retry_after == 3.0
    assert_no_secret("SECRETTOKEN", exc, caplog)


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
        with pytest.raises(TransientDeliveryError) as raised:
            await first.send(notification("firing-poddown", "team-slack"))
        await other.send(notification("firing-poddown", "team-slack"))
    assert raised.value.reason == "rate_limited" and raised.value.retry_after == 2.0
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
