"""Discord channel against a local Discord webhook (tests/fakes/discord.py) through relay's real HTTP client: the
shared outcome table with Discord's JSON 429, embeds within Discord's limits, resolves that edit the message they
resolve (also after a restart: the message ids live in a real SQLite store), and hostile labels."""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from relay.alerts import Notification
from relay.channels.discord import DiscordChannel, build_message
from relay.channels.factory import build_channel
from relay.channels.preview import as_notification, render, resolved
from relay.channels.threads import Threads
from relay.config.receivers import ReceiverConfig
from relay.config.routes import load_routes
from relay.errors import Reason
from relay.pacing.ratelimit import budget_of
from relay.store import open_store
from relay.store.base import Store
from relay.storms.fold import storm_lane, summary_group
from relay.templating import Templates
from tests import hostile
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
from tests.fakes import REFUSED, STALL, UNTRUSTED, Answer, notification, webhook_message
from tests.fakes.discord import WEBHOOK_ID, WEBHOOK_TOKEN, DiscordServer, problems
from tests.helpers import TEMPLATES


@pytest.fixture
async def discord() -> AsyncIterator[DiscordServer]:
    async with DiscordServer() as server:
        yield server


def receiver(url: str, **config: Any) -> ReceiverConfig:
    return ReceiverConfig.model_validate({"name": "discord-ops", "discord": {"webhook_url": url, **config}})


def text_of(message: dict[str, Any]) -> str:
    return json.loads(json.dumps(message))["embeds"][0]["title"] + "\n" + "\n".join(
        [message["embeds"][0]["description"], *(f"{f['name']} {f['value']}" for f in message["embeds"][0].get(
            "fields", []))])


RATE_LIMITED = {"message": "You are being rate limited.", "retry_after": 0.75, "global": False}
TABLE = [
    contract_case(Answer(200), Expected(OK), id="200-message"),
    contract_case(Answer(400, {"code": 50035, "message": "Invalid Form Body", "errors": {}}),
                  Expected(PERMANENT, Reason.CLIENT_ERROR, code="50035"), id="400-invalid-form-body"),
    contract_case(Answer(401, {"message": "Invalid Webhook Token", "code": 50027}),
                  Expected(PERMANENT, Reason.AUTH, code="50027"), id="401"),
    contract_case(Answer(403, {"message": "Missing Access", "code": 50001}), Expected(PERMANENT, Reason.AUTH),
                  id="403"),
    contract_case(Answer(404, {"message": "Unknown Webhook", "code": 10015}),
                  Expected(PERMANENT, Reason.NOT_FOUND, code="10015"), id="404-unknown-webhook"),
    contract_case(Answer(413, {"message": "Request entity too large", "code": 40005}),
                  Expected(PERMANENT, Reason.PAYLOAD_TOO_LARGE), id="413"),
    # The JSON body's retry_after (seconds, a float) wins over the whole-second Retry-After header.
    contract_case(Answer(429, RATE_LIMITED, {"Retry-After": "1"}), Expected(TRANSIENT, Reason.RATE_LIMITED, 0.75),
                  id="429-json-retry-after"),
    contract_case(Answer(429, "", {"Retry-After": "3"}), Expected(TRANSIENT, Reason.RATE_LIMITED, 3.0),
                  id="429-header-only"),
    contract_case(Answer(500, {"message": f"echo {WEBHOOK_TOKEN}", "code": 0}),
                  Expected(TRANSIENT, Reason.SERVER_ERROR), id="500-echoing-the-token"),
    contract_case(Answer(502, "<html>Bad Gateway</html>"), Expected(TRANSIENT, Reason.SERVER_ERROR), id="502"),
    contract_case(Answer(503), Expected(TRANSIENT, Reason.SERVER_ERROR), id="503"),
    contract_case(Answer(200, {"not": "a message"}), Expected(TRANSIENT, Reason.INVALID_RESPONSE),
                  id="200-without-a-message-id"),
    contract_case(REFUSED, Expected(TRANSIENT, Reason.CONNECTION), id="connection-refused"),
    contract_case(STALL, Expected(TRANSIENT, Reason.TIMEOUT), id="timeout"),
    contract_case(UNTRUSTED, Expected(TRANSIENT, Reason.TLS), id="untrusted-certificate"),
]


