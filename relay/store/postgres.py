"""The shared store: PostgreSQL through an asyncpg pool, for several relay replicas on one outbox.

Each enqueue is one statement (one round trip, atomic) whose dedup decisions
are upserts, so replicas receiving an HA pair's copies at once notify exactly
once. Claims re-check the lease inside the UPDATE that takes it, so two
replicas never send one notification at the same time. Every replica holds a session
advisory lock named after its dispatcher while it lives; at start, relay
frees only the leases whose owner no longer holds its lock.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Mapping, Sequence
from importlib import resources
from typing import Any

import asyncpg
from asyncpg.pool import PoolConnectionProxy

from relay.alerts import State, WebhookMessage, group_status, key_part
from relay.errors import StoreRejected, StoreUnavailable
from relay.store.base import (
    Attempt,
    Cancel,
    Candidate,
    Claim,
    Claimed,
    Enqueued,
    Handoff,
    HeartbeatState,
    HistoryFilter,
    OutboxStats,
    Replay,
)
from relay.store.rows import (
    ATTEMPT_COLUMNS,
    HISTORY_COLUMNS,
    attempt_error,
    dedup_time,
    detail_row,
    handed_off,
    history_row,
    notification_from_row,
    storable,
)

log = logging.getLogger(__name__)

LOCK_CLASS = 0x52454C  # "REL": the first key of every advisory lock relay takes
MIGRATION_LOCK = 0

# An enqueue is this one statement (atomic on its own, one round trip): the dedup upserts decide which alerts are
# new; every candidate with a new alert becomes a notification whose payload keeps only those (rebuilt here only
# when some were dropped), leased at once to the handoff's owner when offered and at the head of its lane.
# $1-$5 the dedup marks (sorted: one lock order for every enqueue, so overlapping webhooks cannot deadlock),
# $6 now; $7-$11 every alert: candidate, position in its group, mark, name, firing; $12-$19 every candidate;
# $20 lease until, $21 owner.
SQL_ENQUEUE = """
WITH mark AS (
    SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::float8[])
        WITH ORDINALITY AS m (receiver, fingerprint, starts_at, status, interval_seconds, k)
),
won AS (
    INSERT INTO dedup AS d (receiver, fingerprint, starts_at, status, notified_at, interval_seconds)
    SELECT receiver, fingerprint, starts_at, status, $6, interval_seconds FROM mark ORDER BY k
    ON CONFLICT (receiver, fingerprint, starts_at, status) DO UPDATE
        SET notified_at = excluded.notified_at, interval_seconds = excluded.interval_seconds
        WHERE excluded.status = 'firing' AND excluded.notified_at - d.notified_at >= excluded.interval_seconds
    RETURNING receiver, fingerprint, starts_at, status
),
kept AS (  -- an alert twice in one enqueue is notified once, in its first place
    SELECT DISTINCT ON (mark.k) a.*
    FROM won JOIN mark USING (receiver, fingerprint, starts_at, status)
    JOIN unnest($7::int[], $8::int[], $9::int[], $10::text[], $11::bool[]) AS a (cand, pos, k, name, firing)
        ON a.k = mark.k
    ORDER BY mark.k, a.cand, a.pos
),
notice AS (
    SELECT c.*, nextval('notifications_id_seq') AS id, s.positions, s.firing, s.names
    FROM unnest($12::int[], $13::text[], $14::text[], $15::text[], $16::text[], $17::int[], $18::float8[],
                $19::bool[]) AS c (cand, receiver, integration, lane, payload, total, give_up_at, offered)
    JOIN (SELECT cand, array_agg(pos ORDER BY pos) AS positions, bool_or(firing) AS firing,
                 string_agg(DISTINCT name COLLATE "C", ',' ORDER BY name COLLATE "C") AS names
          FROM kept GROUP BY cand) s USING (cand)
),
written AS (
    INSERT INTO notifications (id, receiver, integration, lane, status, alertnames, payload, received_at, give_up_at,
                               next_attempt_at, lease_until, lease_owner)
    SELECT id, receiver, integration, lane, CASE WHEN firing THEN 'firing' ELSE 'resolved' END, names,
           CASE WHEN cardinality(positions) = total THEN payload ELSE (payload::jsonb || jsonb_build_object(
               'status', CASE WHEN firing THEN 'firing' ELSE 'resolved' END,
               'alerts', (SELECT jsonb_agg(e ORDER BY i) FROM jsonb_array_elements(payload::jsonb -> 'alerts')
                              WITH ORDINALITY AS x (e, i) WHERE i - 1 = ANY(positions))))::text END,
           $6, give_up_at, $6, CASE WHEN head THEN $20::float8 ELSE 0 END, CASE WHEN head THEN $21::text END
    FROM (SELECT *, offered AND NOT EXISTS (SELECT 1 FROM notifications p WHERE p.lane = notice.lane
                                                                           AND p.state = 'pending') AS head
          FROM notice) AS heads
    RETURNING id, lease_owner IS NOT NULL AS leased
)
SELECT notice.cand, notice.id, notice.positions, written.leased FROM notice JOIN written USING (id)
"""
# Due lane heads, at most `room` per receiver (and `limit` in all), skipping rows another replica is claiming right
# now. Receivers are walked with one index probe each and each receiver's rows are read in due order until its share
# is found, so a claim costs the same with 50 or 50,000 pending rows (no pass over every pending lane).
SQL_CLAIM = """
WITH RECURSIVE receivers (name) AS (
    SELECT min(receiver) FROM notifications WHERE state = 'pending'
    UNION ALL
    SELECT (SELECT min(receiver) FROM notifications WHERE state = 'pending' AND receiver > r.name)
    FROM receivers r WHERE r.name IS NOT NULL
),
due AS (
    SELECT h.id FROM receivers r
    LEFT JOIN unnest($3::text[], $4::int[]) AS room (receiver, share) ON room.receiver = r.name,
    LATERAL (
        SELECT n.id, n.next_attempt_at FROM notifications n
        WHERE n.state = 'pending' AND n.receiver = r.name AND n.next_attempt_at <= $1 AND n.lease_until <= $1
          AND NOT EXISTS (SELECT 1 FROM notifications p WHERE p.state = 'pending' AND p.lane = n.lane AND p.id < n.id)
        ORDER BY n.next_attempt_at, n.id
        LIMIT least($2, coalesce(room.share, $2))
    ) h
    WHERE r.name IS NOT NULL
    ORDER BY h.next_attempt_at, h.id
    LIMIT $2 * 4
)
SELECT n.id, n.receiver, n.integration, n.lane, n.payload, n.received_at, n.give_up_at, n.attempts
FROM notifications n
WHERE n.id IN (SELECT id FROM due) AND n.state = 'pending' AND n.lease_until <= $1
ORDER BY n.next_attempt_at, n.id
LIMIT $2
FOR UPDATE OF n SKIP LOCKED
"""
SQL_NEXT_DUE = """
SELECT min(next_attempt_at) FROM notifications WHERE state = 'pending' AND next_attempt_at > $1 AND lease_until <= $1
"""
SQL_LEASE = """
UPDATE notifications SET lease_until = $2, lease_owner = $3
WHERE id = ANY($1::bigint[]) AND state = 'pending' AND lease_until <= $4 AND next_attempt_at <= $4
RETURNING id
"""
SQL_UNREADABLE = "UPDATE notifications SET state = 'dead', finished_at = $2, last_error = 'unreadable' WHERE id = $1"
SQL_RELEASE_ORPHANS = """
UPDATE notifications SET lease_until = 0, lease_owner = NULL
WHERE state = 'pending' AND lease_owner IS NOT NULL AND NOT EXISTS (
    SELECT 1 FROM pg_locks l
    WHERE l.locktype = 'advisory' AND l.classid = $1::oid AND l.objid = hashtext(lease_owner)::oid
      AND l.objsubid = 2 AND l.granted)
