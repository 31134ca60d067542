"""What both stores do the same way, written once above a thin per-dialect layer (relay.store.script).

By concern: history (replay, history, detail, purge, prune), actions (clicks, silence watches), storms and
escalations each hold their scripts and the Store methods that run them; Scripted joins them. Here too: the claim's
rate-limit shares and the outcome statements' parameters, which both stores' hot paths (enqueue, claim,
outcomes: each dialect does those its own fastest way) share.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from relay.alerts import State
from relay.errors import Reason
from relay.pacing.ratelimit import Budget, Grant, by_destination
from relay.store import script
from relay.store.actions import ActionScripts
from relay.store.base import Attempt
from relay.store.escalations import EscalationScripts
from relay.store.history import HistoryScripts
from relay.store.maintenance import MaintenanceScripts
from relay.store.rows import attempt_error
from relay.store.storms import StormScripts

Dialect = script.Dialect
Script = script.Script

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


class Scripted(HistoryScripts, ActionScripts, StormScripts, EscalationScripts, MaintenanceScripts):
    """The Store methods that are a script: a store supplies its dialect and how it runs a script."""
