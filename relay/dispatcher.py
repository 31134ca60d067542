"""Claim → send → complete | retry | dead-letter, for every lane at once.

Workers take the head of each lane under a lease, so a lane is delivered in
arrival order while lanes run in parallel. Channels only classify failures;
this module decides when to try again, and persists that decision.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import traceback
import uuid
from collections.abc import Awaitable, Iterable
from dataclasses import dataclass, field
from datetime import timedelta

from relay import metrics, outbox
from relay.alerts import Notification
from relay.channels.base import DETAIL_LIMIT, redact, scrub
from relay.channels.deadline import send_deadline
from relay.channels.threads import Threads
from relay.errors import (
    DeliveryError,
    DeliveryUnfinished,
    PermanentDeliveryError,
    Reason,
    StoreUnavailable,
    TransientDeliveryError,
)
from relay.ratelimit import RateLimiter
from relay.retry import RetryPolicy, next_attempt
from relay.runtime import Runtime
from relay.store.base import Attempt, Candidate, Claimed, Handoff, Store

log = logging.getLogger(__name__)

IDLE_POLL_SECONDS = 1.0
# A provider that flaps (failing, answering, failing) gets its backlog again at most this often, not on every
# success after a failure; in between, retries keep their backoff.
BRING_FORWARD_EVERY = 30.0


@dataclass
class DispatcherOptions:
    workers: int = 32
    workers_per_receiver: int = 8
    lease: float = 120.0
    send_timeout: float = 30.0
    policy: RetryPolicy = field(default_factory=RetryPolicy)
    default_rate_limits: bool = True


class Dispatcher:
    def __init__(self, store: Store, runtime: Runtime, options: DispatcherOptions | None = None) -> None:
        self.store = store
        self.runtime = runtime
        self.options = options or DispatcherOptions()
        self.owner = uuid.uuid4().hex
        self.limiter = RateLimiter()
        self._wake = asyncio.Event()
        self._stopping = False
        self._inflight: dict[asyncio.Task[None], str] = {}  # task -> receiver
        self._offered: dict[str, int] = {}  # receiver -> slots offered to enqueues still in progress
        self._claiming = 0  # slots a claim in progress may fill
        self._runner: asyncio.Task[object] | None = None
        self._returns: set[asyncio.Task[None]] = set()
        self._backing_off: set[str] = set()  # receivers whose last failure scheduled a backoff (not a rate limit)
        self._brought_forward: dict[str, float] = {}  # receiver -> when its retries were last made due at once

    @property
    def in_flight(self) -> int:
        """How many sends are running now (each with what follows it: recording, fallback, bring-forward)."""
        return len(self._inflight)

    def wake(self) -> None:
        """New work is in the outbox: look now rather than at the next poll."""
        self._wake.set()

    async def run(self) -> None:
        self._runner = asyncio.current_task()
        while not self._stopping:
            timeout = IDLE_POLL_SECONDS
            free = self._free()
            self._wake.clear()
            if free > 0:
                now = time.time()
                room = self._room()
                self._claiming = free  # no webhook may be offered these slots until the claim is in
                try:
                    claim = await self.store.claim(self.owner, free, now, self.options.lease, room)
                except StoreUnavailable as exc:
                    log.error("cannot claim notifications: %s", exc)
                    claim = None
                except Exception:  # never let one bad row or bug stop all delivery
                    log.exception("claiming notifications failed")
                    claim = None
                finally:
                    self._claiming = 0
                if claim is not None and not self._stopping:
                    self._start(claim.claimed)
                    if claim.next_due is not None:
                        timeout = min(timeout, max(0.0, claim.next_due - time.time()))
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
        room = self._room()
        offer: dict[str, int] = {}
        for receiver in receivers:
            fits = free > 0 and room.get(receiver, self.options.workers_per_receiver) - offer.get(receiver, 0) > 0
            offer[receiver] = offer.get(receiver, 0) + int(fits)
            free -= int(fits)
        if not any(offer.values()):
            return None
        for receiver, slots in offer.items():
            self._offered[receiver] = self._offered.get(receiver, 0) + slots
        return Handoff(self.owner, self.options.lease, sum(offer.values()), offer)

    def adopt(self, claimed: list[Claimed], offer: Handoff | None = None) -> None:
        """Deliver what enqueue leased to us and end the offer's reservation (also when enqueue failed: no claims);
        if we stopped meanwhile, give the notifications back to the outbox at once."""
        if offer is not None:
            for receiver, slots in offer.room.items():
                left = self._offered.get(receiver, 0) - slots
                if left > 0:
                    self._offered[receiver] = left
                else:
                    self._offered.pop(receiver, None)
        if not self._stopping:
            self._start(claimed)
            return
        for item in claimed:
            attempt = Attempt(time.time(), 0.0, "deferred", "shutting_down")
            task = asyncio.create_task(self._store_call(self.store.retry_later(
                item.notification.id, self.owner, attempt, time.time(), count_attempt=False)))
            self._returns.add(task)
            task.add_done_callback(self._returns.discard)

    def _start(self, claimed: list[Claimed]) -> None:
        for item in claimed:
            task = asyncio.create_task(self._deliver(item))
            self._inflight[task] = item.notification.receiver
            task.add_done_callback(self._done)

    def _free(self) -> int:
        return self.options.workers - len(self._inflight) - sum(self._offered.values()) - self._claiming

    def _room(self) -> dict[str, int]:
        """How many more sends each receiver may start: one slow provider must not take every worker.

        Every configured receiver is named, also those with nothing in flight (a claim or an offer would let an
        unnamed receiver take every free worker, e.g. a backlog after a restart).
        """
        per = self.options.workers_per_receiver
        routes = self.runtime.routes
        room = dict.fromkeys(routes.receivers if routes else (), per)
        for receiver, slots in self._offered.items():
            room[receiver] = room.get(receiver, per) - slots
        for receiver in self._inflight.values():
            room[receiver] = room.get(receiver, per) - 1
        return room

    def _done(self, task: asyncio.Task[None]) -> None:
        self._inflight.pop(task, None)
        self._wake.set()  # the lane's next notification may be due now
        if not task.cancelled() and task.exception() is not None:
            log.error("delivery task failed", exc_info=task.exception())

    async def stop(self, grace: float) -> None:
        """Stop claiming, let in-flight sends finish for up to `grace` seconds; the rest stay in the outbox."""
        self._stopping = True
        self._wake.set()
        if self._runner is not None:
            await asyncio.wait([self._runner])  # no claim may start a task after the snapshot below
        if self._inflight:
            _, pending = await asyncio.wait(set(self._inflight), timeout=grace)
            for task in pending:
                task.cancel()
            if pending:
                log.warning("%d deliveries did not finish in %.0fs; they stay in the outbox", len(pending), grace)
                await asyncio.wait(pending)
        if self._returns:
            await asyncio.wait(set(self._returns))

    async def _deliver(self, claimed: Claimed) -> None:
        notification = claimed.notification
        started = time.time()
        try:
            await self._send(notification)
        except DeliveryError as exc:
            await self._failed(claimed, started, exc)
        except _Deferred as deferred:
            attempt = Attempt(started, 0.0, "deferred", "rate_limited")
            await self._store_call(self.store.retry_later(notification.id, self.owner, attempt,
                                                          started + deferred.wait, count_attempt=False))
        except DeliveryUnfinished as unfinished:  # progress kept: the rest at once, no backoff, no attempt counted
            now = time.time()
            log.info("notification %d to %s: %s", notification.id, notification.receiver, unfinished)
            attempt = Attempt(started, now - started, "deferred", "unfinished", str(unfinished))
            await self._store_call(self.store.retry_later(notification.id, self.owner, attempt, now,
                                                          count_attempt=False))
        else:
            await self._delivered(notification, started)

    async def _send(self, notification: Notification) -> None:
        routes = self.runtime.routes
        receiver = routes.receivers.get(notification.receiver) if routes else None
        if receiver is None:  # renamed or removed by a reload: keep it until give-up, it may come back
            raise TransientDeliveryError(Reason.CONFIG, f"no receiver {notification.receiver!r} in routes.yaml")
        missing = receiver.missing_secret()
        if missing:
            raise PermanentDeliveryError(Reason.UNCONFIGURED, f"{missing} is not set for receiver {receiver.name!r}")
        channel = self.runtime.channels[receiver.name]
        wait = 0.0
        if receiver.rate_limit is not None or self.options.default_rate_limits:
            wait = self.limiter.take(channel.destination, receiver.integration, receiver.rate_limit)
        if wait > 0:
            raise _Deferred(wait)
        labels = (receiver.name, receiver.integration)
        metrics.notification_requests.labels(*labels).inc()
        call_started = time.perf_counter()
        try:
            timeout = self._timeout(notification)
            with send_deadline(timeout):  # a channel of many calls stops starting them in time
                async with asyncio.timeout(timeout):  # in this task: no task per send
                    await channel.send(notification, Threads(self.store, receiver.name))
        except DeliveryUnfinished:
            raise
        except TimeoutError:
            metrics.notification_requests_failed.labels(*labels, Reason.TIMEOUT).inc()
            raise TransientDeliveryError(Reason.TIMEOUT,
                                         f"no answer in {self._timeout(notification):.0f}s") from None
        except DeliveryError as exc:
            # The one place every failure passes before history, logs and the CLI see it: whatever a channel
            # quoted, no secret of this receiver (nor its URL-encoded or JSON-escaped form) goes further.
            exc.detail = scrub(exc.detail, receiver.secrets(), DETAIL_LIMIT)
            metrics.notification_requests_failed.labels(*labels, exc.reason).inc()
            raise
        except Exception as exc:  # a bug in a channel must not lose the notification
            # Its message and traceback may quote what the channel was given: no secret of this receiver goes
            # to the log either.
            trace = redact("".join(traceback.format_exception(exc)), receiver.secrets())
            log.error("channel %s raised unexpectedly: %s", receiver.integration, trace.rstrip())
            metrics.notification_requests_failed.labels(*labels, Reason.INTERNAL).inc()
            raise TransientDeliveryError(Reason.INTERNAL, type(exc).__name__) from None
        finally:
            metrics.notification_latency.labels(*labels).observe(time.perf_counter() - call_started)

    def _timeout(self, notification: Notification) -> float:
        """PagerDuty takes one call per alert: give a group time for each, but finish well inside the lease."""
        calls = len(notification.alerts) if notification.integration == "pagerduty" else 1
        return min(self.options.send_timeout * calls, self.options.lease * 0.8)

    async def _delivered(self, notification: Notification, started: float) -> None:
        now = time.time()
        await self._store_call(self.store.complete(notification.id, self.owner,
                                                   Attempt(started, now - started, "delivered")))
        integration = notification.integration
        metrics.notifications_delivered.labels(notification.receiver, integration).inc()
        metrics.delivery_latency.labels(notification.receiver, integration).observe(
            now - notification.received_at.timestamp())
        for alert in notification.alerts:
            since = alert.ends_at if alert.status == "resolved" else alert.starts_at
            if since is not None:
                metrics.alert_to_delivery.labels(integration).observe(max(0.0, now - since.timestamp()))
        log.info("delivered notification %d to %s (%s, %d alerts, attempt %d)", notification.id,
                 notification.receiver, notification.status, len(notification.alerts), notification.attempts + 1)
        receiver = notification.receiver
        if receiver in self._backing_off and now - self._brought_forward.get(receiver, 0.0) >= BRING_FORWARD_EVERY:
            await self._recovered(receiver, now)

    async def _recovered(self, receiver: str, now: float) -> None:
        """The receiver answers again: what backed off while it was down is due now, not up to
        `retry_max_seconds` later (a page from the start of an outage would otherwise wait out its backoff)."""
        self._backing_off.discard(receiver)
        self._brought_forward[receiver] = now
        try:
            due = await self.store.retry_now(receiver, now)
        except StoreUnavailable as exc:
            log.error("cannot bring %s's retries forward (they keep their backoff): %s", receiver, exc)
            return
        if due:
            log.info("%s answers again: %d notifications that were backing off are due now", receiver, due)
            self.wake()

    async def _failed(self, claimed: Claimed, started: float, exc: DeliveryError) -> None:
        notification = claimed.notification
        now = time.time()
        attempt = Attempt(started, now - started, "retry", exc.reason, exc.detail)
        if isinstance(exc, TransientDeliveryError):
            honoured = self.options.policy.honoured(exc.retry_after)
            if exc.retry_after is not None and honoured is not None and honoured < exc.retry_after:
                log.warning("notification %d to %s: the provider asked to wait %gs (Retry-After); waiting at most "
                            "%gs (RELAY_RETRY_MAX_SECONDS) and trying again until give-up", notification.id,
                            notification.receiver, exc.retry_after, honoured)
            when = next_attempt(self.options.policy, notification.attempts + 1, now, claimed.give_up_at,
                                exc.retry_after)
            if when is not None:
                if exc.reason is not Reason.RATE_LIMITED:  # a rate limit keeps its wait even when others get through
                    self._backing_off.add(notification.receiver)
                log.warning("notification %d to %s failed (%s), retrying in %.1fs", notification.id,
                            notification.receiver, exc, when - now)
                await self._store_call(self.store.retry_later(notification.id, self.owner, attempt, when))
                return
            reason = Reason.GAVE_UP
        else:
            reason = exc.reason
        log.error("notification %d to %s is a dead letter: %s", notification.id, notification.receiver, exc)
        dead = Attempt(started, now - started, "dead", reason, exc.detail if reason == exc.reason else str(exc))
        await self._store_call(self.store.dead_letter(notification.id, self.owner, dead))
        metrics.notifications_failed.labels(notification.receiver, notification.integration, reason).inc()
        await self._fallback(notification, now)

    async def _fallback(self, notification: Notification, now: float) -> None:
        routes = self.runtime.routes
        receiver = routes.receivers.get(notification.receiver) if routes else None
        if routes is None or receiver is None or not receiver.fallback:
            return
        target = routes.receivers[receiver.fallback]
        candidate = Candidate(target.name, target.integration, notification.group,
                              tuple(timedelta(0) for _ in notification.alerts),
                              target.give_up_after)
        await self._store_call(outbox.enqueue(self, self.store, [candidate], now))
        log.warning("notification %d also sent to fallback receiver %s", notification.id, target.name)

    async def _store_call(self, call: Awaitable[object]) -> None:
        """Record an outcome; if the store is down, the lease expires and the notification is tried again."""
        try:
            await call
        except StoreUnavailable as exc:
            log.error("cannot record delivery outcome (it will be retried when its lease ends): %s", exc)


class _Deferred(Exception):
    """No rate-limit token yet: put the notification back until one is free, without counting an attempt."""

    def __init__(self, wait: float) -> None:
        super().__init__(f"rate limited for {wait:.2f}s")
        self.wait = wait
