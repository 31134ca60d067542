"""Escalation timers as both stores keep them (relay.stages.escalation): armed per alert episode, cancelled
with a reason, due in order."""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence

from relay.alerts import Alert, WebhookMessage, key_part
from relay.store.records import DueTimer, Episode, EscalationEnd, Resolved, StepRecord, Timer
from relay.store.rows import episode, storable
from relay.store.script import Dialect, Runner, Script, want_count, want_rows

log = logging.getLogger(__name__)


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
        yield want_count(q["escalation_arm"], json.dumps(rows), now)
    if not resolved:
        return Resolved()
    sent: dict[Episode, list[str]] = {}
    episodes = json.dumps(sorted({episode(a) for a in resolved}))
    held: dict[Episode, list[str]] = {}
    for row in (yield want_rows(q["escalation_held"], episodes)):  # before the cancel: the holds it ends
        receivers = held.setdefault((row["fingerprint"], row["starts_at"]), [])
        receivers.extend(r for r in json.loads(row["receivers"]) if r not in receivers)
    cancelled = yield want_count(q["escalation_resolve"], now, episodes)
    yield want_count(q["escalation_resolved_at"], now, episodes)
    for row in (yield want_rows(q["escalation_sent_to"], episodes)):
        receivers = sent.setdefault((row["fingerprint"], row["starts_at"]), [])
        receivers.extend(r for r in json.loads(row["receivers"]) if r not in receivers)
    return Resolved(cancelled, sent, held)


def postpone_escalations(d: Dialect, ids: Sequence[int], due_at: float) -> Script:
    return (yield want_count(d.queries["escalation_postpone"], due_at, sorted(set(ids))))


def told(d: Dialect, pairs: Sequence[tuple[str, Episode]]) -> Script:
    rows = yield want_rows(d.queries["dedup_told"], json.dumps(sorted({(r, *ep) for r, ep in pairs})))
    return {(row["receiver"], (row["fingerprint"], row["starts_at"])) for row in rows}


def cancel_escalations(d: Dialect, fingerprints: Sequence[str], reason: str, now: float) -> Script:
    return (yield want_count(d.queries["escalation_cancel"], now, reason, sorted({key_part(f) for f in fingerprints})))


def due_escalations(d: Dialect, now: float, limit: int) -> Script:
    """Due steps; one whose stored alert cannot be read back is left out (and said), never blocking the others."""
    due = []
    for row in (yield want_rows(d.queries["escalations_due"], now, limit)):
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
    rows = yield want_rows(d.queries["escalations_of"], sorted({key_part(f) for f in fingerprints}))
    return [StepRecord(r["fingerprint"], r["starts_at"], r["step"], r["steps"], r["after_seconds"],
                       tuple(json.loads(r["receivers"])), r["armed_at"], r["due_at"], r["state"], r["ended_at"],
                       r["reason"], tuple(json.loads(r["notifications"]))) for r in rows]


class EscalationScripts(Runner):
    """The Store methods of escalations."""

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

    async def postpone_escalations(self, ids: Sequence[int], due_at: float) -> None:
        if ids:
            await self._script(postpone_escalations(self.dialect, ids, due_at))

    async def told(self, pairs: Sequence[tuple[str, Episode]]) -> set[tuple[str, Episode]]:
        if not pairs:
            return set()
        found: set[tuple[str, Episode]] = await self._script(told(self.dialect, pairs), read=True)
        return found

    async def escalations_of(self, fingerprints: Sequence[str]) -> list[StepRecord]:
        if not fingerprints:
            return []
        found: list[StepRecord] = await self._script(escalations_of(self.dialect, fingerprints), read=True)
        return found
