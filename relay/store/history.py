"""Delivery history as both stores keep it: replaying and purging dead letters, the outbox's counts, the
history list and a notification's detail, cancelling, pruning, and where earlier messages went (find_refs)."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from relay.alerts import Alert, WebhookMessage, group_status, key_part
from relay.store.base import Attempt, Cancel, OutboxStats, Replay
from relay.store.records import HistoryFilter
from relay.store.rows import (
    HISTORY_COLUMNS,
    attempt_error,
    attempt_fields,
    dedup_time,
    detail_row,
    episode,
    history_row,
)
from relay.store.script import Dialect, Runner, Script, want_count, want_row, want_rows
from relay.storms.fold import (
    SUMMARY_GROUP_KEY,
)


def replay(d: Dialect, notification_id: int, now: float, forgotten_before: float) -> Script:
    """Put a dead letter back, minus firing alerts that must not re-open an incident (see Store.replay)."""
    q = d.queries
    row = yield want_row(q["dead_row"], notification_id)
    if row is None:
        return "missing"
    group = WebhookMessage.model_validate_json(row["payload"])
    too_old = row["received_at"] < forgotten_before
    found = yield want_rows(q["resolved_keys"], row["receiver"], [key_part(a.fingerprint) for a in group.alerts])
    resolved = {(r["fingerprint"], r["starts_at"]) for r in found}
    if resolved:  # a resolve that is a dead letter of the same lane itself was never sent: nothing was closed yet
        resolved -= (yield from _unsent_resolves(q, row["lane"], notification_id))
    kept = [a for a in group.alerts if a.status == "resolved"
            or (not too_old and (key_part(a.fingerprint), dedup_time(a.startsAt)) not in resolved)]
    if not kept:
        outcome: Replay = "too_old" if too_old else "resolved"
        return outcome
    payload = None
    if len(kept) != len(group.alerts):
        payload = group.model_copy(update={"alerts": kept, "status": group_status(kept)}).model_dump_json()
    changed = yield want_count(q["replay"], now, notification_id, payload)
    return "replayed" if changed else "missing"


def _unsent_resolves(q: Mapping[str, str], lane: str, notification_id: int) -> Script:
    """The (fingerprint, startsAt) episodes whose resolve is a later dead letter of this lane. Replaying their firing
    re-opens nothing the provider saw closed, and `dead-letters retry` replays the lane oldest first, so the firing
    goes out before that resolve."""
    unsent: set[tuple[str, str]] = set()
    for later in (yield want_rows(q["dead_after"], lane, notification_id)):
        try:
            alerts = WebhookMessage.model_validate_json(later["payload"]).alerts
        except ValueError:
            continue  # a payload set aside as unreadable proves nothing
        unsent |= {(key_part(a.fingerprint), dedup_time(a.startsAt)) for a in alerts if a.status == "resolved"}
    return unsent


def stats(d: Dialect) -> Script:
    pending: dict[str, int] = {}
    oldest = None
    for receiver, count, first in (yield want_rows(d.queries["pending_by_receiver"])):
        pending[receiver] = count
        oldest = first if oldest is None else min(oldest, first)
    dead = {receiver: count for receiver, count in (yield want_rows(d.queries["dead_by_receiver"]))}
    return OutboxStats(pending, oldest, dead)


def history(d: Dialect, query: HistoryFilter) -> Script:
    """Newest first; only the filters given become conditions, so each can use its index."""
    where: list[str] = ["1 = 1"]
    params: list[Any] = []

    def param(value: Any) -> str:
        params.append(value)
        return d.param(len(params))

    if query.receiver:
        where.append(f"receiver = {param(query.receiver)}")
    if query.state:
        where.append(f"state = {param(query.state)}")
    if query.alertname:
        where.append(f"(',' || alertnames || ',') LIKE {param(f'%,{query.alertname},%')}")
    if query.ids:
        where.append(d.id_list(param(list(query.ids))))
    if query.summary is not None:
        where.append(f"summary_id = {param(query.summary)}")
    sql = (f"SELECT {HISTORY_COLUMNS} FROM notifications WHERE {' AND '.join(where)} "
           f"ORDER BY id DESC LIMIT {param(query.limit)}")
    return [history_row(dict(row)) for row in (yield want_rows(sql, *params))]


def detail(d: Dialect, notification_id: int) -> Script:
    sql = f"SELECT {HISTORY_COLUMNS}, payload FROM notifications WHERE id = {d.param(1)}"
    row = yield want_row(sql, notification_id)
    if row is None:
        return None
    attempts = yield want_rows(d.queries["attempts_of"], notification_id)
    item = detail_row(dict(row), row["payload"], [dict(a) for a in attempts])
    if item["group_key"].startswith(SUMMARY_GROUP_KEY):  # a storm's summary: how many notifications it holds
        item["folded"] = (yield want_row(d.queries["folded_count"], notification_id))[0]
    item["escalation_steps"] = (yield from _steps_of(d, WebhookMessage.model_validate_json(row["payload"]).alerts))
    return item


def _steps_of(d: Dialect, alerts: Sequence[Alert]) -> Script:
    """The escalation steps of these alert episodes, as a notification's detail shows them (where each stands)."""
    episodes = {episode(a): a.fingerprint for a in alerts}
    rows = yield want_rows(d.queries["escalations_of"], sorted({key for key, _ in episodes}))
    return [{"fingerprint": episodes[(r["fingerprint"], r["starts_at"])], "step": r["step"], "steps": r["steps"],
             "after_seconds": r["after_seconds"], "receivers": json.loads(r["receivers"]), "due_at": r["due_at"],
             "state": r["state"], "ended_at": r["ended_at"], "reason": r["reason"],
             "notifications": json.loads(r["notifications"])}
            for r in rows if (r["fingerprint"], r["starts_at"]) in episodes]


