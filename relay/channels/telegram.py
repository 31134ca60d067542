"""Telegram: each notification a bot message (sendMessage, HTML parse mode); a resolve edits it (editMessageText).

Every value is HTML-escaped by the template sandbox, and the default template puts alert text inside `<code>`,
where Telegram detects no @mention, #hashtag or link: a label cannot notify anyone, link anywhere or format. A
message stays within Telegram's 4096 characters: as many alerts as fit (counted in UTF-16 code units, as Telegram
counts, on the HTML before parsing, which is never shorter) and "… and N more alerts"; if not even one alert fits,
the message is that alert's text, cut, in one `<pre>` block. Link previews are off.

`message_thread_id` posts into a forum topic. The message id Telegram answers is remembered per alert
(relay.channels.edits), so the resolve edits the message that announced it, also after a restart; a message
Telegram cannot find any more makes the resolve a new message. A 429's `parameters.retry_after` holds the whole
destination (Telegram allows about one message a second in a chat, 20 a minute in a group). The bot token is part
of every URL (`/bot<token>/sendMessage`), so no URL is ever quoted in an error.
"""

from __future__ import annotations

import functools
import html
import re
from datetime import datetime
from typing import Any

import aiohttp

from relay.alerts import Notification
from relay.channels.base import rendered, secret_digest
from relay.channels.edits import Call, StoredMessages, make_calls, preview_calls
from relay.channels.http import TIMEOUT, Reply, call, dumps, failure, usable_url
from relay.channels.threads import Threads
from relay.config.integrations import TelegramConfig
from relay.config.receivers import ReceiverConfig
from relay.errors import DeliveryError, PermanentDeliveryError, Reason
from relay.storms import summary
from relay.storms.fold import storm_of
from relay.templating import Templates, context
from relay.templating.escape import cut

TEXT_LIMIT = 4096
MAX_ALERTS = 50  # a message lists at most this many alerts, fewer when they do not fit
_TAG = re.compile(r"<[^>]+>")
# editMessageText answers 400 with these when the message cannot be edited any more: post a new one instead.
_GONE = ("message to edit not found", "message can't be edited", "message_id_invalid")
_NOT_MODIFIED = "message is not modified"


def length(text: str) -> int:
    """Characters as Telegram counts them: UTF-16 code units."""
    return len(text.encode("utf-16-le")) // 2


def text_of(notification: Notification, templates: Templates, receiver: ReceiverConfig,
            now: datetime | None = None) -> str:
    """The message's HTML: as many alerts as fit in TEXT_LIMIT, else one alert's text cut in a <pre> block."""
    if storm_of(notification.lane) is not None:
        return storm_text(summary.of(notification))
    ctx = context(notification, now=now)
    limit = min(len(notification.alerts), MAX_ALERTS)
    while True:
        text = templates.render("telegram", "text", receiver.templates, {**ctx, "limit": limit})
        if length(text) <= TEXT_LIMIT:
            return text
        if limit <= 1:
            return f"<pre>{html.escape(cut_to(html.unescape(_TAG.sub('', text)), TEXT_LIMIT - 200), quote=False)}</pre>"
        limit //= 2


