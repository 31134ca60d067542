"""Slack bot-token threads: a resolve updates the message that announced the alert and replies in its thread.

Driven by the real slack_sdk against the local Slack Web API, with the thread
references in a real SQLite store (closed and reopened to stand for a restart).
"""

from __future__ import annotations

import json
import logging
import re
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import aiohttp
import pytest

from relay.alerts import WebhookMessage, group_status
from relay.channels.preview import THREAD_CHANNEL, THREAD_TS, render
from relay.channels.slack import SlackChannel
from relay.channels.slack.channel import TIMEOUT
from relay.channels.slack.threads import ThreadBook
from relay.channels.threads import Threads
from relay.config.receivers import ReceiverConfig
from relay.errors import Reason, TransientDeliveryError
from relay.store import open_store
from relay.store.base import Store
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
from tests.fakes import STALL, Answer, notification, webhook_message
from tests.fakes.slack import DEFAULT_TOKEN, SlackWebhookServer, channel_id
from tests.helpers import TEMPLATES, poll_until

CHANNEL = "#ojeomneo-alerts"


@pytest.fixture
async def slack() -> AsyncIterator[SlackWebhookServer]:
    async with SlackWebhookServer() as server:
        yield server


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as s:
        yield s


Sender = Callable[..., SlackChannel]


@pytest.fixture
def bot(slack: SlackWebhookServer, session: aiohttp.ClientSession) -> Sender:
    def make(timeout: float = TIMEOUT, **config: Any) -> SlackChannel:
        receiver = ReceiverConfig.model_validate({"name": "team-slack", "slack": {
            "token": DEFAULT_TOKEN, "channel": CHANNEL, "api_url": slack.api_url, **config}})
        return SlackChannel(receiver, Templates(TEMPLATES), session, timeout=timeout)
    return make


def header(body: dict[str, Any]) -> str:
    return str(body["blocks"][0]["text"]["text"])


def wire(body: dict[str, Any]) -> str:
    return json.dumps(body, ensure_ascii=False)


async def test_resolve_replies_in_the_thread_and_updates_the_original(
    slack: SlackWebhookServer, store: Store, bot: Sender
) -> None:
    sender, threads = bot(), Threads(store, "team-slack")
    await sender.send(notification("firing-poddown", "team-slack"), threads)
    await sender.send(notification("resolved-poddown", "team-slack"), threads)

    [original] = slack.top_level()
    assert original.channel == channel_id(CHANNEL)
    [reply] = slack.replies(original.ts)
    assert "[RESOLVED] PodDown" in header(reply.body)
    [update] = slack.updates
    assert (update["channel"], update["ts"]) == (original.channel, original.ts)
    assert "[RESOLVED] PodDown" in header(original.body)  # the channel now shows it resolved ...
    assert "Resolved 2026-11-26 07:38 UTC after 45s" in wire(original.body)  # ... and when
    assert "*Pod down*" in wire(reply.body)  # the resolve lacks annotations; the announcement's are used
    assert original.body["attachments"][0]["color"] == "#2EB67D"
    assert len(slack.posted) == 2


async def test_threads_survive_a_restart(slack: SlackWebhookServer, database_url: str, bot: Sender) -> None:
    url = database_url
    first = open_store(url)
    await first.open()
    await bot().send(notification("firing-poddown", "team-slack"), Threads(first, "team-slack"))
    await first.close()

    second = open_store(url)  # a new process: new channel, new store connection, same file
    await second.open()
    try:
        await bot().send(notification("resolved-poddown", "team-slack"), Threads(second, "team-slack"))
    finally:
        await second.close()
    [original] = slack.top_level()
    assert [r.thread_ts for r in slack.replies(original.ts)] == [original.ts]
    assert [u["ts"] for u in slack.updates] == [original.ts]
    assert "[RESOLVED] PodDown" in header(original.body) and "*Pod down*" in wire(original.body)


