"""The one migration runner: numbered scripts in migrations/<dialect>/, applied once each, in number order.

Which scripts are due is decided here for both stores; a store only says what version it holds and how it applies
one script with its version in the same transaction (SQLite's user_version, PostgreSQL's relay_schema table).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache
from importlib import resources

log = logging.getLogger(__name__)

NAME = re.compile(r"(\d+)_[a-z0-9_]+\.sql")


@dataclass(frozen=True)
class Migration:
    number: int
    name: str
    sql: str


@cache
def migrations(dialect: str) -> tuple[Migration, ...]:
    """Every script of the dialect, in number order; a misnamed or doubly numbered script is a packaging bug."""
    folder = resources.files("relay.store").joinpath(f"migrations/{dialect}")
    found: dict[int, Migration] = {}
    for path in folder.iterdir():
        if not path.name.endswith(".sql"):
            continue
        match = NAME.fullmatch(path.name)
        if match is None:
            raise RuntimeError(f"migration {dialect}/{path.name} is not named NNN_what.sql")
        number = int(match.group(1))
        if number in found:
            raise RuntimeError(f"migrations {found[number].name} and {path.name} share number {number}")
        found[number] = Migration(number, path.name, path.read_text())
    return tuple(found[n] for n in sorted(found))


def due(dialect: str, version: int) -> Iterator[Migration]:
    """The scripts a database at `version` has not had yet, in the order to apply them."""
    for migration in migrations(dialect):
        if migration.number > version:
            log.info("applying migration %s", migration.name)
            yield migration
