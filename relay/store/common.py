"""What both stores do the same way, written once above a thin per-dialect layer.

Each operation here is a script: a generator that yields the statements it needs (by name from the dialect's
sql/<dialect>.sql, or composed for history) and gets each one's answer back. SqliteStore runs a script inside its
writer thread's transaction, PostgresStore inside one pooled transaction; neither knows what the script decides.
Parameters are numbered the same in both dialects (`?1` / `$1`); a list parameter is a JSON array for SQLite.
The hot path (enqueue, claim, outcomes) stays in each store: each dialect does it in its own fastest way.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Generator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

from relay.actions import ACTION, ActionRow
from relay.alerts import Alert, Notification, State, WebhookMessage, group_status, key_part
from relay.errors import Reason
from relay.pacing.ratelimit import Budget, Grant, by_destination
from relay.store.base import (
    Acted,
    Attempt,
    Cancel,
    Claimed,
    DueTimer,
    Ended,
    Enqueued,
    Episode,
    EscalationEnd,
    Fold,
    Folded,
    Handoff,
    HistoryFilter,
    OutboxStats,
    Replay,
    Resolved,
    StepRecord,
    StormState,
    StormView,
    Timer,
    Watch,
)
from relay.store.rows import HISTORY_COLUMNS, attempt_error, dedup_time, detail_row, history_row, storable
from relay.storms.fold import (
    REDRAW_SUFFIX,
    SUMMARY_GROUP_KEY,
    alertnames,
    choose,
    read_waiting,
    storm_lane,
    storm_of,
    summary_group,
)

log = logging.getLogger(__name__)

# What a step asks for: every row, the first row (or None), or how many rows it changed.
Want = Literal["rows", "row", "count"]
Step = tuple[Want, str, tuple[Any, ...]]
Script = Generator[Step, Any, Any]


@dataclass(frozen=True)
class Dialect:
    """What differs between the stores' SQL besides the statements: how a parameter and a list of ids are written."""

    queries: Mapping[str, str]
    param: Callable[[int], str]
    id_list: Callable[[str], str]  # a clause matching `id` against a list parameter


def _rows(sql: str, *params: Any) -> Step:
    return "rows", sql, params


def _row(sql: str, *params: Any) -> Step:
    return "row", sql, params


def _count(sql: str, *params: Any) -> Step:
    return "count", sql, params


def replay(d: Dialect, notification_id: int, now: float, forgotten_before: float) -> Script:
    """Put a dead letter back, minus firing alerts that must not re-open an incident (see Store.replay)."""
    q = d.queries
    row = yield _row(q["dead_row"], notification_id)
    if row is None:
        return "missing"
    group = WebhookMessage.model_validate_json(row["payload"])
    too_old = row["received_at"] < forgotten_before
    found = yield _rows(q["resolved_keys"], row["receiver"], [key_part(a.fingerprint) for a in group.alerts])
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
    changed = yield _count(q["replay"], now, notification_id, payload)
    return "replayed" if changed else "missing"


def _unsent_resolves(q: Mapping[str, str], lane: str, notification_id: int) -> Script:
    """The (fingerprint, startsAt) episodes whose resolve is a later dead letter of this lane. Replaying their firing
    re-opens nothing the provider saw closed, and `dead-letters retry` replays the lane oldest first, so the firing
    goes out before that resolve."""
    unsent: set[tuple[str, str]] = set()
    for later in (yield _rows(q["dead_after"], lane, notification_id)):
        try:
            alerts = WebhookMessage.model_validate_json(later["payload"]).alerts
        except ValueError:
            continue  # a payload set aside as unreadable proves nothing
        unsent |= {(key_part(a.fingerprint), dedup_time(a.startsAt)) for a in alerts if a.status == "resolved"}
    return unsent


def stats(d: Dialect) -> Script:
    pending: dict[str, int] = {}
    oldest = None
    for receiver, count, first in (yield _rows(d.queries["pending_by_receiver"])):
        pending[receiver] = count
        oldest = first if oldest is None else min(oldest, first)
    dead = {receiver: count for receiver, count in (yield _rows(d.queries["dead_by_receiver"]))}
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
    return [history_row(dict(row)) for row in (yield _rows(sql, *params))]