async def test_a_group_resolving_alert_by_alert_updates_the_message_each_time(
    slack: SlackWebhookServer, store: Store, bot: Sender
) -> None:
    sender, threads = bot(), Threads(store, "team-slack")
    firing = notification("firing-highlatency-group2", "team-slack")
    resolved = notification("resolved-highlatency-group2", "team-slack").group
    await sender.send(firing, threads)
    for alert in resolved.alerts:  # Alertmanager resolves them one by one
        one = resolved.model_copy(update={"alerts": [alert], "status": "resolved"})
        await sender.send(notification(one, "team-slack"), threads)

    [original] = slack.top_level()
    assert len(slack.replies(original.ts)) == 2
    partly, fully = slack.updates
    assert "[FIRING:1] HighLatency" in header(partly)  # one still fires: the message says so
    assert wire(partly).count(":white_check_mark: *P95") == 1 and wire(partly).count(":red_circle: *P95") == 1
    assert "[RESOLVED] HighLatency" in header(fully)
    assert wire(fully).count(":white_check_mark: *P95") == 2


@pytest.mark.parametrize("failing", ["update", "reply"])
async def test_a_failed_resolve_is_retried_without_a_second_reply(
    slack: SlackWebhookServer, store: Store, bot: Sender, failing: str
) -> None:
    sender, threads = bot(), Threads(store, "team-slack")
    await sender.send(notification("firing-poddown", "team-slack"), threads)
    if failing == "reply":
        slack.respond_with(200)  # chat.update goes through
    slack.respond_with(500)
    with pytest.raises(TransientDeliveryError):
        await sender.send(notification("resolved-poddown", "team-slack"), threads)
    await sender.send(notification("resolved-poddown", "team-slack"), threads)
    await sender.send(notification("resolved-poddown", "team-slack"), threads)  # a lease expired: sent again

    [original] = slack.top_level()
    assert len(slack.replies(original.ts)) == 1
    assert len(slack.updates) == (2 if failing == "reply" else 1)  # an update is repeatable, a reply is not


@dataclass(frozen=True)
class Resolve:
    """Slack's answers to a resolve's two calls after the announcement: chat.update of the announcing message,
    then chat.postMessage into its thread (None: as Slack usually answers)."""

    update: Answer | None = None
    reply: Answer | None = None

    def script(self) -> list[Answer]:
        """The answers to script, in order (Slack's usual answer to the update when only the reply is scripted)."""
        if self.reply is None:
            return [self.update] if self.update else []
        return [self.update or Answer(200), self.reply]


def slack_error(name: str) -> Answer:
    """A Web API refusal: HTTP 200 with `ok: false` and Slack's error name."""
    return Answer(200, {"ok": False, "error": name})


# A resolve's answers -> outcome. A message that cannot be updated any more still gets the reply in its thread.
RESOLVE_TABLE = [
    contract_case(Resolve(), Expected(OK), id="ok"),
    contract_case(Resolve(update=slack_error("message_not_found")), Expected(OK), id="original-deleted"),
    contract_case(Resolve(update=slack_error("edit_window_closed")), Expected(OK), id="edit-window-closed"),
    contract_case(Resolve(update=Answer(500)), Expected(TRANSIENT, Reason.SERVER_ERROR, code="internal_error"),
                  id="update-500"),
    contract_case(Resolve(update=Answer(429, None, {"Retry-After": "3"})),
                  Expected(TRANSIENT, Reason.RATE_LIMITED, 3.0, code="ratelimited"), id="update-429"),
    contract_case(Resolve(update=slack_error("token_revoked")), Expected(PERMANENT, Reason.AUTH, code="token_revoked"),
                  id="update-token-revoked"),
    contract_case(Resolve(update=STALL), Expected(TRANSIENT, Reason.TIMEOUT), id="update-timeout"),
    contract_case(Resolve(reply=Answer(503)), Expected(TRANSIENT, Reason.SERVER_ERROR, code="service_unavailable"),
                  id="reply-503"),
    contract_case(Resolve(update=slack_error("is_archived"), reply=slack_error("is_archived")),
                  Expected(PERMANENT, Reason.NOT_FOUND, code="is_archived"), id="channel-archived"),
]


