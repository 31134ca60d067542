"""A notification's message as it was sent (rendered again by relay.channels.preview, every secret masked), where its
Slack thread is, and who acknowledged or silenced its alerts."""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from relay.alerts import Alert, alert_key
from relay.channels.preview import render
from relay.channels.slack.buttons import MessageState
from relay.console.render import utc
from relay.services import Services
from relay.store.console import Reader
from relay.store.rows import notification_from_row

MASK = "••••••"
SLACK_ID = re.compile(r"^[A-Z0-9]{1,30}$")
SLACK_TS = re.compile(r"^\d{1,12}\.\d{1,9}$")


@dataclass
class Shown:
    text: str = ""
    problem: str = ""
    threads: list[str] = field(default_factory=list)  # links built only from Slack's own IDs, checked
    acted: list[str] = field(default_factory=list)


def mask(text: str, secrets: list[str]) -> str:
    """Each secret, and its JSON-escaped form, replaced by a mask (the longest first: one may contain another)."""
    for secret in sorted(secrets, key=len, reverse=True):
        for form in {secret, json.dumps(secret)[1:-1]}:
            text = text.replace(form, MASK)
    return text


def slack_message(ref: str) -> tuple[str, str] | None:
    """The Slack message (channel ID, ts) of a message reference, when it is one, and nothing else."""
    try:
        record = json.loads(ref)
    except ValueError:
        return None
    if not isinstance(record, dict):
        return None
    channel, ts = str(record.get("channel", "")), str(record.get("ts", ""))
    if not SLACK_ID.match(channel) or not SLACK_TS.match(ts):
        return None
    return channel, ts


def slack_link(ref: str) -> str | None:
    """A link to the Slack message of a message reference, built only from Slack's own IDs (checked)."""
    found = slack_message(ref)
    return f"https://slack.com/archives/{found[0]}/p{found[1].replace('.', '')}" if found else None


@dataclass(frozen=True)
class Acted:
    """What people did on one Slack message with relay's buttons (relay.channels.slack.buttons.MessageState)."""

    what: str
    at: float | None


async def slack_acts(reader: Reader, receiver: str, alerts: Sequence[Alert]) -> list[Acted]:
    """Who acknowledged or silenced these alerts from their Slack messages (the state relay keeps per message)."""
    messages: list[tuple[str, str]] = []
    for alert in alerts:
        found = await reader.row("refs_of", receiver, alert_key(alert))
        message = slack_message(found["ref"]) if found else None
        if message is not None and message not in messages:
            messages.append(message)
    acted = []
    for channel, ts in messages:
        found = await reader.row("refs_of", receiver, f"slack-state:{channel}:{ts}")
        try:
            state = MessageState.from_json(json.loads(found["ref"])) if found else MessageState()
        except ValueError:
            continue
        if state.acknowledged_at is not None:
            acted.append(Acted(f"acknowledged by {state.acknowledged_by or 'someone'} from Slack ({receiver})",
                               state.acknowledged_at))
        if state.silenced_until is not None and state.silences:
            ids = ", ".join(silence for _, silence in state.silences)
            acted.append(Acted(f"silenced by {state.silenced_by or 'someone'} from Slack ({receiver}) until then: "
                               f"Alertmanager silence {ids}", state.silenced_until))
    return acted


async def as_sent(state: Services, reader: Reader, detail: dict[str, Any]) -> Shown:
    shown = Shown()
    routes = state.runtime.routes
    receiver = routes.receivers.get(detail["receiver"]) if routes else None
    row = await reader.row("notification_row", detail["id"])
    if receiver is None or row is None:
        shown.problem = "its receiver is no longer in routes.yaml: the message cannot be rendered again"
        return shown
    try:
        notification = notification_from_row(row)
    except ValueError:
        shown.problem = "its stored payload cannot be read back"
        return shown
    try:
        shown.text = mask(render(receiver, notification, state.runtime.templates), receiver.secrets())
    except Exception as exc:  # a summary, an action or a template error: say so, the rest of the page still shows
        shown.problem = f"cannot render it again here ({type(exc).__name__}); its attempts below say what was sent"
    for alert in notification.alerts:
        found = await reader.row("refs_of", detail["receiver"], alert_key(alert))
        link = slack_link(found["ref"]) if found else None
        if link and link not in shown.threads:
            shown.threads.append(link)
    for act in await slack_acts(reader, detail["receiver"], notification.alerts):
        shown.acted.append(act.what + (f" ({utc(act.at)})" if act.at is not None else ""))
    for step in detail.get("escalation_steps", []):
        if step["state"] == "cancelled" and step["reason"] in ("acknowledged", "silenced"):
            shown.acted.append(f"{step['reason']} in relay: escalation step {step['step'] + 1} of {step['steps']} "
                               f"cancelled")
    return shown
