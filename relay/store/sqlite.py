"""The embedded store: SQLite in WAL mode with durable commits, one writer thread, group commit.

Every operation is a function queued to a single thread that owns the
connection. The thread takes everything queued, runs each in its own
savepoint inside one transaction, and commits once: concurrent webhooks share
one fsync instead of paying one each, and nobody's answer comes back before
the commit that holds their work. Batches holding only leases, completions and
retry schedules commit without the fsync (WAL `synchronous=NORMAL`: safe from a
process crash; a power cut can only undo them, which means a repeat, never a loss).
"""

from __future__ import annotations

import asyncio
import logging
import queue
import sqlite3
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from importlib import resources
from typing import Any, TypeVar

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

T = TypeVar("T")
Op = Callable[[sqlite3.Connection], Any]
Item = tuple[Op, "asyncio.Future[Any]", bool]  # the op, its caller's future, whether its commit must be durable

MAX_BATCH = 512
# WAL pages are copied into the database file by a thread of their own, this often. SQLite's own checkpoint ran
# inside the commit that crossed 1,000 pages: that webhook, and every one queued behind it, waited 20-330 ms.
CHECKPOINT_SECONDS = 1.0
# If the background checkpoint cannot run (it logs why), the commit path still keeps the WAL under ~40 MB.
WAL_AUTOCHECKPOINT_PAGES = 10_000

SQL_DEDUP_GET = "SELECT notified_at FROM dedup WHERE receiver=? AND fingerprint=? AND starts_at=? AND status=?"
SQL_DEDUP_PUT = """
INSERT INTO dedup (receiver, fingerprint, starts_at, status, notified_at) VALUES (?, ?, ?, ?, ?)
ON CONFLICT (receiver, fingerprint, starts_at, status) DO UPDATE SET notified_at = excluded.notified_at
"""
SQL_INSERT = """
INSERT INTO notifications (receiver, integration, lane, status, alertnames, payload, received_at, give_up_at,
                           next_attempt_at)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)
"""
SQL_NEXT_RECEIVER = "SELECT min(receiver) FROM notifications WHERE state = 'pending' AND receiver > ?"
SQL_RECEIVER_HEADS = """
SELECT n.id, n.receiver, n.integration, n.lane, n.payload, n.received_at, n.give_up_at, n.attempts,
       n.next_attempt_at, n.lease_until
FROM notifications n INDEXED BY notifications_receiver_due
WHERE n.state = 'pending' AND n.receiver = ? AND n.lease_until <= ?
  AND NOT EXISTS (SELECT 1 FROM notifications p WHERE p.state = 'pending' AND p.lane = n.lane AND p.id < n.id)
ORDER BY n.next_attempt_at, n.id
"""
SQL_LANE_HEAD = "SELECT min(id) FROM notifications WHERE lane = ? AND state = 'pending'"
SQL_LEASE = "UPDATE notifications SET lease_until = ?, lease_owner = ? WHERE id = ?"
SQL_UNREADABLE = "UPDATE notifications SET state = 'dead', finished_at = ?, last_error = 'unreadable' WHERE id = ?"
SQL_RELEASE_ALL = "UPDATE notifications SET lease_until = 0, lease_owner = NULL WHERE state = 'pending'"
SQL_DONE = """
UPDATE notifications SET state = ?, attempts = attempts + 1, finished_at = ?, last_error = ?,
       lease_until = 0, lease_owner = NULL
WHERE id = ? AND state = 'pending' AND lease_owner = ?
"""
SQL_RETRY = """
UPDATE notifications SET attempts = attempts + ?, next_attempt_at = ?, last_error = ?, lease_until = 0,
       lease_owner = NULL
WHERE id = ? AND state = 'pending' AND lease_owner = ?
"""
# A retry waiting out a rate limit keeps its time: its last error is `rate_limited` (see relay.dispatcher).
SQL_RETRY_NOW = """
UPDATE notifications SET next_attempt_at = ?
WHERE state = 'pending' AND receiver = ? AND attempts > 0 AND next_attempt_at > ? AND lease_until <= ?
  AND last_error NOT LIKE 'rate_limited%'
"""
SQL_ATTEMPT = """
INSERT INTO attempts (notification_id, started_at, duration, outcome, reason, detail) VALUES (?, ?, ?, ?, ?, ?)
"""
SQL_REPLAY = """
UPDATE notifications SET state = 'pending', next_attempt_at = ?, give_up_at = ? + (give_up_at - received_at),
       finished_at = NULL, lease_until = 0, lease_owner = NULL
WHERE id = ? AND state = 'dead'
"""
SQL_REF_PUT = """
INSERT INTO message_refs (receiver, alert_key, ref, created_at) VALUES (?, ?, ?, ?)
ON CONFLICT (receiver, alert_key) DO UPDATE SET ref = excluded.ref, created_at = excluded.created_at
"""
SQL_PRUNE = (
    "DELETE FROM attempts WHERE notification_id IN (SELECT id FROM notifications "
    "INDEXED BY notifications_delivered_at WHERE state = 'delivered' AND finished_at < ?)",
    "DELETE FROM notifications INDEXED BY notifications_delivered_at WHERE state = 'delivered' AND finished_at < ?",
    "DELETE FROM dedup WHERE notified_at < ?",
    "DELETE FROM message_refs WHERE created_at < ?",
)
# Cancelled notifications are few (an operator's hand): found through the (state, receiver) index.
SQL_PRUNE_CANCELLED = (
    "DELETE FROM attempts WHERE notification_id IN "
    "(SELECT id FROM notifications WHERE state = 'cancelled' AND finished_at < ?)",
    "DELETE FROM notifications WHERE state = 'cancelled' AND finished_at < ?",
)
SQL_CANCEL = """
UPDATE notifications SET state = 'cancelled', finished_at = ?, last_error = ?, lease_until = 0, lease_owner = NULL
WHERE id = ? AND state = 'pending' AND lease_until <= ?
"""
# Readiness after a failed write: a write of about a large webhook's size, undone in the same transaction.
SQL_PROBE = ("INSERT OR REPLACE INTO message_refs (receiver, alert_key, ref, created_at) "
             "VALUES ('', 'relay:probe', ?, 0)",
             "DELETE FROM message_refs WHERE receiver = '' AND alert_key = 'relay:probe'")