@pytest.mark.parametrize(("answer", "expected"), RESOLVE_TABLE)
async def test_resolve_answers_map_to_outcomes(
    slack: SlackWebhookServer, store: Store, bot: Sender, caplog: pytest.LogCaptureFixture, answer: Resolve,
    expected: Expected,
) -> None:
    caplog.set_level(logging.DEBUG)
    sender, threads = bot(timeout=0.2 if answer.update == STALL else TIMEOUT), Threads(store, "team-slack")
    await sender.send(notification("firing-poddown", "team-slack"), threads)
    slack.script(*answer.script())
    exc = await outcome_of(sender.send(notification("resolved-poddown", "team-slack"), threads))

    assert_outcome(exc, expected)
    [original] = slack.top_level()
    assert len(slack.replies(original.ts)) == (1 if expected.outcome == OK else 0)
    assert len(slack.updates) == (1 if answer.update is None else 0)  # an original Slack refuses stays as it was
    assert_leaks_no_secret(shown(exc, caplog.text), [DEFAULT_TOKEN])


async def test_a_repeated_firing_reminds_in_the_thread(
    slack: SlackWebhookServer, store: Store, bot: Sender
) -> None:
    sender, threads = bot(), Threads(store, "team-slack")
    await sender.send(notification("firing-poddown", "team-slack"), threads)
    await sender.send(notification("firing-poddown", "team-slack", id=2), threads)  # repeat_interval passed
    [original] = slack.top_level()
    [reminder] = slack.replies(original.ts)
    assert reminder.body["reply_broadcast"] is True  # also shown in the channel
    assert "[FIRING:1] PodDown" in header(reminder.body)


async def test_mention_only_on_the_announcement(slack: SlackWebhookServer, store: Store, bot: Sender) -> None:
    sender, threads = bot(mention="<!subteam^S0123|oncall>"), Threads(store, "team-slack")
    await sender.send(notification("firing-poddown", "team-slack"), threads)
    await sender.send(notification("resolved-poddown", "team-slack"), threads)
    [original] = slack.top_level()
    assert "<!subteam^S0123|oncall>" in slack.messages[0]["text"]
    assert "subteam" not in wire(slack.replies(original.ts)[0].body)
    assert "subteam" not in wire(slack.updates[0])  # the resolved message no longer pages the team


async def test_without_threads_a_resolve_is_a_new_message(
    slack: SlackWebhookServer, bot: Sender
) -> None:
    sender = bot()
    await sender.send(notification("firing-poddown", "team-slack"))
    await sender.send(notification("resolved-poddown", "team-slack"))
    assert [p.thread_ts for p in slack.posted] == [None, None]
    assert slack.updates == []


async def test_incoming_webhook_mode_posts_new_messages(
    slack: SlackWebhookServer, session: aiohttp.ClientSession, store: Store
) -> None:
    receiver = ReceiverConfig.model_validate({"name": "team-slack", "slack": {"webhook_url": slack.url()}})
    sender, threads = SlackChannel(receiver, Templates(TEMPLATES), session), Threads(store, "team-slack")
    await sender.send(notification("firing-poddown", "team-slack"), threads)
    await sender.send(notification("resolved-poddown", "team-slack"), threads)
    _, resolved = await slack.wait_for(2)
    assert "[RESOLVED] PodDown" in header(resolved)
    assert [r.path for r in slack.requests] == [slack.requests[0].path] * 2
    assert slack.updates == [] and slack.posted == []


def only(fixture: str, *indexes: int) -> WebhookMessage:
    """The fixture's group holding only these of its alerts, as Alertmanager sends a group that grew or shrank."""
    group = webhook_message(fixture)
    alerts = [group.alerts[i] for i in indexes]
    return group.model_copy(update={"alerts": alerts, "status": group_status(alerts)})


