"""What every store does the same way: dedup keys and rows read back into Notifications."""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from relay.actions.model import ACTION, FIELD
from relay.alerts import INFERRED, Alert, Escalation, Notification, WebhookMessage, key_part
from relay.errors import StoreRejected
from relay.store.base import Attempt, Candidate, Claimed
from relay.store.records import Episode
from relay.times import parse_time


def dedup_time(starts_at: str) -> str:
    """startsAt normalised, so Alertmanager's nanosecond variants of one instant dedup together."""
    parsed = parse_time(starts_at)
    return parsed.isoformat() if parsed else starts_at


def dedup_passes(status: str, marks: Mapping[str, float], now: float, interval: float) -> bool:
    """Whether an alert episode in `status` is notified, given when it was last notified per status (`marks`): the
    first time; again once the other status was shown since (a change of state: a firing after a resolve, relay's
    inferred one included, pages again, and the resolve after it closes that page); a firing after its repeat
    interval. A re-send of what was shown last is a duplicate. sql/postgres.sql `enqueue` decides the same."""
    last = marks.get(status)
    if last is None:
        return True
    other = marks.get("resolved" if status == "firing" else "firing")
    if other is not None and other > last:
        return True
    return status == "firing" and now - last >= interval


def shown_at(status: str, marks: Mapping[str, float], now: float) -> float:
    """The mark a status that passed dedup gets: `now`, but never at or before the other status's mark. `now` is when
    the webhook was received, and webhooks commit in another order than they arrive (two replicas, a batch): a resolve
    committed first but received later must not look newer than the firing shown after it, or that firing's own
    resolve is dropped as a duplicate and the page stays open. sql/postgres.sql `enqueue` decides the same."""
    other = marks.get("resolved" if status == "firing" else "firing")
    return now if other is None or other < now else other + 1e-6


def notification_from_row(row: Mapping[str, Any]) -> Notification:
    """Raises ValueError when the stored payload cannot be read back (the caller sets the row aside)."""
    return Notification(
        id=row["id"],
        receiver=row["receiver"],
        integration=row["integration"],
        lane=row["lane"],
        group=WebhookMessage.model_validate_json(row["payload"]),
        received_at=datetime.fromtimestamp(row["received_at"], UTC),
        attempts=row["attempts"],
        escalation=Escalation.from_json(row["escalation"]),
        priority=int(row["priority"]) if "priority" in row.keys() else 0,
    )


HISTORY_COLUMNS = ("id, receiver, integration, status, alertnames, state, attempts, received_at, finished_at, "
                   "next_attempt_at, last_error, escalation, summary_id, "
                   # A pending notification waits for every older pending one of its lane: the first of those.
                   "CASE WHEN state = 'pending' THEN (SELECT min(p.id) FROM notifications p WHERE p.lane = "
                   "notifications.lane AND p.state = 'pending' AND p.id < notifications.id) END AS behind")


def history_row(row: Mapping[str, Any]) -> dict[str, Any]:
    item = dict(row)
    item["alertnames"] = [n for n in item["alertnames"].split(",") if n]
    escalation = Escalation.from_json(item.get("escalation"))
    item["escalation"] = None if escalation is None else {"step": escalation.step, "steps": escalation.steps,
                                                          "after_seconds": escalation.after}
    return item


def detail_row(row: Mapping[str, Any], payload: str, attempts: list[dict[str, Any]]) -> dict[str, Any]:
    """History plus what a person debugging a dead letter needs: which alerts, and what each attempt met."""
    group = WebhookMessage.model_validate_json(payload)
    item = history_row(row)
    item["group_key"] = group.groupKey
    item["alerts"] = [{"status": a.status, "labels": a.labels, "startsAt": a.startsAt, "endsAt": a.endsAt,
                       "fingerprint": a.fingerprint} for a in group.alerts]
    item["attempt_log"] = attempts
    if item.get("integration") == ACTION:  # who asked for what, and when; the attempts say what came of it
        item["action"] = (group.model_extra or {}).get(FIELD)
    inferred = (group.model_extra or {}).get(INFERRED)
    if isinstance(inferred, dict):  # a resolve relay inferred itself (relay.actions.silences): on what evidence
        item["inferred"] = inferred
    return item


def handed_off(notification_id: int, candidate: Candidate, group: WebhookMessage, now: float, give_up_at: float,
               lease: float) -> Claimed:
    """The Claimed for a notification leased in the transaction that wrote it (nothing to read back)."""
    notification = Notification(notification_id, candidate.receiver, candidate.integration, candidate.lane, group,
                                datetime.fromtimestamp(now, UTC), 0,
                                priority=candidate.priority.of(a.labels for a in group.alerts))
    return Claimed(notification, give_up_at, now + lease)


def storable(payload: str) -> str:
    """A payload both stores can hold, or StoreRejected. WebhookMessage never holds NUL (it becomes U+FFFD); one
    built around validation could, and PostgreSQL would refuse it where SQLite takes it: both refuse it here."""
    if "\\u0000" in payload and re.search(r"(?<!\\)(?:\\\\)*\\u0000", payload):
        raise StoreRejected("a NUL character (\\u0000) cannot be stored")
    return payload


def attempt_error(reason: str, detail: str) -> str:
    return f"{reason}: {detail}" if detail else reason


def episode(alert: Alert) -> Episode:
    """An alert episode as the escalations table (and dedup) keys it."""
    return key_part(alert.fingerprint), dedup_time(alert.startsAt)


def attempt_fields(attempt: Attempt) -> tuple[float, float, str, str, str]:
    """An attempt as record_attempt (and the outcome statements) take it, after the notification id."""
    return attempt.started_at, attempt.duration, attempt.outcome, attempt.reason, attempt.detail