def detail(d: Dialect, notification_id: int) -> Script:
    row = yield _row(f"SELECT {HISTORY_COLUMNS}, payload FROM notifications WHERE id = {d.param(1)}", notification_id)
    if row is None:
        return None
    attempts = yield _rows(d.queries["attempts_of"], notification_id)
    item = detail_row(dict(row), row["payload"], [dict(a) for a in attempts])
    if item["group_key"].startswith(SUMMARY_GROUP_KEY):  # a storm's summary: how many notifications it holds
        item["folded"] = (yield _row(d.queries["folded_count"], notification_id))[0]
    item["escalation_steps"] = (yield from _steps_of(d, WebhookMessage.model_validate_json(row["payload"]).alerts))
    return item


def _steps_of(d: Dialect, alerts: Sequence[Alert]) -> Script:
    """The escalation steps of these alert episodes, as a notification's detail shows them (where each stands)."""
    episodes = {episode(a): a.fingerprint for a in alerts}
    rows = yield _rows(d.queries["escalations_of"], sorted({key for key, _ in episodes}))
    return [{"fingerprint": episodes[(r["fingerprint"], r["starts_at"])], "step": r["step"], "steps": r["steps"],
             "after_seconds": r["after_seconds"], "receivers": json.loads(r["receivers"]), "due_at": r["due_at"],
             "state": r["state"], "ended_at": r["ended_at"], "reason": r["reason"],
             "notifications": json.loads(r["notifications"])}
            for r in rows if (r["fingerprint"], r["starts_at"]) in episodes]


def purge(d: Dialect, notification_id: int) -> Script:
    q = d.queries
    if (yield _row(q["dead_exists"], notification_id)) is None:
        return False
    yield _count(q["purge_attempts"], notification_id)
    yield _count(q["purge_notification"], notification_id)
    return True


def cancel(d: Dialect, notification_id: int, now: float, attempt: Attempt) -> Script:
    q = d.queries
    if (yield _count(q["cancel"], now, attempt_error(attempt.reason, attempt.detail), notification_id)):
        yield _count(q["record_attempt"], notification_id, *attempt_fields(attempt))
        outcome: Cancel = "cancelled"
        return outcome
    return "in_flight" if (yield _row(q["is_pending"], notification_id)) is not None else "missing"


def prune(d: Dialect, finished_before: float, marks_before: float) -> Script:
    """Cancelled, then delivered notifications (attempts first), then dedup marks and message references."""
    q = d.queries
    forgotten = 0
    for state in ("cancelled", "delivered"):
        yield _count(q[f"prune_{state}_attempts"], finished_before)
        forgotten += yield _count(q[f"prune_{state}"], finished_before)
    yield _count(q["prune_dedup"], marks_before)
    yield _count(q["prune_refs"], marks_before)
    yield _count(q["prune_action_marks"], marks_before)
    yield _count(q["prune_escalations"], marks_before)
    yield _count(q["prune_storms"], marks_before)
    return forgotten


def act(d: Dialect, marks: Sequence[str], rows: Sequence[ActionRow], now: float, handoff: Handoff | None) -> Script:
    """The marks first: the first that exists refuses the click (a request's mark written before it stays: a replay
    of that request is refused too). Each row has a lane of its own, so each is its lane's head."""
    q = d.queries
    for mark in marks:
        if (yield _row(q["action_mark"], mark, now)) is None:
            return Acted(mark)
    taken: dict[str, int] = {}
    written: list[Enqueued] = []
    for action in rows:
        group = action.group
        leased = handoff is not None and handoff.take(taken, action.receiver)
        give_up_at = now + action.give_up_after
        lease_until = now + handoff.lease if handoff is not None and leased else 0.0
        owner = handoff.owner if handoff is not None and leased else None
        names = ",".join(sorted({a.name for a in group.alerts}))
        found = yield _row(q["action_insert"], action.receiver, action.lane, group.status, names,
                           storable(action.payload()), now, give_up_at, lease_until, owner)
        notification_id = int(found["id"])
        claimed = None
        if leased:
            notification = Notification(notification_id, action.receiver, ACTION, action.lane, group,
                                        datetime.fromtimestamp(now, UTC), 0)
            claimed = Claimed(notification, give_up_at, lease_until)
        written.append(Enqueued(action.receiver, notification_id, len(group.alerts), 0, claimed))
    return Acted(None, written)


def watches_due(d: Dialect, now: float, next_check: float, limit: int) -> Script:
    yield _count(d.queries["watch_ended"], now)
    rows = yield _rows(d.queries["watch_due"], now, next_check, limit)
    return [Watch(r["receiver"], r["silence_id"], r["payload"], float(r["ends_at"]),
                  None if r["absent_since"] is None else float(r["absent_since"])) for r in rows]