async def test_a_group_announced_in_two_messages_is_reminded_and_resolved_in_both(
    slack: SlackWebhookServer, store: Store, bot: Sender
) -> None:
    sender, threads = bot(mention="<!subteam^S0123|oncall>"), Threads(store, "team-slack")
    await sender.send(notification(only("firing-highlatency-group2", 0), "team-slack", id=1), threads)
    await sender.send(notification(only("firing-highlatency-group2", 1), "team-slack", id=2), threads)  # joined
    await sender.send(notification("firing-highlatency-group2", "team-slack", id=3), threads)  # repeat_interval
    first, second = slack.top_level()  # no third top-level message (nor a third mention)
    assert [len(slack.replies(m.ts)) for m in (first, second)] == [1, 1]
    for message, service in ((first, "admin"), (second, "server")):
        [reminder] = slack.replies(message.ts)
        assert reminder.body["reply_broadcast"] is True
        assert f"`service={service}`" in wire(reminder.body) and "[FIRING:1] HighLatency" in header(reminder.body)
    reminders = [slack.replies(m.ts)[0] for m in (first, second)]  # one notification pings people once
    assert sum("<!subteam^S0123|oncall>" in wire(r.body) for r in reminders) == 1

    await sender.send(notification("resolved-highlatency-group2", "team-slack", id=4), threads)
    assert len(slack.top_level()) == 2
    for message in (first, second):  # both announcements now say resolved, and each thread got the resolve
        assert "[RESOLVED] HighLatency" in header(message.body)
        assert "[RESOLVED] HighLatency" in header(slack.replies(message.ts)[-1].body)


async def test_a_new_alert_beside_a_reminded_one_gets_its_own_message(
    slack: SlackWebhookServer, store: Store, bot: Sender
) -> None:
    sender, threads = bot(mention="<!subteam^S0123|oncall>"), Threads(store, "team-slack")
    await sender.send(notification(only("firing-highlatency-group2", 0), "team-slack", id=1), threads)
    await sender.send(notification("firing-highlatency-group2", "team-slack", id=2), threads)
    first, second = slack.top_level()
    [reminder] = slack.replies(first.ts)
    assert "`service=admin`" in wire(reminder.body) and "server" not in wire(reminder.body)
    assert "`service=server`" in wire(second.body) and "admin" not in wire(second.body)
    # The ping goes with the new alert's message, not also with the reminder beside it.
    assert "<!subteam^S0123|oncall>" in wire(second.body) and "<!subteam" not in wire(reminder.body)

    await sender.send(notification("resolved-highlatency-group2", "team-slack", id=3), threads)
    assert "[RESOLVED] HighLatency" in header(first.body) and "[RESOLVED] HighLatency" in header(second.body)


async def test_a_retried_reminder_is_not_posted_twice(slack: SlackWebhookServer, store: Store, bot: Sender) -> None:
    sender, threads = bot(), Threads(store, "team-slack")
    await sender.send(notification(only("firing-highlatency-group2", 0), "team-slack", id=1), threads)
    await sender.send(notification(only("firing-highlatency-group2", 1), "team-slack", id=2), threads)
    slack.respond_with(200)  # the first reminder goes through, the second meets an outage
    slack.respond_with(500)
    with pytest.raises(TransientDeliveryError):
        await sender.send(notification("firing-highlatency-group2", "team-slack", id=3), threads)
    await sender.send(notification("firing-highlatency-group2", "team-slack", id=3), threads)
    first, second = slack.top_level()
    assert [len(slack.replies(m.ts)) for m in (first, second)] == [1, 1]


async def test_reminders_keep_the_thread_past_the_retention_horizon(
    slack: SlackWebhookServer, store: Store, bot: Sender
) -> None:
    sender, threads = bot(), Threads(store, "team-slack")
    await sender.send(notification("firing-poddown", "team-slack", id=1), threads)
    horizon = time.time() + 0.001  # everything written before this is older than the retention horizon
    await poll_until(lambda: time.time() > horizon, interval=0.001)
    await sender.send(notification("firing-poddown", "team-slack", id=2), threads)  # repeat_interval passed
    await store.prune(horizon, horizon)  # what retention does once the announcement is RELAY_RETENTION_HOURS old

    await sender.send(notification("resolved-poddown", "team-slack", id=3), threads)
    [original] = slack.top_level()
    assert "[RESOLVED] PodDown" in header(slack.replies(original.ts)[-1].body)
    assert "[RESOLVED] PodDown" in header(original.body)
    assert "*Pod down*" in wire(original.body)  # the message record survived too: the update shows what it said


