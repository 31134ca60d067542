"""Actions from Slack as outbox work: what a click asked for, stored as a notification of its own kind.

A click on a message's button (relay.actions.endpoint) becomes one outbox row per receiver that must
act: the Slack receiver whose message it was (silence or unsilence at Alertmanager, the message updated, a thread
reply) and, for an acknowledge, each PagerDuty receiver on the clicking receiver's own routes that the alerts are
routed to (Events v2 `acknowledge`; never another team's, relay.config.routes.Routes.acting_for). A row
holds the alerts acted on as an ordinary group, with the action beside them (`relayAction`), and has integration
`action`: the dispatcher claims, leases, retries and dead-letters it like any notification, so a crash between the
click and its effect loses nothing, history shows it, and the receiver's channel performs it. Marks written in the
same transaction refuse a replayed request and make a double click act once.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

from relay.alerts import Notification, WebhookMessage

ACTION = "action"  # the integration column of an action's row
FIELD = "relayAction"  # where a row's group carries its action

Kind = Literal["acknowledge", "silence", "unsilence", "pagerduty_acknowledge"]


class Action(BaseModel):
    """Who asked for what on which message, and when (epoch seconds); `until` is a silence's end."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    kind: Kind
    user: str  # Slack user ID (U…), checked by relay.actions.endpoint
    user_name: str = ""
    team_domain: str = ""
    slack_receiver: str
    channel: str  # the message's channel ID and ts
    ts: str
    clicked_at: float
    until: float | None = None
    version: str = ""  # the rendering of the message whose button was clicked
    # The alerts (fingerprints) whose escalation this click may end: those whose escalating route is the clicking
    # receiver's (relay.config.routes.Routes.acting_for). A row written before this field existed ends none.
    escalations: tuple[str, ...] = ()

    @property
    def message_key(self) -> str:
        """The Slack message's record (relay.channels.slack.threads.Anchor.key)."""
        return f"slack-message:{self.channel}:{self.ts}"

    @property
    def state_key(self) -> str:
        """Where the message's actions state (silences, acknowledgement) is kept."""
        return f"slack-state:{self.channel}:{self.ts}"

    def permalink(self) -> str:
        """A link to the message, when the workspace's domain is known."""
        if not self.team_domain:
            return ""
        return f"https://{self.team_domain}.slack.com/archives/{self.channel}/p{self.ts.replace('.', '')}"


@dataclass(frozen=True)
class ActionRow:
    """One row to write for a click: its receiver, its own lane (an action waits for no notification), the alerts
    with the action beside them, and how long to keep trying."""

    receiver: str
    lane: str
    group: WebhookMessage
    give_up_after: float

    def payload(self) -> str:
        return self.group.model_dump_json()


def row(receiver: str, request: str, group: WebhookMessage, action: Action, give_up_after: float) -> ActionRow:
    """The row for `receiver`; `request` names the click (one lane per receiver per click)."""
    carried: dict[str, Any] = {**group.model_dump(mode="json"), FIELD: action.model_dump(mode="json")}
    lane = f"{receiver}\x1f{ACTION}\x1f{request}"
    return ActionRow(receiver, lane, WebhookMessage.model_validate(carried), give_up_after)


def action_of(notification: Notification) -> Action | None:
    """The action a row of integration `action` carries (None for any other notification: a webhook body that
    happens to hold the field is never taken for an action)."""
    if notification.integration != ACTION:
        return None
    carried = (notification.group.model_extra or {}).get(FIELD)
    return Action.model_validate(carried) if isinstance(carried, dict) else None


def request_mark(signature: str) -> str:
    """The mark of one signed request: a replay carries the same signature (a new click, a new one)."""
    return "slack-request:" + hashlib.sha256(signature.encode()).hexdigest()


def once_mark(action: Action) -> str:
    """The mark that makes a double click act once: the same action on the same rendering of the same message.
    Silence buttons share one mark whatever the duration (two quick clicks make one silence); once the message is
    redrawn its buttons carry a new version, so a later click acts again."""
    family = "silence" if action.kind == "silence" else action.kind
    return f"slack-click:{action.slack_receiver}\x1f{action.channel}:{action.ts}\x1f{family}\x1f{action.version}"