def cut_to(text: str, limit: int) -> str:
    """cut() to `limit` as Telegram counts (an emoji is two UTF-16 units), escaping included (`&` becomes 5)."""
    n = limit
    while n > 1 and (size := length(html.escape(cut(text, n), quote=False))) > limit:
        n = min(n - 1, n * limit // size)  # shrink in proportion: a few rounds, whatever the text holds
    return cut(text, n)


def storm_text(storm: summary.Summary) -> str:
    """A storm's summary: counts, the alerts by name (most severe first), where the full list is."""
    esc = functools.partial(html.escape, quote=False)
    where = (f'<a href="{html.escape(storm.history_url)}">Every alert in relay\'s history</a>' if storm.history_url
             else f"Every alert: <code>{esc(storm.command)}</code>")
    head = f"<b>{esc(storm.title)}</b>"
    lines: list[str] = []
    budget = TEXT_LIMIT - length(head) - length(where) - 100
    left = sum(len(f.lines) for f in storm.families)
    for family in storm.families:
        lines.append(f"\n<b><code>{esc(family.name)}</code></b> ({esc(family.severity or 'no severity')}): "
                     f"{family.firing} firing, {family.resolved} resolved")
        for line in family.lines:
            entry = f"• {line.status}: <code>{esc(line.text)}</code>"
            if length("\n".join(lines)) + length(entry) > budget:
                break
            lines.append(entry)
            left -= 1
    shown = sum(1 for line in lines if line.startswith("•"))
    more = [f"… and {left} more alerts"] if shown < sum(len(f.lines) for f in storm.families) else []
    return "\n".join([head, *lines, *more, "", where])


def build_message(notification: Notification, templates: Templates, receiver: ReceiverConfig,
                  now: datetime | None = None) -> dict[str, Any]:
    """The sendMessage body (editMessageText takes the same text and options, and the message id)."""
    config = receiver.telegram
    assert config is not None
    body: dict[str, Any] = {"chat_id": config.chat_id, "text": text_of(notification, templates, receiver, now),
                            "parse_mode": "HTML", "link_preview_options": {"is_disabled": True}}
    if config.message_thread_id is not None:
        body["message_thread_id"] = config.message_thread_id
    if config.disable_notifications:
        body["disable_notification"] = True
    return body


def edit_body(body: dict[str, Any], message: str) -> dict[str, Any]:
    """editMessageText's arguments: the same chat and text, the message's id; no topic or notification options."""
    kept = {k: v for k, v in body.items() if k not in ("message_thread_id", "disable_notification")}
    return {**kept, "message_id": int(message) if message.isdigit() else message}


def _gone(error: PermanentDeliveryError) -> bool:
    return any(reason in error.detail.lower() for reason in _GONE)


ASSUMED_MESSAGE = "<message_id of the message that announced these alerts>"


def requests(notification: Notification, templates: Templates, receiver: ReceiverConfig,
             now: datetime | None = None) -> list[Call]:
    """Every call send() would make (the same make_calls), assuming relay knows each resolved alert's message."""
    calls = preview_calls(notification, lambda shown: build_message(shown, templates, receiver, now), _gone,
                          ASSUMED_MESSAGE, messages=storm_of(notification.lane) is None)
    return [Call(c.step, edit_body(c.body, c.message)) if c.step == "edit" else c for c in calls]


def failure_of(reply: Reply, secrets: list[str]) -> DeliveryError:
    """The DeliveryError for a Bot API answer that is not `ok`: Telegram's description in the detail, its
    `parameters.retry_after` as the hint; a chat that was upgraded to a supergroup names its new id."""
    body = reply.body if isinstance(reply.body, dict) else {}
    said = str(body.get("description") or "")
    found = body.get("parameters")
    parameters: dict[str, Any] = found if isinstance(found, dict) else {}
    hint = parameters.get("retry_after")
    migrated = parameters.get("migrate_to_chat_id")
    if isinstance(migrated, int):
        return PermanentDeliveryError(Reason.CONFIG, f"HTTP {reply.status}: the group is now a supergroup: set "
                                                     f"telegram.chat_id to {migrated}")
    lowered = said.lower()
    if reply.status == 400 and ("chat not found" in lowered or "thread not found" in lowered):
        return PermanentDeliveryError(Reason.NOT_FOUND, failure(reply, secrets, said=said).detail)
    return failure(reply, secrets, said=said,
                   retry_after=float(hint) if isinstance(hint, int | float) and hint >= 0 else None)


class TelegramChannel:
    """Sends and edits a Telegram bot's messages in one chat (and topic)."""

    integration = "telegram"

    def __init__(self, receiver: ReceiverConfig, templates: Templates, session: aiohttp.ClientSession, *,
                 timeout: float = TIMEOUT) -> None:
        if receiver.telegram is None:
            raise ValueError(f"receiver {receiver.name!r} is not a telegram receiver")
        self.receiver = receiver
        self.config: TelegramConfig = receiver.telegram
        self.templates = templates
        self.session = session
        self.timeout = timeout
        self._token = self.config.bot_token.get_secret_value().strip() if self.config.bot_token else ""

    @functools.cached_property
    def destination(self) -> str:
        return "telegram:" + secret_digest(f"{self._token}:{self.config.chat_id}")

    async def send(self, notification: Notification, threads: Threads | None = None) -> None:
        edits = threads is not None and storm_of(notification.lane) is None  # a summary is a message of its own
        messages = StoredMessages(threads, "telegram") if edits and threads is not None else None

        async def build(shown: Notification) -> dict[str, Any]:
            return await rendered(build_message, shown, self.templates, self.receiver)

        await make_calls(notification, build, messages, self._make, _gone, stepwise=True)

    async def _make(self, made: Call) -> str:
        method = "editMessageText" if made.step == "edit" else "sendMessage"
        body = edit_body(made.body, made.message) if made.step == "edit" else made.body
        base = usable_url(self.config.api_url, "Telegram api_url").rstrip("/")
        reply = await call(self.session, "POST", f"{base}/bot{self._token}/{method}", dumps(body),
                           timeout=self.timeout, what="Telegram api_url")
        answer = reply.body if isinstance(reply.body, dict) else {}
        if reply.ok and answer.get("ok") is True:
            result = answer.get("result")
            message = result.get("message_id") if isinstance(result, dict) else None
            if isinstance(message, int):
                return str(message)
            if made.step == "edit":  # an edit of an inline message answers `true`
                return made.message
            raise failure(reply, self.receiver.secrets(), said="no message_id in Telegram's answer")
        if made.step == "edit" and _NOT_MODIFIED in str(answer.get("description", "")).lower():
            return made.message  # an earlier attempt already edited it: done
        raise failure_of(reply, self.receiver.secrets())

    async def close(self) -> None:
        """Nothing of its own to close: the session is relay's (relay.runtime)."""
