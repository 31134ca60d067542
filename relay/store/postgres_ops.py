"""What the PostgreSQL store (relay.store.postgres) runs on a connection: a script of relay.store.common, the
pooled connection class, and how asyncpg's errors are sorted (the data refused, or the store unavailable).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import asyncpg
from asyncpg.pool import PoolConnectionProxy

from relay.store import common

Conn = asyncpg.Connection | PoolConnectionProxy

# What asyncpg raises about the data itself (a value PostgreSQL cannot hold, an index row over its size limit, a
# value the driver cannot encode): retrying cannot help, so it is StoreRejected, never "store unavailable".
DATA_ERRORS = (asyncpg.DataError, asyncpg.IntegrityConstraintViolationError, asyncpg.ProgramLimitExceededError,
               ValueError)
# What asyncpg raises when the server is gone, restarting, refusing, or out of space: relay answers 503.
# InternalClientError: e.g. a pooled connection still consuming the server's "terminating connection" notice
# while PostgreSQL restarts ("cannot switch to state 15; another operation (2) is in progress").
UNAVAILABLE = (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, asyncpg.InternalClientError, TimeoutError)


class UnresetConnection(asyncpg.Connection):
    """A pooled connection that is not reset when it goes back to the pool: relay never leaves session state on
    one (no LISTEN, cursors, SET or advisory locks: those live on connections of their own), so the reset would
    only cost a round trip per store call."""

    def get_reset_query(self) -> str:
        return ""


async def drive(conn: Conn, script: common.Script) -> Any:
    """Answer each step of a script with this connection."""
    try:
        step = next(script)
        while True:
            want, sql, params = step
            if want == "rows":
                answer: Any = await conn.fetch(sql, *params)
            elif want == "row":
                answer = await conn.fetchrow(sql, *params)
            else:
                answer = int((await conn.execute(sql, *params)).split()[-1])
            step = script.send(answer)
    except StopIteration as done:
        return done.value


def columns(rows: Sequence[tuple[Any, ...]], width: int) -> list[list[Any]]:
    """Rows as one list per column: the arrays an `unnest` turns back into rows."""
    return [list(column) for column in zip(*rows, strict=True)] if rows else [[] for _ in range(width)]


def describe(exc: BaseException) -> str:
    """The error without the DSN (it may hold a password): asyncpg messages name the server, never the URL."""
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
