"""Which Slack message announced which alert, kept in the store so resolves can answer it after restarts.

Two kinds of records, both through the store's message references:
- per alert episode (relay.channels.threads): `{"channel": C, "ts": T}` where it was
  announced, plus `"notified": N` (the notification that last posted about it, so
  a retry of N does not remind twice) or `"resolved": true` once its resolve was
  answered, so a retried notification does not reply twice;
- per message (`slack-message:C:T`): the alerts it showed, so the update after a
  resolve can redraw the whole message with those alerts marked resolved, even
  when only some of them resolved.
An alert is announced once: a group that grew over several notifications lives in
several messages, and each alert is reminded and resolved in its own message's
thread. Every reminder writes both records again, so retention (which forgets
records by age) never forgets the thread of an alert that is still firing.
A record that cannot be read is treated as absent: the resolve then becomes a new
message, never an error.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from pydantic import ValidationError

from relay.alerts import Alert, Notification, WebhookMessage, alert_key, group_status
from relay.channels.base import guard_store
from relay.channels.threads import Threads


@dataclass(frozen=True)
class Anchor:
    """A Slack message: its channel ID and `ts` (what chat.update and thread_ts need); `summary` when it is a storm's
    summary (relay.channels.slack.summary), which a resolve answers in its thread but never redraws."""

    channel: str
    ts: str
    summary: bool = False

    @property
    def key(self) -> str:
        return f"slack-message:{self.channel}:{self.ts}"


@dataclass(frozen=True)
class Plan:
    """What a notification means for Slack, done in this order: resolves answered in the thread of the message that
    announced them, still-firing alerts reminded in theirs, and a new message for alerts relay knows nothing about."""

    resolves: list[tuple[Anchor, list[Alert]]]
    reminders: list[tuple[Anchor, list[Alert]]]
    new: list[Alert]


def plan(alerts: Sequence[Alert], refs: Mapping[str, str], notification_id: int) -> Plan:
    """The Plan for these alerts given the records found for them (alert_key -> record)."""
    resolves: dict[Anchor, list[Alert]] = {}
    reminders: dict[Anchor, list[Alert]] = {}
    new: list[Alert] = []
    for alert in alerts:
        ref = _parse(refs.get(alert_key(alert)))
        anchor = (Anchor(ref["channel"], ref["ts"], ref.get("summary") is True)
                  if ref and not ref.get("resolved") else None)
        if alert.status == "resolved" and ref is not None and ref.get("resolved"):
            continue  # already answered by an earlier attempt of this notification
        if anchor is None:
            new.append(alert)
        elif alert.status == "resolved":
            resolves.setdefault(anchor, []).append(alert)
        elif ref is not None and ref.get("notified") != notification_id:  # not reminded by an earlier attempt
            reminders.setdefault(anchor, []).append(alert)
    return Plan(list(resolves.items()), list(reminders.items()), new)


def narrowed(notification: Notification, alerts: Sequence[Alert]) -> Notification:
    """The notification holding only these alerts (its status follows them)."""
    group = notification.group.model_copy(update={"alerts": list(alerts), "status": group_status(list(alerts))})
    return dataclasses.replace(notification, group=group)


def _completed(resolved: Alert, announced: Alert | None) -> Alert:
    if announced is None or resolved.annotations:
        return resolved
    return resolved.model_copy(update={"annotations": announced.annotations,
                                       "generatorURL": resolved.generatorURL or announced.generatorURL})


def _parse(ref: str | None) -> dict[str, Any] | None:
    try:
        value = json.loads(ref) if ref else None
    except ValueError:
        return None
    ok = isinstance(value, dict) and isinstance(value.get("channel"), str) and isinstance(value.get("ts"), str)
    return value if ok else None


class Book(Protocol):
    """What the Slack channel reads and writes about threads while it sends (ThreadBook over the store)."""

    async def plan(self, notification: Notification) -> Plan: ...

    async def remember(self, anchor: Anchor, announced: Notification) -> None: ...

    async def reminded(self, anchor: Anchor, reminder: Notification) -> None: ...

    async def original(self, anchor: Anchor, notification: Notification,
                       resolved: Sequence[Alert]) -> tuple[Notification | None, list[Alert]]: ...

    async def save_original(self, anchor: Anchor, original: Notification) -> None: ...

    async def mark_resolved(self, anchor: Anchor, alerts: Sequence[Alert]) -> None: ...

    async def folded(self, anchor: Anchor, alerts: Sequence[Alert], summary_id: int) -> None: ...


@dataclass(frozen=True)
class AssumedBook:
    """The threads a preview assumes: every resolved alert was announced at `anchor` in a message that showed just
    those alerts, nothing else is known, and nothing is written."""

    anchor: Anchor

    async def plan(self, notification: Notification) -> Plan:
        known = json.dumps({"channel": self.anchor.channel, "ts": self.anchor.ts})
        refs = {alert_key(a): known for a in notification.alerts if a.status == "resolved"}
        return plan(notification.alerts, refs, notification.id)

    async def remember(self, anchor: Anchor, announced: Notification) -> None:
        return None

    async def reminded(self, anchor: Anchor, reminder: Notification) -> None:
        return None

    async def original(self, anchor: Anchor, notification: Notification,
                       resolved: Sequence[Alert]) -> tuple[Notification | None, list[Alert]]:
        return None, list(resolved)

    async def save_original(self, anchor: Anchor, original: Notification) -> None:
        return None

    async def mark_resolved(self, anchor: Anchor, alerts: Sequence[Alert]) -> None:
        return None

    async def folded(self, anchor: Anchor, alerts: Sequence[Alert], summary_id: int) -> None:
        return None


class ThreadBook:
    """The Slack view of a receiver's Threads; store failures become transient delivery errors."""

    def __init__(self, threads: Threads) -> None:
        self.threads = threads

    async def plan(self, notification: Notification) -> Plan:
        refs = await guard_store(self.threads.find(notification.alerts))
        return plan(notification.alerts, refs, notification.id)

    async def remember(self, anchor: Anchor, announced: Notification) -> None:
        """Record the message first, then its alerts: a failure in between re-posts, it never loses the thread."""
        firing = [a for a in announced.alerts if a.status == "firing"]
        if not firing:  # nothing in it will resolve later
            return
        await self._put([anchor.key], json.dumps({"group": announced.group.model_dump(mode="json")}))
        await self._point(firing, anchor, announced.id)

    async def reminded(self, anchor: Anchor, reminder: Notification) -> None:
        """Write the message record and its reminded alerts' records again (same anchor), which refreshes their
        age: retention forgets records by age, and an alert firing for weeks must keep its thread."""
        found = await guard_store(self.threads.store.find_refs(self.threads.receiver, [anchor.key]))
        shown = found.get(anchor.key) or json.dumps({"group": reminder.group.model_dump(mode="json")})
        await self._put([anchor.key], shown)
        await self._point(reminder.alerts, anchor, reminder.id)

    async def original(self, anchor: Anchor, notification: Notification,
                       resolved: Sequence[Alert]) -> tuple[Notification | None, list[Alert]]:
        """The announcing message with these alerts now resolved (None when that message is not known), and the
        resolved alerts completed with what the announcement said (Alertmanager often drops their annotations)."""
        found = await guard_store(self.threads.store.find_refs(self.threads.receiver, [anchor.key]))
        try:
            group = WebhookMessage.model_validate(json.loads(found[anchor.key])["group"])
        except (KeyError, TypeError, ValueError, ValidationError):
            return None, list(resolved)
        shown = {alert_key(a): a for a in group.alerts}
        completed = [_completed(r, shown.get(alert_key(r))) for r in resolved]
        now = {alert_key(a): a for a in completed}
        alerts = [now.get(alert_key(a), a) for a in group.alerts]
        group = group.model_copy(update={"alerts": alerts, "status": group_status(alerts)})
        return dataclasses.replace(notification, group=group), completed

    async def save_original(self, anchor: Anchor, original: Notification) -> None:
        await self._put([anchor.key], json.dumps({"group": original.group.model_dump(mode="json")}))

    async def mark_resolved(self, anchor: Anchor, alerts: Sequence[Alert]) -> None:
        ref = json.dumps({"channel": anchor.channel, "ts": anchor.ts, "resolved": True})
        await guard_store(self.threads.remember(alerts, ref))

    async def folded(self, anchor: Anchor, alerts: Sequence[Alert], summary_id: int) -> None:
        """These firing alerts were announced in a storm's summary: their resolve answers in its thread."""
        await self._point(alerts, Anchor(anchor.channel, anchor.ts, summary=True), summary_id)

    async def _point(self, alerts: Sequence[Alert], anchor: Anchor, notification_id: int) -> None:
        ref = json.dumps({"channel": anchor.channel, "ts": anchor.ts, "notified": notification_id,
                          **({"summary": True} if anchor.summary else {})})
        await guard_store(self.threads.remember(alerts, ref))

    async def _put(self, keys: list[str], value: str) -> None:
        await guard_store(self.threads.store.remember_refs(self.threads.receiver, keys, value))
