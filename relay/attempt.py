"""One attempt: send a claimed notification once, then record what became of it (store, metrics, fallback).

`send` turns the channel's answer into a value (Delivered, Unfinished or Failed); `Attempts.run` persists it:
complete, retry later (counted or not), or dead-letter and hand the group to the fallback receiver. Channels only
classify failures; this module decides when to try again. The rate-limit token was taken before the claim
(relay.pacing.ratelimit); a provider's own 429 holds the whole destination for its Retry-After (`hold`).
"""

from __future__ import annotations

import asyncio
import logging
import time
import traceback
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import timedelta

from relay import outbox
from relay.actions.model import ACTION
from relay.alerts import Notification
from relay.alerts.priority import DEFAULT, OWN, OWN_RANK
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
from relay.pacing.retry import RetryPolicy, next_attempt
from relay.runtime import Receivers
from relay.store.base import Attempt, Candidate, Claimed, Store
from relay.telemetry import metrics
from relay.telemetry.logs import delivery_fields

log = logging.getLogger("relay.dispatcher")  # the logger delivery lines have always come from

# A provider that flaps (failing, answering, failing) gets its backlog again at most this often, not on every
# success after a failure; in between, retries keep their backoff.
BRING_FORWARD_EVERY = 30.0


@dataclass(frozen=True, slots=True)
class Delivered:
    """The provider accepted the notification."""


@dataclass(frozen=True, slots=True)
class Unfinished:
    """Part went out and the channel kept its progress; the rest goes at once, no backoff, no attempt counted."""

    detail: str


@dataclass(frozen=True, slots=True)
class Failed:
    """The send failed (secrets already scrubbed from the error's detail); retry or dead-letter by its class."""

    error: DeliveryError


Outcome = Delivered | Unfinished | Failed
DELIVERED = Delivered()


