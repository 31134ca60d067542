"""Where earlier messages about an alert went, so a resolve can answer them.

A Slack firing message's `ts` or an email's `Message-ID` is remembered per
(receiver, fingerprint, startsAt) in the store; the resolve of that alert
finds it there, also after a restart, and replies in the same thread.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from relay.alerts import Alert, alert_key
from relay.store.base import Store


@dataclass(frozen=True)
class Threads:
    """The message references of one receiver, read and written through the durable store."""

    store: Store
    receiver: str

    async def find(self, alerts: Sequence[Alert]) -> dict[str, str]:
        """alert_key → the reference remembered for it, for those alerts that have one."""
        keys = sorted({alert_key(a) for a in alerts})
        return await self.store.find_refs(self.receiver, keys) if keys else {}

    async def remember(self, alerts: Sequence[Alert], ref: str) -> None:
        """Remember `ref` (opaque to relay: the channel chooses its format) for each of these alerts."""
        keys = sorted({alert_key(a) for a in alerts})
        if keys:
            await self.store.remember_refs(self.receiver, keys, ref)
