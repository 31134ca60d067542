"""The dead man's switch: every few seconds, find the heartbeats that went missing or came back, and say so.

Every replica checks; the store's conditional updates let one of them change a
heartbeat's state and enqueue its notice in the same transaction, so replicas
send one notice, and a crash cannot lose it. A relay that was not running could
not have received a heartbeat, so each process waits `max_silence` from its own
start (or from the reload that added the heartbeat) before it calls one missing.
"""

from __future__ import annotations

import asyncio
import logging

from relay import metrics, outbox, stages
from relay.config.durations import format_duration
from relay.config.routes import Routes
from relay.config.runtime import Runtime
from relay.heartbeat import HeartbeatConfig, notice, notice_group
from relay.outbox import Intake
from relay.store.base import HeartbeatState, Store

log = logging.getLogger(__name__)

# How often to check: a fifth of the shortest max_silence, within these bounds.
CHECK_MIN_SECONDS = 0.2
CHECK_MAX_SECONDS = 5.0


class DeadMan:
    def __init__(self, store: Store, runtime: Runtime, intake: Intake) -> None:
        self.store = store
        self.runtime = runtime
        self.intake = intake
        self.checked_at = 0.0  # when the last complete check began
        self._listening: dict[str, float] = {}  # heartbeat -> since when this process has it configured
        self._nudge = asyncio.Event()

    def wake(self) -> None:
        """A heartbeat arrived: check now, so a recovery is announced at once."""
        self._nudge.set()

    def interval(self) -> float:
        routes = self.runtime.routes
        silences = [h.max_silence.total_seconds() for h in routes.spec.heartbeats] if routes else []
        return min(CHECK_MAX_SECONDS, max(CHECK_MIN_SECONDS, min(silences, default=CHECK_MAX_SECONDS * 5) / 5))

    async def run(self) -> None:
        await stages.every(self.interval, self.check, "heartbeats", log, self._nudge)

    async def check(self, now: float) -> None:
        routes = self.runtime.routes
        beats = routes.spec.heartbeats if routes else []
        configured = {beat.name for beat in beats}
        self._listening = {name: self._listening.get(name, now) for name in configured}
        if routes is None or not beats:
            self.checked_at = now
            return
        states = {state.name: state for state in await self.store.heartbeats(sorted(configured), now)}
        for beat in beats:
            state = states.get(beat.name)
            if state is not None:
                await self._check_one(routes, beat, state, now)
        self.checked_at = now

    async def _check_one(self, routes: Routes, beat: HeartbeatConfig, state: HeartbeatState, now: float) -> None:
        if state.missing_since is None:
            silent_since = now - beat.max_silence.total_seconds()
            heard = state.last_seen if state.last_seen is not None else state.watched_since
            if heard >= silent_since or self._listening[beat.name] > silent_since:
                return
            group = notice_group(beat, now, state.last_seen, state.watched_since)
            missing = notice(beat, routes.receivers, group)
            results = await outbox.put(self.intake, None, lambda _: self.store.heartbeat_missing(
                beat.name, silent_since, now, missing))
            if results is not None:
                log.error("heartbeat %s is missing: none arrived for %s; telling %s", beat.name,
                          format_duration(beat.max_silence),
                          ", ".join(r.receiver for r in results) or "nobody (no receiver left)")
        elif state.last_seen is not None and state.last_seen > state.missing_since:
            group = notice_group(beat, state.missing_since, state.last_seen, state.watched_since, state.last_seen)
            back, since = notice(beat, routes.receivers, group), state.missing_since
            results = await outbox.put(self.intake, None, lambda _: self.store.heartbeat_recovered(
                beat.name, since, now, back))
            if results is not None:
                log.warning("heartbeat %s arrives again (missing for %.0fs); telling %s", beat.name,
                            state.last_seen - state.missing_since, ", ".join(r.receiver for r in results))
        else:
            return
        for result in results or ():
            if result.notification_id is not None:
                metrics.notifications.labels(result.receiver, routes.receivers[result.receiver].integration).inc()
