"""Claim order when a destination cannot take every due lane head: the most severe first, then the oldest, and
a lane still in arrival order (both stores)."""

from __future__ import annotations

import time

from relay.alerts import WebhookMessage
from relay.alerts.priority import Priority
from relay.store.base import Store
from tests.doubles import candidate, group


async def enqueue(store: Store, message: WebhookMessage, now: float, priority: Priority | None = None) -> int:
    cand = candidate("slack-alerts", message)
    if priority is not None:
        cand = type(cand)(cand.receiver, cand.integration, cand.group, cand.repeat_intervals, cand.give_up_after,
                          priority)
    [done] = await store.enqueue([cand], now)
    assert done.notification_id is not None
    return done.notification_id


def names(claimed: list) -> list[str]:  # type: ignore[type-arg]
    return [c.notification.alerts[0].name for c in claimed]


async def test_claims_take_lane_heads_most_severe_first_then_oldest(store: Store) -> None:
    now = time.time()
    for i, severity in enumerate(["warning", "info", "critical", "page-me", "warning", "critical"]):
        await enqueue(store, group(f"g{i}", f"A{i}", severity=severity), now)
    claim = await store.claim("w1", 3, now, 60)
    assert names(claim.claimed) == ["A2", "A5", "A0"]
    claim = await store.claim("w1", 10, now, 60)
    assert names(claim.claimed) == ["A4", "A1", "A3"]  # then info, then a severity outside the order


async def test_only_lane_heads_compete_a_critical_waits_for_its_lanes_warning(store: Store) -> None:
    """A resolve or a critical queued behind a warning of its own lane never overtakes it."""
    now = time.time()
    await enqueue(store, group("lane", "Warn", severity="warning"), now)
    await enqueue(store, group("lane", "Crit", severity="critical"), now)
    await enqueue(store, group("lane", "Warn", status="resolved", severity="warning"), now)
    await enqueue(store, group("other", "Info", severity="info"), now)
    first = await store.claim("w1", 1, now, 60)
    assert names(first.claimed) == ["Warn"]  # the head of the lane holding a critical is only a warning
    second = await store.claim("w1", 10, now, 60)
    assert names(second.claimed) == ["Info"]  # the lane waits for its head to finish


def mixed(group_key: str, *alerts: tuple[str, str]) -> WebhookMessage:
    """A group of (alertname, severity) alerts."""
    base = group(group_key, *(name for name, _ in alerts))
    return base.model_copy(update={"alerts": [a.model_copy(update={"labels": {**a.labels, "severity": severity}})
                                              for a, (_, severity) in zip(base.alerts, alerts, strict=True)]})


async def test_a_group_ranks_by_its_most_severe_alert_that_survived_dedup(store: Store) -> None:
    now = time.time()
    await enqueue(store, mixed("s", ("Severe", "critical")), now)
    await enqueue(store, mixed("p", ("Plain", "warning")), now)
    await enqueue(store, mixed("m", ("Mild", "warning"), ("Severe", "critical")), now)  # Severe: notified already
    await enqueue(store, mixed("m2", ("Mild2", "warning"), ("Severe2", "critical")), now)
    assert names((await store.claim("w1", 10, now, 60)).claimed) == ["Severe", "Mild2", "Plain", "Mild"]


async def test_the_order_and_label_are_configurable(store: Store) -> None:
    now = time.time()
    order = Priority(label="priority", order=("P1", "P2"))

    def labelled(key: str, name: str, value: str) -> WebhookMessage:
        base = group(key, name, severity="critical")
        return base.model_copy(update={"alerts": [base.alerts[0].model_copy(
            update={"labels": {**base.alerts[0].labels, "priority": value}})]})

    await enqueue(store, labelled("a", "Low", "P2"), now, order)
    await enqueue(store, labelled("b", "High", "P1"), now, order)
    await enqueue(store, group("c", "Unlabelled", severity="critical"), now, order)
    assert names((await store.claim("w1", 10, now, 60)).claimed) == ["High", "Low", "Unlabelled"]
