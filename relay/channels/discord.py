"""Discord: each notification an embed posted through a channel webhook; a resolve edits the message it resolves.

The embed keeps within Discord's limits (title 256, description 4096, 25 fields of 256/1024, 6000 characters in
all): the description is cut with "… and N more" and the fields go first when the total would be over.
Every message says `allowed_mentions: {"parse": []}`, so nothing in it pings anyone whatever the text, and alert
values are markdown-escaped (relay.templating.markdown_escape), so `@everyone`, `<@&id>`, `[text](url)` or
`**` in a label read as text.

A post asks `?wait=true`, so Discord answers with the message and relay remembers its id per alert
(relay.channels.edits); the resolve of those alerts PATCHes `/messages/{id}` to show them resolved, also after a
restart. A message Discord no longer has (10008 Unknown Message) makes the resolve a new message. A storm's
summary is one message of its own (not updated in place). 429 answers carry `retry_after` in their JSON body,
which the dispatcher honours for the whole destination.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from datetime import datetime
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import aiohttp

from relay.alerts import Notification
from relay.channels.base import rendered, secret_digest
from relay.channels.edits import Call, StoredMessages, make_calls, preview_calls
from relay.channels.http import TIMEOUT, Reply, call, dumps, failure, usable_url
from relay.channels.threads import Threads
from relay.config.integrations import DiscordConfig
from relay.config.receivers import ReceiverConfig
from relay.errors import PermanentDeliveryError
from relay.storms import summary
from relay.storms.fold import storm_of
from relay.templating import Templates, context
from relay.templating.escape import markdown_escape, md_cut

TITLE_LIMIT, DESCRIPTION_LIMIT, FIELDS_LIMIT, FIELD_NAME_LIMIT, FIELD_VALUE_LIMIT = 256, 4096, 25, 256, 1024
EMBED_TOTAL = 6000
UNKNOWN_MESSAGE = "10008"
COLOURS = {"critical": 0xD32F2F, "error": 0xD32F2F, "warning": 0xF9A825, "info": 0x1976D2}
RESOLVED, OTHER = 0x2E7D32, 0x757575
NO_MENTIONS: dict[str, list[str]] = {"parse": []}


def colour(notification: Notification) -> int:
    if notification.status == "resolved":
        return RESOLVED
    severities = [a.labels.get("severity", "").lower() for a in notification.alerts if a.status == "firing"]
    return next((COLOURS[s] for s in ("critical", "error", "warning", "info") if s in severities), OTHER)


def fields(labels: Mapping[str, str]) -> list[dict[str, Any]]:
    items = list(labels.items())
    shown = items if len(items) <= FIELDS_LIMIT else items[:FIELDS_LIMIT - 1]
    out = [{"name": md_cut(markdown_escape(k), FIELD_NAME_LIMIT), "value": md_cut(markdown_escape(v), FIELD_VALUE_LIMIT)
            or "\u200b", "inline": True} for k, v in shown]
    if len(shown) < len(items):
        out.append({"name": "…", "value": f"and {len(items) - len(shown)} more labels", "inline": False})
    return out


def _size(embed: Mapping[str, Any]) -> int:
    return len(embed.get("title", "")) + len(embed.get("description", "")) + sum(
        len(f["name"]) + len(f["value"]) for f in embed.get("fields", []))


def fit(embed: dict[str, Any]) -> dict[str, Any]:
    """Keep the embed within 6,000 characters: the description gives way first, then the fields go."""
    over = _size(embed) - EMBED_TOTAL
    if over > 0 and len(embed["description"]) > over + 100:
        embed["description"] = md_cut(embed["description"], len(embed["description"]) - over)
    if _size(embed) > EMBED_TOTAL:
        embed["fields"] = []
        embed["description"] = md_cut(embed["description"], EMBED_TOTAL - len(embed["title"]))
    return embed


def build_message(notification: Notification, templates: Templates, receiver: ReceiverConfig,
                  now: datetime | None = None) -> dict[str, Any]:
    """The webhook message (an execute or edit body) for a notification."""
    config = receiver.discord
    assert config is not None
    if storm_of(notification.lane) is not None:
        embed = storm_embed(summary.of(notification))
    else:
        ctx = context(notification, now=now)
        shown = ctx["commonExtraLabels"] if len(notification.alerts) > 1 else ctx["alerts"][0]["extraLabels"]
        embed = fit({
            "title": md_cut(" ".join(templates.render("discord", "title", receiver.templates, ctx).split()),
                            TITLE_LIMIT),
            "description": md_cut(templates.render("discord", "description", receiver.templates, ctx),
                                  DESCRIPTION_LIMIT),
            "color": colour(notification),
            "fields": fields(shown),
        })
    message: dict[str, Any] = {"embeds": [embed], "allowed_mentions": NO_MENTIONS}
    if config.username:
        message["username"] = config.username
    if config.avatar_url:
        message["avatar_url"] = config.avatar_url
    return message


def storm_embed(storm: summary.Summary) -> dict[str, Any]:
    """A storm's summary as one embed: counts, the alerts by name (most severe first), where the full list is."""
    lines = []
    for family in storm.families:
        lines.append(f"**{markdown_escape(family.name)}** ({markdown_escape(family.severity or 'no severity')}): "
                     f"{family.firing} firing, {family.resolved} resolved")
        lines += [f"- {line.status}: {markdown_escape(line.text)}" for line in family.lines[:20]]
        if len(family.lines) > 20:
            lines.append(f"- … and {len(family.lines) - 20} more")
    where = (f"Every alert: {storm.history_url}" if storm.history_url else
             f"Every alert is listed by `{storm.command}`")
    description = md_cut("\n".join(lines), DESCRIPTION_LIMIT - len(where) - 2) + "\n\n" + where
    # The title is relay's own words and the receiver's name from routes.yaml: no alert text, nothing to escape.
    return {"title": md_cut(storm.title, TITLE_LIMIT), "description": description,
            "color": RESOLVED if storm.firing == 0 else OTHER}


