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
import json
import logging
import queue
import sqlite3
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar

from relay.alerts import Escalation
from relay.errors import StoreUnavailable
from relay.pacing.ratelimit import Buckets, Budget, Grant, by_destination
from relay.store import common, migrate
from relay.store.base import (
    Attempt,
    Candidate,
    Claim,
    Claimed,
    Enqueued,
    Handoff,
    HeartbeatState,
)
from relay.store.rows import (
    attempt_fields,
    notification_from_row,
)
from relay.store.sqlite_ops import (
    DIALECT,
    Q,
    classify,
    drive,
    due_heads,
    enqueue,
    probe,
    run,
    run_many,
    settle,
)

log = logging.getLogger(__name__)

T = TypeVar("T")
Op = Callable[[sqlite3.Connection], Any]
# The op, its caller's future, whether its commit must be durable, what to run on the caller's loop before COMMIT.
Item = tuple[Op, "asyncio.Future[Any]", bool, Callable[[], None] | None]

MAX_BATCH = 512
# WAL pages are copied into the database file by a thread of their own, this often. SQLite's own checkpoint ran
# inside the commit that crossed 1,000 pages: that webhook, and every one queued behind it, waited 20-330 ms.
CHECKPOINT_SECONDS = 1.0
# If the background checkpoint cannot run (it logs why), the commit path still keeps the WAL under ~40 MB.
WAL_AUTOCHECKPOINT_PAGES = 10_000