def fold(d: Dialect, f: Fold) -> Script:
    """See Store.fold: what waits is read (and, on PostgreSQL, locked) first, so no claim takes it meanwhile."""
    q = d.queries
    chosen = choose(read_waiting((yield _rows(q["storm_waiting"], f.receiver)), f.now), f.never_fold, f.label)
    if not chosen:
        return None
    if f.storm is None:
        opened = yield _row(q["storm_open"], f.receiver, f.now)
        if opened is None:  # another replica opened one
            return None
        storm_id = int(opened[0])
    elif (yield _count(q["storm_continue"], f.storm.id, f.storm.folded_at, f.now)):
        storm_id = f.storm.id
    else:  # another replica folded or ended it meanwhile
        return None
    group = summary_group(storm_id, [w.group for w in chosen if w.group is not None], f.relay_url)
    written = yield _row(q["storm_summary"], f.receiver, f.integration, storm_lane(f.receiver, storm_id),
                         group.status, alertnames(group), storable(group.model_dump_json()), f.now,
                         f.now + f.give_up_after, min(w.priority for w in chosen))
    summary_id = int(written[0])
    folded = yield _count(q["storm_fold"], summary_id, f.now, [w.id for w in chosen])
    yield _count(q["storm_fold_attempts"], summary_id, f.now)
    yield _count(q["storm_count"], storm_id, folded)
    return Folded(storm_id, summary_id, folded, len(group.alerts))


def storm_end(d: Dialect, storm_id: int, folded_at: float, now: float, redraw: bool) -> Script:
    """See Store.storm_end: the redraw is the storm's last summary again, marked (relay.storms.fold.redraws)."""
    q = d.queries
    if not (yield _count(q["storm_end"], storm_id, folded_at, now)):
        return None
    storm = (yield _row(q["storm_get"], storm_id)) if redraw else None
    last = None if storm is None else (yield _row(q["storm_last"], storm_lane(storm["receiver"], storm_id)))
    if storm is None or last is None:
        return Ended(None)
    group = WebhookMessage.model_validate_json(last["payload"])
    group = group.model_copy(update={"groupKey": group.groupKey + REDRAW_SUFFIX})
    written = yield _row(q["storm_summary"], storm["receiver"], last["integration"], last["lane"], group.status,
                         alertnames(group), storable(group.model_dump_json()), now,
                         now + last["give_up_at"] - last["received_at"], last["priority"])
    return Ended(int(written[0]))


def storm_view(d: Dialect, summary_id: int, lane: str) -> Script:
    storm_id = storm_of(lane)
    row = None if storm_id is None else (yield _row(d.queries["storm_get"], storm_id))
    if row is None:
        return None
    summaries = yield _rows(d.queries["storm_summaries"], lane, summary_id)
    alerts = [a for s in summaries for a in WebhookMessage.model_validate_json(s["payload"]).alerts]
    return StormView(StormState(*row), alerts, first=len(summaries) <= 1)


def _all(sql: str, *params: Any) -> Script:
    return (yield _rows(sql, *params))


def find_refs(d: Dialect, receiver: str, keys: list[str]) -> Script:
    return {r["alert_key"]: r["ref"] for r in (yield _rows(d.queries["refs_get"], receiver, keys))}


def episode(alert: Alert) -> Episode:
    """An alert episode as the escalations table (and dedup) keys it."""
    return key_part(alert.fingerprint), dedup_time(alert.startsAt)


def arm_escalations(d: Dialect, timers: Sequence[Timer], resolved: Sequence[Alert], now: float) -> Script:
    """See Store.arm_escalations. Timers go in one statement, in one order (replicas arming one group cannot
    deadlock); the resolve's receivers are read after its cancel, so a step sent meanwhile is among them."""
    q = d.queries
    if timers:
        rows = sorted(({"fingerprint": key, "starts_at": started, "step": t.step, "steps": t.steps, "after": t.after,
                        "receivers": json.dumps(list(t.receivers)), "group_key": key_part(t.group.groupKey),
                        "payload": storable(t.group.model_dump_json()), "due_at": t.due_at}
                       for t in timers for key, started in [episode(t.alert)]),
                      key=lambda row: (row["fingerprint"], row["starts_at"], row["step"]))
        yield _count(q["escalation_arm"], json.dumps(rows), now)
    if not resolved:
        return Resolved()
    sent: dict[Episode, list[str]] = {}
    episodes = json.dumps(sorted({episode(a) for a in resolved}))
    cancelled = yield _count(q["escalation_resolve"], now, episodes)
    yield _count(q["escalation_resolved_at"], now, episodes)
    for row in (yield _rows(q["escalation_sent_to"], episodes)):
        receivers = sent.setdefault((row["fingerprint"], row["starts_at"]), [])
        receivers.extend(r for r in json.loads(row["receivers"]) if r not in receivers)
    return Resolved(cancelled, sent)


