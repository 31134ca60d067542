"""A storm's summary as Slack messages: the summary itself (posted, or updated in place), and its thread's details.

The summary names the alerts by alertname, most severe first, each with the labels that tell its alerts apart, cut
to Slack's limits with "… and N more"; the detail reply lists one summary's own alerts. Both end with where the
full list is: relay's notification history (a link when RELAY_EXTERNAL_URL is set, else the command). Every alert
value is escaped for mrkdwn and shown verbatim, so it cannot become a mention or a link.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Protocol

from relay.alerts import Notification
from relay.channels.base import guard_store
from relay.channels.slack.message import BLOCK_LIMIT, SECTION_LIMIT, TEXT_LIMIT, header, note, section
from relay.channels.slack.threads import Anchor
from relay.store.base import Store
from relay.store.records import StormState, StormView
from relay.storms.fold import storm_of
from relay.storms.summary import Family, Line, Summary
from relay.templating.escape import cut, slack_escape, slack_link

COLOURS = {"critical": "#D50200", "warning": "#FF9900"}
OTHER_COLOUR = "#9E9E9E"
RESOLVED_COLOUR = "#2EB67D"
SHOWN_PER_FAMILY = 40  # alerts listed under one alertname in the summary (the detail reply lists more)


def _where(summary: Summary) -> str:
    link = slack_link(summary.history_url, "notification history") if summary.history_url else ""
    listing = f"`{summary.command}`"
    return f"Every alert is in relay's {link} ({listing})" if link else f"Every alert is listed by {listing}"


def _labels(lines: list[Line], limit: int) -> str:
    shown = [f"`{slack_escape(line.text)}`" + (" (resolved)" if line.status == "resolved" else "")
             for line in lines[:limit]]
    more = f" … and {len(lines) - limit} more" if len(lines) > limit else ""
    return ", ".join(shown) + more


def _family(family: Family, limit: int) -> str:
    head = f"*{slack_escape(family.name)}*" + (f" ({slack_escape(family.severity)})" if family.severity else "")
    counts = f"{family.firing} firing" + (f", {family.resolved} resolved" if family.resolved else "")
    return f"{head}: {counts}\n{_labels(family.lines, limit)}"


def _colour(summary: Summary) -> str:
    firing = [f for f in summary.families if f.firing]
    return COLOURS.get(firing[0].severity, OTHER_COLOUR) if firing else RESOLVED_COLOUR


def _body(summary: Summary, families: list[Family], limit: int, intro: str) -> dict[str, Any]:
    """One message: a header, the families (one section each, within the block limit), where the rest is."""
    top = [header(summary.title)]
    tail = [note(_where(summary))]
    room = BLOCK_LIMIT - len(top) - len(tail) - 2
    blocks = [note(intro)]
    blocks += [section(cut(_family(f, limit), SECTION_LIMIT, mrkdwn=True)) for f in families[:room]]
    if len(families) > room:
        rest = families[room:]
        blocks.append(note(f"… and {len(rest)} more alert names ({sum(len(f.lines) for f in rest)} alerts)"))
    text = cut(slack_escape(summary.title), TEXT_LIMIT, mrkdwn=True)
    return {"text": text, "parse": "none", "blocks": top,
            "attachments": [{"color": _colour(summary), "fallback": text, "blocks": blocks + tail}]}


def summary_message(summary: Summary) -> dict[str, Any]:
    """The storm's summary message (a new one with an incoming webhook, the one updated in place with a token)."""
    intro = ("relay folds these alerts into this message instead of sending each, to stay within Slack's rate "
             "limit; " + ("the storm is over." if summary.ended else "critical alerts still arrive on their own."))
    return _body(summary, summary.families, SHOWN_PER_FAMILY, intro)


def detail_message(summary: Summary) -> dict[str, Any]:
    """The thread reply listing what one fold added (more alerts per name than the summary shows)."""
    return _body(summary, summary.families, 200, f"Folded into summary {summary.summary_id}: {summary.total} alerts.")


class StormBook(Protocol):
    """What the Slack channel reads and writes about a storm while it sends a summary (StoreStorms over the store)."""

    async def view(self, notification: Notification) -> StormView | None: ...

    async def posted(self, storm_id: int, anchor: Anchor, shown: int) -> None:
        """The storm's message is at `anchor` and shows the storm up to summary `shown`."""


@dataclass(frozen=True)
class StoreStorms:
    """A storm's state in the store; store failures become transient delivery errors (the summary is retried)."""

    store: Store

    async def view(self, notification: Notification) -> StormView | None:
        return await guard_store(self.store.storm_view(notification.id, notification.lane))

    async def posted(self, storm_id: int, anchor: Anchor, shown: int) -> None:
        ref = json.dumps({"channel": anchor.channel, "ts": anchor.ts, "shown": shown})
        await guard_store(self.store.storm_remember(storm_id, ref))


@dataclass(frozen=True)
class AssumedStorms:
    """The storm a preview assumes: this summary is its first, nothing was posted yet, nothing is written."""

    async def view(self, notification: Notification) -> StormView | None:
        storm_id = storm_of(notification.lane) or 0
        state = StormState(storm_id, notification.receiver, 0.0, 0.0, None, len(notification.alerts), None)
        return StormView(state, list(notification.alerts), first=True)

    async def posted(self, storm_id: int, anchor: Anchor, shown: int) -> None:
        return None


def anchor_of(ref: str | None) -> tuple[Anchor | None, int | None]:
    """Where the storm's summary message is and the summary it shows so far, from the stored reference (None, None:
    not posted yet, or unreadable)."""
    try:
        value = json.loads(ref) if ref else None
    except ValueError:
        return None, None
    if isinstance(value, dict) and isinstance(value.get("channel"), str) and isinstance(value.get("ts"), str):
        shown = value.get("shown")
        return Anchor(value["channel"], value["ts"], summary=True), shown if isinstance(shown, int) else None
    return None, None
