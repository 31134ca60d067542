"""Microsoft Teams through a Workflows webhook: each notification a message whose attachment is an Adaptive Card.

The Office 365 connectors are retired; a Workflows flow ("When a Teams webhook request is received", then "Post
card in a chat or channel") takes `{"type": "message", "attachments": [{"contentType":
"application/vnd.microsoft.card.adaptive", "content": <card>}]}` and posts the card. The card (version 1.4, which
Teams renders on desktop, web and mobile) has a heading coloured by severity (a Container style: attention,
warning, accent; good once resolved), the labels the group shares as a FactSet, each alert as text with its own
labels as facts and its runbook / source / silence links as Action.OpenUrl buttons.

Workflows cannot edit a posted card, so a resolve is a new card. Text made from alert values (the heading, each
alert's text) goes into RichTextBlock TextRuns, which no Adaptive Cards renderer reads as markdown (the schema's
own sample says so): `[text](url)`, `**`, `<at>…</at>` are shown as written, with no escaping to show either
(a mention also needs an `msteams.entities` entry, which relay never writes). Fact titles and values, which
renderers do read as markdown, are markdown-escaped (relay.templating.markdown_escape). A card is kept under
CARD_LIMIT bytes (Teams refuses messages of about 28 KB): as many alerts as fit, then "… and N more alerts".
"""

from __future__ import annotations

import functools
import json
from datetime import datetime
from typing import Any

import aiohttp

from relay.alerts import Notification
from relay.channels.base import rendered, secret_digest
from relay.channels.http import TIMEOUT, call, dumps, failure, usable_url
from relay.channels.threads import Threads
from relay.config.integrations import TeamsConfig
from relay.config.receivers import ReceiverConfig
from relay.storms import summary
from relay.storms.fold import storm_of
from relay.templating import Templates, context
from relay.templating.escape import cut, markdown_escape, md_cut

CONTENT_TYPE = "application/vnd.microsoft.card.adaptive"
CARD_VERSION = "1.4"
CARD_LIMIT = 27_000  # bytes of the whole message; Teams refuses about 28 KB
MAX_ALERTS = 20
TEXT_LIMIT = 2000  # one alert's text
FACT_LIMIT = 300  # one fact's value
STYLES = {"critical": "attention", "error": "attention", "warning": "warning", "info": "accent"}
BUTTONS = (("runbookURL", "Runbook"), ("sourceURL", "Source"), ("silenceURL", "Silence"))


def style(notification: Notification) -> str:
    if notification.status == "resolved":
        return "good"
    severities = {a.labels.get("severity", "").lower() for a in notification.alerts if a.status == "firing"}
    return next((STYLES[s] for s in ("critical", "error", "warning", "info") if s in severities), "emphasis")


def facts(labels: dict[str, str]) -> dict[str, Any]:
    return {"type": "FactSet", "facts": [{"title": markdown_escape(k), "value": md_cut(markdown_escape(v), FACT_LIMIT)}
                                         for k, v in labels.items()]}


def text_block(text: str, **options: Any) -> dict[str, Any]:
    """Text relay writes itself (markdown allowed: no alert value in it)."""
    return {"type": "TextBlock", "text": text, "wrap": True, **options}


def plain(text: str, **options: Any) -> dict[str, Any]:
    """Text holding alert values: a RichTextBlock's TextRun, shown as written, never read as markdown."""
    return {"type": "RichTextBlock", "inlines": [{"type": "TextRun", "text": text, **options}]}


def alert_text(text: str) -> dict[str, Any]:
    """One alert's text: its first line (the summary) bold, the rest as written."""
    head, _, rest = text.partition("\n")
    runs: list[dict[str, Any]] = [{"type": "TextRun", "text": head, "weight": "Bolder"}]
    if rest.strip():
        runs.append({"type": "TextRun", "text": "\n" + rest.strip("\n")})
    return {"type": "RichTextBlock", "inlines": runs}


def message(card: dict[str, Any]) -> dict[str, Any]:
    """The Workflows request body: a message with the card as its one attachment."""
    return {"type": "message", "attachments": [{"contentType": CONTENT_TYPE, "contentUrl": None, "content": card}]}


def card_of(heading: str, colour: str, body: list[dict[str, Any]], fallback: str) -> dict[str, Any]:
    top = {"type": "Container", "style": colour, "bleed": True,
           "items": [plain(heading, weight="Bolder", size="Medium")]}
    return {"$schema": "http://adaptivecards.io/schemas/adaptive-card.json", "type": "AdaptiveCard",
            "version": CARD_VERSION, "fallbackText": fallback, "body": [top, *body]}