def _gone(error: PermanentDeliveryError) -> bool:
    return error.code == UNKNOWN_MESSAGE


ASSUMED_MESSAGE = "<id of the message that announced these alerts>"


def requests(notification: Notification, templates: Templates, receiver: ReceiverConfig,
             now: datetime | None = None) -> list[Call]:
    """Every call send() would make (the same make_calls), assuming relay knows the message of each resolved alert
    and every call succeeds: what `relay templates render` shows."""
    return preview_calls(notification, lambda shown: build_message(shown, templates, receiver, now), _gone,
                         ASSUMED_MESSAGE, messages=storm_of(notification.lane) is None)


def _code(reply: Reply) -> tuple[str, str, float | None]:
    """Discord's error code, message and (429) retry_after from a JSON error body."""
    body = reply.body if isinstance(reply.body, dict) else {}
    code = body.get("code")
    said = body.get("message")
    hint = body.get("retry_after")
    return (str(code) if isinstance(code, int) else "", said if isinstance(said, str) else "",
            float(hint) if isinstance(hint, int | float) and hint >= 0 else None)


class DiscordChannel:
    """Posts and edits a Discord channel webhook's messages."""

    integration = "discord"

    def __init__(self, receiver: ReceiverConfig, templates: Templates, session: aiohttp.ClientSession, *,
                 timeout: float = TIMEOUT) -> None:
        if receiver.discord is None:
            raise ValueError(f"receiver {receiver.name!r} is not a discord receiver")
        self.receiver = receiver
        self.config: DiscordConfig = receiver.discord
        self.templates = templates
        self.session = session
        self.timeout = timeout
        self._url = self.config.webhook_url.get_secret_value().strip() if self.config.webhook_url else ""

    @functools.cached_property
    def destination(self) -> str:
        return "discord:" + secret_digest(self._url)

    async def send(self, notification: Notification, threads: Threads | None = None) -> None:
        edits = threads is not None and storm_of(notification.lane) is None  # a summary is a message of its own
        messages = StoredMessages(threads, "discord") if edits and threads is not None else None

        async def build(shown: Notification) -> dict[str, Any]:
            return await rendered(build_message, shown, self.templates, self.receiver)

        await make_calls(notification, build, messages, self._make, _gone, stepwise=True)

    def _where(self, call: Call) -> tuple[str, str]:
        parts = urlsplit(usable_url(self._url, "Discord webhook_url"))
        query = [(k, v) for k, v in parse_qsl(parts.query) if k == "thread_id"]
        if call.step == "edit":
            path = f"{parts.path.rstrip('/')}/messages/{call.message}"
            return "PATCH", urlunsplit(parts._replace(path=path, query=urlencode(query)))
        return "POST", urlunsplit(parts._replace(query=urlencode([*query, ("wait", "true")])))

    async def _make(self, call: Call) -> str:
        method, url = self._where(call)
        reply = await call_discord(self.session, method, url, call.body, self.timeout)
        if not reply.ok:
            code, said, hint = _code(reply)
            raise failure(reply, self.receiver.secrets(), said=said, code=code, retry_after=hint)
        message = reply.body.get("id") if isinstance(reply.body, dict) else None
        if call.step == "post" and not isinstance(message, str):
            raise failure(reply, self.receiver.secrets(), said="no message id in Discord's answer")
        return message if isinstance(message, str) else call.message

    async def close(self) -> None:
        """Nothing of its own to close: the session is relay's (relay.runtime)."""


async def call_discord(session: aiohttp.ClientSession, method: str, url: str, body: dict[str, Any],
                       timeout: float) -> Reply:
    return await call(session, method, url, dumps(body), timeout=timeout, what="Discord webhook_url")
