"""The Store's escalation contract, on SQLite and PostgreSQL: timers survive a restart, a step is sent once (also by
two stores on one database), and an acknowledge, a silence or a resolve ends what is left."""

from __future__ import annotations

import asyncio
import time
from datetime import timedelta
from typing import Any

from relay.alerts import Alert, Escalation, WebhookMessage
from relay.alerts.fingerprint import fingerprint
from relay.store import open_store
from relay.store.base import Candidate, Store
from relay.store.records import HistoryFilter, Resolved, Timer


def group(name: str = "PodDown", status: str = "firing", pod: str = "api-1") -> WebhookMessage:
    labels = {"alertname": name, "severity": "critical", "pod": pod}
    alert: dict[str, Any] = {"status": status, "labels": labels, "annotations": {"summary": f"{pod} is down"},
                             "startsAt": "2026-11-26T07:00:00.123456789Z",
                             "endsAt": "2026-11-26T08:00:00Z" if status == "resolved" else "0001-01-01T00:00:00Z",
                             "fingerprint": fingerprint(labels)}
    return WebhookMessage.model_validate({"version": "4", "groupKey": '{}:{alertname="PodDown"}', "status": status,
                                          "receiver": "relay", "alerts": [alert], "externalURL": "http://am:9093"})


def timers(now: float, message: WebhookMessage | None = None) -> list[Timer]:
    message = message or group()
    return [Timer(message, 1, 2, 10.0, ("pagerduty-oncall",), now + 10),
            Timer(message, 2, 2, 30.0, ("ops-email", "pagerduty-oncall"), now + 30)]


def notice(message: WebhookMessage, receivers: tuple[str, ...] = ("pagerduty-oncall",)) -> list[Candidate]:
    return [Candidate(r, "pagerduty", message, (timedelta(0),), timedelta(hours=24)) for r in receivers]


def alert(message: WebhookMessage) -> Alert:
    return message.alerts[0]


async def test_steps_become_due_in_order_and_a_resend_keeps_the_first_clock(store: Store) -> None:
    now = time.time()
    assert await store.arm_escalations(timers(now), [], now) == Resolved()
    assert await store.arm_escalations(timers(now + 60), [], now + 60) == Resolved()  # Alertmanager sends it again
    assert await store.due_escalations(now + 9.9, 10) == []
    [first] = await store.due_escalations(now + 10, 10)
    assert (first.timer.step, first.timer.receivers, first.timer.due_at, first.armed_at) == (
        1, ("pagerduty-oncall",), now + 10, now)
    assert first.timer.group == group()
    assert [d.timer.step for d in await store.due_escalations(now + 30, 10)] == [1, 2]


async def test_a_step_is_sent_once_with_its_notice_marked(store: Store) -> None:
    now = time.time()
    await store.arm_escalations(timers(now), [], now)
    [due] = await store.due_escalations(now + 10, 10)
    marker = Escalation(1, 2, 10.0)
    results = await asyncio.gather(*(store.escalate([due.id], now + 10, notice(due.timer.group), marker)
                                     for _ in range(5)))
    [written] = [r for r in results if r is not None]
    assert [(e.receiver, e.alerts_enqueued) for e in written] == [("pagerduty-oncall", 1)]
    assert [d.timer.step for d in await store.due_escalations(now + 30, 10)] == [2]
    [row] = await store.history(HistoryFilter())
    assert row["escalation"] == {"step": 1, "steps": 2, "after_seconds": 10.0}
    [claimed] = (await store.claim("w", 10, now + 11, 60)).claimed
    assert claimed.notification.escalation == marker
    steps = await store.escalations_of([alert(group()).fingerprint])
    assert [(s.step, s.state, s.notifications) for s in steps] == [(1, "sent", (written[0].notification_id,)),
                                                                    (2, "pending", ())]


async def test_an_escalated_alert_passes_dedup_although_its_receiver_heard_of_it(store: Store) -> None:
    now = time.time()
    await store.enqueue(notice(group(), ("ops-email",)), now)
    await store.arm_escalations(timers(now), [], now)
    due = await store.due_escalations(now + 30, 10)
    [written] = [e for e in await store.escalate([due[1].id], now + 30, notice(group(), ("ops-email",)),
                                                 Escalation(2, 2, 30.0)) or []]
    assert written.alerts_enqueued == 1


