"""When to try a failed notification again: exponential backoff with jitter, Retry-After, give-up.

The wait is Google Cloud Storage's retry strategy (the formula tenacity's
`wait_exponential_jitter` implements), written out here: relay never retries a
call in-process, so tenacity's retry loop has nothing to do, and its wait
object needs a `RetryCallState` it is not meant to be given and changed its
argument names in 9.2 (`initial` deprecated for `multiplier`). The dispatcher
persists the resulting time in the store, so a restart continues the schedule
instead of starting it over. A provider's Retry-After is honoured up to the
policy's maximum: `Retry-After: 999999` (or `inf`, or a date in 2100) would
otherwise put the next attempt past give-up and dead-letter a page at once.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass


@dataclass(frozen=True)
class RetryPolicy:
    initial: float = 1.0
    maximum: float = 300.0
    jitter: float | None = None  # default: up to one `initial` of random extra wait

    def delay(self, attempts: int, retry_after: float | None = None) -> float:
        """Seconds to wait after the `attempts`-th failed attempt; never less than the provider's Retry-After."""
        jitter = self.initial if self.jitter is None else self.jitter
        try:  # initial, 2*initial, 4*initial, ... plus up to `jitter`, at most `maximum`
            wait = min(self.initial * 2.0 ** (max(1, attempts) - 1) + random.uniform(0, jitter), self.maximum)
        except OverflowError:  # 2.0 ** 1100 after a long outage
            wait = self.maximum
        wait = max(0.0, wait)
        honoured = self.honoured(retry_after)
        if honoured is not None:
            wait = max(wait, honoured)
        return float(wait)

    def honoured(self, retry_after: float | None) -> float | None:
        """The part of a provider's Retry-After relay waits for: at most `maximum`; NaN is no hint at all."""
        if retry_after is None or math.isnan(retry_after):
            return None
        return min(max(0.0, retry_after), self.maximum)


def next_attempt(policy: RetryPolicy, attempts: int, now: float, give_up_at: float,
                 retry_after: float | None = None) -> float | None:
    """The time of the next attempt, or None if it would fall after `give_up_at` (the caller dead-letters)."""
    when = now + policy.delay(attempts, retry_after)
    return None if when > give_up_at else when
