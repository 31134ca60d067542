"""The background stages beside delivery (heartbeats, escalations, storms, silence watches): each checks on a beat
of its own, every replica runs it, and no failure stops one for good (the next beat tries again)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable

from relay.errors import StoreRejected, StoreUnavailable


async def every(interval: Callable[[], float], check: Callable[[float], Awaitable[object]], what: str,
                log: logging.Logger, nudge: asyncio.Event | None = None,
                clock: Callable[[], float] = time.time) -> None:
    """Run `check(clock())` every `interval()` seconds, or sooner when `nudge` is set; `what` names it in the log."""
    while True:
        if nudge is not None:
            nudge.clear()
        try:
            await check(clock())
        except (StoreUnavailable, StoreRejected) as exc:
            log.warning("cannot check %s now (tried again in %.1fs): %s", what, interval(), exc)
        except Exception:  # a bug in one stage must not stop it for good
            log.exception("checking %s failed", what)
        if nudge is None:
            await asyncio.sleep(interval())
        else:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(nudge.wait(), interval())
