"""Token buckets per destination, so one noisy receiver cannot get relay blocked by its provider.

A token is taken before a notification is claimed (relay.store's claim and spend), never by a send that then
waits: a destination without a token is not claimed for until its next one is due. Where a bucket lives is the
store's: in this process for SQLite (one process per file), in a table for PostgreSQL (one budget for every
replica). `Budget` says which bucket a receiver draws from and how fast it fills.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from relay.config.receivers import RateLimit, ReceiverConfig

DEFAULTS: dict[str, RateLimit] = {
    "slack": RateLimit(rate=1.0, burst=5),
    "pagerduty": RateLimit(rate=2.0, burst=10),
    "email": RateLimit(rate=5.0, burst=20),
    # Discord publishes no fixed figures (its X-RateLimit headers say them); a webhook meets 429 past about 5 requests
    # in 2 s, a channel past about 30 messages a minute.
    "discord": RateLimit(rate=0.5, burst=5),
    # Telegram: about 1 message a second in one chat, 20 a minute in a group (telegram_limit tells them apart).
    "telegram": RateLimit(rate=1.0, burst=1),
    # Teams: about 4 requests a second per webhook is what Microsoft documents for Teams' incoming webhooks; we
    # found no figure of its own for a Workflows webhook, so relay stays well under that one.
    "teams": RateLimit(rate=1.0, burst=4),
    # A generic webhook has no provider limit to default to: set `rate_limit` for an endpoint that needs one.
}
TELEGRAM_GROUP = RateLimit(rate=20 / 60, burst=1)


def default_limit(config: ReceiverConfig) -> RateLimit | None:
    """The provider's documented limit for this receiver's destination, if it has one."""
    if config.telegram is not None and config.telegram.group:
        return TELEGRAM_GROUP
    return DEFAULTS.get(config.integration)


@dataclass(frozen=True, slots=True)
class Budget:
    """A destination's bucket: `rate` tokens a second, at most `burst` at once. `destination` is the channel's
    secret-free name (relay.channels.base.Channel.destination), the bucket's key."""

    destination: str
    rate: float
    burst: int


def budget_of(config: ReceiverConfig, destination: str, defaults: bool) -> Budget | None:
    """The receiver's own `rate_limit`, else its integration's default when defaults are on, else none."""
    limit = config.rate_limit or (default_limit(config) if defaults else None)
    return None if limit is None else Budget(destination, limit.rate, limit.burst)


def by_destination(budgets: Iterable[Budget]) -> dict[str, Budget]:
    """One budget per destination: receivers sharing one with different limits get the strictest rate (and its
    burst), so no receiver's looser limit lets the destination exceed another's."""
    out: dict[str, Budget] = {}
    for b in budgets:
        known = out.get(b.destination)
        if known is None or (b.rate, b.burst) < (known.rate, known.burst):
            out[b.destination] = b
    return out


@dataclass(frozen=True, slots=True)
class Grant:
    """Tokens taken from one bucket, and the seconds until it holds a whole one again (0: it holds one now)."""

    granted: int
    wait: float


def grant(granted: int, left: float, rate: float) -> Grant:
    return Grant(granted, 0.0 if left >= 1 else (1 - left) / rate)


# A replica on a shared bucket takes up to this much of a fast bucket's rate in one round trip, and forgets what it
# did not use after PREPAID_FOR seconds (as spent: never over budget). Buckets a few sends a second fill (the
# Slack, PagerDuty and email defaults) are always taken one token at a time.
PREPAY_SECONDS = 0.05
PREPAID_FOR = 1.0


def prepay(b: Budget) -> int:
    """How many tokens to take at once for one send from a shared bucket."""
    return max(1, math.floor(min(b.burst / 4, b.rate * PREPAY_SECONDS)))


