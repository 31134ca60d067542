"""Rate limits taken before a claim (both stores): a destination's token goes to its most severe due lane head,
one without a token is not claimed for (its rows stay untouched) and says when its next token is due, a handed-off
notification pays or goes back as it was; on PostgreSQL, every replica draws on one bucket per destination."""

from __future__ import annotations

import time

from relay.pacing.ratelimit import Budget
from relay.store.base import Handoff, Store
from relay.store.records import HistoryFilter
from tests.doubles import candidate, group

SLOW = Budget("slack:abc123", rate=0.5, burst=2)


async def enqueue(store: Store, key: str, name: str, severity: str, now: float, receiver: str = "slack-alerts") -> int:
    [done] = await store.enqueue([candidate(receiver, group(key, name, severity=severity))], now)
    assert done.notification_id is not None
    return done.notification_id


async def test_a_destinations_tokens_go_to_its_most_severe_heads_and_the_rest_stay_untouched(store: Store) -> None:
    now = time.time()
    for i in range(5):
        await enqueue(store, f"w{i}", f"Warn{i}", "warning", now)
    await enqueue(store, "c", "Crit", "critical", now)
    await enqueue(store, "other", "Other", "info", now, receiver="ops-email")  # no budget: not limited
    claim = await store.claim("w1", 10, now, 60, budgets={"slack-alerts": SLOW})
    assert sorted(c.notification.alerts[0].name for c in claim.claimed) == ["Crit", "Other", "Warn0"]
    assert 0 < claim.waits[SLOW.destination] <= 2.0  # the burst is spent: the next token in 1/rate
    again = await store.claim("w1", 10, now, 60, budgets={"slack-alerts": SLOW})
    assert again.claimed == [] and SLOW.destination in again.waits
    claimed = {c.notification.id for c in claim.claimed}
    waiting = [r for r in await store.history(HistoryFilter(state="pending")) if r["id"] not in claimed]
    assert len(waiting) == 4 and all(r["attempts"] == 0 and r["last_error"] is None for r in waiting)


async def test_a_claim_without_a_budget_for_a_receiver_claims_as_before(store: Store) -> None:
    now = time.time()
    for i in range(4):
        await enqueue(store, f"w{i}", f"Warn{i}", "warning", now)
    claim = await store.claim("w1", 10, now, 60, budgets={"someone-else": SLOW})
    assert len(claim.claimed) == 4 and claim.waits == {}


async def test_spend_takes_whole_tokens_up_to_the_burst_then_says_when_the_next_is_due(store: Store) -> None:
    [first] = (await store.spend({SLOW: 3})).values()
    assert first.granted == 2 and 1.5 < first.wait <= 2.0
    [second] = (await store.spend({SLOW: 1})).values()
    assert second.granted == 0 and second.wait > 0
    fast = Budget("pagerduty:def456", rate=1000.0, burst=1)
    assert (await store.spend({fast: 1}))[fast.destination].granted == 1


async def test_release_gives_a_handed_off_notification_back_as_it_was(store: Store) -> None:
    now = time.time()
    [done] = await store.enqueue([candidate("slack-alerts", group("g", "Warn", severity="warning"))], now,
                                 Handoff("w1", 60, 1))
    assert done.claimed is not None
    await store.release("w1", [done.claimed.notification.id])
    [again] = (await store.claim("w2", 10, now, 60)).claimed
    assert again.notification.id == done.claimed.notification.id
    detail = await store.detail(again.notification.id)
    assert detail is not None and detail["attempt_log"] == [] and detail["attempts"] == 0
