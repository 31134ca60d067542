"""What a storm folds, decided the same way by both stores: which waiting notifications, and the summary they become.

A summary is an ordinary notification in a lane of its own (`storm_lane`), which only relay writes: a webhook's
lane is always `receiver\\x1fgroupKey`, so no payload can make a notification look like a summary. Its payload is a
webhook body holding the alerts of the notifications it folded, so history, replay and `notifications show` read
it like any other.

A lane is folded from its head up to its first notification that must be sent on its own (a `never_fold`
severity, or relay's own notice: a negative priority, relay.alerts.priority.OWN_RANK), and not at all while its head
is being sent: what stays keeps its order, and a resolve is never folded
ahead of a firing still on its way.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from relay.alerts import Alert, WebhookMessage, group_status

STORM_SEPARATOR = "\x1e"  # webhook lanes separate receiver and groupKey with \x1f
SUMMARY_GROUP_KEY = "relay-storm:"
REDRAW_SUFFIX = ":over"  # the groupKey of a storm's last summary sent again, to show its message as over


def storm_lane(receiver: str, storm_id: int) -> str:
    """The lane of one storm's summaries: delivered one after another, so an update in place never races itself."""
    return f"{receiver}{STORM_SEPARATOR}{storm_id}"


def storm_of(lane: str) -> int | None:
    """The storm whose summary a notification in `lane` is; None for every other notification."""
    if "\x1f" in lane:
        return None
    _, sep, tail = lane.rpartition(STORM_SEPARATOR)
    return int(tail) if sep and tail.isdigit() else None


@dataclass(frozen=True)
class Waiting:
    """One pending notification as a fold sees it."""

    id: int
    lane: str
    group: WebhookMessage | None  # None: its payload cannot be read (the claim sets it aside; nothing passes it)
    leased: bool
    priority: int


def sent_alone(group: WebhookMessage, never_fold: Iterable[str], label: str = "severity") -> bool:
    """Whether any of the group's alerts has a value of `label` (routes.yaml `priority.label`) that is never
    folded."""
    kept = set(never_fold)
    return any(a.labels.get(label, "") in kept for a in group.alerts)


def choose(waiting: Sequence[Waiting], never_fold: Iterable[str], label: str = "severity") -> list[Waiting]:
    """The notifications to fold: per lane (rows in lane, id order), the prefix before the first that is sent
    alone (a `never_fold` value, or relay's own notice, ranked below 0); none of a lane whose head is being sent."""
    kept = tuple(never_fold)
    chosen: list[Waiting] = []
    lane, open_ = None, False
    for row in waiting:
        if row.lane != lane:
            lane, open_ = row.lane, not row.leased
        if open_ and (row.leased or row.group is None or row.priority < 0 or sent_alone(row.group, kept, label)):
            open_ = False
        if open_:
            chosen.append(row)
    return chosen


RELAY_URL = "relay_url"  # the summary's annotation naming relay's own URL (RELAY_EXTERNAL_URL), for its history link


def summary_group(storm_id: int, folded: Sequence[WebhookMessage], relay_url: str = "") -> WebhookMessage:
    """The summary's payload: every alert of the folded notifications, in the order they were folded, and relay's
    URL (its history links what was folded)."""
    alerts: list[Alert] = [a for group in folded for a in group.alerts]
    external = next((g.externalURL for g in folded if g.externalURL), "")
    return WebhookMessage(version="4", groupKey=f"{SUMMARY_GROUP_KEY}{storm_id}", status=group_status(alerts),
                          receiver="relay", alerts=alerts, groupLabels={"relay_storm": str(storm_id)},
                          commonAnnotations={RELAY_URL: relay_url} if relay_url else {}, externalURL=external)


def redraws(group: WebhookMessage) -> bool:
    """Whether a summary only redraws its storm's message as over (it folds nothing new)."""
    return group.groupKey.startswith(SUMMARY_GROUP_KEY) and group.groupKey.endswith(REDRAW_SUFFIX)


def alertnames(group: WebhookMessage) -> str:
    """The history column: the distinct alert names, sorted, comma-separated (as enqueue writes it)."""
    return ",".join(sorted({a.name for a in group.alerts}))


def read_waiting(rows: Iterable[Mapping[str, Any]], now: float) -> list[Waiting]:
    """Rows of `storm_waiting` as values."""
    out = []
    for row in rows:
        try:
            group: WebhookMessage | None = WebhookMessage.model_validate_json(row["payload"])
        except ValueError:
            group = None
        out.append(Waiting(row["id"], row["lane"], group, row["lease_until"] > now, int(row["priority"])))
    return out
