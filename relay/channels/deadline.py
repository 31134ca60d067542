"""How long the send in progress may still take: the dispatcher sets it, a channel with many calls reads it.

A PagerDuty group is one call per alert. Knowing the attempt's deadline, the
channel stops starting calls in time to end the ones in flight and remember
what was accepted, instead of being cut off in the middle by the deadline.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from contextvars import ContextVar

_deadline: ContextVar[float | None] = ContextVar("relay_send_deadline", default=None)


@contextlib.contextmanager
def send_deadline(seconds: float) -> Iterator[None]:
    """The send in this context must end within `seconds` (the dispatcher also enforces it)."""
    token = _deadline.set(time.monotonic() + seconds)
    try:
        yield
    finally:
        _deadline.reset(token)


def remaining(default: float) -> float:
    """Seconds left for the send in progress; `default` outside one (a channel used on its own)."""
    deadline = _deadline.get()
    return default if deadline is None else deadline - time.monotonic()
