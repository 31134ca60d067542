"""The Store's heartbeat contract, on SQLite and PostgreSQL: state survives a restart, each notice is written once."""

from __future__ import annotations

import asyncio
import time
from datetime import timedelta

from relay.config.heartbeat import HeartbeatConfig
from relay.heartbeat.notice import notice_group
from relay.store import open_store
from relay.store.base import Candidate, HeartbeatState, Store
from relay.store.records import HistoryFilter

WATCH = {"watchdog": 300.0}  # name -> max_silence, as relay.heartbeat.switch checks it
BEAT = HeartbeatConfig.model_validate({"name": "watchdog", "matchers": ['alertname="Watchdog"'],
                                       "max_silence": "5m", "receivers": ["slack-alerts"]})


def notice(missing_since: float, returned_at: float | None = None, receivers: tuple[str, ...] = ("slack-alerts",)
           ) -> list[Candidate]:
    group = notice_group(BEAT, missing_since, None, missing_since, returned_at)
    return [Candidate(r, "slack", group, (timedelta(days=1),), timedelta(hours=24)) for r in receivers]


async def state(store: Store, name: str = "watchdog") -> HeartbeatState:
    [found] = [s for s in await store.heartbeats({}, time.time()) if s.name == name]
    return found


async def test_watching_starts_once_and_arrivals_only_move_forward(store: Store) -> None:
    now = time.time()
    assert await store.heartbeats(WATCH, now) == [HeartbeatState("watchdog", None, now, None)]
    assert await store.heartbeats(WATCH, now + 60) == [HeartbeatState("watchdog", None, now, None)]
    await store.heartbeat_seen(["watchdog"], now + 10)
    await store.heartbeat_seen(["watchdog"], now + 5)  # a replica with a slower clock
    assert (await state(store)).last_seen == now + 10
    await store.heartbeat_seen(["other"], now + 20)  # seen before it was watched: watched from then
    assert await state(store, "other") == HeartbeatState("other", now + 20, now + 20, None)


async def test_missing_is_written_once_with_its_notice(store: Store) -> None:
    now = time.time()
    await store.heartbeat_seen(["watchdog"], now)
    # Seen after the silence began: not missing.
    assert await store.heartbeat_missing("watchdog", now - 1, now + 1, notice(now + 1)) is None
    results = await asyncio.gather(*(store.heartbeat_missing("watchdog", now + 300, now + 301, notice(now + 301,
                                                             receivers=("slack-alerts", "ops-email")))
                                     for _ in range(10)))
    written = [r for r in results if r is not None]
    assert len(written) == 1
    assert [(e.receiver, e.alerts_enqueued) for e in written[0]] == [("slack-alerts", 1), ("ops-email", 1)]
    assert (await state(store)).missing_since == now + 301
    history = await store.history(HistoryFilter())
    assert sorted((row["receiver"], row["status"], row["alertnames"]) for row in history) == [
        ("ops-email", "firing", ["RelayHeartbeatMissing"]), ("slack-alerts", "firing", ["RelayHeartbeatMissing"])]
    claimed = (await store.claim("w", 10, now + 302, 60)).claimed
    assert {c.notification.alerts[0].labels["heartbeat"] for c in claimed} == {"watchdog"}
    assert await store.heartbeat_missing("watchdog", now + 900, now + 901, notice(now + 901)) is None


async def test_never_seen_goes_missing_after_the_silence_from_when_it_was_watched(store: Store) -> None:
    now = time.time()
    await store.heartbeats(WATCH, now)
    assert await store.heartbeat_missing("watchdog", now - 1, now + 299, notice(now + 299)) is None
    assert await store.heartbeat_missing("watchdog", now + 1, now + 301, notice(now + 301)) is not None


async def test_recovered_only_after_it_arrives_again_and_once(store: Store) -> None:
    now = time.time()
    await store.heartbeats(WATCH, now)
    await store.heartbeat_missing("watchdog", now + 1, now + 301, notice(now + 301))
    assert await store.heartbeat_recovered("watchdog", now + 301, now + 302, notice(now + 301, now + 302)) is None
    await store.heartbeat_seen(["watchdog"], now + 400)
    assert await store.heartbeat_recovered("watchdog", now + 300, now + 401, notice(now + 300, now + 400)) is None
    results = await asyncio.gather(*(store.heartbeat_recovered("watchdog", now + 301, now + 401,
                                                               notice(now + 301, now + 400)) for _ in range(5)))
    [written] = [r for r in results if r is not None]
    assert [(e.receiver, e.alerts_enqueued) for e in written] == [("slack-alerts", 1)]
    assert await state(store) == HeartbeatState("watchdog", now + 400, now, None)
    history = await store.history(HistoryFilter())
    assert [row["status"] for row in history] == ["resolved", "firing"]


async def test_state_survives_a_restart(database_url: str) -> None:
    now = time.time()
    first = open_store(database_url)
    await first.open()
    await first.heartbeat_seen(["watchdog"], now)
    await first.heartbeat_missing("watchdog", now + 1, now + 301, notice(now + 301))
    await first.close()
    second = open_store(database_url)
    await second.open()
    try:
        assert await second.heartbeats(WATCH, now + 200) == [HeartbeatState("watchdog", now, now, now + 301, now)]
        assert await second.heartbeat_missing("watchdog", now + 600, now + 900, notice(now + 900)) is None
    finally:
        await second.close()


async def test_the_clock_is_the_stores_and_only_a_gap_longer_than_max_silence_restarts_it(store: Store) -> None:
    """Issue 20 #9: each process used to wait max_silence from its own start. The store keeps when the heartbeat was
    last checked; a restart (or a crash loop) keeps the clock, and only a gap no relay checked it in for longer than
    its max_silence (nobody could hear it then) watches it again."""
    now = time.time()
    await store.heartbeats(WATCH, now)
    await store.heartbeat_seen(["watchdog"], now + 10)
    for later in (100, 200, 290, 310):  # checks by processes that each lived a minute and a half: no gap of 5m
        assert await store.heartbeats(WATCH, now + later) == [HeartbeatState("watchdog", now + 10, now, None)]
    assert await store.heartbeat_missing("watchdog", now + 311 - 300, now + 311, notice(now + 311)) is not None
    assert (await state(store)).heard_at == now + 10

    other = {"other": 60.0}
    await store.heartbeats(other, now)
    await store.heartbeat_seen(["other"], now + 5)
    # No relay checked it for 10 minutes (all were stopped): watched again from this check.
    assert await store.heartbeats(other, now + 605) == [
        HeartbeatState("other", now + 5, now + 605, None), HeartbeatState("watchdog", now + 10, now, now + 311,
                                                                          now + 10)]
    assert await store.heartbeat_missing("other", now + 606 - 60, now + 606, notice(now + 606)) is None
    assert await store.heartbeat_missing("other", now + 666 - 60, now + 666, notice(now + 666)) is not None
    # While missing it keeps when it was last heard of: the return says how long none came (issue 22).
    assert (await state(store, "other")).heard_at == now + 5
