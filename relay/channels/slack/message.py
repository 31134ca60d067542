"""Slack Block Kit messages: a header, one section per alert in a coloured attachment, and a plain-text fallback.

Slack refuses a message that breaks its limits (50 blocks, 3000 characters per
section, 150 per header), so everything is cut to fit and says so ("… and N
more alerts") instead. Every text comes from the receiver's templates, which
escape alert values for mrkdwn; the only trusted mrkdwn added here is the
routes.yaml `mention`.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from relay.alerts import Alert, Notification
from relay.config.receivers import ReceiverConfig
from relay.templating import Templates, context
from relay.templating.escape import cut, slack_escape

HEADER_LIMIT = 150
SECTION_LIMIT = 3000
CONTEXT_LIMIT = 2000
TEXT_LIMIT = 3000
BLOCK_LIMIT = 50

COLOURS = {"critical": "#D50200", "warning": "#FF9900", "resolved": "#2EB67D"}
OTHER_COLOUR = "#9E9E9E"
_SEVERITY_RANK = {"critical": 0, "warning": 1}


def colour(alerts: Sequence[Alert]) -> str:
    """Green when every alert resolved, else the colour of the most severe firing alert."""
    severities = [a.labels.get("severity", "") for a in alerts if a.status == "firing"]
    if not severities:
        return COLOURS["resolved"]
    worst = min(severities, key=lambda s: _SEVERITY_RANK.get(s, len(_SEVERITY_RANK)))
    return COLOURS.get(worst, OTHER_COLOUR)


def header(text: str) -> dict[str, Any]:
    """A header block: plain text (never parsed for mentions or links), at most 150 characters."""
    return {"type": "header", "text": {"type": "plain_text", "text": cut(text, HEADER_LIMIT), "emoji": True}}


def mrkdwn_text(text: str, limit: int) -> dict[str, Any]:
    """A mrkdwn text object Slack shows as written: `verbatim` stops it from turning a plain `@here`, `#channel`
    or bare URL from alert text into a mention or a link; relay's own `<url|label>` links still work."""
    return {"type": "mrkdwn", "text": cut(text, limit, mrkdwn=True), "verbatim": True}


def section(mrkdwn: str) -> dict[str, Any]:
    return {"type": "section", "text": mrkdwn_text(mrkdwn, SECTION_LIMIT)}


def note(mrkdwn: str) -> dict[str, Any]:
    """A context block: small grey text under the alerts."""
    return {"type": "context", "elements": [mrkdwn_text(mrkdwn, CONTEXT_LIMIT)]}


def build_message(notification: Notification, templates: Templates, receiver: ReceiverConfig,
                  *, now: datetime | None = None, mention: bool = True,
                  controls: Sequence[dict[str, Any]] = ()) -> dict[str, Any]:
    """The Slack message for a notification, the same for an incoming webhook, chat.postMessage and chat.update;
    `mention=False` leaves out routes.yaml's mention (one notification pings people once, not per message);
    `controls` (relay.channels.slack.buttons) go under the header."""
    config = receiver.slack
    assert config is not None
    overrides = receiver.templates
    ctx = context(notification, now=now)
    ctx["buttons"] = bool(controls)  # the message carries Silence buttons: the templates leave out the Silence link
    title = templates.render("slack", "title", overrides, ctx) or notification.status
    fallback = templates.render("slack", "text", overrides, ctx)
    ping = config.mention if mention and config.mention and notification.status == "firing" else ""

    top = [header(title)]
    if ping:
        top.append(section(ping))
    top.extend(controls)
    head: list[dict[str, Any]] = []
    if ctx["commonExtraLabels"]:
        head.append(note(" ".join(f"`{slack_escape(k)}={slack_escape(v)}`" for k, v in
                                  ctx["commonExtraLabels"].items())))
    tail: list[dict[str, Any]] = []
    if notification.group.truncatedAlerts:
        tail.append(note(f"+{notification.group.truncatedAlerts} alerts not sent by Alertmanager"))

    alerts = ctx["alerts"]
    room = BLOCK_LIMIT - len(top) - len(head) - len(tail)
    shown = alerts if len(alerts) <= room else alerts[: room - 1]
    body = [section(text) for text in (templates.render("slack", "alert", overrides, {**ctx, "alert": a})
                                       for a in shown) if text]
    if len(shown) < len(alerts):
        body.append(note(f"… and {len(alerts) - len(shown)} more alerts"))

    # parse=none: the top-level text (the notification) is not searched for names and URLs either.
    message: dict[str, Any] = {"text": cut(f"{ping} {fallback}".strip(), TEXT_LIMIT, mrkdwn=True), "parse": "none",
                               "blocks": top}
    if head + body + tail:
        # The fallback is "plain text" shown in notifications, but Slack may still read `<!channel>` in it: escaped.
        fallback = cut(slack_escape(title), HEADER_LIMIT, mrkdwn=True)
        message["attachments"] = [{"color": colour(notification.alerts), "fallback": fallback,
                                   "blocks": head + body + tail}]
    for key in ("username", "icon_emoji"):
        value = getattr(config, key)
        if value:
            message[key] = value
    return message
