"""The storm stage: when a receiver's backlog would take longer than its window to drain, fold it into summaries.

Every replica runs it, like relay.heartbeat.switch: each second it counts what waits per receiver, and when the count is
more than the receiver's rate lets out within `storm.window`, it asks the store to fold what waits into one summary
notification (relay.storms.fold decides which: never PagerDuty, never a `never_fold` severity, never ahead of a send in
flight). The store's conditional updates let one replica open, fold or end a storm; the summary is enqueued in the
same transaction and delivered by the dispatcher like any notification, through relay.outbox.

While a storm is open, what arrives is folded again every `window` (a Slack bot token's summary, updated in place,
every sixth of it); the storm ends when a window passes with nothing left to fold.
"""

from __future__ import annotations

import logging
import time

from relay import outbox
from relay.config.receivers import RateLimit, ReceiverConfig
from relay.outbox import Intake
from relay.pacing.ratelimit import default_limit
from relay.runtime import Runtime
from relay.stages import loop
from relay.store.base import Enqueued, Store
from relay.store.records import Ended, Fold, Folded, StormState
from relay.telemetry import metrics

log = logging.getLogger(__name__)

CHECK_SECONDS = 1.0
UPDATES_PER_WINDOW = 6  # a summary updated in place (one message) may change this often per window


def rate_of(receiver: ReceiverConfig, default_rate_limits: bool) -> RateLimit | None:
    """The rate relay sends to this receiver at (None: unlimited, so it never has a backlog to fold)."""
    if receiver.rate_limit is not None:
        return receiver.rate_limit
    return default_limit(receiver) if default_rate_limits else None


def updates_in_place(receiver: ReceiverConfig) -> bool:
    """A Slack bot token (and no incoming webhook) keeps one summary message per storm and updates it."""
    slack = receiver.slack
    if slack is None or slack.token is None or not slack.token.get_secret_value().strip():
        return False
    return slack.webhook_url is None or not slack.webhook_url.get_secret_value().strip()


def fold_every(receiver: ReceiverConfig) -> float:
    """How long after a fold the storm folds again: a new message at most once per window, an update more often."""
    window = receiver.storm.window.total_seconds()
    return window / UPDATES_PER_WINDOW if updates_in_place(receiver) else window


def saturated(backlog: int, rate: RateLimit, window: float) -> bool:
    """Whether sending `backlog` one by one would take longer than `window` (the burst goes at once)."""
    return backlog > rate.burst + rate.rate * window


class Storms:
    def __init__(self, store: Store, runtime: Runtime, intake: Intake, default_rate_limits: bool = True,
                 external_url: str | None = None) -> None:
        self.store = store
        self.runtime = runtime
        self.intake = intake
        self.default_rate_limits = default_rate_limits
        self.external_url = external_url or ""

    async def run(self) -> None:
        # Should the check keep failing, notifications go one by one, as without the stage.
        await loop.every(lambda: CHECK_SECONDS, self.check, "for storms", log, clock=lambda: self.runtime.clock())

    async def check(self, now: float) -> None:
        routes = self.runtime.routes
        receivers = {name: r for name, r in (routes.receivers if routes else {}).items() if r.folds}
        open_storms = {s.receiver: s for s in await self.store.storms()}
        if receivers or open_storms:
            # What is due within the longest window: rows waiting for a token count, long backoffs do not.
            backlog = await self.store.storm_backlog(now + max((r.storm.window.total_seconds()
                                                                for r in receivers.values()), default=0.0))
            for name, receiver in receivers.items():
                await self._check_one(receiver, backlog.get(name, 0), open_storms.pop(name, None), now)
            for storm in open_storms.values():  # its receiver was removed, or may fold no more: the storm ends
                await self.store.storm_end(storm.id, storm.folded_at, now)
            open_storms = {s.receiver: s for s in await self.store.storms()}
        metrics.set_storms(set(open_storms), list(receivers))

    async def _check_one(self, receiver: ReceiverConfig, backlog: int, storm: StormState | None, now: float) -> None:
        rate = rate_of(receiver, self.default_rate_limits)
        window = receiver.storm.window.total_seconds()
        if storm is None:
            if rate is not None and saturated(backlog, rate, window):
                await self._fold(receiver, None, now)
            return
        since = now - storm.folded_at
        if backlog and since >= fold_every(receiver) and await self._fold(receiver, storm, now) is not None:
            return
        if since < window:
            return
        redraw = updates_in_place(receiver) and storm.ref is not None  # its one message then says it is over
        ended: list[Ended] = []

        async def write(_: object) -> list[Enqueued] | None:
            done = await self.store.storm_end(storm.id, storm.folded_at, now, redraw)
            if done is None:
                return None
            ended.append(done)
            return [Enqueued(receiver.name, done.redraw_id, 0, 0)] if done.redraw_id is not None else []

        await outbox.put(self.intake, None, write)
        if ended:
            log.info("storm of %s is over: %d notifications folded since %s", receiver.name, storm.folded,
                     time.strftime("%H:%M:%S UTC", time.gmtime(storm.started_at)))

    async def _fold(self, receiver: ReceiverConfig, storm: StormState | None, now: float) -> Folded | None:
        routes = self.runtime.routes
        label = routes.priority.label if routes is not None else "severity"
        plan = Fold(receiver.name, receiver.integration, storm, now, tuple(receiver.storm.never_fold),
                    receiver.give_up_after.total_seconds(), self.external_url, label)
        done: list[Folded] = []

        async def write(_: object) -> list[Enqueued] | None:
            folded = await self.store.fold(plan)
            if folded is None:
                return None
            done.append(folded)
            return [Enqueued(receiver.name, folded.summary_id, folded.alerts, 0)]

        await outbox.put(self.intake, None, write)
        if not done:
            return None
        folded = done[0]
        metrics.notifications_coalesced.labels(receiver.name).inc(folded.notifications)
        metrics.notifications.labels(receiver.name, receiver.integration).inc()
        log.warning("%s: %d notifications (%d alerts) folded into summary %d of storm %d instead of one message "
                    "each", receiver.name, folded.notifications, folded.alerts, folded.summary_id, folded.storm_id)
        return folded
