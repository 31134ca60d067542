"""The Store's heartbeat contract, on SQLite and PostgreSQL: state survives a restart, each notice is written once."""

from __future__ import annotations

import asyncio
import time
from datetime import timedelta

from relay.heartbeat import HeartbeatConfig, notice_group
from relay.store import open_store
from relay.store.base import Candidate, HeartbeatState, HistoryFilter, Store

BEAT = HeartbeatConfig.model_validate({"name": "watchdog", "matchers": ['alertname="Watchdog"'],
                                       "max_silence": "5m", "receivers": ["slack-alerts"]})


def notice(missing_since: float, returned_at: float | None = None, receivers: tuple[str, ...] = ("slack-alerts",)
           ) -> list[Candidate]:
    group = notice_group(BEAT, missing_since, None, missing_since, returned_at)
    return [Candidate(r, "slack", group, (timedelta(days=1),), timedelta(hours=24)) for r in receivers]


async def state(store: Store, name: str = "watchdog") -> HeartbeatState:
    [found] = [s for s in await store.heartbeats((), time.time()) if s.name == name]
    return found


async def test_watching_starts_once_and_arrivals_only_move_forward(store: Store) -> None:
    now = time.time()
    assert await store.heartbeats(["watchdog"], now) == [HeartbeatState("watchdog", None, now, None)]
    assert await store.heartbeats(["watchdog"], now + 60) == [HeartbeatState("watchdog", None, now, None)]
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
    await store.heartbeats(["watchdog"], now)
    assert await store.heartbeat_missing("watchdog", now - 1, now + 299, notice(now + 299)) is None
    assert await store.heartbeat_missing("watchdog", now + 1, now + 301, notice(now + 301)) is not None


async def test_recovered_only_after_it_arrives_again_and_once(store: Store) -> None:
    now = time.time()
    await store.heartbeats(["watchdog"], now)
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
        assert await second.heartbeats(["watchdog"], now + 500) == [HeartbeatState("watchdog", now, now, now + 301)]
        assert await second.heartbeat_missing("watchdog", now + 600, now + 900, notice(now + 900)) is None
    finally:
        await second.close()
