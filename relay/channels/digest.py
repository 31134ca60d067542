"""A storm's summary as an email digest: one email for what one fold gathered, instead of one email per notification.

Like every relay email it is text and HTML (HTML-escaped values), under the email size limit (at most
MAX_LINES alerts listed, then "… and N more"), and ends with where the full list is: relay's notification history.
"""

from __future__ import annotations

from datetime import UTC, datetime
from email.message import EmailMessage
from html import escape

from relay.alerts import Notification
from relay.channels.mail import assemble_email, sender_domain
from relay.config.receivers import ReceiverConfig
from relay.storms.summary import Summary, of
from relay.templating.neutralise import header_text

MAX_LINES = 1000  # alerts listed in one digest, over all its alert names


def _where(digest: Summary) -> str:
    return (f"Every alert is in relay's notification history: {digest.history_url}" if digest.history_url
            else f"Every alert is listed by: {digest.command}")


def digest_bodies(digest: Summary) -> tuple[str, str]:
    """The text and HTML bodies: the counts, each alert name (most severe first) with its alerts, where the rest is."""
    intro = (f"relay gathered these {digest.total} alerts into one email instead of sending each "
             f"({digest.firing} firing, {digest.resolved} resolved); critical alerts still arrive on their own.")
    text, html = [digest.title, "", intro], [f"<h2>{escape(digest.title)}</h2>", f"<p>{escape(intro)}</p>"]
    left = MAX_LINES
    for family in digest.families:
        head = f"{family.name} ({family.severity or 'no severity'}): {family.firing} firing, {family.resolved} resolved"
        shown = family.lines[:max(left, 0)]
        left -= len(shown)
        text += ["", head, *(f"  - {line.status:8} {line.text}" for line in shown)]
        html += [f"<h3>{escape(head)}</h3>", "<ul>",
                 *(f"<li>{escape(line.status)}: <code>{escape(line.text)}</code></li>" for line in shown), "</ul>"]
        if len(shown) < len(family.lines):
            more = f"… and {len(family.lines) - len(shown)} more {family.name} alerts"
            text.append(f"  {more}")
            html.append(f"<p>{escape(more)}</p>")
    text += ["", _where(digest)]
    link = (f'<a href="{escape(digest.history_url)}">notification history</a>' if digest.history_url
            else f"<code>{escape(digest.command)}</code>")
    html.append(f"<p>Every alert is in relay's {link}.</p>")
    page = "\n".join(html)
    return "\n".join(text), f"<!DOCTYPE html>\n<html><body>\n{page}\n</body></html>"


def build_digest(notification: Notification, receiver: ReceiverConfig, *,
                 now: datetime | None = None) -> EmailMessage:
    """The digest email of a storm's summary notification."""
    config = receiver.email
    assert config is not None
    domain = sender_domain(config)
    digest = of(notification)
    text, html = digest_bodies(digest)
    return assemble_email(notification, receiver, header_text(f"[relay] {digest.title}"), text, html, domain, (),
                    now or datetime.now(UTC))
