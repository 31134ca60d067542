"""The Store's action contract, on SQLite and PostgreSQL: a replay or double click writes nothing, rows are outbox
work like notifications (claimed, leased, shown in history), and a silence watch is taken by one checker at a time."""

from __future__ import annotations

import asyncio
import time

from relay.actions.model import ACTION, Action, action_of, once_mark, request_mark, row
from relay.store.base import Attempt, Handoff, Store
from relay.store.records import HistoryFilter, Watch
from tests.fakes import webhook_message

GROUP = webhook_message("firing-poddown")


def silence(version: str = "n1", clicked_at: float = 0.0) -> Action:
    return Action(kind="silence", user="U0KIM", user_name="kim", slack_receiver="slack-alerts", channel="C1",
                  ts="1.000001", clicked_at=clicked_at or time.time(), until=time.time() + 3600, version=version)


async def test_a_click_is_written_once_and_claimed_like_a_notification(store: Store) -> None:
    now = time.time()
    action = silence()
    rows = [row("slack-alerts", "r1", GROUP, action, 3600), row("pagerduty-oncall", "r1", GROUP, action, 3600)]
    acted = await store.act([request_mark("v0=aa"), once_mark(action)], rows, now)
    assert acted.refused is None and [e.receiver for e in acted.enqueued] == ["slack-alerts", "pagerduty-oncall"]

    replayed = await store.act([request_mark("v0=aa"), once_mark(action)], rows, now + 1)
    assert replayed.refused == request_mark("v0=aa") and replayed.enqueued == []
    double = await store.act([request_mark("v0=bb"), once_mark(silence())], rows, now + 1)
    assert double.refused == once_mark(action)
    again = [row("slack-alerts", "r2", GROUP, silence(version="a7"), 3600)]
    redrawn = await store.act([request_mark("v0=cc"), once_mark(silence(version="a7"))], again, now + 2)
    assert redrawn.refused is None and len(redrawn.enqueued) == 1

    history = await store.history(HistoryFilter())
    assert sorted((h["receiver"], h["integration"], h["state"]) for h in history) == [
        ("pagerduty-oncall", ACTION, "pending"), ("slack-alerts", ACTION, "pending"),
        ("slack-alerts", ACTION, "pending")]
    claimed = (await store.claim("w", 10, now + 3, 60)).claimed
    assert len(claimed) == 3  # each click's row is the head of a lane of its own
    first = next(c for c in claimed if c.notification.id == acted.enqueued[0].notification_id)
    assert action_of(first.notification) == action
    assert first.notification.alerts == GROUP.alerts
    await store.complete(first.notification.id, "w", Attempt(now + 3, 0.1, "delivered"))
    detail = await store.detail(first.notification.id)
    assert detail is not None and detail["state"] == "delivered" and detail["integration"] == ACTION
    assert detail["action"]["kind"] == "silence" and detail["action"]["user"] == "U0KIM"


async def test_replays_stay_refused_until_retention_forgets_them(store: Store) -> None:
    now = time.time()
    action = silence()
    rows = [row("slack-alerts", "r1", GROUP, action, 3600)]
    assert (await store.act([request_mark("v0=aa")], rows, now)).refused is None
    await store.prune(now - 10, now - 10)  # younger than the horizon: kept
    assert (await store.act([request_mark("v0=aa")], rows, now)).refused is not None
    await store.prune(now - 10, now + 10)
    assert (await store.act([request_mark("v0=aa")], rows, now)).refused is None


async def test_a_handoff_leases_the_rows_to_its_owner(store: Store) -> None:
    now = time.time()
    rows = [row("slack-alerts", "r1", GROUP, silence(), 3600)]
    acted = await store.act(["m1"], rows, now, Handoff("owner-1", 60.0, 4, {"slack-alerts": 1}))
    [written] = acted.enqueued
    assert written.claimed is not None and written.claimed.notification.integration == ACTION
    assert (await store.claim("other", 10, now + 1, 60)).claimed == []  # leased: nobody else sends it


async def test_silence_watches_are_taken_by_one_check_at_a_time(store: Store) -> None:
    now = time.time()
    watch = Watch("slack-alerts", "s-1", GROUP.model_dump_json(), now + 3600)
    await store.watch_silence(watch, now)
    await store.watch_silence(Watch("slack-alerts", "s-old", "{}", now - 1), now)
    taken = await asyncio.gather(*(store.watches_due(now + 1, now + 61, 10) for _ in range(5)))
    assert sorted(w.silence_id for found in taken for w in found) == ["s-1"]  # once; the ended one forgotten
    assert await store.watches_due(now + 30, now + 90, 10) == []
    [again] = await store.watches_due(now + 62, now + 122, 10)
    assert again == watch
    await store.unwatch_silence("slack-alerts", "s-1")
    assert await store.watches_due(now + 200, now + 260, 10) == []