class Prepaid:
    """Tokens this process took from a shared bucket and has not used yet (relay.store.postgres: one round trip per
    many sends to a fast destination, instead of one per send)."""

    def __init__(self) -> None:
        self._left: dict[str, tuple[int, float]] = {}  # destination -> (tokens, until time.monotonic())

    def use(self, destination: str, wanted: int, now: float | None = None) -> int:
        now = time.monotonic() if now is None else now
        left, until = self._left.get(destination, (0, now))
        used = min(wanted, left) if until > now else 0
        if left - used > 0 and until > now:
            self._left[destination] = (left - used, until)
        else:
            self._left.pop(destination, None)
        return used

    def keep(self, destination: str, tokens: int, now: float | None = None) -> None:
        if tokens > 0:
            self._left[destination] = (tokens, (time.monotonic() if now is None else now) + PREPAID_FOR)


@dataclass
class TokenBucket:
    rate: float
    burst: int
    tokens: float = field(default=-1.0)
    updated: float = field(default_factory=time.monotonic)

    def __post_init__(self) -> None:
        if self.tokens < 0:
            self.tokens = float(self.burst)

    def refill(self, rate: float, burst: int, now: float | None = None) -> float:
        """Bring the bucket to `now` under this limit (a new one keeps the tokens left, at most its burst: a
        fresh, full bucket would let a reload or a second receiver refill it); the tokens it holds."""
        now = time.monotonic() if now is None else now
        self.tokens = min(self.burst, self.tokens + max(0.0, now - self.updated) * self.rate, burst)
        self.updated, self.rate, self.burst = now, rate, burst
        return self.tokens

    def take(self, now: float | None = None, wanted: int = 1) -> float:
        """Take `wanted` tokens; return 0 if they were there, else the seconds until one will be (nothing taken)."""
        tokens = self.refill(self.rate, self.burst, now)
        if tokens >= wanted:
            self.tokens -= wanted
            return 0.0
        return (1 - tokens) / self.rate if tokens < 1 else 0.0


class Buckets:
    """The buckets of one process (SQLite's store): created full on first use, safe to use from any thread."""

    def __init__(self) -> None:
        self._buckets: dict[str, TokenBucket] = {}
        self._lock = threading.Lock()

    def _bucket(self, b: Budget) -> TokenBucket:
        bucket = self._buckets.get(b.destination)
        if bucket is None:
            bucket = self._buckets[b.destination] = TokenBucket(b.rate, b.burst)
        return bucket

    def peek(self, budgets: Iterable[Budget]) -> dict[str, float]:
        """The tokens each destination's bucket holds now (whole or not), taking none."""
        with self._lock:
            return {b.destination: self._bucket(b).refill(b.rate, b.burst) for b in budgets}

    def take(self, wanted: Mapping[Budget, int]) -> dict[str, Grant]:
        """Take up to `wanted[b]` whole tokens from each bucket."""
        out: dict[str, Grant] = {}
        with self._lock:
            for b, n in wanted.items():
                bucket = self._bucket(b)
                tokens = bucket.refill(b.rate, b.burst)
                granted = max(0, min(n, math.floor(tokens)))
                bucket.tokens -= granted
                out[b.destination] = grant(granted, bucket.tokens, b.rate)
        return out


class Waiting:
    """Destinations out of tokens, each until its next token is due (or a 429's Retry-After ends): the dispatcher
    claims nothing for them and offers enqueues no handoff for them until then, so a backlog waiting on a
    destination costs one wake-up per token, not a claim per notification."""

    def __init__(self) -> None:
        self._until: dict[str, float] = {}  # destination -> time.monotonic() when it may be claimed for again

    def __bool__(self) -> bool:
        return bool(self._until)

    def hold(self, destination: str, seconds: float, now: float | None = None) -> None:
        until = (time.monotonic() if now is None else now) + seconds
        self._until[destination] = max(until, self._until.get(destination, until))

    def held(self, now: float | None = None) -> set[str]:
        """The destinations still waiting (those whose wait ended are forgotten)."""
        now = time.monotonic() if now is None else now
        for destination in [d for d, until in self._until.items() if until <= now]:
            del self._until[destination]
        return set(self._until)

    def next_in(self, now: float | None = None) -> float | None:
        """Seconds until the first wait ends (None: nothing waits)."""
        now = time.monotonic() if now is None else now
        return max(0.0, min(self._until.values()) - now) if self._until else None