def purge(d: Dialect, notification_id: int) -> Script:
    q = d.queries
    if (yield want_row(q["dead_exists"], notification_id)) is None:
        return False
    yield want_count(q["purge_attempts"], notification_id)
    yield want_count(q["purge_notification"], notification_id)
    return True


def cancel(d: Dialect, notification_id: int, now: float, attempt: Attempt) -> Script:
    q = d.queries
    if (yield want_count(q["cancel"], now, attempt_error(attempt.reason, attempt.detail), notification_id)):
        yield want_count(q["record_attempt"], notification_id, *attempt_fields(attempt))
        outcome: Cancel = "cancelled"
        return outcome
    return "in_flight" if (yield want_row(q["is_pending"], notification_id)) is not None else "missing"


def prune(d: Dialect, finished_before: float, marks_before: float) -> Script:
    """Cancelled, then delivered notifications (attempts first), then dedup marks and message references."""
    q = d.queries
    forgotten = 0
    for state in ("cancelled", "delivered"):
        yield want_count(q[f"prune_{state}_attempts"], finished_before)
        forgotten += yield want_count(q[f"prune_{state}"], finished_before)
    yield want_count(q["prune_dedup"], marks_before)
    yield want_count(q["prune_refs"], marks_before)
    yield want_count(q["prune_action_marks"], marks_before)
    yield want_count(q["prune_escalations"], marks_before)
    yield want_count(q["prune_storms"], marks_before)
    return forgotten


def find_refs(d: Dialect, receiver: str, keys: list[str]) -> Script:
    return {r["alert_key"]: r["ref"] for r in (yield want_rows(d.queries["refs_get"], receiver, keys))}


class HistoryScripts(Runner):
    """The Store methods of delivery history."""

    async def replay(self, notification_id: int, now: float, forgotten_before: float = 0.0) -> Replay:
        outcome: Replay = await self._script(replay(self.dialect, notification_id, now, forgotten_before))
        return outcome

    async def stats(self, now: float) -> OutboxStats:
        found: OutboxStats = await self._script(stats(self.dialect), read=True)
        return found

    async def history(self, query: HistoryFilter) -> list[dict[str, Any]]:
        rows: list[dict[str, Any]] = await self._script(history(self.dialect, query), read=True)
        return rows

    async def detail(self, notification_id: int) -> dict[str, Any] | None:
        found: dict[str, Any] | None = await self._script(detail(self.dialect, notification_id), read=True)
        return found

    async def purge(self, notification_id: int) -> bool:
        return bool(await self._script(purge(self.dialect, notification_id)))

    async def cancel(self, notification_id: int, now: float, attempt: Attempt) -> Cancel:
        outcome: Cancel = await self._script(cancel(self.dialect, notification_id, now, attempt))
        return outcome

    async def prune(self, finished_before: float, marks_before: float) -> int:
        return int(await self._script(prune(self.dialect, finished_before, marks_before)))

    async def find_refs(self, receiver: str, keys: Sequence[str]) -> dict[str, str]:
        if not keys:
            return {}
        found: dict[str, str] = await self._script(find_refs(self.dialect, receiver, list(keys)), read=True)
        return found
