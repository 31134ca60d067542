"""Token buckets per destination, so one noisy receiver cannot get relay blocked by its provider."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from relay.config.receivers import RateLimit

DEFAULTS: dict[str, RateLimit] = {
    "slack": RateLimit(rate=1.0, burst=5),
    "pagerduty": RateLimit(rate=2.0, burst=10),
    "email": RateLimit(rate=5.0, burst=20),
}


@dataclass
class TokenBucket:
    rate: float
    burst: int
    tokens: float = field(default=-1.0)
    updated: float = field(default_factory=time.monotonic)

    def __post_init__(self) -> None:
        if self.tokens < 0:
            self.tokens = float(self.burst)

    def relimit(self, rate: float, burst: int, now: float | None = None) -> None:
        """Change the limit, keeping the tokens now left (at most the new burst)."""
        now = time.monotonic() if now is None else now
        self.tokens = min(self.burst, self.tokens + (now - self.updated) * self.rate, burst)
        self.updated, self.rate, self.burst = now, rate, burst

    def take(self, now: float | None = None) -> float:
        """Take one token; return 0 if one was free, else the seconds until one will be (nothing is taken)."""
        now = time.monotonic() if now is None else now
        self.tokens = min(self.burst, self.tokens + (now - self.updated) * self.rate)
        self.updated = now
        if self.tokens >= 1:
            self.tokens -= 1
            return 0.0
        return (1 - self.tokens) / self.rate


class RateLimiter:
    """One bucket per destination name, created on first use with the receiver's limit or the default."""

    def __init__(self) -> None:
        self._buckets: dict[str, TokenBucket] = {}

    def take(self, destination: str, integration: str, limit: RateLimit | None) -> float:
        limit = limit or DEFAULTS[integration]
        bucket = self._buckets.get(destination)
        if bucket is None:
            bucket = self._buckets[destination] = TokenBucket(limit.rate, limit.burst)
        elif (bucket.rate, bucket.burst) != (limit.rate, limit.burst):
            # Another receiver on this destination, or a reload, with another limit: the tokens already taken
            # stay taken (a fresh, full bucket would let two receivers refill it for each other).
            bucket.relimit(limit.rate, limit.burst)
        return bucket.take()
