"""The store under contract: each test runs on SQLite and on a fresh PostgreSQL database (`database_url`)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from relay.store import open_store
from relay.store.base import Store


@pytest.fixture
async def store(database_url: str) -> AsyncIterator[Store]:
    s = open_store(database_url)
    await s.open()
    yield s
    await s.close()
