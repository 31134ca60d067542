"""relay.store.queries and relay.store.migrate: each dialect's named statements and numbered migrations."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from relay.store import actions, common, escalations, history, migrate, queries, script, storms


def test_every_statement_common_runs_is_named_in_both_dialects() -> None:
    scripts = (common, script, history, actions, storms, escalations)
    named = r'(?:q|d\.queries)\["([a-z_]+)"\]'
    used = {name for m in scripts for name in re.findall(named, Path(m.__file__).read_text())}
    used |= {f"prune_{state}{part}" for state in ("cancelled", "delivered") for part in ("", "_attempts")}
    assert "replay" in used and "attempts_of" in used
    for dialect in ("sqlite", "postgres"):
        assert used <= set(queries.load(dialect)), dialect


@pytest.mark.parametrize("text", [
    "SELECT 1\n-- one --\n-- described\nSELECT 1\n",  # text before the first block
    "-- one --\nSELECT 1\n",  # no description
    "-- one --\n-- described\n\n-- two --\n-- described\nSELECT 2\n",  # a block without a statement
    "-- one --\n-- described\nSELECT 1\n-- one --\n-- again\nSELECT 2\n",  # a name twice
])
def test_a_malformed_sql_file_is_refused(text: str) -> None:
    with pytest.raises(RuntimeError):
        queries.parse(text, "test.sql")


def test_a_block_runs_to_the_next_and_keeps_comments_inside_it() -> None:
    parsed = queries.parse("-- one --\n-- described\nSELECT 1  -- why\nFROM t\n\n-- two --\n-- described\nSELECT 2\n",
                           "test.sql")
    assert parsed == {"one": "SELECT 1  -- why\nFROM t\n", "two": "SELECT 2\n"}


@pytest.mark.parametrize("dialect", ["sqlite", "postgres"])
def test_migrations_are_numbered_once_each_and_applied_after_the_version_held(dialect: str) -> None:
    numbers = [m.number for m in migrate.migrations(dialect)]
    assert numbers == list(range(1, len(numbers) + 1))
    assert [m.number for m in migrate.due(dialect, 2)] == numbers[2:]
    assert list(migrate.due(dialect, numbers[-1])) == []