"""
# An outcome is one statement (one round trip, atomic): the row's new state, and its attempt if the lease held.
_RECORD_ATTEMPT = """
INSERT INTO attempts (notification_id, started_at, duration, outcome, reason, detail)
SELECT id, $6::double precision, $7::double precision, $8::text, $9::text, $10::text FROM finished
"""
SQL_DONE = """
WITH finished AS (
    UPDATE notifications SET state = $1, attempts = attempts + 1, finished_at = $2, last_error = $3,
           lease_until = 0, lease_owner = NULL
    WHERE id = $4 AND state = 'pending' AND lease_owner = $5
    RETURNING id)
""" + _RECORD_ATTEMPT
SQL_RETRY = """
WITH finished AS (
    UPDATE notifications SET attempts = attempts + $1, next_attempt_at = $2, last_error = $3, lease_until = 0,
           lease_owner = NULL
    WHERE id = $4 AND state = 'pending' AND lease_owner = $5
    RETURNING id)
""" + _RECORD_ATTEMPT
# A retry waiting out a rate limit keeps its time: its last error is `rate_limited` (see relay.dispatcher).
SQL_RETRY_NOW = """
UPDATE notifications SET next_attempt_at = $1
WHERE state = 'pending' AND receiver = $2 AND attempts > 0 AND next_attempt_at > $1 AND lease_until <= $1
  AND last_error NOT LIKE 'rate_limited%'