def cancel_escalations(d: Dialect, fingerprints: Sequence[str], reason: str, now: float) -> Script:
    return (yield _count(d.queries["escalation_cancel"], now, reason, sorted({key_part(f) for f in fingerprints})))


def due_escalations(d: Dialect, now: float, limit: int) -> Script:
    """Due steps; one whose stored alert cannot be read back is left out (and said), never blocking the others."""
    due = []
    for row in (yield _rows(d.queries["escalations_due"], now, limit)):
        try:
            group = WebhookMessage.model_validate_json(row["payload"])
        except ValueError as exc:
            log.error("escalation step %d cannot be read back, skipping it: %s", row["id"], exc)
            continue
        timer = Timer(group, row["step"], row["steps"], row["after_seconds"], tuple(json.loads(row["receivers"])),
                      row["due_at"])
        due.append(DueTimer(row["id"], timer, row["armed_at"]))
    return due


def escalations_of(d: Dialect, fingerprints: Sequence[str]) -> Script:
    rows = yield _rows(d.queries["escalations_of"], sorted({key_part(f) for f in fingerprints}))
    return [StepRecord(r["fingerprint"], r["starts_at"], r["step"], r["steps"], r["after_seconds"],
                       tuple(json.loads(r["receivers"])), r["armed_at"], r["due_at"], r["state"], r["ended_at"],
                       r["reason"], tuple(json.loads(r["notifications"]))) for r in rows]


def attempt_fields(attempt: Attempt) -> tuple[float, float, str, str, str]:
    """An attempt as record_attempt (and the outcome statements) take it, after the notification id."""
    return attempt.started_at, attempt.duration, attempt.outcome, attempt.reason, attempt.detail


# Claims within budgets (relay.pacing.ratelimit): both stores size a claim by the tokens their buckets hold, take one
# token per lane head they read, and lease only the heads that got one, most severe first.

def shares(limit: int, room: Mapping[str, int], budgets: Mapping[str, Budget], tokens: Mapping[str, float]
           ) -> tuple[dict[str, int], dict[str, float]]:
    """Each receiver's share of a claim: its room, and for a receiver with a budget at most the whole tokens its
    destination holds; and, for each destination holding none, the seconds until it does (its rows are not read)."""
    out = dict(room)
    per = by_destination(budgets.values())
    for receiver, b in budgets.items():
        out[receiver] = max(0, min(out.get(receiver, limit), int(tokens.get(b.destination, b.burst))))
    waits = {d: (1 - tokens[d]) / b.rate for d, b in per.items() if d in tokens and tokens[d] < 1}
    return out, waits


def wanted(rows: Sequence[Any], budgets: Mapping[str, Budget]) -> dict[Budget, int]:
    """The tokens these claimed rows need: one each, per destination."""
    per = by_destination(budgets.values())
    count: dict[str, int] = {}
    for row in rows:
        b = budgets.get(row["receiver"])
        if b is not None:
            count[b.destination] = count.get(b.destination, 0) + 1
    return {per[d]: n for d, n in count.items()}


def afford(rows: Sequence[Any], budgets: Mapping[str, Budget], grants: Mapping[str, Grant]) -> list[Any]:
    """The rows (in priority order) that got a token: per destination the first `granted`; all rows of receivers
    without a budget."""
    left = {d: g.granted for d, g in grants.items()}
    out = []
    for row in rows:
        b = budgets.get(row["receiver"])
        if b is not None:
            if left.get(b.destination, 0) <= 0:
                continue
            left[b.destination] -= 1
        out.append(row)
    return out


def waits_after(grants: Mapping[str, Grant]) -> dict[str, float]:
    """The destinations a claim's take left without a whole token, with the seconds until their next one."""
    return {d: g.wait for d, g in grants.items() if g.wait > 0}


# The outcome statements' own parameters (before the attempt's), the same in both dialects: done, then retry.

def delivered(notification_id: int, owner: str, attempt: Attempt) -> tuple[Any, ...]:
    return State.DELIVERED.value, attempt.started_at + attempt.duration, None, notification_id, owner


