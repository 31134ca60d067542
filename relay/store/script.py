"""Scripts: how both stores do the same thing the same way, written once above a thin per-dialect layer.

Each operation here is a script: a generator that yields the statements it needs (by name from the dialect's
sql/<dialect>.sql, or composed for history) and gets each one's answer back. SqliteStore runs a script inside its
writer thread's transaction, PostgresStore inside one pooled transaction; neither knows what the script decides.
Parameters are numbered the same in both dialects (`?1` / `$1`); a list parameter is a JSON array for SQLite.
The hot path (enqueue, claim, outcomes) stays in each store: each dialect does it in its own fastest way.
"""

from __future__ import annotations

from collections.abc import Callable, Generator, Mapping
from dataclasses import dataclass
from typing import Any, Literal

# What a step asks for: every row, the first row (or None), or how many rows it changed.
Want = Literal["rows", "row", "count"]
Step = tuple[Want, str, tuple[Any, ...]]
Script = Generator[Step, Any, Any]


@dataclass(frozen=True)
class Dialect:
    """What differs between the stores' SQL besides the statements: how a parameter and a list of ids are written."""

    queries: Mapping[str, str]
    param: Callable[[int], str]
    id_list: Callable[[str], str]  # a clause matching `id` against a list parameter


def want_rows(sql: str, *params: Any) -> Step:
    return "rows", sql, params


def want_row(sql: str, *params: Any) -> Step:
    return "row", sql, params


def want_count(sql: str, *params: Any) -> Step:
    return "count", sql, params


def want_all(sql: str, *params: Any) -> Script:
    return (yield want_rows(sql, *params))


def single(step: Step) -> Script:
    """A script of one statement."""
    return (yield step)


class Runner:
    """What a store supplies to run the scripts: its dialect and how it runs a script (`read`: the script only
    reads, so a store may skip the transaction). Each concern's Store methods (history, actions, storms,
    escalations) are a mixin of this."""

    dialect: Dialect

    async def _script(self, script: Script, read: bool = False) -> Any:
        raise NotImplementedError
