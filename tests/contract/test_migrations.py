"""Upgrading a database in use: rows written before a migration keep their meaning after it (both stores)."""

from __future__ import annotations

import sqlite3
import time

import asyncpg

from relay.alerts import WebhookMessage
from relay.store import migrate, open_store
from relay.store.base import Attempt
from tests.helpers import fixture

# Before these, a rate-limit wait was read from last_error's text.
BEFORE_RATE_LIMITED = {"sqlite": 5, "postgres": 4}
INSERT = ("INSERT INTO notifications (receiver, integration, lane, status, alertnames, payload, received_at, "
          "give_up_at, attempts, next_attempt_at, last_error) VALUES ('r', 'slack', {lane}, 'firing', 'A', {payload}, "
          "{now}, {now} + 86400, 1, {now} + 300, {error})")


async def _database_at(url: str, version: int, now: float) -> None:
    """A database as relay left it at `version`, holding two retries: one waits out a rate limit, one backs off."""
    payload = WebhookMessage.model_validate(fixture("firing-poddown.json")).model_dump_json().replace("'", "''")
    rows = [INSERT.format(lane=f"'lane-{error[:4]}'", now=now, error=f"'{error}'", payload=f"'{payload}'")
            for error in ("rate_limited: HTTP 429", "server_error: HTTP 503")]
    scripts = [m.sql for m in migrate.migrations("sqlite" if url.startswith("sqlite") else "postgres")][:version]
    if url.startswith("sqlite"):
        conn = sqlite3.connect(url.removeprefix("sqlite:///"))
        conn.executescript("\n".join([*scripts, *[f"{row};" for row in rows], f"PRAGMA user_version = {version};"]))
        conn.close()
        return
    pg = await asyncpg.connect(url)
    try:
        for script in scripts:
            await pg.execute(script)
        await pg.execute("CREATE TABLE relay_schema (version INTEGER NOT NULL)")
        await pg.execute("INSERT INTO relay_schema (version) SELECT generate_series(1, $1::int)", version)
        for row in rows:
            await pg.execute(row)
    finally:
        await pg.close()


async def test_a_rate_limit_wait_written_before_the_flag_still_keeps_its_time(database_url: str) -> None:
    now = time.time()
    dialect = "sqlite" if database_url.startswith("sqlite") else "postgres"
    await _database_at(database_url, BEFORE_RATE_LIMITED[dialect], now)
    store = open_store(database_url)
    await store.open()
    try:
        assert await store.retry_now("r", now) == 1  # the backed-off one; the rate-limited one keeps its time
        [claimed] = (await store.claim("w1", 10, now + 1, 60)).claimed
        assert claimed.notification.lane == "lane-serv"
        # A rate-limit wait recorded now keeps its time too; a later failure of another kind backs off as usual.
        await store.retry_later(claimed.notification.id, "w1", Attempt(now, 0, "deferred", "rate_limited"), now + 300,
                                count_attempt=False)
        assert await store.retry_now("r", now + 2) == 0
        [again] = [c for c in (await store.claim("w1", 10, now + 301, 60)).claimed
                   if c.notification.id == claimed.notification.id]
        await store.retry_later(again.notification.id, "w1", Attempt(now + 301, 0.1, "retry", "server_error"),
                                now + 900)
        assert await store.retry_now("r", now + 302) == 1
    finally:
        await store.close()


# Before this, claims read lane heads in due order; pending rows get a priority from their alerts' severity.
BEFORE_PRIORITY = {"sqlite": 7, "postgres": 6}


async def test_notifications_waiting_before_priorities_are_ranked_by_their_alerts_severity(database_url: str) -> None:
    now = time.time()
    dialect = "sqlite" if database_url.startswith("sqlite") else "postgres"
    scripts = [m.sql for m in migrate.migrations(dialect)][:BEFORE_PRIORITY[dialect]]
    rows = []
    for lane, name in (("warn", "firing-highlatency-group2.json"), ("crit", "firing-poddown.json")):
        payload = WebhookMessage.model_validate(fixture(name)).model_dump_json().replace("'", "''")
        rows.append(INSERT.format(lane=f"'{lane}'", now=now, error="''", payload=f"'{payload}'"))
    if dialect == "sqlite":
        conn = sqlite3.connect(database_url.removeprefix("sqlite:///"))
        conn.executescript("\n".join([*scripts, *[f"{row};" for row in rows],
                                      f"PRAGMA user_version = {BEFORE_PRIORITY[dialect]};"]))
        conn.close()
    else:
        pg = await asyncpg.connect(database_url)
        try:
            for script in [*scripts, "CREATE TABLE relay_schema (version INTEGER NOT NULL)", *rows]:
                await pg.execute(script)
            await pg.execute("INSERT INTO relay_schema (version) SELECT generate_series(1, $1::int)",
                             BEFORE_PRIORITY[dialect])
        finally:
            await pg.close()
    store = open_store(database_url)
    await store.open()
    try:
        claim = await store.claim("w1", 1, now + 301, 60)
        assert [c.notification.lane for c in claim.claimed] == ["crit"]  # PodDown is critical, HighLatency not
    finally:
        await store.close()
