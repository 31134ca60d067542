"""The Channel seam: what the dispatcher needs from an integration.

A channel renders a notification with its receiver's templates, makes the
provider calls, and classifies any failure by raising
`TransientDeliveryError` or `PermanentDeliveryError`. It never retries on its
own: the dispatcher owns retries, so the schedule survives restarts.
"""

from __future__ import annotations

import hashlib
from collections.abc import Awaitable
from typing import Protocol, TypeVar

from relay.alerts import Notification
from relay.errors import StoreUnavailable, TransientDeliveryError
from relay.threads import Threads


class Channel(Protocol):
    integration: str

    @property
    def destination(self) -> str:
        """A stable, secret-free name of where messages go, for rate limiting (e.g. `slack:3f2a…`)."""
        ...

    async def send(self, notification: Notification, threads: Threads | None = None) -> None:
        """Deliver, or raise a DeliveryError saying whether to try again."""
        ...

    async def close(self) -> None: ...


T = TypeVar("T")


async def guard_store(call: Awaitable[T]) -> T:
    """Await a thread-store call; a store that is down makes the delivery transient (it is tried again)."""
    try:
        return await call
    except StoreUnavailable as exc:
        raise TransientDeliveryError("store_unavailable", str(exc)[:200]) from None


def secret_digest(value: str) -> str:
    """A short, one-way name for a secret value (a webhook URL, a routing key)."""
    return hashlib.sha256(value.encode()).hexdigest()[:12]


def parse_retry_after(value: str | None) -> float | None:
    """Seconds from a Retry-After header (delta-seconds form); None when absent or unreadable."""
    if value is None:
        return None
    try:
        seconds = float(value.strip())
    except ValueError:
        from datetime import UTC, datetime
        from email.utils import parsedate_to_datetime

        try:
            when = parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        return max(0.0, (when - datetime.now(UTC)).total_seconds())
    return max(0.0, seconds)
