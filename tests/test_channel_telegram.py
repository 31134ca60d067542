"""Telegram channel against a local Bot API (tests/fakes/telegram.py) through relay's real HTTP client: the shared
outcome table with Telegram's `parameters.retry_after`, HTML that Telegram parses with every label escaped, the
4096-character limit, forum topics, resolves that edit the message (also after a restart), and hostile labels."""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from relay.alerts import Notification, alert_key
from relay.channels.factory import build_channel
from relay.channels.preview import as_notification, render, resolved
from relay.channels.telegram import TelegramChannel, build_message
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
from tests.fakes.telegram import BOT_TOKEN, CHAT_ID, TOPIC, TelegramServer, error, length, parse
from tests.helpers import TEMPLATES


@pytest.fixture
async def telegram() -> AsyncIterator[TelegramServer]:
    async with TelegramServer() as server:
        yield server


def receiver(api_url: str, **config: Any) -> ReceiverConfig:
    return ReceiverConfig.model_validate({"name": "telegram-ops", "telegram": {
        "bot_token": BOT_TOKEN, "chat_id": CHAT_ID, "api_url": api_url, **config}})


TABLE = [
    contract_case(Answer(200), Expected(OK), id="200-message"),
    contract_case(error(400, "Bad Request: can't parse entities: Unsupported start tag"),
                  Expected(PERMANENT, Reason.CLIENT_ERROR), id="400"),
    contract_case(error(400, "Bad Request: chat not found"), Expected(PERMANENT, Reason.NOT_FOUND),
                  id="400-chat-not-found"),
    contract_case(error(400, "Bad Request: group chat was upgraded to a supergroup chat", migrate_to_chat_id=-1009),
                  Expected(PERMANENT, Reason.CONFIG), id="400-migrated-to-supergroup"),
    contract_case(error(401, "Unauthorized"), Expected(PERMANENT, Reason.AUTH), id="401"),
    contract_case(error(403, "Forbidden: bot was kicked from the supergroup chat"), Expected(PERMANENT, Reason.AUTH),
                  id="403"),
    contract_case(error(404, "Not Found"), Expected(PERMANENT, Reason.NOT_FOUND), id="404"),
    contract_case(error(413, "Request Entity Too Large"), Expected(PERMANENT, Reason.PAYLOAD_TOO_LARGE), id="413"),
    contract_case(error(429, "Too Many Requests: retry after 7", retry_after=7),
                  Expected(TRANSIENT, Reason.RATE_LIMITED, 7.0), id="429-parameters-retry-after"),
    contract_case(error(500, f"Internal Server Error for bot{BOT_TOKEN}"), Expected(TRANSIENT, Reason.SERVER_ERROR),
                  id="500-echoing-the-token"),
    contract_case(Answer(502, "<html>Bad Gateway</html>"), Expected(TRANSIENT, Reason.SERVER_ERROR), id="502"),
    contract_case(Answer(503), Expected(TRANSIENT, Reason.SERVER_ERROR), id="503"),
    contract_case(REFUSED, Expected(TRANSIENT, Reason.CONNECTION), id="connection-refused"),
    contract_case(STALL, Expected(TRANSIENT, Reason.TIMEOUT), id="timeout"),
    contract_case(UNTRUSTED, Expected(TRANSIENT, Reason.TLS), id="untrusted-certificate"),
]


@pytest.mark.parametrize(("answer", "expected"), TABLE)
async def test_bot_api_answers_map_to_outcomes(telegram: TelegramServer, templates: Templates,
                                               session: aiohttp.ClientSession, caplog: pytest.LogCaptureFixture,
                                               answer: Answer | str, expected: Expected) -> None:
    caplog.set_level(logging.DEBUG)
    async with telegram.answering(answer) as base_url:
        sender = TelegramChannel(receiver(base_url), templates, session, timeout=0.3 if answer == STALL else 5.0)
        exc = await outcome_of(sender.send(notification("firing-poddown", "telegram-ops", "telegram")))
    assert_outcome(exc, expected)
    assert len(telegram.sent) == (1 if exc is None else 0)
    telegram.recover()
    assert_leaks_no_secret(shown(exc, caplog.text), [BOT_TOKEN, f"bot{BOT_TOKEN}"])


