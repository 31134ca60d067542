"""The values the store hands back for the features beside delivery: heartbeats' state, escalation timers, Slack
actions and silence watches, storms. relay.store.base's Store protocol takes and returns them."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from relay.alerts import Alert, WebhookMessage

# Why what was left of an escalation ended (relay.stages.escalation): someone acknowledged or silenced the alert, it
# resolved, or the route that armed it no longer escalates.
EscalationEnd = Literal["acknowledged", "silenced", "resolved", "unrouted"]
# An alert episode as the store keys it: key_part(fingerprint) and the normalised startsAt (rows.dedup_time).
Episode = tuple[str, str]


@dataclass(frozen=True)
class Timer:
    """One escalation step of one firing alert, to arm: `group` is the alert's group narrowed to that alert (what the
    step sends), due at `due_at` (epoch seconds) unless it is acknowledged, silenced or resolved first."""

    group: WebhookMessage
    step: int
    steps: int
    after: float
    receivers: tuple[str, ...]
    due_at: float

    @property
    def alert(self) -> Alert:
        return self.group.alerts[0]


@dataclass(frozen=True)
class Resolved:
    """What a webhook's resolved alerts did to escalations: how many pending steps they ended, and per episode
    the receivers that its sent steps reached (they hear the resolve too)."""

    cancelled: int = 0
    sent_to: dict[Episode, list[str]] = field(default_factory=dict)
    held_from: dict[Episode, list[str]] = field(default_factory=dict)  # receivers a mute's pending hold kept it from


@dataclass(frozen=True)
class DueTimer:
    """An armed step read back from the store (`id` names it to escalate)."""

    id: int
    timer: Timer
    armed_at: float


@dataclass(frozen=True)
class StepRecord:
    """What the store knows of one step of one alert's escalation: `state` is pending, sent or cancelled; a sent one
    lists its notifications, a cancelled one its `reason` (an EscalationEnd)."""

    fingerprint: str
    starts_at: str
    step: int
    steps: int
    after: float
    receivers: tuple[str, ...]
    armed_at: float
    due_at: float
    state: str
    ended_at: float | None
    reason: str
    notifications: tuple[int, ...]


@dataclass(frozen=True)
class Watch:
    """A silence relay created from Slack, watched until `ends_at` for its alert's resolve; `payload` is the alert's
    group as the message showed it; `absent_since` is when an absence that counts began (relay.actions.silences)."""

    receiver: str
    silence_id: str
    payload: str
    ends_at: float
    absent_since: float | None = None


@dataclass(frozen=True)
class HistoryFilter:
    receiver: str | None = None
    alertname: str | None = None
    state: str | None = None
    ids: tuple[int, ...] = ()
    summary: int | None = None  # the notifications folded into this summary (relay.storms)
    limit: int = 100


@dataclass(frozen=True)
class StormState:
    """One storm of a receiver (relay.storms), epoch seconds: open while `ended_at` is None; `folded_at` is its last
    fold, `folded` how many notifications it folded, `ref` where its summary message is (None: not posted yet)."""

    id: int
    receiver: str
    started_at: float
    folded_at: float
    ended_at: float | None
    folded: int
    ref: str | None


@dataclass(frozen=True)
class Fold:
    """A fold to make: into `storm` (None: open one, unless the receiver has one open already), at `now`."""

    receiver: str
    integration: str
    storm: StormState | None
    now: float
    never_fold: tuple[str, ...]  # values of `label` (routes.yaml priority.label) sent on their own
    give_up_after: float
    relay_url: str = ""  # RELAY_EXTERNAL_URL, kept in the summary for its history link
    label: str = "severity"


@dataclass(frozen=True)
class Folded:
    """What a fold did: the storm, its new summary notification, how many notifications and alerts it folded."""

    storm_id: int
    summary_id: int
    notifications: int
    alerts: int


@dataclass(frozen=True)
class Ended:
    """A storm ended: `redraw_id` is the notification that redraws its message as over (None: none was asked)."""

    redraw_id: int | None


@dataclass(frozen=True)
class StormView:
    """A summary as its channel sends it: the storm, and every alert of the storm's summaries up to this one."""

    storm: StormState
    alerts: list[Alert]
    first: bool  # the storm's first summary (nothing of it was sent before)


@dataclass(frozen=True)
class MaintenanceWindow:
    """A maintenance window made at run time (relay.stages.mute): alerts its `matchers` (Alertmanager's syntax, as
    written) match are muted from `starts_at` until `ends_at` (epoch seconds); `ended_at` is set when someone ended
    it early."""

    id: int
    matchers: tuple[str, ...]
    starts_at: float
    ends_at: float
    comment: str
    created_by: str
    created_at: float
    ended_at: float | None = None
    time_interval: str = ""  # recurring: mutes only while routes.yaml's interval of this name holds

    def active(self, now: float) -> bool:
        return self.starts_at <= now < self.ends_at
