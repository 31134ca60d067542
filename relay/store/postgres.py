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
import json
import logging
import time
from collections.abc import AsyncIterator, Mapping, Sequence
from typing import Any

import asyncpg

from relay.actions.model import ActionRow
from relay.alerts import Escalation, group_status, key_part
from relay.errors import StoreRejected, StoreUnavailable
from relay.pacing.ratelimit import Budget, Grant, Prepaid, by_destination, grant, prepay
from relay.store import common, migrate, queries
from relay.store.base import Acted, Attempt, Candidate, Claim, Claimed, Enqueued, Handoff, HeartbeatState
from relay.store.postgres_ops import DATA_ERRORS, UNAVAILABLE, Conn, UnresetConnection, columns, describe, drive
from relay.store.rows import (
    attempt_fields,
    dedup_time,
    handed_off,
    notification_from_row,
    storable,
)

log = logging.getLogger(__name__)

LOCK_CLASS = 0x52454C  # "REL": the first key of every advisory lock relay takes
MIGRATION_LOCK = 0

# An enqueue is one statement (sql/postgres.sql `enqueue`; atomic on its own, one round trip): the dedup upserts
# decide which alerts are new; every candidate with a new alert becomes a notification whose payload keeps only those
# (rebuilt there only when some were dropped), leased at once to the handoff's owner when offered and at the head of
# its lane. $1-$5 the dedup marks (sorted: one lock order for every enqueue, so overlapping webhooks cannot deadlock),
# $6 now; $7-$11 every alert: candidate, position in its group, mark, name, firing; $12-$19 every candidate;
# $20 lease until, $21 owner, $22 each alert's priority rank (the notification takes its alerts' least).
# A claim (`claim`) walks receivers with one index probe each and reads each receiver's rows in due order until its
# share is found, so it costs the same with 50 or 50,000 pending rows (no pass over every pending lane).
Q = queries.load("postgres")
DIALECT = common.Dialect(Q, lambda n: f"${n}", lambda p: f"id = ANY({p}::bigint[])")
PROBE_BYTES = 64 * 1024


