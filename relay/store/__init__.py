"""The durable outbox: dedup marks, notifications, attempts. See base.Store."""

from __future__ import annotations

from relay.store.base import Store


def open_store(url: str) -> Store:
    """A Store for a `sqlite:///path` URL (the embedded default) or a `postgresql://` URL (shared by replicas)."""
    if url.startswith("sqlite:///"):
        from relay.store.sqlite import SqliteStore

        return SqliteStore(url.removeprefix("sqlite:///"))
    if url.startswith(("postgresql://", "postgres://")):
        from relay.store.postgres import PostgresStore

        return PostgresStore(url)
    if url.startswith("sqlite://"):
        raise ValueError("sqlite URLs take three slashes: sqlite:///relay.db or sqlite:////abs/path.db")
    scheme = url.split(":", 1)[0]
    raise ValueError(f"unsupported RELAY_DATABASE_URL scheme {scheme!r}: use sqlite:///path or postgresql://user@host/db")