PROBE_BYTES = 64 * 1024
# Errors about the data itself (retrying cannot help): everything else from sqlite3 is the store failing.
DATA_ERRORS = (sqlite3.DataError, sqlite3.IntegrityError, sqlite3.InterfaceError, sqlite3.ProgrammingError,
               UnicodeError)
SQL_PENDING = "SELECT receiver, count(*), min(received_at) FROM notifications WHERE state = 'pending' GROUP BY receiver"
SQL_HEARTBEAT_SEEN = """
INSERT INTO heartbeats (name, last_seen, watched_since) VALUES (?, ?, ?)
ON CONFLICT (name) DO UPDATE SET last_seen = max(coalesce(last_seen, excluded.last_seen), excluded.last_seen)
"""
SQL_HEARTBEAT_WATCH = "INSERT INTO heartbeats (name, watched_since) VALUES (?, ?) ON CONFLICT (name) DO NOTHING"
SQL_HEARTBEATS = "SELECT name, last_seen, watched_since, missing_since FROM heartbeats ORDER BY name"
SQL_HEARTBEAT_MISSING = """
UPDATE heartbeats SET missing_since = ?
WHERE name = ? AND missing_since IS NULL AND coalesce(last_seen, watched_since) < ?
"""
SQL_HEARTBEAT_BACK = "UPDATE heartbeats SET missing_since = NULL WHERE name = ? AND missing_since = ? AND last_seen > ?"
SQL_DEAD = "SELECT receiver, count(*) FROM notifications WHERE state = 'dead' GROUP BY receiver"