class SqliteStore(common.Scripted):
    dialect = DIALECT

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
        self._buckets = Buckets()  # rate limits: one process serves this file, so its buckets are the budget

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
        for script in migrate.due("sqlite", conn.execute("PRAGMA user_version").fetchone()[0]):
            conn.executescript(f"BEGIN IMMEDIATE;\n{script.sql}\nPRAGMA user_version = {script.number};\nCOMMIT;")

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
        durable = any(durable for _, _, durable, _ in batch)
        unavailable: str | None = None  # a durable op's store error (not its data's)
        changes = conn.total_changes
        try:
            synchronous = "FULL" if durable else "NORMAL"
            if synchronous != self._synchronous:
                conn.execute(f"PRAGMA synchronous = {synchronous}")
                self._synchronous = synchronous
            conn.execute("BEGIN IMMEDIATE")
            for op, fut, op_durable, _ in batch:
                conn.execute("SAVEPOINT op")
                try:
                    value = op(conn)
                except Exception as exc:
                    conn.execute("ROLLBACK TO op")
                    refused = classify(exc)
                    if isinstance(refused, StoreUnavailable) and op_durable:
                        unavailable = str(exc)
                    results.append((fut, None, refused))
                    continue
                conn.execute("RELEASE op")
                results.append((fut, value, None))
            for _, fut, _, committing in batch:
                if committing is not None:  # the loop works while COMMIT's fsync runs without the GIL
                    fut.get_loop().call_soon_threadsafe(committing)
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
            results = [(fut, None, failure) for _, fut, _, _ in batch]
        for fut, value, error in results:
            fut.get_loop().call_soon_threadsafe(settle, fut, value, error)

    async def _call(self, op: Callable[[sqlite3.Connection], T], durable: bool = True,
                    committing: Callable[[], None] | None = None) -> T:
        """Run `op` in the next batch; `durable=False` for work a power cut may undo (leases, outcomes); `committing`
        runs on this loop when the batch is about to commit."""
        if self._thread is None:
            raise StoreUnavailable("store is not open")
        fut: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        self._queue.put((op, fut, durable, committing))
        return await fut

    async def _script(self, script: common.Script, read: bool = False) -> Any:
        """Run one of relay.store.common's scripts as one op of the next batch (reads too, as before: durable)."""
        return await self._call(lambda conn: drive(conn, script))

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
        await self._call(lambda conn: run(conn, Q["release_all"]))

    async def ping(self) -> None:
        await self._call(lambda conn: conn.execute("SELECT 1").fetchone(), durable=False)

    async def ready(self) -> None:
        if self._write_failure is None:
            await self.ping()
        else:  # committing the probe clears the failure; failing to raises StoreUnavailable
            await self._call(probe)

    async def enqueue(self, candidates: list[Candidate], received_at: float,
                      handoff: Handoff | None = None) -> list[Enqueued]:
        return await self._call(lambda conn: enqueue(conn, candidates, received_at, handoff),
                                committing=handoff.prepare if handoff is not None else None)

    async def claim(self, owner: str, limit: int, now: float, lease: float,
                    room: Mapping[str, int] | None = None, budgets: Mapping[str, Budget] | None = None) -> Claim:
        budgets = budgets or {}

        def op(conn: sqlite3.Connection) -> Claim:
            shares, waits = dict(room or {}), dict[str, float]()
            if budgets:
                shares, waits = common.shares(limit, shares, budgets,
                                              self._buckets.peek(by_destination(budgets.values()).values()))
            due, more, next_due = due_heads(conn, limit, now, shares)
            if len(due) > limit:
                due, more = due[:limit], True
            if budgets and (wanted := common.wanted(due, budgets)):
                grants = self._buckets.take(wanted)
                due = common.afford(due, budgets, grants)
                waits.update(common.waits_after(grants))
            claimed: list[Claimed] = []
            for row in due:
                try:
                    notification = notification_from_row(row)
                except ValueError as exc:  # unreadable row: set it aside rather than block every lane
                    log.error("notification %d cannot be read back, dead-lettering it: %s", row["id"], exc)
                    conn.execute(Q["unreadable"], (now, row["id"]))
                    continue
                conn.execute(Q["lease"], (now + lease, owner, row["id"]))
                claimed.append(Claimed(notification, row["give_up_at"], now + lease))
            return Claim(claimed, now if more and len(claimed) >= limit else next_due, waits)

        return await self._call(op, durable=False)  # a lost lease is freed at start anyway

    async def spend(self, wanted: Mapping[Budget, int]) -> dict[str, Grant]:
        return self._buckets.take(wanted)  # this process's buckets: no database work

    async def release(self, owner: str, notification_ids: Sequence[int]) -> None:
        if notification_ids:
            ids = json.dumps(list(notification_ids))
            await self._call(lambda conn: run(conn, Q["release"], (owner, ids)), durable=False)

    async def _finish(self, sql: str, params: tuple[Any, ...], notification_id: int, attempt: Attempt,
                      durable: bool = False) -> None:
        """Record an outcome; undone by a power cut, it would be tried again (at least once, never lost)."""
        def op(conn: sqlite3.Connection) -> None:
            if conn.execute(sql, params).rowcount:
                conn.execute(Q["record_attempt"], (notification_id, *attempt_fields(attempt)))

        await self._call(op, durable)

    async def complete(self, notification_id: int, owner: str, attempt: Attempt) -> None:
        await self._finish(Q["done"], common.delivered(notification_id, owner, attempt), notification_id, attempt)

    async def dead_letter(self, notification_id: int, owner: str, attempt: Attempt) -> None:
        await self._finish(Q["done"], common.dead(notification_id, owner, attempt), notification_id, attempt,
                           durable=True)  # a fallback may be enqueued next: the dead letter must not come back

    async def retry_later(self, notification_id: int, owner: str, attempt: Attempt, next_attempt_at: float,
                          count_attempt: bool = True) -> None:
        await self._finish(Q["retry"], common.retry(notification_id, owner, attempt, next_attempt_at, count_attempt),
                           notification_id, attempt)

    async def retry_now(self, receiver: str, now: float) -> int:
        return await self._call(lambda conn: conn.execute(Q["retry_now"], (now, receiver, now, now)).rowcount,
                                durable=False)  # undone by a power cut, the retries keep their backoff

    async def remember_refs(self, receiver: str, keys: Sequence[str], ref: str) -> None:
        now = time.time()
        await self._call(lambda conn: run_many(conn, Q["refs_put"], [(receiver, key, ref, now) for key in keys]))

    # -- heartbeats (relay.heartbeat) --------------------------------------------------------

    async def heartbeat_seen(self, names: Sequence[str], now: float) -> None:
        # Not fsynced: a power cut may undo it, and the next heartbeat (a minute later) says the same again.
        await self._call(lambda conn: run_many(conn, Q["heartbeat_seen"], [(n, now) for n in sorted(names)]),
                         durable=False)

    async def heartbeats(self, watch: Mapping[str, float], now: float) -> list[HeartbeatState]:
        def op(conn: sqlite3.Connection) -> list[HeartbeatState]:
            if watch:
                names = sorted(watch)
                run_many(conn, Q["heartbeat_watch"], [(name, now) for name in names])
                run_many(conn, Q["heartbeat_listen"], [(name, now, watch[name]) for name in names])
            return [HeartbeatState(*row) for row in conn.execute(Q["heartbeats"])]

        # Not fsynced: undone by a power cut, the next check writes it again (and a power cut is a gap in listening).
        return await self._call(op, durable=False)

    async def heartbeat_missing(self, name: str, silent_since: float, now: float,
                                notice: list[Candidate]) -> list[Enqueued] | None:
        def op(conn: sqlite3.Connection) -> list[Enqueued] | None:
            if not conn.execute(Q["heartbeat_missing"], (now, name, silent_since)).rowcount:
                return None
            return enqueue(conn, notice, now, None)

        return await self._call(op)

    async def heartbeat_recovered(self, name: str, missing_since: float, now: float,
                                  notice: list[Candidate]) -> list[Enqueued] | None:
        def op(conn: sqlite3.Connection) -> list[Enqueued] | None:
            if not conn.execute(Q["heartbeat_back"], (name, missing_since, missing_since)).rowcount:
                return None
            return enqueue(conn, notice, now, None)

        return await self._call(op)

    # -- escalation (relay.stages.escalation) -------------------------------------------------------

    async def escalate(self, ids: Sequence[int], now: float, notice: list[Candidate],
                       escalation: Escalation | None) -> list[Enqueued] | None:
        steps = json.dumps(sorted(set(ids)))

        def op(conn: sqlite3.Connection) -> list[Enqueued] | None:
            if len(conn.execute(Q["escalation_lock"], (steps,)).fetchall()) != len(set(ids)):
                return None
            results = enqueue(conn, notice, now, None)
            written = json.dumps([r.notification_id for r in results if r.notification_id is not None])
            run(conn, Q["escalation_sent"], (now, written, steps))
            if escalation is not None:
                run(conn, Q["notification_escalation"], (escalation.to_json(), written))
            return results

        return await self._call(op)