class PostgresStore(common.Scripted):
    dialect = DIALECT

    def __init__(self, dsn: str, pool_size: int = 10) -> None:
        self.dsn = dsn
        self.pool_size = pool_size
        self._pool: asyncpg.Pool | None = None
        self._liveness: asyncpg.Connection | None = None
        self._owners: set[str] = set()
        self._liveness_lock = asyncio.Lock()
        self._write_failure: str | None = None  # why the last enqueue could not commit (None: it did)
        self._prepaid = Prepaid()  # tokens of fast shared buckets taken for sends to come

    @contextlib.asynccontextmanager
    async def _conn(self) -> AsyncIterator[Conn]:
        if self._pool is None:
            raise StoreUnavailable("store is not open")
        try:
            async with self._pool.acquire(timeout=10) as conn:
                yield conn
        except DATA_ERRORS as exc:  # before UNAVAILABLE: both are PostgresErrors (the driver's are ValueErrors)
            raise StoreRejected(f"the store refused the data: {describe(exc)}") from None
        except UNAVAILABLE as exc:
            raise StoreUnavailable(f"store error: {describe(exc)}") from None

    @contextlib.asynccontextmanager
    async def _tx(self) -> AsyncIterator[Conn]:
        async with self._conn() as conn, conn.transaction():
            yield conn

    async def _script(self, script: common.Script, read: bool = False) -> Any:
        """Run one of relay.store.common's scripts on one connection, in one transaction unless it only reads."""
        async with self._conn() if read else self._tx() as conn:
            return await drive(conn, script)

    # -- lifecycle -------------------------------------------------------------------------

    async def open(self) -> None:
        try:
            migrating = await asyncpg.connect(self.dsn, timeout=10)  # its advisory lock ends with it, whatever happens
            try:
                await self._migrate(migrating)
            finally:
                await migrating.close()
            self._pool = await asyncpg.create_pool(self.dsn, min_size=1, max_size=self.pool_size, timeout=10,
                                                   command_timeout=30, connection_class=UnresetConnection)
        except UNAVAILABLE as exc:
            raise StoreUnavailable(f"cannot connect to PostgreSQL: {describe(exc)}") from None

    async def _migrate(self, conn: Conn) -> None:
        """Apply numbered scripts once, under an advisory lock so replicas starting together do not race."""
        await conn.execute("SELECT pg_advisory_lock($1, $2)", LOCK_CLASS, MIGRATION_LOCK)
        try:
            await conn.execute("CREATE TABLE IF NOT EXISTS relay_schema (version INTEGER NOT NULL)")
            for script in migrate.due("postgres", await conn.fetchval("SELECT max(version) FROM relay_schema") or 0):
                async with conn.transaction():
                    await conn.execute(script.sql)
                    await conn.execute("INSERT INTO relay_schema (version) VALUES ($1)", script.number)
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
                raise StoreUnavailable(f"store error: {describe(exc)}") from None

    async def release_leases(self) -> None:
        """Free the leases of dispatchers that are gone (their lock died with their connection)."""
        async with self._conn() as conn:
            freed = await conn.execute(Q["release_orphans"], LOCK_CLASS)
        log.info("released leases of stopped relays: %s", freed.split()[-1])

    async def ping(self) -> None:
        async with self._conn() as conn:
            await conn.fetchval("SELECT 1")

    async def ready(self) -> None:
        if self._write_failure is None:
            await self.ping()
            return
        async with self._tx() as conn:
            await conn.execute(Q["probe_write"], "x" * PROBE_BYTES)
            await conn.execute(Q["probe_undo"])
        self._write_failure = None

    # -- the outbox --------------------------------------------------------------------------

    async def enqueue(self, candidates: list[Candidate], received_at: float,
                      handoff: Handoff | None = None, within: Conn | None = None) -> list[Enqueued]:
        """See Store.enqueue; `within` runs it in that connection's open transaction (a heartbeat's change)."""
        now = received_at
        if handoff is not None and handoff.prepare is not None:
            asyncio.get_running_loop().call_soon(handoff.prepare)  # runs while the statement is at the server
        if handoff is not None:
            await self._hold_owner(handoff.owner)
        marks: dict[tuple[str, str, str, str], float] = {}
        alerts: list[tuple[int, int, tuple[str, str, str, str], str, bool]] = []
        ranks: list[int] = []  # each alert's priority rank, beside `alerts`
        notices: list[tuple[int, str, str, str, str, int, float, bool]] = []
        taken: dict[str, int] = {}
        lanes: set[str] = set()
        for c, cand in enumerate(candidates):
            for pos, (alert, interval) in enumerate(zip(cand.group.alerts, cand.repeat_intervals, strict=True)):
                key = (cand.receiver, key_part(alert.fingerprint), dedup_time(alert.startsAt), alert.status)
                marks.setdefault(key, interval.total_seconds())
                alerts.append((c, pos, key, alert.name, alert.status == "firing"))
                ranks.append(cand.priority.rank(alert.labels))
            group = cand.group  # its status is its alerts' (relay.webhook.candidates narrows both)
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
                    Q["enqueue"], *columns([(*key, marks[key]) for key in order], 5), now,
                    *columns([(c, pos, index[key], name, firing) for c, pos, key, name, firing in alerts], 5),
                    *columns(notices, 8), now + handoff.lease if handoff else 0.0, handoff.owner if handoff else None,
                    ranks)
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
                    room: Mapping[str, int] | None = None, budgets: Mapping[str, Budget] | None = None) -> Claim:
        await self._hold_owner(owner)
        budgets = budgets or {}
        rooms = {receiver: max(0, n) for receiver, n in (room or {}).items()}
        waits: dict[str, float] = {}
        async with self._tx() as conn:
            if budgets:
                per = sorted(by_destination(budgets.values()).values(), key=lambda b: b.destination)
                peeked = await conn.fetch(Q["bucket_peek"], [b.destination for b in per], [b.rate for b in per],
                                          [b.burst for b in per])
                rooms, waits = common.shares(limit, rooms, budgets, {r["destination"]: r["tokens"] for r in peeked})
            rows = await conn.fetch(Q["claim"], now, limit, list(rooms), list(rooms.values()))
            full = len(rows) >= limit
            if budgets and (wanted := common.wanted(rows, budgets)):
                grants = await _take(conn, wanted)
                rows = common.afford(rows, budgets, grants)
                waits.update(common.waits_after(grants))
            leased = {r["id"] for r in await conn.fetch(Q["lease"], [r["id"] for r in rows], now + lease, owner,
                                                        now)} if rows else set()
            claimed = []
            for row in rows:
                if row["id"] not in leased:  # another replica took it between our read and our update
                    continue
                try:
                    notification = notification_from_row(dict(row))
                except ValueError as exc:
                    log.error("notification %d cannot be read back, dead-lettering it: %s", row["id"], exc)
                    await conn.execute(Q["unreadable"], row["id"], now)
                    continue
                claimed.append(Claimed(notification, row["give_up_at"], now + lease))
            next_due = now if full else await conn.fetchval(Q["next_due"], now)
        return Claim(claimed, next_due, waits)

    async def spend(self, wanted: Mapping[Budget, int]) -> dict[str, Grant]:
        """A fast destination's tokens are taken several at a time and kept a moment (ratelimit.Prepaid)."""
        out: dict[str, Grant] = {}
        short: dict[Budget, tuple[int, int]] = {}  # budget -> (still needed, already covered)
        for b, n in wanted.items():
            covered = self._prepaid.use(b.destination, n)
            if covered >= n:
                out[b.destination] = Grant(n, 0.0)
            else:
                short[b] = (n - covered, covered)
        if short:
            async with self._conn() as conn:
                grants = await _take(conn, {b: need + prepay(b) - 1 for b, (need, _) in short.items()})
            for b, (need, covered) in short.items():
                got = grants[b.destination]
                used = min(need, got.granted)
                self._prepaid.keep(b.destination, got.granted - used)
                out[b.destination] = Grant(covered + used, 0.0 if used == need else got.wait)
        return out

    async def release(self, owner: str, notification_ids: Sequence[int]) -> None:
        if notification_ids:
            async with self._conn() as conn:
                await conn.execute(Q["release"], owner, list(notification_ids))

    async def _finish(self, sql: str, params: tuple[Any, ...], attempt: Attempt) -> None:
        async with self._conn() as conn:
            await conn.execute(sql, *params, *attempt_fields(attempt))

    async def complete(self, notification_id: int, owner: str, attempt: Attempt) -> None:
        await self._finish(Q["done"], common.delivered(notification_id, owner, attempt), attempt)

    async def dead_letter(self, notification_id: int, owner: str, attempt: Attempt) -> None:
        await self._finish(Q["done"], common.dead(notification_id, owner, attempt), attempt)

    async def retry_later(self, notification_id: int, owner: str, attempt: Attempt, next_attempt_at: float,
                          count_attempt: bool = True) -> None:
        await self._finish(Q["retry"], common.retry(notification_id, owner, attempt, next_attempt_at, count_attempt),
                           attempt)

    async def act(self, marks: Sequence[str], rows: Sequence[ActionRow], now: float,
                  handoff: Handoff | None = None) -> Acted:
        if handoff is not None:
            await self._hold_owner(handoff.owner)  # as enqueue does: its leases must outlive no owner
        return await super().act(marks, rows, now, handoff)

    async def retry_now(self, receiver: str, now: float) -> int:
        async with self._conn() as conn:
            return int((await conn.execute(Q["retry_now"], now, receiver)).split()[-1])

    async def remember_refs(self, receiver: str, keys: Sequence[str], ref: str) -> None:
        if keys:
            async with self._conn() as conn:
                await conn.execute(Q["refs_put"], receiver, list(keys), ref, time.time())

    # -- heartbeats (relay.heartbeat) --------------------------------------------------------

    async def heartbeat_seen(self, names: Sequence[str], now: float) -> None:
        async with self._conn() as conn:
            await conn.execute(Q["heartbeat_seen"], sorted(names), now)

    async def heartbeats(self, watch: Mapping[str, float], now: float) -> list[HeartbeatState]:
        if not watch:
            async with self._conn() as conn:
                return [HeartbeatState(*row) for row in await conn.fetch(Q["heartbeats"])]
        names = sorted(watch)
        async with self._tx() as conn:
            await conn.execute(Q["heartbeat_watch"], names, now)
            await conn.execute(Q["heartbeat_listen"], names, now, [watch[n] for n in names])
            return [HeartbeatState(*row) for row in await conn.fetch(Q["heartbeats"])]

    async def heartbeat_missing(self, name: str, silent_since: float, now: float,
                                notice: list[Candidate]) -> list[Enqueued] | None:
        return await self._heartbeat_turn(Q["heartbeat_missing"], (name, silent_since, now), now, notice)

    async def heartbeat_recovered(self, name: str, missing_since: float, now: float,
                                  notice: list[Candidate]) -> list[Enqueued] | None:
        return await self._heartbeat_turn(Q["heartbeat_back"], (name, missing_since), now, notice)

    async def _heartbeat_turn(self, sql: str, params: tuple[Any, ...], now: float,
                              notice: list[Candidate]) -> list[Enqueued] | None:
        """The state change and its notice commit together: a crash between them cannot lose the notice."""
        async with self._tx() as conn:
            if await conn.fetchval(sql, *params) is None:
                return None
            return await self.enqueue(notice, now, within=conn)

    # -- escalation (relay.stages.escalation) -------------------------------------------------------

    async def escalate(self, ids: Sequence[int], now: float, notice: list[Candidate],
                       escalation: Escalation | None) -> list[Enqueued] | None:
        """The locking read makes a replica sending the same steps wait, then find them sent: one escalation."""
        steps = sorted(set(ids))
        async with self._tx() as conn:
            if len(await conn.fetch(Q["escalation_lock"], steps)) != len(steps):
                return None
            results = await self.enqueue(notice, now, within=conn)
            written = [r.notification_id for r in results if r.notification_id is not None]
            await conn.execute(Q["escalation_sent"], now, json.dumps(written), steps)
            if escalation is not None:
                await conn.execute(Q["notification_escalation"], escalation.to_json(), written)
            return results


async def _take(conn: Conn, wanted: Mapping[Budget, int]) -> dict[str, Grant]:
    """Take tokens from the shared buckets (one statement; destinations in one order, so takes cannot deadlock)."""
    order = sorted(wanted, key=lambda b: b.destination)
    rows = await conn.fetch(Q["bucket_take"], [b.destination for b in order], [b.rate for b in order],
                            [b.burst for b in order], [wanted[b] for b in order])
    return {r["destination"]: grant(r["granted"], r["tokens"], r["rate"]) for r in rows}