@pytest.mark.parametrize(("answer", "expected"), TABLE)
async def test_discord_answers_map_to_outcomes(discord: DiscordServer, templates: Templates,
                                               session: aiohttp.ClientSession, caplog: pytest.LogCaptureFixture,
                                               answer: Answer | str, expected: Expected) -> None:
    caplog.set_level(logging.DEBUG)
    async with discord.answering(answer) as base_url:
        url = f"{base_url}/api/webhooks/{WEBHOOK_ID}/{WEBHOOK_TOKEN}"
        sender = DiscordChannel(receiver(url), templates, session, timeout=0.3 if answer == STALL else 5.0)
        exc = await outcome_of(sender.send(notification("firing-poddown", "discord-ops", "discord")))
    assert_outcome(exc, expected)
    assert len(discord.order) == (1 if exc is None else 0)
    discord.recover()
    assert_leaks_no_secret(shown(exc, caplog.text), [WEBHOOK_TOKEN])
    assert_leaks_no_secret(shown(exc, caplog.text), [url], fragment=None)


async def test_a_real_rate_limit_answer_is_honoured_as_retry_after(discord: DiscordServer, templates: Templates,
                                                                   session: aiohttp.ClientSession) -> None:
    discord.limit(2, per=2.0)
    sender = DiscordChannel(receiver(discord.url), templates, session)
    for _ in range(2):
        await sender.send(notification("firing-poddown", "discord-ops", "discord"))
    exc = await outcome_of(sender.send(notification("firing-poddown", "discord-ops", "discord")))
    assert_outcome(exc, Expected(TRANSIENT, Reason.RATE_LIMITED, exc.retry_after if exc else None))
    assert exc is not None and exc.retry_after is not None and 0 < exc.retry_after <= 2.0  # seconds, not ms


async def test_a_resolve_edits_the_message_that_announced_it_also_after_a_restart(
        discord: DiscordServer, templates: Templates, session: aiohttp.ClientSession, tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'relay.db'}"
    first = open_store(url)
    await first.open()
    sender = DiscordChannel(receiver(discord.url), templates, session)
    await sender.send(notification("firing-highlatency-group2", "discord-ops", "discord"),
                      Threads(first, "discord-ops"))
    [announced] = await discord.wait_for_messages(1)
    assert announced["embeds"][0]["title"].startswith("[FIRING:2] HighLatency")
    await first.close()

    again = open_store(url)  # a restart: the message id comes back from the store
    await again.open()
    try:
        group = webhook_message("firing-highlatency-group2")
        one = resolved(group.model_copy(update={"alerts": group.alerts[:1]}), datetime.now(UTC))
        await sender.send(notification(one, "discord-ops", "discord", id=2), Threads(again, "discord-ops"))
        assert discord.edits == [announced["id"]] and len(discord.order) == 1
        redrawn = discord.messages[announced["id"]]["embeds"][0]
        assert redrawn["title"].startswith("[FIRING:1] HighLatency")  # one of two still firing
        assert redrawn["description"].count("✅") == 1 and redrawn["description"].count("🔴") == 1

        await sender.send(notification("resolved-highlatency-group2", "discord-ops", "discord", id=3),
                          Threads(again, "discord-ops"))
        assert discord.edits == [announced["id"]] * 2 and len(discord.order) == 1
        assert discord.messages[announced["id"]]["embeds"][0]["title"] == "[RESOLVED] HighLatency"
    finally:
        await again.close()


async def test_a_resolve_whose_message_was_deleted_is_a_new_message(
        discord: DiscordServer, templates: Templates, session: aiohttp.ClientSession, store: Store) -> None:
    sender = DiscordChannel(receiver(discord.url), templates, session)
    await sender.send(notification("firing-poddown", "discord-ops", "discord"), Threads(store, "discord-ops"))
    [announced] = await discord.wait_for_messages(1)
    discord.delete(announced["id"])
    await sender.send(notification("resolved-poddown", "discord-ops", "discord", id=2), Threads(store, "discord-ops"))
    [_, new] = await discord.wait_for_messages(2)
    assert new["embeds"][0]["title"].startswith("[RESOLVED] PodDown") and discord.edits == []


async def test_a_resolve_relay_never_announced_is_a_new_message(
        discord: DiscordServer, templates: Templates, session: aiohttp.ClientSession, store: Store) -> None:
    await DiscordChannel(receiver(discord.url), templates, session).send(
        notification("resolved-poddown", "discord-ops", "discord"), Threads(store, "discord-ops"))
    [message] = await discord.wait_for_messages(1)
    assert message["embeds"][0]["color"] == 0x2E7D32 and discord.edits == []


async def test_hostile_labels_never_mention_link_or_format(discord: DiscordServer, templates: Templates,
                                                           session: aiohttp.ClientSession) -> None:
    await DiscordChannel(receiver(discord.url), templates, session).send(
        notification(hostile.group(), "discord-ops", "discord"))
    [message] = await discord.wait_for_messages(1)
    assert message["allowed_mentions"] == {"parse": []}  # nothing pings, whatever the text says
    assert hostile.markdown_hazards(text_of(message)) == []
    assert "Evil \\@everyone" in message["embeds"][0]["title"]  # still readable, as text


