"""Forget what no longer matters, so the store stays small: delivered history, old dedup marks, old threads.

Dead letters are never forgotten here: they wait to be replayed. Dedup marks
are kept at least as long as the longest `repeat_interval`, or a still-firing
alert would be announced again before its reminder is due.
"""

from __future__ import annotations

import asyncio
import logging
import time
from datetime import timedelta

from relay.errors import StoreUnavailable
from relay.runtime import Runtime
from relay.store.base import Store

log = logging.getLogger(__name__)

PRUNE_EVERY_SECONDS = 3600.0


async def prune_once(store: Store, runtime: Runtime, retention: timedelta, now: float) -> int:
    routes = runtime.routes
    marks = max(retention, routes.longest_repeat_interval()) if routes else retention
    return await store.prune(now - retention.total_seconds(), now - marks.total_seconds())


async def prune_forever(store: Store, runtime: Runtime, retention: timedelta) -> None:
    while True:
        try:
            forgotten = await prune_once(store, runtime, retention, time.time())
        except StoreUnavailable as exc:
            log.warning("cannot prune old history now: %s", exc)
        else:
            if forgotten:
                log.info("forgot %d delivered notifications older than %s", forgotten, retention)
        await asyncio.sleep(PRUNE_EVERY_SECONDS)
