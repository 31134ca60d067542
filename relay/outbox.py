"""The one way into the outbox: offer a handoff, write, adopt what was leased, wake the dispatcher for the rest.

The webhook, a dead letter's fallback, `test-alert --direct` and the heartbeat switch all enqueue through here, so
a new notification is handed straight to a free worker (no claim round trip) or waits in its lane with the
dispatcher told, whichever path wrote it.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Awaitable, Callable, Iterable
from typing import Protocol

from relay.store.base import Candidate, Claimed, Enqueued, Handoff, Store


class Intake(Protocol):
    """What the outbox needs of the dispatcher (relay.dispatcher.Dispatcher is one)."""

    def handoff(self, receivers: Iterable[str]) -> Handoff | None: ...

    def adopt(self, claimed: list[Claimed], offer: Handoff | None = None) -> None: ...

    def wake(self) -> None: ...

    def prepare(self, candidates: list[Candidate]) -> None: ...


Write = Callable[[Handoff | None], Awaitable[list[Enqueued] | None]]

# A group this large is neither prepared during its commit nor started before the caller goes on: its rendering would
# hold the event loop longer than the commit it hides in, and hold the webhook's answer (ingest of 100-alert webhooks
# fell from 4,000-4,900 to 3,200-3,500 alerts/s when every handed-off send started first).
PREPARE_MAX_ALERTS = 20


async def put(intake: Intake, receivers: Iterable[str] | None, write: Write,
              prepare: Callable[[], None] | None = None) -> list[Enqueued] | None:
    """Run one write that enqueues (None when it wrote nothing, e.g. another replica did it); `receivers` are those
    it may enqueue for, offered a handoff (None: the write cannot take one). The offer ends also when it fails.
    With an offer, `prepare` goes with it (Handoff.prepare): the store runs it while the commit is on its way to
    disk, work the handed-off sends would otherwise do after it. Small handed-off sends start (up to their first
    wait: a provider's answer) before this returns, so a webhook's 200 is written after its messages, not before."""
    offer = intake.handoff(receivers) if receivers is not None else None
    results: list[Enqueued] | None = None
    try:
        if offer is not None and prepare is not None:
            offer = dataclasses.replace(offer, prepare=prepare)
        results = await write(offer)
    finally:
        intake.adopt([r.claimed for r in results or () if r.claimed is not None], offer)
    if results and any(r.notification_id is not None and r.claimed is None for r in results):
        intake.wake()  # the rest waits in its lane (or for room): let the dispatcher look now
    adopted = [r.claimed for r in results or () if r.claimed is not None]
    if adopted and all(len(c.notification.alerts) <= PREPARE_MAX_ALERTS for c in adopted):
        await asyncio.sleep(0)  # one turn of the loop: the adopted sends run to their provider's answer
    return results


async def enqueue(intake: Intake, store: Store, candidates: list[Candidate], received_at: float) -> list[Enqueued]:
    """Dedup and write `candidates` durably (StoreUnavailable / StoreRejected write nothing), handing lane heads off."""
    if not candidates:
        return []
    results = await put(intake, [c.receiver for c in candidates],
                        lambda offer: store.enqueue(candidates, received_at, offer),
                        lambda: intake.prepare(candidates))
    return results or []