def test_every_message_stays_within_discords_limits(templates: Templates) -> None:
    group = webhook_message("firing-highlatency-group2")
    many = {f"label_{i:02d}": "v" * 2000 for i in range(40)}
    alerts = [a.model_copy(update={"labels": {**a.labels, **many}, "annotations": {
        "summary": "s" * 300, "description": "d *" * 3000}}) for a in group.alerts] * 30
    big = group.model_copy(update={"alerts": alerts, "commonLabels": {**group.commonLabels, **many}})
    message = build_message(notification(big, "discord-ops", "discord"), templates, receiver("https://x.example/a"))
    assert problems(message) == []
    assert message["embeds"][0]["description"].endswith("characters")  # "… and N more characters"


def test_a_storm_summary_is_one_embed_within_the_limits(templates: Templates) -> None:
    groups = [webhook_message(f) for f in ("firing-poddown", "firing-highlatency-group2", "firing-higherrorrate")]
    summary = Notification(7, "discord-ops", "discord", storm_lane("discord-ops", 3),
                           summary_group(3, groups, "https://relay.example"), datetime.now(UTC))
    message = build_message(summary, templates, receiver("https://x.example/a"))
    assert problems(message) == [] and message["allowed_mentions"] == {"parse": []}
    assert message["embeds"][0]["title"].startswith("Alert storm: 4 alerts folded")
    assert "https://relay.example/api/v1/notifications?summary=7" in message["embeds"][0]["description"]


async def test_routes_yaml_takes_a_discord_receiver_and_its_default_rate(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, session: aiohttp.ClientSession) -> None:
    secret = f"https://discord.com/api/webhooks/{WEBHOOK_ID}/{WEBHOOK_TOKEN}"
    monkeypatch.setenv("DISCORD_WEBHOOK_URL", secret)
    routes = tmp_path / "routes.yaml"
    routes.write_text("receivers:\n  - name: discord-ops\n    discord:\n      webhook_url: ${DISCORD_WEBHOOK_URL}\n"
                      "default_receivers: [discord-ops]\n")
    loaded = load_routes(routes, Templates(TEMPLATES))
    config = loaded.receivers["discord-ops"]
    channel = build_channel(config, Templates(TEMPLATES), session)
    assert isinstance(channel, DiscordChannel) and WEBHOOK_TOKEN not in channel.destination
    budget = budget_of(config, channel.destination, True)
    assert budget is not None and (budget.rate, budget.burst) == (0.5, 5)
    assert secret in config.secrets()
    text = render(config, as_notification(config, webhook_message("resolved-poddown"), datetime.now(UTC)),
                  Templates(TEMPLATES))
    assert text.startswith("# PATCH <webhook URL>/messages/<id of the message")
    assert_leaks_no_secret([text], [WEBHOOK_TOKEN, secret])


async def test_a_resolve_across_messages_edits_one_per_attempt_and_a_retry_continues_where_it_stopped(
        discord: DiscordServer, templates: Templates, session: aiohttp.ClientSession, store: Store) -> None:
    """A group that grew over three notifications lives in three messages; its resolve edits each once, one edit
    per attempt (each attempt takes its own rate-limit token), and a 429 in the middle repeats nothing."""
    from relay.errors import DeliveryUnfinished, TransientDeliveryError

    sender = DiscordChannel(receiver(discord.url), templates, session)
    group = webhook_message("firing-highmemory-group3-truncated")
    for i, alert in enumerate(group.alerts):
        await sender.send(notification(group.model_copy(update={"alerts": [alert]}), "discord-ops", "discord",
                                       id=i + 1), Threads(store, "discord-ops"))
    assert len(discord.order) == 3
    gone = resolved(group, datetime.now(UTC))
    outcomes = []
    discord.script(Answer(200), Answer(429, RATE_LIMITED))  # the first edit goes through, the second is limited
    for _ in range(6):
        try:
            await sender.send(notification(gone, "discord-ops", "discord", id=9), Threads(store, "discord-ops"))
        except DeliveryUnfinished:
            outcomes.append("unfinished")
            continue
        except TransientDeliveryError as exc:
            outcomes.append(exc.reason.value)
            continue
        outcomes.append("delivered")
        break
    assert outcomes == ["unfinished", "rate_limited", "unfinished", "delivered"]
    assert sorted(discord.edits) == sorted(discord.order) and len(discord.order) == 3  # each edited once
    assert all(discord.messages[i]["embeds"][0]["title"].startswith("[RESOLVED]") for i in discord.order)