async def test_a_real_flood_limit_answer_is_honoured(telegram: TelegramServer, templates: Templates,
                                                     session: aiohttp.ClientSession) -> None:
    telegram.limit(1, per=3.0)
    sender = TelegramChannel(receiver(telegram.base_url), templates, session)
    await sender.send(notification("firing-poddown", "telegram-ops", "telegram"))
    exc = await outcome_of(sender.send(notification("firing-poddown", "telegram-ops", "telegram")))
    assert exc is not None and exc.reason is Reason.RATE_LIMITED
    assert exc.retry_after is not None and 1.0 <= exc.retry_after <= 3.0


async def test_a_message_goes_into_its_forum_topic_and_a_resolve_edits_it_after_a_restart(
        telegram: TelegramServer, templates: Templates, session: aiohttp.ClientSession, tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'relay.db'}"
    first = open_store(url)
    await first.open()
    sender = TelegramChannel(receiver(telegram.base_url, message_thread_id=TOPIC), templates, session)
    await sender.send(notification("firing-highlatency-group2", "telegram-ops", "telegram"),
                      Threads(first, "telegram-ops"))
    [announced] = await telegram.wait_for_messages(1)
    assert announced["message_thread_id"] == TOPIC and announced["text"].startswith("🔴 [FIRING:2] HighLatency")
    await first.close()

    again = open_store(url)
    await again.open()
    try:
        group = webhook_message("firing-highlatency-group2")
        one = resolved(group.model_copy(update={"alerts": group.alerts[:1]}), datetime.now(UTC))
        await sender.send(notification(one, "telegram-ops", "telegram", id=2), Threads(again, "telegram-ops"))
        assert telegram.edits == [announced["message_id"]] and len(telegram.sent) == 1
        text = telegram.messages[announced["message_id"]]["text"]
        assert text.startswith("🔴 [FIRING:1] HighLatency") and text.count("✅") == 1
        # The same resolve again (a retried notification): relay remembers it was shown and calls nothing.
        calls = len(telegram.requests)
        await sender.send(notification(one, "telegram-ops", "telegram", id=2), Threads(again, "telegram-ops"))
        assert len(telegram.requests) == calls and len(telegram.sent) == 1
        # An edit Telegram made although relay could not note it (the store failed just after): "not modified"
        # on the next attempt counts as done.
        fresh = open_store(f"sqlite:///{tmp_path / 'other.db'}")
        await fresh.open()
        try:
            await fresh.remember_refs("telegram-ops", [alert_key(one.alerts[0])],
                                      json.dumps({"message": str(announced["message_id"])}))
            await fresh.remember_refs("telegram-ops", [f"telegram-message:{announced['message_id']}"],
                                      (await again.find_refs("telegram-ops", [
                                          f"telegram-message:{announced['message_id']}"]))[
                                          f"telegram-message:{announced['message_id']}"])
            await sender.send(notification(one, "telegram-ops", "telegram", id=2), Threads(fresh, "telegram-ops"))
            assert telegram.requests[-1].status == 400 and len(telegram.sent) == 1
        finally:
            await fresh.close()
    finally:
        await again.close()


async def test_a_resolve_whose_message_is_gone_is_a_new_message(
        telegram: TelegramServer, templates: Templates, session: aiohttp.ClientSession, store: Store) -> None:
    sender = TelegramChannel(receiver(telegram.base_url), templates, session)
    await sender.send(notification("firing-poddown", "telegram-ops", "telegram"), Threads(store, "telegram-ops"))
    [announced] = await telegram.wait_for_messages(1)
    telegram.delete(announced["message_id"])
    await sender.send(notification("resolved-poddown", "telegram-ops", "telegram", id=2),
                      Threads(store, "telegram-ops"))
    [_, new] = await telegram.wait_for_messages(2)
    assert new["text"].startswith("✅ [RESOLVED] PodDown") and telegram.edits == []


async def test_hostile_labels_are_escaped_text_that_mentions_and_links_nobody(
        telegram: TelegramServer, templates: Templates, session: aiohttp.ClientSession) -> None:
    await TelegramChannel(receiver(telegram.base_url), templates, session).send(
        notification(hostile.group(), "telegram-ops", "telegram"))
    [message] = await telegram.wait_for_messages(1)  # it parsed: no label broke the HTML
    for entity in message["entities"]:
        assert entity["type"] not in ("mention", "url"), entity  # Telegram found no @mention or bare link
        assert entity["type"] != "text_link" or hostile.EVIL not in entity["url"].split("/")[2], entity
    assert "@everyone" in message["text"] and "<at>Ops</at>" in message["text"]  # shown, as text
    assert "\u202e" not in message["text"] and "[U+202E]" in message["text"]