"""
SQL_RESOLVED_KEYS = """
SELECT fingerprint, starts_at FROM dedup
WHERE receiver = $1 AND status = 'resolved' AND fingerprint = ANY($2::text[])
"""
SQL_REPLAY = """
UPDATE notifications SET state = 'pending', next_attempt_at = $1, give_up_at = $1 + (give_up_at - received_at),
       finished_at = NULL, lease_until = 0, lease_owner = NULL, payload = coalesce($3, payload)
WHERE id = $2 AND state = 'dead'
"""
SQL_PRUNE = (
    "DELETE FROM attempts WHERE notification_id IN "
    "(SELECT id FROM notifications WHERE state IN ('delivered', 'cancelled') AND finished_at < $1)",
    "DELETE FROM notifications WHERE state IN ('delivered', 'cancelled') AND finished_at < $1",
    "DELETE FROM dedup WHERE notified_at < $1",
    "DELETE FROM message_refs WHERE created_at < $1",
)
SQL_CANCEL = """
WITH finished AS (
    UPDATE notifications SET state = 'cancelled', finished_at = $1, last_error = $2, lease_until = 0,
           lease_owner = NULL
    WHERE id = $3 AND state = 'pending' AND lease_until <= $1
    RETURNING id)
INSERT INTO attempts (notification_id, started_at, duration, outcome, reason, detail)
SELECT id, $4::double precision, $5::double precision, $6::text, $7::text, $8::text FROM finished
"""
SQL_PENDING = "SELECT receiver, count(*), min(received_at) FROM notifications WHERE state = 'pending' GROUP BY receiver"
# Names sorted by the caller: one lock order for concurrent heartbeat webhooks. GREATEST ignores NULL (never seen).
SQL_HEARTBEAT_SEEN = """
INSERT INTO heartbeats (name, last_seen, watched_since) SELECT n, $2, $2 FROM unnest($1::text[]) AS n
ON CONFLICT (name) DO UPDATE SET last_seen = GREATEST(heartbeats.last_seen, excluded.last_seen)
"""
# The rows this statement adds are not visible to its own scan of the table: they come from `added`.
SQL_HEARTBEATS = """
WITH added AS (
    INSERT INTO heartbeats (name, watched_since) SELECT n, $2 FROM unnest($1::text[]) AS n
    ON CONFLICT (name) DO NOTHING
    RETURNING name, last_seen, watched_since, missing_since)
