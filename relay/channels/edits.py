"""Which provider message announced which alert, so a resolve edits that message (Discord, Telegram).

Like Slack's threads (relay.channels.slack.threads), through the store's message references: per alert episode
(relay.channels.threads) `{"message": ID}` where it was announced, and per message (`<integration>-message:ID`)
the alerts it showed, so the edit after a resolve redraws the whole message with those alerts resolved, also when
only some of them resolved, also after a restart. A record that cannot be read counts as absent: that resolve is
then a new message, never an error (when in doubt, deliver).
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol

from pydantic import ValidationError

from relay.alerts import Alert, Notification, WebhookMessage, alert_key, group_status
from relay.channels.base import guard_store
from relay.channels.threads import Threads
from relay.errors import DeliveryUnfinished, PermanentDeliveryError


def narrowed(notification: Notification, alerts: Sequence[Alert]) -> Notification:
    """The notification holding only these alerts (its status follows them)."""
    group = notification.group.model_copy(update={"alerts": list(alerts), "status": group_status(list(alerts))})
    return dataclasses.replace(notification, group=group)


@dataclass(frozen=True)
class Edit:
    """A message to redraw: its id, and what it shows now (its alerts, those of this resolve resolved)."""

    message: str
    shows: Notification
    resolved: list[Alert]


@dataclass(frozen=True)
class Plan:
    """The edits for resolved alerts whose message relay knows, then one new message for every other alert."""

    edits: list[Edit]
    new: Notification | None


class Messages(Protocol):
    """What a channel that edits its messages reads and writes while it sends (StoredMessages over the store)."""

    async def plan(self, notification: Notification) -> Plan: ...

    async def posted(self, message: str, shown: Notification) -> None: ...

    async def edited(self, edit: Edit) -> None: ...


def plan_for(notification: Notification, refs: dict[str, str], originals: dict[str, WebhookMessage],
             answered: frozenset[str] = frozenset()) -> Plan:
    """The plan given the alert records found (alert_key -> message id), the messages' records, and the resolved
    alerts an earlier attempt of this notification already showed (left out: a retry does not repeat them)."""
    by_message: dict[str, list[Alert]] = {}
    others: list[Alert] = []
    for alert in notification.alerts:
        if alert.status == "resolved" and alert_key(alert) in answered:
            continue
        message = refs.get(alert_key(alert)) if alert.status == "resolved" else None
        if message:
            by_message.setdefault(message, []).append(alert)
        else:
            others.append(alert)
    edits = []
    for message, resolved in by_message.items():
        original = originals.get(message)
        now = {alert_key(a): a for a in resolved}
        alerts = [now.pop(alert_key(a), a) for a in original.alerts] if original is not None else []
        alerts += list(now.values())  # resolved alerts the record does not show (or no record at all)
        edits.append(Edit(message, narrowed(notification, alerts), resolved))
    return Plan(edits, narrowed(notification, others) if others else None)


def _record(ref: str | None) -> tuple[str | None, bool]:
    """An alert record's message id, and whether its resolve was already shown."""
    try:
        value = json.loads(ref) if ref else None
    except ValueError:
        return None, False
    message = value.get("message") if isinstance(value, dict) else None
    resolved = isinstance(value, dict) and value.get("resolved") is True
    return (message if isinstance(message, str) and message else None), resolved


class StoredMessages:
    """The message records of one receiver in the store; store failures make the delivery transient."""

    def __init__(self, threads: Threads, integration: str) -> None:
        self.threads = threads
        self.prefix = f"{integration}-message:"

    async def plan(self, notification: Notification) -> Plan:
        resolved = [a for a in notification.alerts if a.status == "resolved"]
        found = await guard_store(self.threads.find(resolved)) if resolved else {}
        records = {key: _record(ref) for key, ref in found.items()}
        answered = frozenset(key for key, (_, done) in records.items() if done)
        refs = {key: m for key, (m, done) in records.items() if m and not done}
        keys = sorted({self.prefix + m for m in refs.values()})
        stored = await guard_store(self.threads.store.find_refs(self.threads.receiver, keys)) if keys else {}
        originals = {}
        for key, record in stored.items():
            try:
                originals[key.removeprefix(self.prefix)] = WebhookMessage.model_validate(json.loads(record)["group"])
            except (KeyError, TypeError, ValueError, ValidationError):
                continue
        return plan_for(notification, refs, originals, answered)

    async def posted(self, message: str, shown: Notification) -> None:
        """Record the message first, then point its firing alerts at it: a failure in between re-posts, it never
        leaves an alert pointing at a message with no record."""
        firing = [a for a in shown.alerts if a.status == "firing"]
        if not firing:  # nothing in it will resolve later
            return
        await self._put(message, shown)
        await guard_store(self.threads.remember(firing, json.dumps({"message": message})))

    async def edited(self, edit: Edit) -> None:
        """The message now shows these alerts resolved: keep what it shows, and that their resolve was shown (a
        retry of this notification leaves them out)."""
        await self._put(edit.message, edit.shows)
        await guard_store(self.threads.remember(edit.resolved, json.dumps({"message": edit.message,
                                                                            "resolved": True})))

    async def _put(self, message: str, shown: Notification) -> None:
        record = json.dumps({"group": shown.group.model_dump(mode="json")})
        await guard_store(self.threads.store.remember_refs(self.threads.receiver, [self.prefix + message], record))


