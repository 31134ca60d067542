"""The dead man's switch: every few seconds, find the heartbeats that went missing or came back, and say so.

Every replica checks; the store's conditional updates let one of them change a
heartbeat's state and enqueue its notice in the same transaction, so replicas
send one notice, and a crash cannot lose it.

The deadline is the store's, never a process's start (issue 20 #9: a relay restarting more often than
`max_silence` never called the Watchdog missing): `max_silence` after it last arrived, or after relay began
watching for it. Each check marks the heartbeat checked; only when no relay checked it for longer than
`max_silence` (none was running, so none could hear it) is it watched again from that check, so a planned
downtime does not page by itself and a crash loop postpones nothing. A heartbeat that has never arrived is not
armed unless it says `arm: start` (issue 22: a relay started to try it does not page); relay says so at start.
"""

from __future__ import annotations

import asyncio
import logging

from relay import outbox
from relay.config.durations import format_duration
from relay.config.heartbeat import HeartbeatConfig
from relay.config.routes import Routes
from relay.heartbeat.notice import notice, notice_group, silent_for
from relay.outbox import Intake
from relay.runtime import Runtime
from relay.stages import loop
from relay.store.base import HeartbeatState, Store
from relay.telemetry import metrics

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
        self._unarmed: set[str] = set()  # heartbeats this process said are not armed yet (it says when they are)
        self._nudge = asyncio.Event()

    def wake(self) -> None:
        """A heartbeat arrived: check now, so a recovery is announced at once."""
        self._nudge.set()

    def interval(self) -> float:
        routes = self.runtime.routes
        silences = [h.max_silence.total_seconds() for h in routes.spec.heartbeats] if routes else []
        return min(CHECK_MAX_SECONDS, max(CHECK_MIN_SECONDS, min(silences, default=CHECK_MAX_SECONDS * 5) / 5))

    async def run(self) -> None:
        await loop.every(self.interval, self.check, "heartbeats", log, self._nudge, clock=lambda: self.runtime.clock())

    async def check(self, now: float) -> None:
        routes = self.runtime.routes
        beats = routes.spec.heartbeats if routes else []
        if routes is None or not beats:
            self.checked_at = now
            return
        watch = {beat.name: beat.max_silence.total_seconds() for beat in beats}
        states = {state.name: state for state in await self.store.heartbeats(watch, now)}
        for beat in beats:
            state = states.get(beat.name)
            if state is not None:
                self._say_armed(beat, state)
                await self._check_one(routes, beat, state, now)
        self.checked_at = now

    def _say_armed(self, beat: HeartbeatConfig, state: HeartbeatState) -> None:
        """Warn once while a heartbeat is not armed (none has arrived yet), and say when the first one arms it."""
        armed = beat.armed(state.last_seen)
        if not armed and beat.name not in self._unarmed:
            self._unarmed.add(beat.name)
            log.warning("heartbeat %s is not armed: no %s alert has reached relay yet, so relay does not page "
                        "while none arrives; it will once one has arrived and then none for %s (set arm: start "
                        "to page when none arrives within %s)", beat.name, beat.alert_label,
                        format_duration(beat.max_silence), format_duration(beat.max_silence))
        elif armed and beat.name in self._unarmed:
            self._unarmed.discard(beat.name)
            log.info("heartbeat %s is armed: the first %s arrived; relay pages if none arrives for %s",
                     beat.name, beat.alert_label, format_duration(beat.max_silence))

    async def _check_one(self, routes: Routes, beat: HeartbeatConfig, state: HeartbeatState, now: float) -> None:
        if state.missing_since is None:
            silent_since = now - beat.max_silence.total_seconds()
            heard = max(state.last_seen or state.watched_since, state.watched_since)
            if not beat.armed(state.last_seen) or heard >= silent_since:
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
            group = notice_group(beat, state.missing_since, state.last_seen, state.watched_since, state.last_seen,
                                 state.heard_at)
            back, since = notice(beat, routes.receivers, group), state.missing_since
            results = await outbox.put(self.intake, None, lambda _: self.store.heartbeat_recovered(
                beat.name, since, now, back))
            if results is not None:
                heard = state.heard_at if state.heard_at is not None else since - beat.max_silence.total_seconds()
                log.warning("heartbeat %s arrives again (none had arrived for %s); telling %s", beat.name,
                            silent_for(heard, state.last_seen), ", ".join(r.receiver for r in results))
        else:
            return
        for result in results or ():
            if result.notification_id is not None:
                metrics.notifications.labels(result.receiver, routes.receivers[result.receiver].integration).inc()