async def test_acknowledge_cancels_what_is_left_once(store: Store) -> None:
    now = time.time()
    await store.arm_escalations(timers(now), [], now)
    [due] = await store.due_escalations(now + 10, 10)
    await store.escalate([due.id], now + 10, notice(due.timer.group), Escalation(1, 2, 10.0))
    fp = alert(group()).fingerprint
    assert await store.cancel_escalations([fp], "acknowledged", now + 12) == 1
    assert await store.cancel_escalations([fp], "acknowledged", now + 13) == 0
    assert await store.due_escalations(now + 60, 10) == []
    assert [(s.step, s.state, s.reason, s.ended_at) for s in await store.escalations_of([fp])] == [
        (1, "sent", "", now + 10), (2, "cancelled", "acknowledged", now + 12)]
    # A step cancelled meanwhile is not sent by a checker that read it as due before.
    other = group(pod="api-2")
    await store.arm_escalations(timers(now, other), [], now)
    [due] = await store.due_escalations(now + 10, 10)
    assert await store.cancel_escalations([alert(other).fingerprint], "silenced", now + 10) == 2
    assert await store.escalate([due.id], now + 10, notice(other), Escalation(1, 2, 10.0)) is None
    assert [row["receiver"] for row in await store.history(HistoryFilter())] == ["pagerduty-oncall"]


async def test_a_resolve_ends_the_escalation_and_names_where_it_went(store: Store) -> None:
    now = time.time()
    await store.arm_escalations(timers(now), [], now)
    [due] = await store.due_escalations(now + 10, 10)
    await store.escalate([due.id], now + 10, notice(due.timer.group), Escalation(1, 2, 10.0))
    resolved = alert(group(status="resolved"))
    done = await store.arm_escalations([], [resolved], now + 20)
    sent_to = {(resolved.fingerprint, "2026-11-26T07:00:00.123456+00:00"): ["pagerduty-oncall"]}
    assert done == Resolved(1, sent_to)
    assert await store.due_escalations(now + 60, 10) == []
    # A resolve again (Alertmanager re-sends it): nothing left to end, still says where the step went.
    assert await store.arm_escalations([], [resolved], now + 30) == Resolved(0, sent_to)
    assert await store.arm_escalations([], [alert(group(status="resolved", pod="never-armed"))], now) == Resolved()


async def test_a_firing_after_its_resolve_is_escalated_anew(store: Store) -> None:
    """Issue 20: relay (or Alertmanager) showed the episode resolved, then it fires again: a new page (the store's
    dedup delivers it), so its escalation starts again from that firing, whatever its steps were (sent, cancelled by
    a silence, or by the resolve); the resolve after it ends that escalation and names where it went."""
    now = time.time()
    await store.arm_escalations(timers(now), [], now)
    [due] = await store.due_escalations(now + 10, 10)
    await store.escalate([due.id], now + 10, notice(due.timer.group), Escalation(1, 2, 10.0))
    assert await store.cancel_escalations([alert(group()).fingerprint], "silenced", now + 15) == 1
    resolved = alert(group(status="resolved"))
    assert await store.arm_escalations([], [resolved], now + 20) == Resolved(0, {
        (resolved.fingerprint, "2026-11-26T07:00:00.123456+00:00"): ["pagerduty-oncall"]})
    await store.arm_escalations(timers(now + 100), [], now + 100)  # the same episode fires again
    assert await store.due_escalations(now + 109.9, 10) == []
    assert [(d.timer.step, d.armed_at) for d in await store.due_escalations(now + 130, 10)] == [
        (1, now + 100), (2, now + 100)]
    await store.arm_escalations(timers(now + 160), [], now + 160)  # a re-send of that firing keeps its clock
    assert [d.armed_at for d in await store.due_escalations(now + 130, 10)] == [now + 100, now + 100]
    assert await store.arm_escalations([], [resolved], now + 200) == Resolved(2, {})