@dataclass(frozen=True)
class AssumedMessages:
    """What a preview assumes: every resolved alert was announced in message `message`, which showed just those
    alerts; nothing is written."""

    message: str

    async def plan(self, notification: Notification) -> Plan:
        refs = {alert_key(a): self.message for a in notification.alerts if a.status == "resolved"}
        return plan_for(notification, refs, {})

    async def posted(self, message: str, shown: Notification) -> None:
        return None

    async def edited(self, edit: Edit) -> None:
        return None


@dataclass(frozen=True)
class Call:
    """One provider call as data: a new message (`post`) or an edit of message `message`. No secret is in it: the
    URL and token stay with the channel that makes the call."""

    step: Literal["post", "edit"]
    body: dict[str, Any]
    message: str = ""


Transport = Callable[[Call], Awaitable[str]]  # makes the call; the new message's id for a post
Build = Callable[[Notification], Awaitable[dict[str, Any]]]  # the message body for what a message shows
Gone = Callable[[PermanentDeliveryError], bool]  # whether an edit's failure says the message no longer exists


async def make_calls(notification: Notification, build: Build, messages: Messages | None, transport: Transport,
                     gone: Gone, *, stepwise: bool = False) -> None:
    """Edit the messages of resolved alerts relay knows, then post one message for every other alert. An edit of a
    message that is gone (deleted) becomes a new message. Without a store, or for a storm's summary (lane given by
    relay.storms.fold, which a channel passes as messages=None), one new message.

    Each edit is remembered as it is made, so a retry continues where an attempt stopped. With `stepwise` (a real
    send) an attempt makes one call when more follow, then ends with DeliveryUnfinished: the next attempt, started
    at once, takes a rate-limit token of its own, so a resolve that edits ten messages keeps to the provider's rate
    instead of meeting its 429 at the same call every time."""
    if messages is None:
        await transport(Call("post", await build(notification)))
        return
    plan = await messages.plan(notification)
    steps = len(plan.edits) + (plan.new is not None)
    for n, edit in enumerate(plan.edits, 1):
        body = await build(edit.shows)
        try:
            await transport(Call("edit", body, edit.message))
        except PermanentDeliveryError as exc:
            if not gone(exc):
                raise
            posted = await transport(Call("post", body))
            await messages.edited(Edit(posted, edit.shows, edit.resolved))
        else:
            await messages.edited(edit)
        if stepwise and n < steps:
            raise DeliveryUnfinished(f"{n} of {steps} messages updated; the rest follow")
    if plan.new is not None:
        await messages.posted(await transport(Call("post", await build(plan.new))), plan.new)


def preview_calls(notification: Notification, build: Callable[[Notification], dict[str, Any]], gone: Gone,
                  assumed: str, messages: bool = True) -> list[Call]:
    """The calls make_calls makes, assuming every resolved alert was announced in message `assumed` and every call
    succeeds (`relay templates render`); `messages=False` for a send without edits (a storm's summary)."""
    made: list[Call] = []

    async def record(call: Call) -> str:
        made.append(call)
        return assumed

    async def built(shown: Notification) -> dict[str, Any]:  # in place: rendered() would wait for a thread
        return build(shown)

    steps = make_calls(notification, built, AssumedMessages(assumed) if messages else None, record, gone)
    try:
        steps.send(None)
    except StopIteration:
        return made
    steps.close()
    raise RuntimeError("a preview's calls must not wait for I/O")