def _enqueue(conn: sqlite3.Connection, candidates: list[Candidate], now: float,
             handoff: Handoff | None) -> list[Enqueued]:
    out = []
    taken: dict[str, int] = {}
    for cand in candidates:
        kept = []
        for alert, interval in zip(cand.group.alerts, cand.repeat_intervals, strict=True):
            key = (cand.receiver, key_part(alert.fingerprint), dedup_time(alert.startsAt), alert.status)
            row = conn.execute(SQL_DEDUP_GET, key).fetchone()
            if row is not None and (alert.status == "resolved" or now - row[0] < interval.total_seconds()):
                continue
            conn.execute(SQL_DEDUP_PUT, (*key, now))
            kept.append(alert)
        dropped = len(cand.group.alerts) - len(kept)
        if not kept:
            out.append(Enqueued(cand.receiver, None, 0, dropped))
            continue
        group = cand.group.model_copy(update={"alerts": kept, "status": group_status(kept)})
        names = ",".join(sorted({a.name for a in kept}))
        give_up_at = now + cand.give_up_after.total_seconds()
        cur = conn.execute(SQL_INSERT, (cand.receiver, cand.integration, cand.lane, group.status, names,
                                        storable(group.model_dump_json()), now, give_up_at, now))
        notification_id = cur.lastrowid
        assert notification_id is not None
        claimed = None
        if (handoff is not None and conn.execute(SQL_LANE_HEAD, (cand.lane,)).fetchone()[0] == notification_id
                and handoff.take(taken, cand.receiver)):
            conn.execute(SQL_LEASE, (now + handoff.lease, handoff.owner, notification_id))
            claimed = handed_off(notification_id, cand, group, now, give_up_at, handoff.lease)
        out.append(Enqueued(cand.receiver, notification_id, len(kept), dropped, claimed))
    return out


def _probe(conn: sqlite3.Connection) -> None:
    conn.execute(SQL_PROBE[0], ("x" * PROBE_BYTES,)).close()
    conn.execute(SQL_PROBE[1]).close()


def _replay(conn: sqlite3.Connection, notification_id: int, now: float, forgotten_before: float) -> Replay:
    """Put a dead letter back, minus firing alerts that must not re-open an incident (see Store.replay)."""
    row = conn.execute("SELECT receiver, payload, received_at FROM notifications WHERE id = ? AND state = 'dead'",
                       (notification_id,)).fetchone()
    if row is None:
        return "missing"
    group = WebhookMessage.model_validate_json(row["payload"])
    too_old = row["received_at"] < forgotten_before
    kept = [a for a in group.alerts if a.status == "resolved" or (not too_old and conn.execute(
        SQL_DEDUP_GET, (row["receiver"], key_part(a.fingerprint), dedup_time(a.startsAt), "resolved")
    ).fetchone() is None)]
    if not kept:
        return "too_old" if too_old else "resolved"
    if len(kept) != len(group.alerts):
        group = group.model_copy(update={"alerts": kept, "status": group_status(kept)})
        conn.execute("UPDATE notifications SET payload = ? WHERE id = ?", (group.model_dump_json(), notification_id))
    return "replayed" if conn.execute(SQL_REPLAY, (now, now, notification_id)).rowcount else "missing"


def _pending_receivers(conn: sqlite3.Connection) -> list[str]:
    """Receivers with pending rows, one index probe each (a loose index scan, not a pass over the rows)."""
    out: list[str] = []
    while (receiver := conn.execute(SQL_NEXT_RECEIVER, (out[-1] if out else "",)).fetchone()[0]) is not None:
        out.append(receiver)
    return out


def _due_heads(conn: sqlite3.Connection, limit: int, now: float, room: Mapping[str, int]
               ) -> tuple[list[Any], bool, float | None]:
    """Due lane heads in due order, at most each receiver's room; whether more were due; when the next one is."""
    heads: list[Any] = []  # sqlite3.Row
    more, next_due = False, None
    for receiver in _pending_receivers(conn):
        share = min(limit, room.get(receiver, limit))
        if share <= 0:  # this receiver has its share in flight: its completions will wake the dispatcher
            continue
        taken = 0
        for row in conn.execute(SQL_RECEIVER_HEADS, (receiver, now)):
            if row["next_attempt_at"] > now:
                next_due = row["next_attempt_at"] if next_due is None else min(next_due, row["next_attempt_at"])
                break
            if taken >= share:
                more = True
                break
            heads.append(row)
            taken += 1
    heads.sort(key=lambda row: (row["next_attempt_at"], row["id"]))
    return heads, more, next_due


