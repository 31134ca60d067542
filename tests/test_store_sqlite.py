"""SQLite specifics: committed pages reach the database file from a background checkpoint, not from a webhook's
commit, and the write-ahead log stays small."""

from __future__ import annotations

from pathlib import Path

from relay.store.sqlite import WAL_AUTOCHECKPOINT_PAGES, SqliteStore
from tests.helpers import poll_until

PAGE = 4096


async def test_committed_pages_reach_the_database_file_in_the_background(tmp_path: Path) -> None:
    db, wal = tmp_path / "relay.db", tmp_path / "relay.db-wal"
    store = SqliteStore(str(db), checkpoint_seconds=0.05)
    await store.open()
    try:
        ref = "<" + "x" * 200 + "@relay>"
        written = 0
        rounds = 8
        for round_ in range(rounds):
            before = db.stat().st_size
            await store.remember_refs("ops-email", [f"{round_}-{i}" for i in range(2000)], ref)
            written += 2000 * len(ref)
            if round_ == 0:
                one_round = wal.stat().st_size  # the log a round's commit writes, from an empty log
            # ~0.5 MB a round: far below the 10,000 pages at which a commit would checkpoint by itself.
            assert written < WAL_AUTOCHECKPOINT_PAGES * PAGE
            await poll_until(lambda before=before: db.stat().st_size >= before + 400_000)
        wal_size = wal.stat().st_size
    finally:
        await store.close()
    # The log is reused once its pages are in the database, not grown: it holds a few rounds at most (a round may
    # be written while the one before is still being copied, on a loaded machine), never all of them.
    assert wal_size <= rounds / 2 * one_round, (wal_size, one_round)
    assert not wal.exists() or wal.stat().st_size == 0  # the last close folds it in
