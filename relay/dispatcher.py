"""Claim → deliver, for every lane at once: the claim loop, the delivery tasks, handoff from enqueue, stop.

Workers take the head of each lane under a lease, so a lane is delivered in
arrival order while lanes run in parallel. Capacity is counted by relay.pacing.slots;
one send and its outcome are relay.attempt's. A rate-limited destination's token
is taken before its notification is claimed or sent (relay.pacing.ratelimit): one out of
tokens is left alone until its next token is due.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from relay import outbox
from relay.alerts import Notification
from relay.attempt import Attempts
from relay.channels.base import Prepares
from relay.errors import StoreUnavailable
from relay.pacing import slots
from relay.pacing.ratelimit import Budget, Waiting, budget_of
from relay.pacing.retry import RetryPolicy
from relay.runtime import Receivers
from relay.store.base import Attempt, Candidate, Claimed, Handoff, Store

log = logging.getLogger(__name__)

IDLE_POLL_SECONDS = 1.0


@dataclass
class DispatcherOptions:
    workers: int = 32
    workers_per_receiver: int = 8
    lease: float = 120.0
    send_timeout: float = 30.0
    policy: RetryPolicy = field(default_factory=RetryPolicy)
    default_rate_limits: bool = True


def _took_less(claimed: list[Claimed], free: int, room: dict[str, int]) -> bool:
    """Whether a claim took less than it could, overall and for every receiver: then nothing due was left behind
    (a claim that filled a receiver's room or all free slots may have left more)."""
    if len(claimed) >= free:
        return False
    taken: dict[str, int] = {}
    for item in claimed:
        taken[item.notification.receiver] = taken.get(item.notification.receiver, 0) + 1
    return all(n < room.get(receiver, free) for receiver, n in taken.items())


class Dispatcher:
    def __init__(self, store: Store, receivers: Receivers, options: DispatcherOptions | None = None) -> None:
        self.store = store
        self.receivers = receivers
        self.options = options or DispatcherOptions()
        self.owner = uuid.uuid4().hex
        self.attempts = Attempts(store, receivers, self.owner, self.options.lease, self.options.send_timeout,
                                 self.options.policy, self, self.wake, self.hold, self._sent)
        self.waiting = Waiting()
        self._wake = asyncio.Event()
        self._stopping = False
        self._inflight: dict[asyncio.Task[None], str] = {}  # task -> receiver, while it sends (holds a slot)
        # Tasks that have sent and are recording the outcome, and how many per receiver (at most its slots).
        self._recording: dict[asyncio.Task[None], str] = {}
        self._recording_per: dict[str, int] = {}
        self._offered: dict[str, int] = {}  # receiver -> slots offered to enqueues still in progress
        self._claiming = 0  # slots a claim in progress may fill
        self._runner: asyncio.Task[object] | None = None
        self._returns: set[asyncio.Task[None]] = set()
        # Whether the outbox may hold work a completion could make claimable (a lane behind a send, a receiver at
        # its room, a retry due at once). Cleared only by a claim that saw the whole outbox: nothing of ours in
        # flight or offered, no wake meanwhile, and it took all that was due. Without it a completion claims nothing
        # new (issue 24: an empty claim after every handed-off send); the idle poll stays the backstop.
        self._backlog = True
        self._wakes = 0

    @property
    def in_flight(self) -> int:
        """How many attempts are running now: sending, or recording what came of it (fallback, bring-forward)."""
        return len(self._inflight) + len(self._recording)

    def wake(self) -> None:
        """New work is in the outbox: look now rather than at the next poll, and after each send until a claim
        finds nothing left behind."""
        self._wakes += 1
        self._backlog = True
        self._wake.set()

    def hold(self, destination: str, seconds: float) -> None:
        """Claim nothing for `destination` for `seconds` (out of tokens, or the provider's Retry-After)."""
        self.waiting.hold(destination, seconds)

    async def run(self) -> None:
        self._runner = asyncio.current_task()
        while not self._stopping:
            timeout = IDLE_POLL_SECONDS
            free = self._free()
            self._wake.clear()
            if free > 0:
                now = time.time()
                budgets, held = self._budgets()
                room = self._room(held)
                self._claiming = free  # no webhook may be offered these slots until the claim is in
                wakes, whole = self._wakes, not self._inflight and not self._recording and not self._offered
                try:
                    claim = await self.store.claim(self.owner, free, now, self.options.lease, room, budgets)
                except StoreUnavailable as exc:
                    log.error("cannot claim notifications: %s", exc)
                    claim = None
                except Exception:  # never let one bad row or bug stop all delivery
                    log.exception("claiming notifications failed")
                    claim = None
                finally:
                    self._claiming = 0
                if claim is not None and not self._stopping:
                    if whole and wakes == self._wakes and not claim.waits and _took_less(claim.claimed, free, room):
                        self._backlog = False  # the outbox as seen has nothing a completion would free
                    self._start(claim.claimed)
                    for destination, wait in claim.waits.items():
                        self.waiting.hold(destination, wait)
                    if claim.next_due is not None:
                        timeout = min(timeout, max(0.0, claim.next_due - time.time()))
            if (token_due := self.waiting.next_in()) is not None:
                timeout = min(timeout, token_due)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout)

    def handoff(self, receivers: Iterable[str]) -> Handoff | None:
        """An offer for one webhook's enqueue to lease its new lane heads to us at once (None when full or stopping).

        The offer names each of the webhook's receivers with the slots it reserves for it, so webhooks enqueued
        concurrently, and claims meanwhile, cannot together exceed the worker limits; `adopt` ends the reservation.
        """
        free = self._free()
        if self._stopping or free <= 0:
            return None
        room = self._room(self._budgets()[1] if self.waiting else ())
        offer = slots.offer(receivers, free, room, self.options.workers_per_receiver)
        if not any(offer.values()):
            return None
        for receiver, reserved in offer.items():
            self._offered[receiver] = self._offered.get(receiver, 0) + reserved
        return Handoff(self.owner, self.options.lease, sum(offer.values()), offer)

    def prepare(self, candidates: list[Candidate]) -> None:
        """While their commit is on its way to disk (Handoff.prepare): let each channel that can prepare the message
        it will send for a candidate (relay.channels.base.Prepares), so a handed-off send starts with its POST. Only
        a help: a failure here is the send's to meet again and report."""
        for candidate in candidates:
            if len(candidate.group.alerts) > outbox.PREPARE_MAX_ALERTS:
                continue
            found = self.receivers.receiver(candidate.receiver)
            if found is None or not isinstance(found.channel, Prepares):
                continue
            try:
                found.channel.prepare(Notification(0, candidate.receiver, candidate.integration, candidate.lane,
                                                   candidate.group, datetime.now(UTC)))
            except Exception as exc:  # the send renders it again and reports what is wrong
                log.debug("preparing a message for %s failed: %s", candidate.receiver, type(exc).__name__)

    def adopt(self, claimed: list[Claimed], offer: Handoff | None = None) -> None:
        """Deliver what enqueue leased to us and end the offer's reservation (also when enqueue failed: no claims);
        if we stopped meanwhile, give the notifications back to the outbox at once."""
        if offer is not None:
            for receiver, reserved in offer.room.items():
                left = self._offered.get(receiver, 0) - reserved
                if left > 0:
                    self._offered[receiver] = left
                else:
                    self._offered.pop(receiver, None)
        if not self._stopping:
            self._start(claimed, paid=False)
            return
        for item in claimed:
            attempt = Attempt(time.time(), 0.0, "deferred", "shutting_down")
            task = asyncio.create_task(self.attempts.store_call(self.store.retry_later(
                item.notification.id, self.owner, attempt, time.time(), count_attempt=False)))
            self._returns.add(task)
            task.add_done_callback(self._returns.discard)

    def _start(self, claimed: list[Claimed], paid: bool = True) -> None:
        """Send each; those not `paid` (handed off by an enqueue) first take their destination's token."""
        budgets = {} if paid else self._budgets()[0]
        for item in claimed:
            budget = budgets.get(item.notification.receiver)
            run = self.attempts.run(item) if budget is None else self._paid_run(item, budget)
            task = asyncio.create_task(run)
            self._inflight[task] = item.notification.receiver
            task.add_done_callback(self._done)

    async def _paid_run(self, item: Claimed, budget: Budget) -> None:
        """A handed-off notification: send it with a token, or give it back to its lane to be claimed when the
        destination has one (most severe first), without an attempt."""
        try:
            grant = (await self.store.spend({budget: 1}))[budget.destination]
            if grant.granted:
                await self.attempts.run(item)
                return
            self.waiting.hold(budget.destination, grant.wait)
            await self.store.release(self.owner, [item.notification.id])
        except StoreUnavailable as exc:
            log.error("cannot take a rate-limit token (the notification is tried again when its lease ends): %s",
                      exc)

    def _budgets(self) -> tuple[dict[str, Budget], set[str]]:
        """The rate-limit budget of each receiver that has one, except receivers whose destination waits for its
        next token; and those receivers."""
        budgets: dict[str, Budget] = {}
        held: set[str] = set()
        waiting = self.waiting.held()
        for name in self.receivers.receiver_names():
            found = self.receivers.receiver(name)
            budget = budget_of(found.config, found.channel.destination,
                               self.options.default_rate_limits) if found is not None else None
            if budget is None:
                continue
            if budget.destination in waiting:
                held.add(name)
            else:
                budgets[name] = budget
        return budgets, held

    def _free(self) -> int:
        return slots.free(self.options.workers, len(self._inflight), self._offered, self._claiming)

    def _room(self, held: Iterable[str] = ()) -> dict[str, int]:
        """Each receiver's room; none for the `held` (their destination waits for a token)."""
        room = slots.room(self.options.workers_per_receiver, self.receivers.receiver_names(), self._offered,
                          self._inflight.values())
        room.update(dict.fromkeys(held, 0))
        return room

    def _sent(self) -> None:
        """The current attempt's send is over: its slot is free now, not once its outcome is committed (at 200/s a
        receiver's 8 slots were held through the writer's queue and commit, and webhooks missed their handoff). The
        outcome's write is queued before anything this frees can be claimed or handed off: on SQLite the one
        writer runs it first; on PostgreSQL a claim meanwhile sees the notification still leased, and skips its lane.
        A receiver has at most `workers_per_receiver` attempts recording too (past that, the send keeps its slot): a
        SIGKILL can repeat what was sent but not recorded, so that stays at most twice the receiver's slots."""
        task = asyncio.current_task()
        receiver = self._inflight.get(task) if task is not None else None
        if task is None or receiver is None:
            return
        recording = self._recording_per.get(receiver, 0)
        if recording >= self.options.workers_per_receiver:
            return
        del self._inflight[task]
        self._recording[task] = receiver
        self._recording_per[receiver] = recording + 1
        if self._backlog:
            self._wake.set()  # the lane's next notification may be due once the outcome is written

    def _done(self, task: asyncio.Task[None]) -> None:
        self._inflight.pop(task, None)
        receiver = self._recording.pop(task, None)
        if receiver is not None:
            left = self._recording_per[receiver] - 1
            if left:
                self._recording_per[receiver] = left
            else:
                del self._recording_per[receiver]
        if self._backlog:
            self._wake.set()  # the lane's next notification may be due now
        if not task.cancelled() and task.exception() is not None:
            log.error("delivery task failed", exc_info=task.exception())

    async def stop(self, grace: float) -> None:
        """Stop claiming, let in-flight sends finish for up to `grace` seconds; the rest stay in the outbox."""
        self._stopping = True
        self._wake.set()
        if self._runner is not None:
            await asyncio.wait([self._runner])  # no claim may start a task after the snapshot below
        if self._inflight or self._recording:
            _, pending = await asyncio.wait(set(self._inflight) | set(self._recording), timeout=grace)
            for task in pending:
                task.cancel()
            if pending:
                log.warning("%d deliveries did not finish in %.0fs; they stay in the outbox", len(pending), grace)
                await asyncio.wait(pending)
        if self._returns:
            await asyncio.wait(set(self._returns))
