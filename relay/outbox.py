"""The one way into the outbox: offer a handoff, write, adopt what was leased, wake the dispatcher for the rest.

The webhook, a dead letter's fallback, `test-alert --direct` and the heartbeat switch all enqueue through here, so
a new notification is handed straight to a free worker (no claim round trip) or waits in its lane with the
dispatcher told, whichever path wrote it.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable
from typing import Protocol

from relay.store.base import Candidate, Claimed, Enqueued, Handoff, Store


class Intake(Protocol):
    """What the outbox needs of the dispatcher (relay.dispatcher.Dispatcher is one)."""

    def handoff(self, receivers: Iterable[str]) -> Handoff | None: ...

    def adopt(self, claimed: list[Claimed], offer: Handoff | None = None) -> None: ...

    def wake(self) -> None: ...


Write = Callable[[Handoff | None], Awaitable[list[Enqueued] | None]]


async def put(intake: Intake, receivers: Iterable[str] | None, write: Write) -> list[Enqueued] | None:
    """Run one write that enqueues (None when it wrote nothing, e.g. another replica did it); `receivers` are those
    it may enqueue for, offered a handoff (None: the write cannot take one). The offer ends also when it fails."""
    offer = intake.handoff(receivers) if receivers is not None else None
    results: list[Enqueued] | None = None
    try:
        results = await write(offer)
    finally:
        intake.adopt([r.claimed for r in results or () if r.claimed is not None], offer)
    if results and any(r.notification_id is not None and r.claimed is None for r in results):
        intake.wake()  # the rest waits in its lane (or for room): let the dispatcher look now
    return results


async def enqueue(intake: Intake, store: Store, candidates: list[Candidate], received_at: float) -> list[Enqueued]:
    """Dedup and write `candidates` durably (StoreUnavailable / StoreRejected write nothing), handing lane heads off."""
    if not candidates:
        return []
    results = await put(intake, [c.receiver for c in candidates],
                        lambda offer: store.enqueue(candidates, received_at, offer))
    return results or []
