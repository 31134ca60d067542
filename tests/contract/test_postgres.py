"""What only a shared store must do: several relay replicas on one PostgreSQL outbox."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import pytest

from relay.errors import StoreUnavailable
from relay.pacing.ratelimit import Budget
from relay.store import open_store
from relay.store.base import Attempt, Store
from relay.store.records import HistoryFilter
from tests.contract.test_heartbeats import notice
from tests.contract.test_store import candidate
from tests.doubles import candidate as one_alert
from tests.doubles import group
from tests.helpers import postgres_database


@pytest.fixture
async def url() -> AsyncIterator[str]:
    async with postgres_database() as database:
        yield database


async def opened(url: str) -> Store:
    store = open_store(url)
    await store.open()
    return store


async def test_replicas_never_claim_the_same_notification(url: str) -> None:
    a, b = await opened(url), await opened(url)
    try:
        now = time.time()
        names = ["firing-poddown.json", "firing-highlatency-group2.json", "firing-higherrorrate.json"]
        for i in range(20):
            await a.enqueue([candidate(names[i % 3], receiver=f"receiver-{i}")], now)
        claims = await asyncio.gather(*(s.claim(owner, 5, now, 60) for _ in range(4)
                                        for s, owner in ((a, "replica-a"), (b, "replica-b"))))
        ids = [c.notification.id for claim in claims for c in claim.claimed]
        assert len(ids) == len(set(ids)) == 20
    finally:
        await a.close()
        await b.close()


async def test_replicas_receiving_one_webhook_notify_once(url: str) -> None:
    a, b = await opened(url), await opened(url)
    try:
        now = time.time()
        results = await asyncio.gather(*(s.enqueue([candidate("firing-highlatency-group2.json")], now)
                                         for s in (a, b) for _ in range(10)))
        assert sum(r[0].alerts_enqueued for r in results) == 2
        assert len([r for r in results if r[0].notification_id is not None]) == 1
    finally:
        await a.close()
        await b.close()


async def test_start_frees_leases_of_a_dead_replica_but_not_of_a_live_one(url: str) -> None:
    live, dying = await opened(url), await opened(url)
    now = time.time()
    await live.enqueue([candidate("firing-poddown.json")], now)
    await live.enqueue([candidate("firing-highlatency-group2.json")], now)
    [held] = (await live.claim("live-owner", 1, now, 600)).claimed
    [orphan] = (await dying.claim("dead-owner", 1, now, 600)).claimed
    await dying.close()  # its connection, and with it its advisory lock, is gone
    starting = await opened(url)
    try:
        await starting.release_leases()
        [reclaimed] = (await starting.claim("new-owner", 10, now, 600)).claimed
        assert reclaimed.notification.id == orphan.notification.id  # the live replica's lease still holds
        await live.complete(held.notification.id, "live-owner", Attempt(now, 0.1, "delivered"))
        assert (await live.stats(now)).pending == {"slack-alerts": 1}
    finally:
        await starting.close()
        await live.close()


async def test_unreachable_server_is_store_unavailable_without_the_password() -> None:
    store = open_store("postgresql://relay:hunter2secret@127.0.0.1:1/relay")
    with pytest.raises(StoreUnavailable) as caught:
        await store.open()
    assert "hunter2secret" not in str(caught.value)


async def test_replicas_marking_a_heartbeat_missing_write_one_notice(url: str) -> None:
    a, b = await opened(url), await opened(url)
    try:
        now = time.time()
        await a.heartbeat_seen(["watchdog"], now)
        results = await asyncio.gather(*(s.heartbeat_missing("watchdog", now + 300, now + 301, notice(now + 301))
                                         for _ in range(5) for s in (a, b)))
        assert len([r for r in results if r is not None]) == 1
        await b.heartbeat_seen(["watchdog"], now + 400)
        results = await asyncio.gather(*(s.heartbeat_recovered("watchdog", now + 301, now + 401,
                                                               notice(now + 301, now + 400))
                                         for _ in range(5) for s in (a, b)))
        assert len([r for r in results if r is not None]) == 1
        assert [row["status"] for row in await a.history(HistoryFilter())] == ["resolved", "firing"]
    finally:
        await a.close()
        await b.close()



async def test_replicas_on_one_database_draw_on_one_bucket_per_destination(url: str) -> None:
    """Issue 14: two replicas taking tokens of one destination at once, by claims and by handed-off sends, get its
    burst between them, not a burst each; after that only what the rate refills."""

    budget = Budget("slack:shared", rate=2.0, burst=4)
    a, b = await opened(url), await opened(url)
    try:
        now = time.time()
        for i in range(20):
            await a.enqueue([one_alert("slack-alerts", group(f"g{i}", f"Warn{i}"))], now)
        started = time.monotonic()
        claims = await asyncio.gather(*(s.claim(owner, 5, now, 60, budgets={"slack-alerts": budget})
                                        for _ in range(3) for s, owner in ((a, "replica-a"), (b, "replica-b"))))
        spends = await asyncio.gather(*(s.spend({budget: 1}) for s in (a, b) for _ in range(5)))
        elapsed = time.monotonic() - started
        taken = sum(len(c.claimed) for c in claims) + sum(g[budget.destination].granted for g in spends)
        assert 4 <= taken <= 4 + 2.0 * elapsed + 1e-6
        assert any(budget.destination in c.waits for c in claims), [(len(c.claimed), c.waits) for c in claims]
    finally:
        await a.close()
        await b.close()


async def test_a_fast_destinations_tokens_are_taken_a_few_at_a_time_and_still_one_budget(url: str) -> None:
    """A handed-off send to a fast destination does not cost a round trip each (relay.pacing.ratelimit.prepay), yet two
    replicas together never get more than the bucket holds."""
    budget = Budget("slack:fast", rate=100.0, burst=40)
    a, b = await opened(url), await opened(url)
    try:
        started = time.monotonic()
        grants = [await s.spend({budget: 1}) for _ in range(60) for s in (a, b)]
        elapsed = time.monotonic() - started
        granted = sum(g[budget.destination].granted for g in grants)
        assert granted <= 40 + 100.0 * elapsed
        assert granted >= 40  # the burst, at least, was granted to one replica or the other
    finally:
        await a.close()
        await b.close()