async def test_timers_survive_a_restart(database_url: str) -> None:
    now = time.time()
    first = open_store(database_url)
    await first.open()
    await first.arm_escalations(timers(now), [], now)
    await first.close()
    second = open_store(database_url)
    await second.open()
    try:
        assert [(d.timer.step, d.timer.due_at) for d in await second.due_escalations(now + 30, 10)] == [
            (1, now + 10), (2, now + 30)]
    finally:
        await second.close()


async def test_two_stores_on_one_database_send_a_step_once(database_url: str) -> None:
    """Two relays' stores (replicas on PostgreSQL; on SQLite, one file's two handles) race for the same due steps."""
    now = time.time()
    a, b = open_store(database_url), open_store(database_url)
    await a.open()
    await b.open()
    try:
        await a.arm_escalations(timers(now), [], now)
        await b.arm_escalations(timers(now + 1), [], now + 1)
        due_a, due_b = await a.due_escalations(now + 30, 10), await b.due_escalations(now + 30, 10)
        results = await asyncio.gather(*(s.escalate([d.id], now + 30, notice(d.timer.group), Escalation(1, 2, 10.0))
                                         for s, due in ((a, due_a), (b, due_b)) for d in due))
        assert sum(r is not None for r in results) == 2  # each of the two steps, by one of them
        assert len(await a.history(HistoryFilter())) == 2
    finally:
        await a.close()
        await b.close()


async def test_pruning_forgets_finished_steps_only(store: Store) -> None:
    now = time.time()
    await store.arm_escalations(timers(now), [], now)
    await store.cancel_escalations([alert(group()).fingerprint], "acknowledged", now + 1)
    await store.arm_escalations(timers(now, group(pod="api-2")), [], now)
    await store.prune(now + 100, now + 100)
    assert await store.escalations_of([alert(group()).fingerprint]) == []
    assert len(await store.escalations_of([alert(group(pod="api-2")).fingerprint])) == 2


async def test_a_mutes_hold_is_sent_unmarked_and_a_resolve_says_whom_it_was_held_from(store: Store) -> None:
    """relay.stages.mute: a hold is a timer with a negative step. Sent, its notification is not an escalation; a
    resolve while it is pending cancels it and names its receivers; `told` reads the firing marks."""
    now = time.time()
    message = group()
    await store.arm_escalations([Timer(message, -1, 0, 0.0, ("slack-alerts",), now + 60)], [], now)
    [due] = await store.due_escalations(now + 60, 10)
    assert due.timer.step == -1
    written = await store.escalate([due.id], now + 60, notice(message, ("slack-alerts",)), None)
    assert written is not None and written[0].notification_id is not None
    [claimed] = (await store.claim("w", 10, now + 61, 60)).claimed
    assert (claimed.notification.receiver, claimed.notification.escalation) == ("slack-alerts", None)
    episode_key = next(iter((await store.arm_escalations([], [alert(group(status="resolved"))], now + 70)).sent_to))
    assert await store.told([("slack-alerts", episode_key), ("ops-email", episode_key)]) == {
        ("slack-alerts", episode_key)}

    other = group(pod="api-2")
    await store.arm_escalations([Timer(other, -2, 0, 0.0, ("ops-email",), now + 60)], [], now)
    done = await store.arm_escalations([], [alert(group(status="resolved", pod="api-2"))], now + 30)
    assert done.cancelled == 1 and list(done.held_from.values()) == [["ops-email"]]
    assert await store.told([("ops-email", key) for key in done.held_from]) == set()


async def test_a_step_due_while_muted_is_postponed(store: Store) -> None:
    now = time.time()
    await store.arm_escalations(timers(now), [], now)
    [first] = await store.due_escalations(now + 10, 10)
    await store.postpone_escalations([first.id], now + 70)
    assert [d.timer.step for d in await store.due_escalations(now + 69, 10)] == [2]  # due at now + 30
    assert [(d.timer.step, d.timer.due_at) for d in await store.due_escalations(now + 70, 10)] == [
        (2, now + 30), (1, now + 70)]
