"""Storms in the store (relay.storms): a fold marks what waits delivered in one summary, atomically, once."""

from __future__ import annotations

import asyncio
import time
from datetime import timedelta

from relay.alerts import WebhookMessage
from relay.store import open_store
from relay.store.base import Attempt, Candidate, Store
from relay.store.records import Fold, HistoryFilter
from relay.storms.fold import redraws, storm_of

HOUR = timedelta(hours=1)


def warning(i: int, severity: str = "warning", status: str = "firing", receiver: str = "slack-alerts",
            group: str | None = None) -> Candidate:
    labels = {"alertname": "HighLatency", "severity": severity, "pod": f"api-{i}"}
    alert = {"status": status, "labels": labels, "annotations": {"summary": f"pod api-{i} is slow"},
             "startsAt": "2026-11-20T10:00:00Z", "endsAt": "0001-01-01T00:00:00Z" if status == "firing"
             else "2026-11-20T10:05:00Z", "generatorURL": "", "fingerprint": f"fp{i:04d}"}
    body = WebhookMessage.model_validate({
        "version": "4", "groupKey": group or f'{{}}:{{pod="api-{i}"}}', "status": status, "receiver": "am",
        "alerts": [alert], "groupLabels": {"pod": f"api-{i}"}, "commonLabels": labels, "commonAnnotations": {},
        "externalURL": "http://am.example"})
    return Candidate(receiver, "slack", body, (HOUR,), timedelta(hours=24))


def fold(now: float, storm: object = None, receiver: str = "slack-alerts") -> Fold:
    return Fold(receiver, "slack", storm, now, ("critical",), 86400.0)  # type: ignore[arg-type]


async def test_a_fold_delivers_what_waits_in_one_summary(store: Store) -> None:
    now = time.time()
    written = await store.enqueue([warning(i) for i in range(20)] + [warning(99, "critical")], now)
    folded = await store.fold(fold(now + 1))
    assert folded is not None and (folded.notifications, folded.alerts) == (20, 20)
    [storm] = await store.storms()
    assert (storm.id, storm.receiver, storm.folded, storm.ended_at) == (folded.storm_id, "slack-alerts", 20, None)
    history = await store.history(HistoryFilter(summary=folded.summary_id, limit=1000))
    assert sorted(r["id"] for r in history) == sorted(w.notification_id for w in written[:20])
    assert {(r["state"], r["summary_id"]) for r in history} == {("delivered", folded.summary_id)}
    one = await store.detail(written[0].notification_id or 0)
    assert one is not None and one["attempt_log"][-1]["detail"] == f"in summary {folded.summary_id}"
    # What is left to send: the critical alone, and the summary, in a lane of its own.
    claimed = (await store.claim("w", 10, now + 2, 60)).claimed
    by_id = {c.notification.id: c.notification for c in claimed}
    assert set(by_id) == {written[20].notification_id, folded.summary_id}
    summary = by_id[folded.summary_id]
    assert storm_of(summary.lane) == folded.storm_id and len(summary.alerts) == 20
    assert storm_of(by_id[written[20].notification_id or 0].lane) is None
    shown = await store.detail(folded.summary_id)
    assert shown is not None and shown["folded"] == 20
    assert await store.storm_backlog(now + 10) == {"slack-alerts": 1}  # the critical; the summary is no backlog


async def test_a_lane_folds_up_to_what_is_sent_alone_and_not_while_its_head_is_sent(store: Store) -> None:
    now = time.time()
    lane_a = [warning(1, group="a"), warning(2, "critical", group="a"), warning(3, group="a")]
    lane_b = [warning(4, group="b"), warning(5, group="b")]
    in_b = await store.enqueue(lane_b, now)
    [head_b] = (await store.claim("w", 1, now, 60)).claimed
    in_a = await store.enqueue(lane_a, now)
    folded = await store.fold(fold(now + 1))
    assert folded is not None and folded.notifications == 1  # lane a's first; nothing of b (its head is in flight)
    [row] = await store.history(HistoryFilter(summary=folded.summary_id))
    assert row["id"] == in_a[0].notification_id and head_b.notification.id == in_b[0].notification_id