def test_a_long_group_is_cut_to_4096_characters_with_the_rest_counted(templates: Templates) -> None:
    group = webhook_message("firing-highlatency-group2")
    alerts = [a.model_copy(update={"labels": {**a.labels, "pod": f"pod-{i}"}, "fingerprint": f"{i:016x}",
                                   "annotations": {"summary": "한국어 요약 " * 20, "description": "<b>" * 100}})
              for i, a in enumerate(group.alerts * 60)]
    body = build_message(notification(group.model_copy(update={"alerts": alerts}), "telegram-ops", "telegram"),
                         templates, receiver("https://api.telegram.org"))
    parsed = parse(body["text"])
    assert length(parsed.text) <= 4096 and "more alerts" in parsed.text
    huge = group.model_copy(update={"alerts": [alerts[0].model_copy(update={"annotations": {
        "description": "x" * 10_000}})]})
    one = parse(build_message(notification(huge, "telegram-ops", "telegram"), templates,
                              receiver("https://api.telegram.org"))["text"])
    assert length(one.text) <= 4096 and "more characters" in one.text
    emoji = group.model_copy(update={"alerts": [alerts[0].model_copy(update={"annotations": {
        "description": "🔥&" * 5000}})]})  # two UTF-16 units an emoji, five characters an escaped &
    cut = parse(build_message(notification(emoji, "telegram-ops", "telegram"), templates,
                              receiver("https://api.telegram.org"))["text"])
    assert length(cut.text) <= 4096 and "more characters" in cut.text


def test_a_storm_summary_is_one_message_within_the_limit(templates: Templates) -> None:
    groups = [webhook_message(f) for f in ("firing-poddown", "firing-highlatency-group2", "firing-higherrorrate")]
    summary = Notification(7, "telegram-ops", "telegram", storm_lane("telegram-ops", 3),
                           summary_group(3, groups, "https://relay.example"), datetime.now(UTC))
    parsed = parse(build_message(summary, templates, receiver("https://api.telegram.org"))["text"])
    assert parsed.text.startswith("Alert storm: 4 alerts folded") and length(parsed.text) <= 4096
    assert {"type": "text_link", "url": "https://relay.example/api/v1/notifications?summary=7&limit=1000",
            "text": "Every alert in relay's history"} in parsed.entities


async def test_routes_yaml_takes_a_telegram_receiver_and_the_chat_decides_its_rate(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, session: aiohttp.ClientSession) -> None:
    monkeypatch.setenv("TELEGRAM_BOT_TOKEN", BOT_TOKEN)
    routes = tmp_path / "routes.yaml"
    routes.write_text("receivers:\n  - name: group\n    telegram:\n      bot_token: ${TELEGRAM_BOT_TOKEN}\n"
                      f"      chat_id: {CHAT_ID}\n      message_thread_id: {TOPIC}\n"
                      "  - name: private\n    telegram: {bot_token: '${TELEGRAM_BOT_TOKEN}', chat_id: 12345}\n"
                      "default_receivers: [group, private]\n")
    loaded = load_routes(routes, Templates(TEMPLATES))
    rates = {}
    for name in ("group", "private"):
        channel = build_channel(loaded.receivers[name], Templates(TEMPLATES), session)
        assert isinstance(channel, TelegramChannel) and BOT_TOKEN not in channel.destination
        budget = budget_of(loaded.receivers[name], channel.destination, True)
        assert budget is not None
        rates[name] = budget.rate
    assert rates == {"group": 20 / 60, "private": 1.0}
    text = render(loaded.receivers["group"], as_notification(loaded.receivers["group"],
                                                             webhook_message("resolved-poddown"), datetime.now(UTC)),
                  Templates(TEMPLATES))
    assert "editMessageText" in text and "/bot<token: not shown>/" in text
    assert_leaks_no_secret([text], [BOT_TOKEN])
    quoted = ReceiverConfig.model_validate({"name": "q", "telegram": {"bot_token": "x", "chat_id": f"{CHAT_ID}"}})
    assert quoted.telegram is not None and quoted.telegram.chat_id == CHAT_ID and quoted.telegram.group
    routes.write_text("receivers:\n  - name: group\n    telegram: {bot_token: x, chat_id: 'ops'}\n")
    with pytest.raises(Exception, match="@channelusername"):
        load_routes(routes, Templates(TEMPLATES))