@dataclass
class Attempts:
    """Makes and records the attempts of one dispatcher (`owner`), remembering which receivers back off."""

    store: Store
    receivers: Receivers
    owner: str
    lease: float
    send_timeout: float
    policy: RetryPolicy
    intake: outbox.Intake
    wake: Callable[[], None]
    hold: Callable[[str, float], None]  # a destination answered 429: claim nothing for it for these seconds
    # The provider has answered (or the send failed): the send's slot is free while its outcome is recorded. Called
    # in the attempt's task, which then queues the outcome's write before it first waits.
    sent: Callable[[], None] = lambda: None

    def __post_init__(self) -> None:
        self._backing_off: set[str] = set()  # receivers whose last failure scheduled a backoff (not a rate limit)
        self._brought_forward: dict[str, float] = {}  # receiver -> when its retries were last made due at once

    async def run(self, claimed: Claimed) -> None:
        """Send once and record the outcome; a store that is down leaves the lease to expire (tried again then)."""
        notification = claimed.notification
        started = time.time()
        outcome = await self.send(notification)
        self.sent()
        if isinstance(outcome, Delivered):
            await self._delivered(notification, started)
            return
        try:
            await self._not_delivered(claimed, started, outcome)
        finally:
            self.wake()  # a retry is scheduled (the rest of an unfinished one at once): the claim loop learns when

    async def _not_delivered(self, claimed: Claimed, started: float, outcome: Failed | Unfinished) -> None:
        notification = claimed.notification
        if isinstance(outcome, Failed):
            await self._failed(claimed, started, outcome.error)
        else:
            now = time.time()
            log.info("notification %d to %s: %s", notification.id, notification.receiver, outcome.detail,
                     extra=delivery_fields(notification, "deferred", "unfinished", now))
            attempt = Attempt(started, now - started, "deferred", "unfinished", outcome.detail)
            await self.store_call(self.store.retry_later(notification.id, self.owner, attempt, now,
                                                          count_attempt=False))

    async def send(self, notification: Notification) -> Outcome:
        found = self.receivers.receiver(notification.receiver)
        if found is None:  # renamed or removed by a reload: keep it until give-up, it may come back
            return Failed(TransientDeliveryError(Reason.CONFIG,
                                                 f"no receiver {notification.receiver!r} in routes.yaml"))
        receiver, channel = found
        missing = receiver.missing_secret()
        if missing:
            return Failed(PermanentDeliveryError(Reason.UNCONFIGURED,
                                                 f"{missing} is not set for receiver {receiver.name!r}"))
        labels = (receiver.name, receiver.integration)
        metrics.notification_requests.labels(*labels).inc()
        call_started = time.perf_counter()
        try:
            timeout = self._timeout(notification)
            with send_deadline(timeout):  # a channel of many calls stops starting them in time
                async with asyncio.timeout(timeout):  # in this task: no task per send
                    await channel.send(notification, Threads(self.store, receiver.name))
        except DeliveryUnfinished as unfinished:
            return Unfinished(str(unfinished))
        except TimeoutError:
            metrics.notification_requests_failed.labels(*labels, Reason.TIMEOUT).inc()
            return Failed(TransientDeliveryError(Reason.TIMEOUT, f"no answer in {self._timeout(notification):.0f}s"))
        except DeliveryError as exc:
            # The one place every failure passes before history, logs and the CLI see it: whatever a channel
            # quoted, no secret of this receiver (nor its URL-encoded or JSON-escaped form) goes further.
            exc.detail = scrub(exc.detail, receiver.secrets(), DETAIL_LIMIT)
            metrics.notification_requests_failed.labels(*labels, exc.reason).inc()
            return Failed(exc)
        except Exception as exc:  # a bug in a channel must not lose the notification
            # Its message and traceback may quote what the channel was given: no secret of this receiver goes
            # to the log either.
            trace = redact("".join(traceback.format_exception(exc)), receiver.secrets())
            log.error("channel %s raised unexpectedly: %s", receiver.integration, trace.rstrip())
            metrics.notification_requests_failed.labels(*labels, Reason.INTERNAL).inc()
            return Failed(TransientDeliveryError(Reason.INTERNAL, type(exc).__name__))
        finally:
            metrics.notification_latency.labels(*labels).observe(time.perf_counter() - call_started)
        return DELIVERED

    def _timeout(self, notification: Notification) -> float:
        """PagerDuty takes one call per alert: give a group time for each, but finish well inside the lease."""
        calls = len(notification.alerts) if notification.integration == "pagerduty" else 1
        return min(self.send_timeout * calls, self.lease * 0.8)

    async def _delivered(self, notification: Notification, started: float) -> None:
        now = time.time()
        await self.store_call(self.store.complete(notification.id, self.owner,
                                                   Attempt(started, now - started, "delivered")))
        integration = notification.integration
        metrics.notifications_delivered.labels(notification.receiver, integration).inc()
        metrics.delivery_latency.labels(notification.receiver, integration).observe(
            now - notification.received_at.timestamp())
        for alert in notification.alerts if integration != ACTION else ():  # a click is no alert's delivery
            since = alert.ends_at if alert.status == "resolved" else alert.starts_at
            if since is not None:
                metrics.alert_to_delivery.labels(integration).observe(max(0.0, now - since.timestamp()))
        count = len(notification.alerts)
        log.info("delivered notification %d to %s (%s, %d alert%s, attempt %d)", notification.id,
                 notification.receiver, notification.status, count, "" if count == 1 else "s",
                 notification.attempts + 1, extra=delivery_fields(notification, "delivered", None, now))
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
            honoured = self.policy.honoured(exc.retry_after)
            if exc.reason is Reason.RATE_LIMITED and honoured:
                self._hold(notification.receiver, honoured)
            if exc.retry_after is not None and honoured is not None and honoured < exc.retry_after:
                log.warning("notification %d to %s: the provider asked to wait %gs (Retry-After); waiting at most "
                            "%gs (RELAY_RETRY_MAX_SECONDS) and trying again until give-up", notification.id,
                            notification.receiver, exc.retry_after, honoured,
                            extra=delivery_fields(notification, "retry", exc.reason, now))
            when = next_attempt(self.policy, notification.attempts + 1, now, claimed.give_up_at, exc.retry_after)
            if when is not None:
                if exc.reason is not Reason.RATE_LIMITED:  # a rate limit keeps its wait even when others get through
                    self._backing_off.add(notification.receiver)
                log.warning("notification %d to %s failed (%s), retrying in %.1fs", notification.id,
                            notification.receiver, exc, when - now,
                            extra=delivery_fields(notification, "retry", exc.reason, now))
                await self.store_call(self.store.retry_later(notification.id, self.owner, attempt, when))
                return
            reason = Reason.GAVE_UP
        else:
            reason = exc.reason
        log.error("notification %d to %s is a dead letter: %s", notification.id, notification.receiver, exc,
                  extra=delivery_fields(notification, "dead", reason, now))
        dead = Attempt(started, now - started, "dead", reason, exc.detail if reason == exc.reason else str(exc))
        await self.store_call(self.store.dead_letter(notification.id, self.owner, dead))
        metrics.notifications_failed.labels(notification.receiver, notification.integration, reason).inc()
        await self._fallback(notification, now)

    def _hold(self, receiver: str, wait: float) -> None:
        found = self.receivers.receiver(receiver)
        if found is not None:
            self.hold(found.channel.destination, wait)

    async def _fallback(self, notification: Notification, now: float) -> None:
        found = self.receivers.receiver(notification.receiver)
        fallback = self.receivers.receiver(found.config.fallback) if found and found.config.fallback else None
        if fallback is None or notification.integration == ACTION:  # an action failed: no alert to tell elsewhere
            return
        target = fallback.config
        # relay's own notice stays relay's own at the fallback: first in line, never folded.
        rank = OWN if notification.priority == OWN_RANK else DEFAULT
        candidate = Candidate(target.name, target.integration, notification.group,
                              tuple(timedelta(0) for _ in notification.alerts),
                              target.give_up_after, rank)
        await self.store_call(outbox.enqueue(self.intake, self.store, [candidate], now))
        log.warning("notification %d also sent to fallback receiver %s", notification.id, target.name)

    async def store_call(self, call: Awaitable[object]) -> None:
        """Record an outcome; if the store is down, the lease expires and the notification is tried again."""
        try:
            await call
        except StoreUnavailable as exc:
            log.error("cannot record delivery outcome (it will be retried when its lease ends): %s", exc)