async def test_a_fold_takes_effect_once_across_replicas(store: Store, database_url: str) -> None:
    now = time.time()
    await store.enqueue([warning(i) for i in range(30)], now)
    other = open_store(database_url)
    await other.open()
    try:
        results = await asyncio.gather(store.fold(fold(now)), other.fold(fold(now)))
        assert sum(r is not None for r in results) == 1
        [storm] = await store.storms()
        again = await asyncio.gather(store.fold(fold(now + 5, storm)), other.fold(fold(now + 5, storm)))
        assert again == [None, None]  # nothing waits any more
        await store.enqueue([warning(i) for i in range(30, 40)], now + 6)
        again = await asyncio.gather(store.fold(fold(now + 7, storm)), other.fold(fold(now + 7, storm)))
        assert sum(r is not None for r in again) == 1
        [storm] = await store.storms()
        assert storm.folded == 40
        assert not await other.storm_end(storm.id, storm.folded_at - 1, now + 50)  # folded since: not ended
        assert await store.storm_end(storm.id, storm.folded_at, now + 50)
        assert await store.storms() == []
    finally:
        await other.close()


async def test_the_view_of_a_summary_holds_the_storm_so_far_and_its_message(store: Store) -> None:
    now = time.time()
    await store.enqueue([warning(i) for i in range(3)], now)
    first = await store.fold(fold(now))
    assert first is not None
    [storm] = await store.storms()
    await store.enqueue([warning(i) for i in range(3, 5)], now + 1)
    second = await store.fold(fold(now + 1, storm))
    assert second is not None
    [claimed, *_] = (await store.claim("w", 10, now + 2, 60)).claimed
    lane = claimed.notification.lane
    view = await store.storm_view(first.summary_id, lane)
    assert view is not None and view.first and len(view.alerts) == 3 and view.storm.ref is None
    await store.storm_remember(storm.id, '{"channel": "C1", "ts": "1.2"}')
    view = await store.storm_view(second.summary_id, lane)
    assert view is not None and not view.first and len(view.alerts) == 5
    assert view.storm.ref == '{"channel": "C1", "ts": "1.2"}'


async def test_a_resolve_of_a_folded_alert_is_new_and_a_repeat_of_its_firing_is_not(store: Store) -> None:
    now = time.time()
    await store.enqueue([warning(1)], now)
    assert await store.fold(fold(now)) is not None
    [again] = await store.enqueue([warning(1)], now + 1)
    [resolve] = await store.enqueue([warning(1, status="resolved")], now + 2)
    assert again.notification_id is None and resolve.notification_id is not None


async def test_ended_storms_are_pruned_with_the_marks(store: Store) -> None:
    now = time.time()
    await store.enqueue([warning(1)], now)
    assert await store.fold(fold(now)) is not None
    [storm] = await store.storms()
    assert await store.storm_end(storm.id, storm.folded_at, now + 1)
    await store.prune(now + 2, now + 2)
    await store.enqueue([warning(2)], now + 3)
    assert await store.fold(fold(now + 3)) is not None  # a new storm opens
    [fresh] = await store.storms()
    assert fresh.id != storm.id


async def test_an_ending_storm_can_enqueue_the_redraw_of_its_message(store: Store) -> None:
    now = time.time()
    await store.enqueue([warning(i) for i in range(3)], now)
    folded = await store.fold(fold(now))
    assert folded is not None
    [storm] = await store.storms()
    ended = await store.storm_end(storm.id, storm.folded_at, now + 40, redraw=True)
    assert ended is not None and ended.redraw_id is not None
    [summary] = (await store.claim("w", 10, now + 41, 60)).claimed  # the redraw waits in its lane behind it
    assert summary.notification.id == folded.summary_id and not redraws(summary.notification.group)
    await store.complete(folded.summary_id, "w", Attempt(now + 41, 0.1, "delivered"))
    [redraw] = [c.notification for c in (await store.claim("w", 10, now + 42, 60)).claimed]
    assert redraw.id == ended.redraw_id and redraws(redraw.group) and redraw.lane == summary.notification.lane
    view = await store.storm_view(redraw.id, redraw.lane)
    assert view is not None and view.storm.ended_at == now + 40
    quiet = await store.storm_end(storm.id, storm.folded_at, now + 41)
    assert quiet is None  # ended already