SELECT * FROM added UNION ALL SELECT name, last_seen, watched_since, missing_since FROM heartbeats ORDER BY name
"""
# Replicas race here: the row lock serialises them, and the later one's re-checked WHERE no longer holds.
SQL_HEARTBEAT_MISSING = """
UPDATE heartbeats SET missing_since = $3
WHERE name = $1 AND missing_since IS NULL AND coalesce(last_seen, watched_since) < $2
RETURNING name
"""
SQL_HEARTBEAT_BACK = """
UPDATE heartbeats SET missing_since = NULL WHERE name = $1 AND missing_since = $2 AND last_seen > $2 RETURNING name
"""
SQL_DEAD = "SELECT receiver, count(*) FROM notifications WHERE state = 'dead' GROUP BY receiver"
SQL_REFS_GET = "SELECT alert_key, ref FROM message_refs WHERE receiver = $1 AND alert_key = ANY($2::text[])"
SQL_REFS_PUT = """
INSERT INTO message_refs (receiver, alert_key, ref, created_at)
SELECT $1, k, $3, $4 FROM unnest($2::text[]) AS k
ON CONFLICT (receiver, alert_key) DO UPDATE SET ref = excluded.ref, created_at = excluded.created_at
"""

# Readiness after a failed write: a write of about a large webhook's size, undone in the same transaction.
SQL_PROBE = ("INSERT INTO message_refs (receiver, alert_key, ref, created_at) VALUES ('', 'relay:probe', $1, 0) "
             "ON CONFLICT (receiver, alert_key) DO UPDATE SET ref = excluded.ref",
             "DELETE FROM message_refs WHERE receiver = '' AND alert_key = 'relay:probe'")
PROBE_BYTES = 64 * 1024

Conn = asyncpg.Connection | PoolConnectionProxy

# What asyncpg raises about the data itself (a value PostgreSQL cannot hold, an index row over its size limit, a
# value the driver cannot encode): retrying cannot help, so it is StoreRejected, never "store unavailable".
DATA_ERRORS = (asyncpg.DataError, asyncpg.IntegrityConstraintViolationError, asyncpg.ProgramLimitExceededError,
               ValueError)
# What asyncpg raises when the server is gone, restarting, refusing, or out of space: relay answers 503.
# InternalClientError: e.g. a pooled connection still consuming the server's "terminating connection" notice
# while PostgreSQL restarts ("cannot switch to state 15; another operation (2) is in progress").
UNAVAILABLE = (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, asyncpg.InternalClientError, TimeoutError)


class _Connection(asyncpg.Connection):
    """A pooled connection that is not reset when it goes back to the pool: relay never leaves session state on
    one (no LISTEN, cursors, SET or advisory locks: those live on connections of their own), so the reset would
    only cost a round trip per store call."""

    def get_reset_query(self) -> str:
        return ""


class PostgresStore:
    def __init__(self, dsn: str, pool_size: int = 10) -> None:
        self.dsn = dsn
        self.pool_size = pool_size
        self._pool: asyncpg.Pool | None = None
        self._liveness: asyncpg.Connection | None = None
        self._owners: set[str] = set()
        self._liveness_lock = asyncio.Lock()
        self._write_failure: str | None = None  # why the last enqueue could not commit (None: it did)

    @contextlib.asynccontextmanager
    async def _conn(self) -> AsyncIterator[Conn]:
        if self._pool is None:
            raise StoreUnavailable("store is not open")
        try:
            async with self._pool.acquire(timeout=10) as conn:
                yield conn
        except DATA_ERRORS as exc:  # before UNAVAILABLE: both are PostgresErrors (the driver's are ValueErrors)
            raise StoreRejected(f"the store refused the data: {_describe(exc)}") from None
        except UNAVAILABLE as exc:
            raise StoreUnavailable(f"store error: {_describe(exc)}") from None

    @contextlib.asynccontextmanager
    async def _tx(self) -> AsyncIterator[Conn]:
        async with self._conn() as conn, conn.transaction():
            yield conn

    # -- lifecycle -------------------------------------------------------------------------

    async def open(self) -> None:
        try:
            migrating = await asyncpg.connect(self.dsn, timeout=10)  # its advisory lock ends with it, whatever happens
            try:
                await self._migrate(migrating)
            finally:
                await migrating.close()
            self._pool = await asyncpg.create_pool(self.dsn, min_size=1, max_size=self.pool_size, timeout=10,
                                                   command_timeout=30, connection_class=_Connection)
        except UNAVAILABLE as exc:
            raise StoreUnavailable(f"cannot connect to PostgreSQL: {_describe(exc)}") from None

    async def _migrate(self, conn: Conn) -> None:
        """Apply numbered scripts once, under an advisory lock so replicas starting together do not race."""
        await conn.execute("SELECT pg_advisory_lock($1, $2)", LOCK_CLASS, MIGRATION_LOCK)
        try:
            await conn.execute("CREATE TABLE IF NOT EXISTS relay_schema (version INTEGER NOT NULL)")
            version = await conn.fetchval("SELECT max(version) FROM relay_schema") or 0
            folder = resources.files("relay.store").joinpath("migrations/postgres")
            for script in sorted((p for p in folder.iterdir() if p.name.endswith(".sql")), key=lambda p: p.name):
                number = int(script.name.split("_", 1)[0])
                if number <= version:
                    continue
                log.info("applying migration %s", script.name)
                async with conn.transaction():
                    await conn.execute(script.read_text())
                    await conn.execute("INSERT INTO relay_schema (version) VALUES ($1)", number)
        finally:
            await conn.execute("SELECT pg_advisory_unlock($1, $2)", LOCK_CLASS, MIGRATION_LOCK)

    async def close(self) -> None:
        if self._liveness is not None:
            with contextlib.suppress(*UNAVAILABLE):
                await self._liveness.close()
            self._liveness = None
        if self._pool is not None:
            await self._pool.close()
            self._pool = None

    async def _hold_owner(self, owner: str) -> None:
        """Hold `owner`'s advisory lock for as long as this process lives, so nobody frees its leases."""
        if owner in self._owners and self._liveness is not None and not self._liveness.is_closed():
            return
        async with self._liveness_lock:
            try:
                if self._liveness is None or self._liveness.is_closed():
                    self._liveness = await asyncpg.connect(self.dsn, timeout=10)
                    self._owners.clear()
                if owner not in self._owners:
                    await self._liveness.execute("SELECT pg_advisory_lock($1, hashtext($2))", LOCK_CLASS, owner)
                    self._owners.add(owner)
            except UNAVAILABLE as exc:
                raise StoreUnavailable(f"store error: {_describe(exc)}") from None

    async def release_leases(self) -> None:
        """Free the leases of dispatchers that are gone (their lock died with their connection)."""
        async with self._conn() as conn:
            freed = await conn.execute(SQL_RELEASE_ORPHANS, LOCK_CLASS)
        log.info("released leases of stopped relays: %s", freed.split()[-1])

    async def ping(self) -> None:
        async with self._conn() as conn:
            await conn.fetchval("SELECT 1")

    async def ready(self) -> None:
        if self._write_failure is None:
            await self.ping()
            return
        async with self._tx() as conn:
            await conn.execute(SQL_PROBE[0], "x" * PROBE_BYTES)
            await conn.execute(SQL_PROBE[1])
        self._write_failure = None

    # -- the outbox --------------------------------------------------------------------------

    async def enqueue(self, candidates: list[Candidate], received_at: float,
                      handoff: Handoff | None = None, within: Conn | None = None) -> list[Enqueued]:
        """See Store.enqueue; `within` runs it in that connection's open transaction (a heartbeat's change)."""
        now = received_at
        if handoff is not None:
            await self._hold_owner(handoff.owner)
        marks: dict[tuple[str, str, str, str], float] = {}
        alerts: list[tuple[int, int, tuple[str, str, str, str], str, bool]] = []
        notices: list[tuple[int, str, str, str, str, int, float, bool]] = []
        taken: dict[str, int] = {}
        lanes: set[str] = set()
        for c, cand in enumerate(candidates):
            for pos, (alert, interval) in enumerate(zip(cand.group.alerts, cand.repeat_intervals, strict=True)):
                key = (cand.receiver, key_part(alert.fingerprint), dedup_time(alert.startsAt), alert.status)
                marks.setdefault(key, interval.total_seconds())
                alerts.append((c, pos, key, alert.name, alert.status == "firing"))
            status = group_status(cand.group.alerts)
            group = cand.group if status == cand.group.status else cand.group.model_copy(update={"status": status})
            # Only the first of a lane in this call can be its head; the rest queue behind it.
            offered = handoff is not None and cand.lane not in lanes and handoff.take(taken, cand.receiver)
            lanes.add(cand.lane)
            notices.append((c, cand.receiver, cand.integration, cand.lane, storable(group.model_dump_json()),
                            len(cand.group.alerts), now + cand.give_up_after.total_seconds(), offered))
        order = sorted(marks)  # one lock order for every enqueue: overlapping webhooks cannot deadlock
        index = {key: k for k, key in enumerate(order, start=1)}
        try:
            async with self._conn() if within is None else contextlib.nullcontext(within) as conn:
                rows = await conn.fetch(
                    SQL_ENQUEUE, *_columns([(*key, marks[key]) for key in order], 5), now,
                    *_columns([(c, pos, index[key], name, firing) for c, pos, key, name, firing in alerts], 5),
                    *_columns(notices, 8), now + handoff.lease if handoff else 0.0, handoff.owner if handoff else None)
        except StoreUnavailable as exc:
            self._write_failure = str(exc)
            raise
        self._write_failure = None
        written = {row["cand"]: row for row in rows}
        out = []
        for c, cand in enumerate(candidates):
            row = written.get(c)
            if row is None:
                out.append(Enqueued(cand.receiver, None, 0, len(cand.group.alerts)))
                continue
            kept = [cand.group.alerts[p] for p in row["positions"]]
            claimed = None
            if row["leased"]:
                assert handoff is not None
                group = cand.group.model_copy(update={"alerts": kept, "status": group_status(kept)})
                claimed = handed_off(row["id"], cand, group, now, notices[c][6], handoff.lease)
            out.append(Enqueued(cand.receiver, row["id"], len(kept), len(cand.group.alerts) - len(kept), claimed))
        return out

    async def claim(self, owner: str, limit: int, now: float, lease: float,
                    room: Mapping[str, int] | None = None) -> Claim:
        await self._hold_owner(owner)
        rooms = {receiver: max(0, n) for receiver, n in (room or {}).items()}
        async with self._tx() as conn:
            rows = await conn.fetch(SQL_CLAIM, now, limit, list(rooms), list(rooms.values()))
            leased = {r["id"] for r in await conn.fetch(SQL_LEASE, [r["id"] for r in rows], now + lease, owner,
                                                        now)} if rows else set()
            claimed = []
            for row in rows:
                if row["id"] not in leased:  # another replica took it between our read and our update
                    continue
                try:
                    notification = notification_from_row(dict(row))
                except ValueError as exc:
                    log.error("notification %d cannot be read back, dead-lettering it: %s", row["id"], exc)
                    await conn.execute(SQL_UNREADABLE, row["id"], now)
                    continue
                claimed.append(Claimed(notification, row["give_up_at"], now + lease))
            next_due = now if len(rows) >= limit else await conn.fetchval(SQL_NEXT_DUE, now)
        return Claim(claimed, next_due)

    async def _finish(self, sql: str, params: tuple[Any, ...], attempt: Attempt) -> None:
        async with self._conn() as conn:
            await conn.execute(sql, *params, attempt.started_at, attempt.duration, attempt.outcome, attempt.reason,
                               attempt.detail)

    async def complete(self, notification_id: int, owner: str, attempt: Attempt) -> None:
        end = attempt.started_at + attempt.duration
        await self._finish(SQL_DONE, (State.DELIVERED.value, end, None, notification_id, owner),
                           attempt)

    async def dead_letter(self, notification_id: int, owner: str, attempt: Attempt) -> None:
        end = attempt.started_at + attempt.duration
        error = attempt_error(attempt.reason, attempt.detail)
        await self._finish(SQL_DONE, (State.DEAD.value, end, error, notification_id, owner), attempt)

    async def retry_later(self, notification_id: int, owner: str, attempt: Attempt, next_attempt_at: float,
                          count_attempt: bool = True) -> None:
        error = attempt_error(attempt.reason, attempt.detail)
        await self._finish(SQL_RETRY, (int(count_attempt), next_attempt_at, error, notification_id, owner),
                           attempt)

    async def retry_now(self, receiver: str, now: float) -> int:
        async with self._conn() as conn:
            return int((await conn.execute(SQL_RETRY_NOW, now, receiver)).split()[-1])

    async def replay(self, notification_id: int, now: float, forgotten_before: float = 0.0) -> Replay:
        """Put a dead letter back, minus firing alerts that must not re-open an incident (see Store.replay)."""
        async with self._tx() as conn:
            row = await conn.fetchrow("SELECT receiver, payload, received_at FROM notifications "
                                      "WHERE id = $1 AND state = 'dead' FOR UPDATE", notification_id)
            if row is None:
                return "missing"
            group = WebhookMessage.model_validate_json(row["payload"])
            too_old = row["received_at"] < forgotten_before
            resolved = {(r["fingerprint"], r["starts_at"]) for r in await conn.fetch(
                SQL_RESOLVED_KEYS, row["receiver"], [key_part(a.fingerprint) for a in group.alerts])}
            kept = [a for a in group.alerts if a.status == "resolved"
                    or (not too_old and (key_part(a.fingerprint), dedup_time(a.startsAt)) not in resolved)]
            if not kept:
                return "too_old" if too_old else "resolved"
            payload = None
            if len(kept) != len(group.alerts):
                payload = group.model_copy(update={"alerts": kept, "status": group_status(kept)}).model_dump_json()
            status = await conn.execute(SQL_REPLAY, now, notification_id, payload)
            return "replayed" if status.split()[-1] != "0" else "missing"

    async def stats(self, now: float) -> OutboxStats:
        async with self._conn() as conn:
            pending, oldest = {}, None
            for receiver, count, first in await conn.fetch(SQL_PENDING):
                pending[receiver] = count
                oldest = first if oldest is None else min(oldest, first)
            dead = {receiver: count for receiver, count in await conn.fetch(SQL_DEAD)}
        return OutboxStats(pending, oldest, dead)

    async def history(self, query: HistoryFilter) -> list[dict[str, Any]]:
        where: list[str] = ["true"]
        params: list[Any] = []

        def param(value: Any) -> str:
            params.append(value)
            return f"${len(params)}"

        if query.receiver:
            where.append(f"receiver = {param(query.receiver)}")
        if query.state:
            where.append(f"state = {param(query.state)}")
        if query.alertname:
            where.append(f"(',' || alertnames || ',') LIKE {param(f'%,{query.alertname},%')}")
        if query.ids:
            where.append(f"id = ANY({param(list(query.ids))}::bigint[])")
        sql = (f"SELECT {HISTORY_COLUMNS} FROM notifications WHERE {' AND '.join(where)} "
               f"ORDER BY id DESC LIMIT {param(query.limit)}")
        async with self._conn() as conn:
            rows = await conn.fetch(sql, *params)
        return [history_row(dict(row)) for row in rows]

    async def detail(self, notification_id: int) -> dict[str, Any] | None:
        async with self._conn() as conn:
            row = await conn.fetchrow(f"SELECT {HISTORY_COLUMNS}, payload FROM notifications WHERE id = $1",
                                      notification_id)
            if row is None:
                return None
            attempts = await conn.fetch(f"SELECT {ATTEMPT_COLUMNS} FROM attempts WHERE notification_id = $1 "
                                        "ORDER BY started_at", notification_id)
        return detail_row(dict(row), row["payload"], [dict(a) for a in attempts])

    async def purge(self, notification_id: int) -> bool:
        async with self._tx() as conn:
            found = await conn.fetchval("SELECT 1 FROM notifications WHERE id = $1 AND state = 'dead' FOR UPDATE",
                                        notification_id)
            if found is None:
                return False
            await conn.execute("DELETE FROM attempts WHERE notification_id = $1", notification_id)
            await conn.execute("DELETE FROM notifications WHERE id = $1", notification_id)
        return True

    async def cancel(self, notification_id: int, now: float, attempt: Attempt) -> Cancel:
        error = attempt_error(attempt.reason, attempt.detail)
        async with self._tx() as conn:
            done = await conn.execute(SQL_CANCEL, now, error, notification_id, attempt.started_at, attempt.duration,
                                      attempt.outcome, attempt.reason, attempt.detail)
            if int(done.split()[-1]):
                return "cancelled"
            pending = await conn.fetchval("SELECT 1 FROM notifications WHERE id = $1 AND state = 'pending'",
                                          notification_id)
        return "in_flight" if pending else "missing"

    async def prune(self, finished_before: float, marks_before: float) -> int:
        async with self._tx() as conn:
            await conn.execute(SQL_PRUNE[0], finished_before)
            forgotten = await conn.execute(SQL_PRUNE[1], finished_before)
            await conn.execute(SQL_PRUNE[2], marks_before)
            await conn.execute(SQL_PRUNE[3], marks_before)
        return int(forgotten.split()[-1])

    async def find_refs(self, receiver: str, keys: Sequence[str]) -> dict[str, str]:
        if not keys:
            return {}
        async with self._conn() as conn:
            return {r["alert_key"]: r["ref"] for r in await conn.fetch(SQL_REFS_GET, receiver, list(keys))}

    async def remember_refs(self, receiver: str, keys: Sequence[str], ref: str) -> None:
        if keys:
            async with self._conn() as conn:
                await conn.execute(SQL_REFS_PUT, receiver, list(keys), ref, time.time())

    # -- heartbeats (relay.heartbeat) --------------------------------------------------------

    async def heartbeat_seen(self, names: Sequence[str], now: float) -> None:
        async with self._conn() as conn:
            await conn.execute(SQL_HEARTBEAT_SEEN, sorted(names), now)

    async def heartbeats(self, watch: Sequence[str], now: float) -> list[HeartbeatState]:
        async with self._conn() as conn:
            rows = await conn.fetch(SQL_HEARTBEATS, sorted(watch), now)
        return [HeartbeatState(*row) for row in rows]

    async def heartbeat_missing(self, name: str, silent_since: float, now: float,
                                notice: list[Candidate]) -> list[Enqueued] | None:
        return await self._heartbeat_turn(SQL_HEARTBEAT_MISSING, (name, silent_since, now), now, notice)

    async def heartbeat_recovered(self, name: str, missing_since: float, now: float,
                                  notice: list[Candidate]) -> list[Enqueued] | None:
        return await self._heartbeat_turn(SQL_HEARTBEAT_BACK, (name, missing_since), now, notice)

    async def _heartbeat_turn(self, sql: str, params: tuple[Any, ...], now: float,
                              notice: list[Candidate]) -> list[Enqueued] | None:
        """The state change and its notice commit together: a crash between them cannot lose the notice."""
        async with self._tx() as conn:
            if await conn.fetchval(sql, *params) is None:
                return None
            return await self.enqueue(notice, now, within=conn)


def _columns(rows: Sequence[tuple[Any, ...]], width: int) -> list[list[Any]]:
    """Rows as one list per column: the arrays an `unnest` turns back into rows."""
    return [list(column) for column in zip(*rows, strict=True)] if rows else [[] for _ in range(width)]


def _describe(exc: BaseException) -> str:
    """The error without the DSN (it may hold a password): asyncpg messages name the server, never the URL."""
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