class SqliteStore:
    def __init__(self, path: str, checkpoint_seconds: float = CHECKPOINT_SECONDS) -> None:
        self.path = path
        self.checkpoint_seconds = checkpoint_seconds
        self._queue: queue.SimpleQueue[Item | None] = queue.SimpleQueue()
        self._synchronous = "FULL"
        self._thread: threading.Thread | None = None
        self._conn: sqlite3.Connection | None = None
        self._checkpointer: threading.Thread | None = None
        self._stop_checkpoints = threading.Event()
        self._write_failure: str | None = None  # why the last durable batch could not commit (None: it did)

    # -- the writer thread ---------------------------------------------------------------

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        conn.row_factory = sqlite3.Row
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("PRAGMA synchronous = FULL")
        conn.execute("PRAGMA foreign_keys = ON")
        conn.execute("PRAGMA busy_timeout = 5000")
        conn.execute(f"PRAGMA wal_autocheckpoint = {WAL_AUTOCHECKPOINT_PAGES}")
        return conn

    def _checkpoint_forever(self) -> None:
        """Copy committed WAL pages into the database file, off the commit path. PASSIVE never blocks the writer:
        it copies what no reader still needs, and SQLite reuses the WAL from its start once all was copied."""
        try:
            conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        except sqlite3.Error as exc:
            log.error("no background checkpoints for %s (commits will checkpoint): %s", self.path, exc)
            return
        try:
            while not self._stop_checkpoints.wait(self.checkpoint_seconds):
                try:
                    conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
                except sqlite3.Error as exc:
                    log.warning("background checkpoint failed (tried again in %.0fs): %s", self.checkpoint_seconds,
                                exc)
        finally:
            conn.close()

    def _migrate(self, conn: sqlite3.Connection) -> None:
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        folder = resources.files("relay.store").joinpath("migrations/sqlite")
        scripts = sorted((p for p in folder.iterdir() if p.name.endswith(".sql")), key=lambda p: p.name)
        for script in scripts:
            number = int(script.name.split("_", 1)[0])
            if number <= version:
                continue
            log.info("applying migration %s", script.name)
            conn.executescript(f"BEGIN IMMEDIATE;\n{script.read_text()}\nPRAGMA user_version = {number};\nCOMMIT;")

    def _run(self) -> None:
        assert self._conn is not None
        conn = self._conn
        while True:
            item = self._queue.get()
            if item is None:
                return
            batch = [item]
            while len(batch) < MAX_BATCH:
                try:
                    nxt = self._queue.get_nowait()
                except queue.Empty:
                    break
                if nxt is None:
                    self._queue.put(None)
                    break
                batch.append(nxt)
            self._run_batch(conn, batch)

    def _run_batch(self, conn: sqlite3.Connection, batch: list[Item]) -> None:
        results: list[tuple[asyncio.Future[Any], Any, BaseException | None]] = []
        durable = any(durable for _, _, durable in batch)
        unavailable: str | None = None  # a durable op's store error (not its data's)
        changes = conn.total_changes
        try:
            synchronous = "FULL" if durable else "NORMAL"
            if synchronous != self._synchronous:
                conn.execute(f"PRAGMA synchronous = {synchronous}")
                self._synchronous = synchronous
            conn.execute("BEGIN IMMEDIATE")
            for op, fut, op_durable in batch:
                conn.execute("SAVEPOINT op")
                try:
                    value = op(conn)
                except Exception as exc:
                    conn.execute("ROLLBACK TO op")
                    refused = _classify(exc)
                    if isinstance(refused, StoreUnavailable) and op_durable:
                        unavailable = str(exc)
                    results.append((fut, None, refused))
                    continue
                conn.execute("RELEASE op")
                results.append((fut, value, None))
            conn.execute("COMMIT")
            if unavailable is not None or (durable and conn.total_changes > changes):  # reads prove nothing
                self._write_failure = unavailable
        except sqlite3.Error as exc:
            if durable:
                self._write_failure = str(exc)
            log.error("store commit failed: %s", exc)
            if conn.in_transaction:
                try:
                    conn.execute("ROLLBACK")
                except sqlite3.Error:
                    pass
            failure = StoreUnavailable(f"store cannot commit: {exc}")
            results = [(fut, None, failure) for _, fut, _ in batch]
        for fut, value, error in results:
            fut.get_loop().call_soon_threadsafe(_settle, fut, value, error)

    async def _call(self, op: Callable[[sqlite3.Connection], T], durable: bool = True) -> T:
        """Run `op` in the next batch; `durable=False` for work a power cut may undo (leases, outcomes)."""
        if self._thread is None:
            raise StoreUnavailable("store is not open")
        fut: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        self._queue.put((op, fut, durable))
        return await fut

    # -- the Store protocol ----------------------------------------------------------------

    async def open(self) -> None:
        def start() -> None:
            try:
                conn = self._connect()
                self._migrate(conn)
            except sqlite3.Error as exc:
                raise StoreUnavailable(f"cannot open {self.path}: {exc}") from None
            self._conn = conn

        await asyncio.to_thread(start)
        self._thread = threading.Thread(target=self._run, name="relay-sqlite-writer", daemon=True)
        self._thread.start()
        self._stop_checkpoints.clear()
        self._checkpointer = threading.Thread(target=self._checkpoint_forever, name="relay-sqlite-checkpoint",
                                              daemon=True)
        self._checkpointer.start()

    async def close(self) -> None:
        if self._checkpointer is not None:
            self._stop_checkpoints.set()
            await asyncio.to_thread(self._checkpointer.join)
            self._checkpointer = None
        if self._thread is None:
            return
        self._queue.put(None)
        await asyncio.to_thread(self._thread.join)
        self._thread = None
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    async def release_leases(self) -> None:
        """Free every lease: at start of the one process serving this file, its previous self's leases are dead."""
        await self._call(lambda conn: _run(conn, SQL_RELEASE_ALL))

    async def ping(self) -> None:
        await self._call(lambda conn: conn.execute("SELECT 1").fetchone(), durable=False)

    async def ready(self) -> None:
        if self._write_failure is None:
            await self.ping()
        else:  # committing the probe clears the failure; failing to raises StoreUnavailable
            await self._call(_probe)

    async def enqueue(self, candidates: list[Candidate], received_at: float,
                      handoff: Handoff | None = None) -> list[Enqueued]:
        return await self._call(lambda conn: _enqueue(conn, candidates, received_at, handoff))

    async def claim(self, owner: str, limit: int, now: float, lease: float,
                    room: Mapping[str, int] | None = None) -> Claim:
        def op(conn: sqlite3.Connection) -> Claim:
            due, more, next_due = _due_heads(conn, limit, now, room or {})
            if len(due) > limit:
                due, more = due[:limit], True
            claimed: list[Claimed] = []
            for row in due:
                try:
                    notification = notification_from_row(row)
                except ValueError as exc:  # unreadable row: set it aside rather than block every lane
                    log.error("notification %d cannot be read back, dead-lettering it: %s", row["id"], exc)
                    conn.execute(SQL_UNREADABLE, (now, row["id"]))
                    continue
                conn.execute(SQL_LEASE, (now + lease, owner, row["id"]))
                claimed.append(Claimed(notification, row["give_up_at"], now + lease))
            return Claim(claimed, now if more and len(claimed) >= limit else next_due)

        return await self._call(op, durable=False)  # a lost lease is freed at start anyway

    async def _finish(self, sql: str, params: tuple[Any, ...], notification_id: int, attempt: Attempt,
                      durable: bool = False) -> None:
        """Record an outcome; undone by a power cut, it would be tried again (at least once, never lost)."""
        def op(conn: sqlite3.Connection) -> None:
            if conn.execute(sql, params).rowcount:
                conn.execute(SQL_ATTEMPT, (notification_id, attempt.started_at, attempt.duration, attempt.outcome,
                                           attempt.reason, attempt.detail))

        await self._call(op, durable)

    async def complete(self, notification_id: int, owner: str, attempt: Attempt) -> None:
        end = attempt.started_at + attempt.duration
        await self._finish(SQL_DONE, (State.DELIVERED.value, end, None, notification_id, owner),
                           notification_id, attempt)

    async def dead_letter(self, notification_id: int, owner: str, attempt: Attempt) -> None:
        end = attempt.started_at + attempt.duration
        error = attempt_error(attempt.reason, attempt.detail)
        await self._finish(SQL_DONE, (State.DEAD.value, end, error, notification_id, owner), notification_id, attempt,
                           durable=True)  # a fallback may be enqueued next: the dead letter must not come back

    async def retry_later(self, notification_id: int, owner: str, attempt: Attempt, next_attempt_at: float,
                          count_attempt: bool = True) -> None:
        error = attempt_error(attempt.reason, attempt.detail)
        await self._finish(SQL_RETRY, (int(count_attempt), next_attempt_at, error, notification_id, owner),
                           notification_id, attempt)

    async def retry_now(self, receiver: str, now: float) -> int:
        return await self._call(lambda conn: conn.execute(SQL_RETRY_NOW, (now, receiver, now, now)).rowcount,
                                durable=False)  # undone by a power cut, the retries keep their backoff

    async def replay(self, notification_id: int, now: float, forgotten_before: float = 0.0) -> Replay:
        return await self._call(lambda conn: _replay(conn, notification_id, now, forgotten_before))

    async def stats(self, now: float) -> OutboxStats:
        def op(conn: sqlite3.Connection) -> OutboxStats:
            pending, oldest = {}, None
            for receiver, count, first in conn.execute(SQL_PENDING):
                pending[receiver] = count
                oldest = first if oldest is None else min(oldest, first)
            dead = {receiver: count for receiver, count in conn.execute(SQL_DEAD)}
            return OutboxStats(pending, oldest, dead)

        return await self._call(op)

    async def history(self, query: HistoryFilter) -> list[dict[str, Any]]:
        where: list[str] = ["1 = 1"]
        params: list[str | int] = []
        if query.receiver:
            where.append("receiver = ?")
            params.append(query.receiver)
        if query.state:
            where.append("state = ?")
            params.append(query.state)
        if query.alertname:
            where.append("(',' || alertnames || ',') LIKE ?")
            params.append(f"%,{query.alertname},%")
        if query.ids:
            where.append(f"id IN ({','.join('?' * len(query.ids))})")
            params.extend(query.ids)
        sql = f"SELECT {HISTORY_COLUMNS} FROM notifications WHERE {' AND '.join(where)} ORDER BY id DESC LIMIT ?"
        params.append(query.limit)

        return await self._call(lambda conn: [history_row(row) for row in conn.execute(sql, params)])

    async def detail(self, notification_id: int) -> dict[str, Any] | None:
        def op(conn: sqlite3.Connection) -> dict[str, Any] | None:
            row = conn.execute(f"SELECT {HISTORY_COLUMNS}, payload FROM notifications WHERE id = ?",
                               (notification_id,)).fetchone()
            if row is None:
                return None
            sql = f"SELECT {ATTEMPT_COLUMNS} FROM attempts WHERE notification_id = ? ORDER BY started_at, rowid"
            attempts = [dict(a) for a in conn.execute(sql, (notification_id,))]
            return detail_row(row, row["payload"], attempts)

        return await self._call(op)

    async def purge(self, notification_id: int) -> bool:
        def op(conn: sqlite3.Connection) -> bool:
            if conn.execute("SELECT 1 FROM notifications WHERE id = ? AND state = 'dead'",
                            (notification_id,)).fetchone() is None:
                return False
            conn.execute("DELETE FROM attempts WHERE notification_id = ?", (notification_id,))
            conn.execute("DELETE FROM notifications WHERE id = ?", (notification_id,))
            return True

        return bool(await self._call(op))

    async def cancel(self, notification_id: int, now: float, attempt: Attempt) -> Cancel:
        def op(conn: sqlite3.Connection) -> Cancel:
            error = attempt_error(attempt.reason, attempt.detail)
            if conn.execute(SQL_CANCEL, (now, error, notification_id, now)).rowcount:
                conn.execute(SQL_ATTEMPT, (notification_id, attempt.started_at, attempt.duration, attempt.outcome,
                                           attempt.reason, attempt.detail))
                return "cancelled"
            pending = conn.execute("SELECT 1 FROM notifications WHERE id = ? AND state = 'pending'",
                                   (notification_id,)).fetchone()
            return "in_flight" if pending else "missing"

        outcome: Cancel = await self._call(op)
        return outcome

    async def prune(self, finished_before: float, marks_before: float) -> int:
        def op(conn: sqlite3.Connection) -> int:
            conn.execute(SQL_PRUNE_CANCELLED[0], (finished_before,))
            forgotten = conn.execute(SQL_PRUNE_CANCELLED[1], (finished_before,)).rowcount
            conn.execute(SQL_PRUNE[0], (finished_before,))
            forgotten += conn.execute(SQL_PRUNE[1], (finished_before,)).rowcount
            conn.execute(SQL_PRUNE[2], (marks_before,))
            conn.execute(SQL_PRUNE[3], (marks_before,))
            return int(forgotten)

        return await self._call(op)

    async def find_refs(self, receiver: str, keys: Sequence[str]) -> dict[str, str]:
        def op(conn: sqlite3.Connection) -> dict[str, str]:
            found: dict[str, str] = {}
            for start in range(0, len(keys), 500):  # stay under SQLite's bound-parameter limit
                chunk = keys[start:start + 500]
                marks = ",".join("?" * len(chunk))
                sql = f"SELECT alert_key, ref FROM message_refs WHERE receiver = ? AND alert_key IN ({marks})"
                found.update(conn.execute(sql, (receiver, *chunk)).fetchall())
            return found

        return await self._call(op) if keys else {}

    async def remember_refs(self, receiver: str, keys: Sequence[str], ref: str) -> None:
        now = time.time()
        await self._call(lambda conn: _run_many(conn, SQL_REF_PUT, [(receiver, key, ref, now) for key in keys]))

    # -- heartbeats (relay.heartbeat) --------------------------------------------------------

    async def heartbeat_seen(self, names: Sequence[str], now: float) -> None:
        # Not fsynced: a power cut may undo it, and the next heartbeat (a minute later) says the same again.
        await self._call(lambda conn: _run_many(conn, SQL_HEARTBEAT_SEEN, [(n, now, now) for n in sorted(names)]),
                         durable=False)

    async def heartbeats(self, watch: Sequence[str], now: float) -> list[HeartbeatState]:
        def op(conn: sqlite3.Connection) -> list[HeartbeatState]:
            if watch:
                _run_many(conn, SQL_HEARTBEAT_WATCH, [(name, now) for name in watch])
            return [HeartbeatState(*row) for row in conn.execute(SQL_HEARTBEATS)]

        return await self._call(op, durable=False)  # undone by a power cut, it is watched again from the next check

    async def heartbeat_missing(self, name: str, silent_since: float, now: float,
                                notice: list[Candidate]) -> list[Enqueued] | None:
        def op(conn: sqlite3.Connection) -> list[Enqueued] | None:
            if not conn.execute(SQL_HEARTBEAT_MISSING, (now, name, silent_since)).rowcount:
                return None
            return _enqueue(conn, notice, now, None)

        return await self._call(op)

    async def heartbeat_recovered(self, name: str, missing_since: float, now: float,
                                  notice: list[Candidate]) -> list[Enqueued] | None:
        def op(conn: sqlite3.Connection) -> list[Enqueued] | None:
            if not conn.execute(SQL_HEARTBEAT_BACK, (name, missing_since, missing_since)).rowcount:
                return None
            return _enqueue(conn, notice, now, None)

        return await self._call(op)


def _run(conn: sqlite3.Connection, sql: str, params: Sequence[Any] = ()) -> None:
    """Execute for effect. An op must never hand its cursor to the event loop: a cursor dropped there resets its
    statement from the wrong thread, while the writer may be running that same cached statement
    ("bad parameter or other API misuse")."""
    conn.execute(sql, params).close()


def _run_many(conn: sqlite3.Connection, sql: str, rows: Sequence[Sequence[Any]]) -> None:
    conn.executemany(sql, rows).close()


def _classify(exc: Exception) -> Exception:
    """An op's error as the caller sees it: the data refused, the store failing, or (a bug) the error itself."""
    if isinstance(exc, DATA_ERRORS):
        return StoreRejected(f"the store refused the data: {exc}")
    if isinstance(exc, sqlite3.Error):
        return StoreUnavailable(f"store error: {exc}")
    return exc


def _settle(fut: asyncio.Future[Any], value: Any, error: BaseException | None) -> None:
    if fut.done():
        return
    if error is not None:
        fut.set_exception(error)
    else:
        fut.set_result(value)