def _size(body: dict[str, Any]) -> int:
    return len(json.dumps(body, ensure_ascii=False).encode())


def build_message(notification: Notification, templates: Templates, receiver: ReceiverConfig,
                  now: datetime | None = None) -> dict[str, Any]:
    """The message for a notification: as many alerts as fit in CARD_LIMIT, then how many were left out."""
    if storm_of(notification.lane) is not None:
        return message(storm_card(summary.of(notification)))
    ctx = context(notification, now=now)
    heading = " ".join(templates.render("teams", "title", receiver.templates, ctx).split())
    top: list[dict[str, Any]] = [facts(ctx["commonExtraLabels"])] if ctx["commonExtraLabels"] else []
    blocks = []
    for alert in ctx["alerts"][:MAX_ALERTS]:
        text = cut(templates.render("teams", "alert", receiver.templates, {**ctx, "alert": alert}), TEXT_LIMIT)
        items: list[dict[str, Any]] = [alert_text(text)]
        if alert["extraLabels"] and (len(notification.alerts) > 1 or not top):
            items.append(facts(alert["extraLabels"]))
        links = [{"type": "Action.OpenUrl", "title": title, "url": alert[field]} for field, title in BUTTONS
                 if alert[field] and (field != "silenceURL" or alert["status"] == "firing")]
        if links:
            items.append({"type": "ActionSet", "actions": links})
        blocks.append({"type": "Container", "separator": True, "items": items})
    fallback = markdown_escape(heading)  # a client that shows only this may read it as markdown
    shown = len(blocks)
    while True:
        more = len(notification.alerts) - shown
        tail = [text_block(f"… and {more} more alerts", isSubtle=True)] if more else []
        tail += [text_block(f"+{notification.group.truncatedAlerts} alerts not sent by Alertmanager",
                            isSubtle=True)] if notification.group.truncatedAlerts else []
        body = message(card_of(heading, style(notification), [*top, *blocks[:shown], *tail], fallback))
        if _size(body) <= CARD_LIMIT or shown <= 1:
            return body
        shown -= 1


def storm_card(storm: summary.Summary) -> dict[str, Any]:
    """A storm's summary: counts, the alerts by name (most severe first), a button to the full list."""
    body: list[dict[str, Any]] = []
    for family in storm.families[:30]:
        lines = [f"• {line.status}: {line.text}" for line in family.lines[:10]]
        if len(family.lines) > 10:
            lines.append(f"• … and {len(family.lines) - 10} more")
        head = f"{family.name} ({family.severity or 'no severity'}): {family.firing} firing, {family.resolved} resolved"
        body.append(alert_text(head + "\n" + "\n".join(lines)))
    if storm.history_url:
        body.append({"type": "ActionSet", "actions": [{"type": "Action.OpenUrl", "title": "Every alert",
                                                        "url": storm.history_url}]})
    else:
        body.append(plain(f"Every alert is listed by {storm.command}", isSubtle=True))
    # The title is relay's own words and the receiver's name from routes.yaml: no alert text, nothing to escape.
    return card_of(storm.title, "good" if storm.firing == 0 else "emphasis", body, storm.title)


class TeamsChannel:
    """Posts each notification's card to a Teams Workflows webhook."""

    integration = "teams"

    def __init__(self, receiver: ReceiverConfig, templates: Templates, session: aiohttp.ClientSession, *,
                 timeout: float = TIMEOUT) -> None:
        if receiver.teams is None:
            raise ValueError(f"receiver {receiver.name!r} is not a teams receiver")
        self.receiver = receiver
        self.config: TeamsConfig = receiver.teams
        self.templates = templates
        self.session = session
        self.timeout = timeout
        self._url = self.config.webhook_url.get_secret_value().strip() if self.config.webhook_url else ""

    @functools.cached_property
    def destination(self) -> str:
        return "teams:" + secret_digest(self._url)

    async def send(self, notification: Notification, threads: Threads | None = None) -> None:
        body = await rendered(build_message, notification, self.templates, self.receiver)
        url = usable_url(self._url, "Teams webhook_url")
        reply = await call(self.session, "POST", url, dumps(body), timeout=self.timeout, what="Teams webhook_url")
        if reply.ok:
            return
        error = reply.body.get("error") if isinstance(reply.body, dict) else None
        code = error.get("code") if isinstance(error, dict) else None
        said = error.get("message") if isinstance(error, dict) else None
        raise failure(reply, self.receiver.secrets(), said=said if isinstance(said, str) else "",
                      code=code if isinstance(code, str) and code.isidentifier() and len(code) <= 64 else "")

    async def close(self) -> None:
        """Nothing of its own to close: the session is relay's (relay.runtime)."""
