"""The console's reads (relay.console, `relay explain`), kept apart from the Store protocol the delivery path uses.

On SQLite they run on a read-only connection of their own, in a worker thread: a WAL reader never waits for the
writer and the writer thread never queues behind a console page, so the console adds nothing to the webhook's path.
On PostgreSQL they run on the store's pool, outside any transaction. The statements are sql/console.sql's named
blocks, written once with `$n` parameters (SQLite is given them as `?n`).
"""

from __future__ import annotations

import asyncio
import json
import re
import sqlite3
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

from relay.errors import StoreUnavailable
from relay.store import common
from relay.store.base import Store
from relay.store.queries import parse
from relay.store.rows import HISTORY_COLUMNS, history_row
from relay.store.sqlite import SqliteStore

PAGE = 50


@cache
def _queries(dialect: str) -> Mapping[str, str]:
    text = resources.files("relay.store").joinpath("sql/console.sql").read_text()
    found = parse(text, "sql/console.sql")
    # A partial index is used only when a query repeats its condition, as each dialect's migration wrote it.
    storm_lane = "instr(lane, char(30)) > 0" if dialect == "sqlite" else "strpos(lane, chr(30)) > 0"
    found = {name: sql.replace("{storm_lane}", storm_lane) for name, sql in found.items()}
    if dialect == "sqlite":
        found = {name: re.sub(r"\$(\d+)", r"?\1", sql) for name, sql in found.items()}
    return found


@dataclass(frozen=True)
class Page:
    """Filters of the notifications view; `before` is the keyset (ids below it), never an OFFSET."""

    receiver: str | None = None
    alertname: str | None = None
    state: str | None = None
    since: float | None = None
    until: float | None = None
    label: tuple[str, str] | None = None  # name, value: the stored payload holds it as "name":"value"
    before: int | None = None
    limit: int = PAGE


class Reader:
    """Runs the console's scripts (relay.store.common's Script form) on the store it is given."""

    def __init__(self, store: Store) -> None:
        if not isinstance(store, common.Scripted):
            raise TypeError(f"{type(store).__name__} cannot run console queries")
        self.store = store
        self.sqlite = isinstance(store, SqliteStore)
        self.q = _queries("sqlite" if self.sqlite else "postgres")

    def param(self, n: int) -> str:
        return f"?{n}" if self.sqlite else f"${n}"

    def _drive(self, script: common.Script) -> Any:
        """One script on a read-only connection of its own (opening one costs far less than a page's reads)."""
        assert isinstance(self.store, SqliteStore)
        try:
            conn = sqlite3.connect(Path(self.store.path).resolve().as_uri() + "?mode=ro", uri=True)
        except sqlite3.Error as exc:
            raise StoreUnavailable(f"store cannot answer: {exc}") from None
        try:
            conn.row_factory = sqlite3.Row
            conn.execute("PRAGMA busy_timeout = 5000")
            step = next(script)
            while True:
                want, sql, params = step
                cur = conn.execute(sql, params)
                try:
                    answer = cur.fetchall() if want == "rows" else cur.fetchone()
                finally:
                    cur.close()
                step = script.send(answer)
        except StopIteration as done:
            return done.value
        except sqlite3.Error as exc:
            raise StoreUnavailable(f"store cannot answer: {exc}") from None
        finally:
            conn.close()

    async def run(self, script: common.Script) -> Any:
        if self.sqlite:
            return await asyncio.to_thread(self._drive, script)
        assert isinstance(self.store, common.Scripted)
        return await self.store._script(script, read=True)

    async def rows(self, name: str, *params: Any) -> list[dict[str, Any]]:
        def one() -> common.Script:
            return [dict(r) for r in (yield ("rows", self.q[name], params))]
        found: list[dict[str, Any]] = await self.run(one())
        return found

    async def batch(self, steps: list[tuple[str, tuple[Any, ...]]]) -> list[list[dict[str, Any]]]:
        """Several named statements on one connection, in one go (a page that asks many small questions pays one
        pool checkout, or one worker-thread hop, not one per question)."""
        def script() -> common.Script:
            out = []
            for name, params in steps:
                out.append([dict(r) for r in (yield ("rows", self.q[name], params))])
            return out
        found: list[list[dict[str, Any]]] = await self.run(script())
        return found

    async def row(self, name: str, *params: Any) -> dict[str, Any] | None:
        found = await self.rows(name, *params)
        return found[0] if found else None

    async def page(self, query: Page) -> list[dict[str, Any]]:
        """One page of history, newest first: each filter given becomes a condition, the keyset the last one."""
        where, params = ["1 = 1"], []

        def p(value: Any) -> str:
            params.append(value)
            return self.param(len(params))

        if query.receiver:
            where.append(f"receiver = {p(query.receiver)}")
        if query.state:
            where.append(f"state = {p(query.state)}")
        if query.alertname:
            where.append(f"(',' || alertnames || ',') LIKE {p('%,' + _like(query.alertname) + ',%')} ESCAPE '!'")
        if query.since is not None:
            where.append(f"received_at >= {p(query.since)}")
        if query.until is not None:
            where.append(f"received_at < {p(query.until)}")
        if query.label is not None:
            needle = f"{_json(query.label[0])}:{_json(query.label[1])}"
            where.append(f"instr(payload, {p(needle)}) > 0" if self.sqlite else f"strpos(payload, {p(needle)}) > 0")
        if query.before is not None:
            where.append(f"id < {p(query.before)}")
        sql = (f"SELECT {HISTORY_COLUMNS} FROM notifications WHERE {' AND '.join(where)} "
               f"ORDER BY id DESC LIMIT {p(query.limit)}")

        def script() -> common.Script:
            return [history_row(dict(r)) for r in (yield ("rows", sql, tuple(params)))]
        found: list[dict[str, Any]] = await self.run(script())
        return found


def _like(text: str) -> str:
    return text.replace("!", "!!").replace("%", "!%").replace("_", "!_")


def _json(text: str) -> str:
    """A string as the stored payload writes it (pydantic's JSON: no spaces, UTF-8 kept)."""
    return json.dumps(text, ensure_ascii=False)