def dead(notification_id: int, owner: str, attempt: Attempt) -> tuple[Any, ...]:
    return (State.DEAD.value, attempt.started_at + attempt.duration, attempt_error(attempt.reason, attempt.detail),
            notification_id, owner)


def retry(notification_id: int, owner: str, attempt: Attempt, next_attempt_at: float,
          count_attempt: bool) -> tuple[Any, ...]:
    """A retry waits out a rate limit when the attempt met one (the closed Reason, not the error's text): then
    retry_now leaves its time alone."""
    return (int(count_attempt), next_attempt_at, attempt_error(attempt.reason, attempt.detail),
            attempt.reason == Reason.RATE_LIMITED, notification_id, owner)


def _single(step: Step) -> Script:
    """A script of one statement."""
    return (yield step)


class Scripted:
    """The Store methods that are a script of this module: a store supplies its dialect and how it runs a script
    (`read`: the script only reads, so a store may skip the transaction)."""

    dialect: Dialect

    async def _script(self, script: Script, read: bool = False) -> Any:
        raise NotImplementedError

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

    async def act(self, marks: Sequence[str], rows: Sequence[ActionRow], now: float,
                  handoff: Handoff | None = None) -> Acted:
        acted: Acted = await self._script(act(self.dialect, marks, rows, now, handoff))
        return acted

    async def watch_silence(self, watch: Watch, next_check: float) -> None:
        await self._script(_single(_count(self.dialect.queries["watch_put"], watch.receiver, watch.silence_id,
                                          storable(watch.payload), watch.ends_at, next_check)))

    async def unwatch_silence(self, receiver: str, silence_id: str) -> None:
        await self._script(_single(_count(self.dialect.queries["watch_drop"], receiver, silence_id)))

    async def watch_absent(self, receiver: str, silence_id: str, absent_since: float | None) -> None:
        await self._script(_single(_count(self.dialect.queries["watch_absent"], receiver, silence_id, absent_since)))

    async def watches_due(self, now: float, next_check: float, limit: int) -> list[Watch]:
        due: list[Watch] = await self._script(watches_due(self.dialect, now, next_check, limit))
        return due
    async def storm_backlog(self, due_by: float) -> dict[str, int]:
        rows = await self._script(_all(self.dialect.queries["storm_backlog"], due_by), read=True)
        return {receiver: int(count) for receiver, count in rows}

    async def storms(self) -> list[StormState]:
        return [StormState(*row) for row in await self._script(_all(self.dialect.queries["storms_open"]), read=True)]

    async def fold(self, plan: Fold) -> Folded | None:
        folded: Folded | None = await self._script(fold(self.dialect, plan))
        return folded

    async def storm_end(self, storm_id: int, folded_at: float, now: float, redraw: bool = False) -> Ended | None:
        ended: Ended | None = await self._script(storm_end(self.dialect, storm_id, folded_at, now, redraw))
        return ended

    async def storm_view(self, summary_id: int, lane: str) -> StormView | None:
        found: StormView | None = await self._script(storm_view(self.dialect, summary_id, lane), read=True)
        return found

    async def storm_remember(self, storm_id: int, ref: str) -> None:
        await self._script(_single(_count(self.dialect.queries["storm_ref"], storm_id, ref)))

    async def arm_escalations(self, timers: Sequence[Timer], resolved: Sequence[Alert],
                              now: float) -> Resolved:
        if not timers and not resolved:
            return Resolved()
        done: Resolved = await self._script(arm_escalations(self.dialect, timers, resolved, now))
        return done

    async def cancel_escalations(self, fingerprints: Sequence[str], reason: EscalationEnd, now: float) -> int:
        if not fingerprints:
            return 0
        return int(await self._script(cancel_escalations(self.dialect, fingerprints, reason, now)))

    async def due_escalations(self, now: float, limit: int) -> list[DueTimer]:
        due: list[DueTimer] = await self._script(due_escalations(self.dialect, now, limit), read=True)
        return due

    async def escalations_of(self, fingerprints: Sequence[str]) -> list[StepRecord]:
        if not fingerprints:
            return []
        found: list[StepRecord] = await self._script(escalations_of(self.dialect, fingerprints), read=True)
        return found

    async def find_refs(self, receiver: str, keys: Sequence[str]) -> dict[str, str]:
        if not keys:
            return {}
        found: dict[str, str] = await self._script(find_refs(self.dialect, receiver, list(keys)), read=True)
        return found
