"""The Store's maintenance-window contract, on SQLite and PostgreSQL: a window is durable, every store on the
database (a replica) sees it, and ending it early makes what it held due at once."""

from __future__ import annotations

import time

from relay.store import open_store
from relay.store.base import Store
from relay.store.maintenance import HOLD_BASE
from relay.store.records import Timer
from tests.contract.test_escalations import group


async def test_a_window_is_listed_until_it_ends_and_kept_afterwards(store: Store) -> None:
    now = time.time()
    made = await store.add_maintenance(['service="api"', 'env=~"prod|staging"'], now + 60, now + 3600,
                                       "database upgrade <!channel>", "kim", now)
    assert (made.matchers, made.starts_at, made.ends_at, made.comment, made.created_by, made.ended_at) == (
        ('service="api"', 'env=~"prod|staging"'), now + 60, now + 3600, "database upgrade <!channel>", "kim", None)
    assert not made.active(now) and made.active(now + 60) and not made.active(now + 3600)
    assert await store.maintenance(now) == [made]
    assert await store.maintenance(now + 3600) == []
    assert await store.maintenance(now + 3600, everything=True) == [made]
    recurring = await store.add_maintenance(['service="api"'], now, now + 86400 * 30, "weekly", "", now, "sundays")
    assert (recurring.time_interval, made.time_interval) == ("sundays", "")
    assert await store.maintenance(now) == [recurring, made]  # by start


async def test_ending_a_window_early_makes_its_holds_due_now(store: Store) -> None:
    now = time.time()
    window = await store.add_maintenance(['service="api"'], now, now + 3600, "deploy", "", now)
    other = await store.add_maintenance(['service="db"'], now, now + 3600, "vacuum", "", now)
    await store.arm_escalations([Timer(group(), -(HOLD_BASE + window.id), 0, 0.0, ("slack-alerts",), now + 3600),
                                 Timer(group(pod="api-2"), -(HOLD_BASE + other.id), 0, 0.0, ("slack-alerts",),
                                       now + 3600)], [], now)
    assert await store.due_escalations(now + 60, 10) == []
    ended = await store.end_maintenance(window.id, now + 60)
    assert ended is not None and (ended.ends_at, ended.ended_at) == (now + 60, now + 60)
    assert [d.timer.step for d in await store.due_escalations(now + 60, 10)] == [-(HOLD_BASE + window.id)]
    assert await store.end_maintenance(window.id, now + 61) is None  # over already
    assert await store.end_maintenance(10**9, now + 61) is None
    assert [w.id for w in await store.maintenance(now + 61)] == [other.id]


async def test_replicas_see_the_same_windows(database_url: str) -> None:
    """Two relays' stores on one database (replicas on PostgreSQL; on SQLite, one file's two handles): a window made
    through one is listed by the other, and one ended through the other is over for both; and a restart keeps it."""
    now = time.time()
    a, b = open_store(database_url), open_store(database_url)
    await a.open()
    await b.open()
    try:
        made = await a.add_maintenance(['service="api"'], now, now + 600, "deploy", "lee", now)
        assert await b.maintenance(now + 1) == [made]
        assert await b.end_maintenance(made.id, now + 2) is not None
        assert await a.maintenance(now + 3) == []
    finally:
        await a.close()
        await b.close()
    again = open_store(database_url)
    await again.open()
    try:
        [kept] = await again.maintenance(now + 3, everything=True)
        assert (kept.id, kept.comment, kept.ended_at) == (made.id, "deploy", now + 2)
    finally:
        await again.close()