def preview_calls(text: str) -> list[tuple[str, dict[str, Any]]]:
    """`relay templates render` output as (API method, body) pairs."""
    parts = re.split(r"^# (.*)$", text, flags=re.MULTILINE)
    return [(what.split()[0].rstrip(","), json.loads(body)) for what, body in zip(parts[1::2], parts[2::2],
                                                                                  strict=True)]


def sent_calls(slack: SlackWebhookServer, since: int) -> list[tuple[str, dict[str, Any]]]:
    return [(r.path.rsplit("/", 1)[-1], r.body) for r in slack.requests[since:]]


def comparable(calls: list[tuple[str, dict[str, Any]]], announced: Any) -> str:
    """Calls with the thread's real channel and ts in place of the preview's placeholders, and no clock-dependent
    `(5m ago)` text."""
    text = json.dumps(calls, ensure_ascii=False, sort_keys=True)
    text = text.replace(THREAD_CHANNEL, announced.channel).replace(THREAD_TS, announced.ts)
    return re.sub(r"\((\d+[dhms] ?)+ (ago|from now)\)", "(…)", text)


async def test_templates_render_shows_the_calls_send_makes_for_a_mixed_group(
    slack: SlackWebhookServer, store: Store, bot: Sender
) -> None:
    sender, threads = bot(), Threads(store, "team-slack")
    firing, resolved = webhook_message("firing-highlatency-group2"), webhook_message("resolved-highlatency-group2")
    mixed = [resolved.alerts[0], firing.alerts[1]]  # admin resolved, server fires (announced nowhere yet)
    group = firing.model_copy(update={"alerts": mixed, "status": group_status(mixed)})
    await sender.send(notification(only("firing-highlatency-group2", 0), "team-slack", id=1), threads)
    [announced] = slack.top_level()
    since = len(slack.requests)
    await sender.send(notification(group, "team-slack", id=2), threads)

    shown = preview_calls(render(sender.receiver, notification(group, "team-slack"), Templates(TEMPLATES)))
    assert [method for method, _ in shown] == ["chat.update", "chat.postMessage", "chat.postMessage"]
    assert comparable(shown, announced) == comparable(sent_calls(slack, since), announced)


async def test_templates_render_prefers_the_webhook_like_send(slack: SlackWebhookServer, bot: Sender) -> None:
    sender = bot(webhook_url=slack.url())  # a token and a channel are set too
    n = notification("firing-poddown", "team-slack")
    await sender.send(n)
    [(what, body)] = preview_calls(render(sender.receiver, n, Templates(TEMPLATES)))
    assert what == "POST"  # to the incoming webhook
    assert body == slack.requests[0].body
    assert slack.requests[0].path.startswith("/services/") and slack.posted == []


async def test_templates_render_refuses_a_book_that_waits_for_the_store(
    slack: SlackWebhookServer, store: Store, bot: Sender
) -> None:
    """requests() only records calls for a book that answers at once; a store-backed one is refused, not half-run."""
    sender = bot()
    with pytest.raises(RuntimeError, match="answers without waiting"):
        sender.requests(notification("firing-poddown", "team-slack"), ThreadBook(Threads(store, "team-slack")))
    assert slack.requests == []


def test_templates_render_shows_a_receiver_without_secrets_as_the_webhook() -> None:
    """`routes diff` renders files whose ${VAR}s are unset here: neither secret set reads as the incoming webhook."""
    receiver = ReceiverConfig.model_validate({"name": "team-slack", "slack": {"webhook_url": " ", "channel": CHANNEL}})
    n = notification("resolved-poddown", "team-slack")
    [(what, body)] = preview_calls(render(receiver, n, Templates(TEMPLATES)))
    assert what == "POST" and body["channel"] == CHANNEL and "thread_ts" not in body
