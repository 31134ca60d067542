"""The buttons of a bot-token message and what the message says about actions taken on it.

A firing message of a receiver with `slack.actions` carries Acknowledge, one Silence button per `silence_for`
duration and a date-time picker (silence until a time); a silenced one carries Unsilence instead. Each element's
block names the rendering it belongs to (`relay/<version>/<receiver>`), so a click says which message state it
was made on (relay.actions.model.once_mark) and which receiver it is for. The notes ("Silenced until 14:05 UTC by
@kim") are relay's own text: a user is shown as Slack's `<@U…>` of an ID relay checked, never alert text.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from relay.config.durations import format_duration
from relay.config.receivers import SlackActions

PREFIX = "relay"
ACKNOWLEDGE = "relay:acknowledge"
SILENCE = "relay:silence"  # value: seconds
SILENCE_UNTIL = "relay:silence_until"  # datetimepicker: selected_date_time
UNSILENCE = "relay:unsilence"
BLOCK_ID_LIMIT = 255
USER_ID = re.compile(r"[UW][A-Z0-9]{2,30}")


@dataclass(frozen=True)
class MessageState:
    """What was done on a message: silenced until when by whom (with each alert's silence), acknowledged by whom."""

    silenced_until: float | None = None
    silenced_by: str = ""
    silences: tuple[tuple[str, str], ...] = ()  # (alert key, silence ID)
    acknowledged_at: float | None = None
    acknowledged_by: str = ""

    def to_json(self) -> dict[str, Any]:
        return {"silenced_until": self.silenced_until, "silenced_by": self.silenced_by,
                "silences": [list(pair) for pair in self.silences], "acknowledged_at": self.acknowledged_at,
                "acknowledged_by": self.acknowledged_by}

    @classmethod
    def from_json(cls, value: Any) -> MessageState:
        """A record that cannot be read is no state (the message then offers every button again)."""
        if not isinstance(value, dict):
            return cls()
        try:
            return cls(value.get("silenced_until"), str(value.get("silenced_by") or ""),
                       tuple((str(k), str(s)) for k, s in value.get("silences") or ()),
                       value.get("acknowledged_at"), str(value.get("acknowledged_by") or ""))
        except (TypeError, ValueError):
            return cls()

    def silenced(self, now: float) -> bool:
        return self.silenced_until is not None and self.silenced_until > now and bool(self.silences)


def block_id(version: str, receiver: str) -> str:
    return f"{PREFIX}/{version}/{receiver}"


def parse_block_id(value: str) -> tuple[str, str] | None:
    """(version, receiver) of one of relay's blocks, or None."""
    prefix, _, rest = value.partition("/")
    version, _, receiver = rest.partition("/")
    if prefix != PREFIX or not re.fullmatch(r"[na]\d{1,19}", version) or not receiver:
        return None
    return version, receiver


def clock(epoch: float, now: float) -> str:
    """`14:05 UTC`, with the date when it is not today."""
    when, today = datetime.fromtimestamp(epoch, UTC), datetime.fromtimestamp(now, UTC)
    return when.strftime("%H:%M UTC" if when.date() == today.date() else "%b %d %H:%M UTC")


def user(user_id: str) -> str:
    """A user as Slack shows a mention of them; an ID that is not one is shown as nobody."""
    return f"<@{user_id}>" if USER_ID.fullmatch(user_id) else "someone"


def notes(state: MessageState, now: float) -> list[str]:
    lines = []
    if state.acknowledged_at is not None:
        lines.append(f":eyes: Acknowledged by {user(state.acknowledged_by)} {clock(state.acknowledged_at, now)}")
    if state.silenced(now):
        assert state.silenced_until is not None
        lines.append(f":no_bell: Silenced until {clock(state.silenced_until, now)} by {user(state.silenced_by)}")
    return lines


def _button(text: str, action_id: str, value: str, style: str | None = None) -> dict[str, Any]:
    button: dict[str, Any] = {"type": "button", "text": {"type": "plain_text", "text": text, "emoji": True},
                              "action_id": action_id, "value": value}
    if style:
        button["style"] = style
    return button


def controls(config: SlackActions, receiver: str, version: str, state: MessageState | None = None,
             now: float | None = None) -> list[dict[str, Any]]:
    """The blocks to put under a firing message's header: the notes, then the buttons (none when the block ID would
    be too long for Slack, which a receiver name of 200 characters makes it)."""
    state = state or MessageState()
    at = now if now is not None else datetime.now(UTC).timestamp()
    blocks: list[dict[str, Any]] = []
    said = notes(state, at)
    if said:
        blocks.append({"type": "context", "elements": [{"type": "mrkdwn", "text": " · ".join(said)}]})
    ident = block_id(version, receiver)
    if len(ident) > BLOCK_ID_LIMIT:
        return blocks
    elements: list[dict[str, Any]] = []
    if state.acknowledged_at is None:
        elements.append(_button("Acknowledge", ACKNOWLEDGE, "acknowledge", "primary"))
    if state.silenced(at):
        elements.append(_button("Unsilence", UNSILENCE, "unsilence", "danger"))
    else:
        for duration in config.silence_for:
            seconds = int(duration.total_seconds())
            elements.append(_button(f"Silence {format_duration(timedelta(seconds=seconds))}", f"{SILENCE}:{seconds}",
                                    str(seconds)))
        elements.append({"type": "datetimepicker", "action_id": SILENCE_UNTIL,
                         "initial_date_time": int(at + 3600) // 60 * 60})
    blocks.append({"type": "actions", "block_id": ident, "elements": elements})
    return blocks
