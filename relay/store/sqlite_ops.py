"""What the SQLite writer thread runs on its connection (relay.store.sqlite): enqueue with dedup, the due lane
heads, a script of relay.store.common, and how an error is classified. Hot path: enqueue and the claim's heads.

Every function here runs on the writer thread, inside its transaction: none may hand a cursor to the event loop.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
from collections.abc import Mapping, Sequence
from typing import Any

from relay.alerts import group_status, key_part
from relay.errors import StoreRejected, StoreUnavailable
from relay.store import common, queries
from relay.store.base import Candidate, Enqueued, Handoff
from relay.store.rows import dedup_passes, dedup_time, handed_off, shown_at, storable

Q = queries.load("sqlite")
DIALECT = common.Dialect(Q, lambda n: f"?{n}", lambda p: f"id IN (SELECT value FROM json_each({p}))")
PROBE_BYTES = 64 * 1024
# Errors about the data itself (retrying cannot help): everything else from sqlite3 is the store failing.
DATA_ERRORS = (sqlite3.DataError, sqlite3.IntegrityError, sqlite3.InterfaceError, sqlite3.ProgrammingError,
               UnicodeError)


def enqueue(conn: sqlite3.Connection, candidates: list[Candidate], now: float,
             handoff: Handoff | None) -> list[Enqueued]:
    out = []
    taken: dict[str, int] = {}
    for cand in candidates:
        kept = []
        for alert, interval in zip(cand.group.alerts, cand.repeat_intervals, strict=True):
            key = (cand.receiver, key_part(alert.fingerprint), dedup_time(alert.startsAt), alert.status)
            marks = dict(conn.execute(Q["dedup_get"], key[:3]).fetchall())
            if not dedup_passes(alert.status, marks, now, interval.total_seconds()):
                continue
            conn.execute(Q["dedup_put"], (*key, shown_at(alert.status, marks, now)))
            kept.append(alert)
        dropped = len(cand.group.alerts) - len(kept)
        if not kept:
            out.append(Enqueued(cand.receiver, None, 0, dropped))
            continue
        group = cand.group.model_copy(update={"alerts": kept, "status": group_status(kept)})
        names = ",".join(sorted({a.name for a in kept}))
        give_up_at = now + cand.give_up_after.total_seconds()
        cur = conn.execute(Q["insert"], (cand.receiver, cand.integration, cand.lane, group.status, names,
                                        storable(group.model_dump_json()), now, give_up_at, now,
                                        cand.priority.of(a.labels for a in kept)))
        notification_id = cur.lastrowid
        assert notification_id is not None
        claimed = None
        if (handoff is not None and conn.execute(Q["lane_head"], (cand.lane,)).fetchone()[0] == notification_id
                and handoff.take(taken, cand.receiver)):
            conn.execute(Q["lease"], (now + handoff.lease, handoff.owner, notification_id))
            claimed = handed_off(notification_id, cand, group, now, give_up_at, handoff.lease)
        out.append(Enqueued(cand.receiver, notification_id, len(kept), dropped, claimed))
    return out


def probe(conn: sqlite3.Connection) -> None:
    conn.execute(Q["probe_write"], ("x" * PROBE_BYTES,)).close()
    conn.execute(Q["probe_undo"]).close()


def pending_receivers(conn: sqlite3.Connection) -> list[str]:
    """Receivers with pending rows, one index probe each (a loose index scan, not a pass over the rows)."""
    out: list[str] = []
    while (receiver := conn.execute(Q["next_receiver"], (out[-1] if out else "",)).fetchone()[0]) is not None:
        out.append(receiver)
    return out


def due_heads(conn: sqlite3.Connection, limit: int, now: float, room: Mapping[str, int]
               ) -> tuple[list[Any], bool, float | None]:
    """Due lane heads, most severe first, then oldest, at most each receiver's room; whether more were due; when
    the next not-yet-due one is."""
    heads: list[Any] = []  # sqlite3.Row
    more, next_due = False, None
    for receiver in pending_receivers(conn):
        share = min(limit, room.get(receiver, limit))
        if share <= 0:  # this receiver has its share in flight: its completions will wake the dispatcher
            continue
        rows = conn.execute(Q["receiver_heads"], (receiver, now, share + 1)).fetchall()
        if len(rows) > share:
            more, rows = True, rows[:share]
        heads.extend(rows)
        due = conn.execute(Q["receiver_next_due"], (receiver, now)).fetchone()[0]
        if due is not None:
            next_due = due if next_due is None else min(next_due, due)
    heads.sort(key=lambda row: (row["priority"], row["id"]))
    return heads, more, next_due


def run(conn: sqlite3.Connection, sql: str, params: Sequence[Any] = ()) -> None:
    """Execute for effect. An op must never hand its cursor to the event loop: a cursor dropped there resets its
    statement from the wrong thread, while the writer may be running that same cached statement
    ("bad parameter or other API misuse")."""
    conn.execute(sql, params).close()


def run_many(conn: sqlite3.Connection, sql: str, rows: Sequence[Sequence[Any]]) -> None:
    conn.executemany(sql, rows).close()


def drive(conn: sqlite3.Connection, script: common.Script) -> Any:
    """Answer each step of a script with this connection; lists go in as JSON arrays (read with json_each)."""
    try:
        step = next(script)
        while True:
            want, sql, params = step
            cur = conn.execute(sql, [json.dumps(p) if isinstance(p, list) else p for p in params])
            try:
                answer = cur.fetchall() if want == "rows" else cur.fetchone() if want == "row" else cur.rowcount
            finally:
                cur.close()
            step = script.send(answer)
    except StopIteration as done:
        return done.value


def classify(exc: Exception) -> Exception:
    """An op's error as the caller sees it: the data refused, the store failing, or (a bug) the error itself."""
    if isinstance(exc, DATA_ERRORS):
        return StoreRejected(f"the store refused the data: {exc}")
    if isinstance(exc, sqlite3.Error):
        return StoreUnavailable(f"store error: {exc}")
    return exc


def settle(fut: asyncio.Future[Any], value: Any, error: BaseException | None) -> None:
    if fut.done():
        return
    if error is not None:
        fut.set_exception(error)
    else:
        fut.set_result(value)
