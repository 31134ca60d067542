"""Escalation: a firing alert that nobody acknowledges, silences or resolves within a step's `after` is sent to that
step's receivers, once per step (routes.yaml `escalate:`, relay.config.escalation).

The webhook arms one durable timer per (alert episode, step) when relay first receives the firing alert, and a
resolve ends what is left, in the store (`arm`). Every replica runs an Escalator; a due step is marked sent and
enqueued through the outbox in one transaction whose locking read lets only one replica do it, so a restart keeps
the timers and replicas escalate once. An acknowledge or a silence (relay's Slack actions) calls `cancel`.
The escalated message is an ordinary notification marked with its step (alerts.Escalation): the templates say
"not acknowledged for 10m", and the alert's resolve reaches the escalated receivers too.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import defaultdict
from collections.abc import Sequence
from datetime import timedelta
from typing import TYPE_CHECKING

from relay import outbox
from relay.alerts import Alert, Escalation, WebhookMessage
from relay.config.durations import format_duration
from relay.config.heartbeat import is_heartbeat
from relay.outbox import Intake
from relay.stages import loop, mute
from relay.store.base import Candidate, Store
from relay.store.records import DueTimer, EscalationEnd, MaintenanceWindow, Timer
from relay.store.rows import episode
from relay.telemetry import metrics

if TYPE_CHECKING:  # at run time only their values come in: relay.channels can import this module
    from relay.config.routes import Routes
    from relay.runtime import Runtime

log = logging.getLogger(__name__)

# How often to look for due steps: a fifth of the shortest step, within these bounds.
CHECK_MIN_SECONDS = 0.2
CHECK_MAX_SECONDS = 5.0
BATCH = 500
# A step or hold that comes due while still muted is looked at again this much later (not on every beat).
MUTED_RECHECK_SECONDS = 60.0
# An escalated firing alert passes dedup even if its receiver already heard of it: the step is the point.
ALWAYS = timedelta(0)



def text(after: float) -> str:
    """What an escalated message says about why it is sent: `not acknowledged for 10m`."""
    return f"not acknowledged for {format_duration(timedelta(seconds=after))}"


# -- at the webhook ----------------------------------------------------------------------------------------------

def timers(message: WebhookMessage, routes: Routes, received_at: float) -> list[Timer]:
    """The steps to arm for the firing alerts of a webhook whose route escalates (heartbeats are not routed)."""
    out: list[Timer] = []
    for alert in message.alerts:
        if alert.status != "firing" or is_heartbeat(routes.spec.heartbeats, alert):
            continue
        chosen = routes.escalation(alert.labels)
        if chosen is None:
            continue
        group = message.model_copy(update={"alerts": [alert], "status": "firing", "truncatedAlerts": 0})
        for n, step in enumerate(chosen.steps, start=1):
            after = step.after.total_seconds()
            out.append(Timer(group, n, len(chosen.steps), after, tuple(step.receivers), received_at + after))
    return out


async def arm(store: Store, routes: Routes, message: WebhookMessage, chosen: list[Candidate],
              received_at: float, held: Sequence[Timer] = ()) -> list[Candidate]:
    """Arm the webhook's steps and end those of its resolved alerts (before its enqueue, so a 503 retried by
    Alertmanager arms nothing twice); returns `chosen` plus each resolve for the receivers an escalation reached.

    Nothing is asked of the store unless some route escalates: steps armed under an earlier routes.yaml whose
    alert no longer escalates are ended by the Escalator instead (reason `unrouted`).
    """
    if not routes.escalates and not routes.mutes and not held:
        return chosen
    armed = [*timers(message, routes, received_at), *held]  # a mute's holds are timers too (relay.stages.mute)
    resolved = [a for a in message.alerts if a.status == "resolved" and not is_heartbeat(routes.spec.heartbeats, a)]
    if not armed and not resolved:
        return chosen
    done = await store.arm_escalations(armed, resolved, received_at)
    if done.cancelled:
        metrics.escalation_steps.labels("resolved").inc(done.cancelled)
    if done.held_from:
        chosen = await mute.unannounced_resolves_dropped(store, chosen, done.held_from)
    extra: dict[str, list[Alert]] = defaultdict(list)
    for alert in resolved:
        for receiver in done.sent_to.get(episode(alert), ()):
            if receiver in routes.receivers:
                extra[receiver].append(alert)
    return with_resolves(chosen, extra, message, routes)


def with_resolves(chosen: list[Candidate], extra: dict[str, list[Alert]], message: WebhookMessage,
                  routes: Routes) -> list[Candidate]:
    """`chosen` with these resolved alerts added to their receivers' candidates (or new ones), each alert once."""
    out: list[Candidate] = []
    for cand in chosen:
        more = [a for a in extra.pop(cand.receiver, []) if a not in cand.group.alerts]
        if more:
            group = cand.group.model_copy(update={"alerts": [*cand.group.alerts, *more]})
            cand = Candidate(cand.receiver, cand.integration, group,
                             (*cand.repeat_intervals, *(ALWAYS for _ in more)), cand.give_up_after)
        out.append(cand)
    for name, alerts in extra.items():
        receiver = routes.receivers[name]
        group = message.model_copy(update={"alerts": alerts, "status": "resolved"})
        out.append(Candidate(name, receiver.integration, group, tuple(ALWAYS for _ in alerts),
                             receiver.give_up_after))
    return out


# -- acknowledge and silence ---------------------------------------------------------------------------------------

async def cancel(store: Store, fingerprints: Sequence[str], reason: EscalationEnd, now: float | None = None) -> int:
    """Stop what is left of these alerts' escalations (Alertmanager fingerprints, as in the webhook and in each
    stored notification's alerts): call it when someone acknowledges or silences them. Durable when it returns;
    returns how many pending steps it cancelled (0 when none was left). Steps already sent stay sent (their
    receivers still get the resolve). Idempotent, so a repeated click or a retried outbox action is harmless.
    Raises StoreUnavailable like any store write."""
    if not fingerprints:
        return 0
    cancelled = await store.cancel_escalations(list(fingerprints), reason, time.time() if now is None else now)
    if cancelled:
        metrics.escalation_steps.labels(reason).inc(cancelled)
        log.info("escalation of %d alert(s) %s: %d step(s) cancelled", len(set(fingerprints)), reason, cancelled)
    return cancelled


# -- the checker ----------------------------------------------------------------------------------------------------

def notice(batch: Sequence[DueTimer], routes: Routes) -> list[Candidate]:
    """One candidate per receiver of the step (those the loaded routes.yaml still has) holding the batch's alerts
    as one group: the group they arrived in, its common labels narrowed to what these alerts share."""
    first = batch[0].timer
    alerts = [due.timer.alert for due in batch]
    common = {k: v for k, v in first.alert.labels.items() if all(a.labels.get(k) == v for a in alerts)}
    annotations = {k: v for k, v in first.alert.annotations.items() if all(a.annotations.get(k) == v for a in alerts)}
    group = first.group.model_copy(update={"alerts": alerts, "status": "firing", "commonLabels": common,
                                           "commonAnnotations": annotations})
    return [Candidate(name, routes.receivers[name].integration, group, tuple(ALWAYS for _ in alerts),
                      routes.receivers[name].give_up_after)
            for name in first.receivers if name in routes.receivers]


def muted_step(routes: Routes, due: DueTimer, now: float) -> str | None:
    """Why a due escalation step sends nothing now (relay.config.routes.Routes.step_muted), or None."""
    chosen = routes.escalation(due.timer.alert.labels)
    if chosen is None or not 0 < due.timer.step <= len(chosen.steps):
        return None
    return routes.step_muted(chosen.route, chosen.steps[due.timer.step - 1], mute.instant(now))


def batches(due: Sequence[DueTimer]) -> list[list[DueTimer]]:
    """Due steps that go out as one message: same group, same step, same receivers."""
    found: dict[tuple[str, int, int, float, tuple[str, ...]], list[DueTimer]] = {}
    for item in due:
        t = item.timer
        found.setdefault((t.group.groupKey, t.step, t.steps, t.after, t.receivers), []).append(item)
    return list(found.values())


class Escalator:
    """Sends due escalation steps; every replica runs one, the store makes each step go out once."""

    def __init__(self, store: Store, runtime: Runtime, intake: Intake, windows: mute.Windows | None = None) -> None:
        self.store = store
        self.runtime = runtime
        self.intake = intake
        self.windows = windows or mute.Windows()
        self._nudge = asyncio.Event()
        self.checked_at = 0.0  # when the last complete check began

    def interval(self) -> float:
        routes = self.runtime.routes
        afters = [step.after.total_seconds() for route in routes.spec.routes for step in route.escalate] \
            if routes else []
        return min(CHECK_MAX_SECONDS, max(CHECK_MIN_SECONDS, min(afters, default=CHECK_MAX_SECONDS * 5) / 5))

    async def run(self) -> None:
        await loop.every(self.interval, self.check, "escalations", log, self._nudge, clock=lambda: self.runtime.clock())

    def nudge(self) -> None:
        """Check now (a maintenance window ended early: what it held is due)."""
        self._nudge.set()

    async def check(self, now: float) -> None:
        routes = self.runtime.routes
        if routes is None:
            return
        due = await self.store.due_escalations(now, BATCH)
        held = [d for d in due if mute.is_hold(d.timer)]
        windows = await self.windows.current(self.store, now) if held else []
        for batch in batches(held):
            await self._release(routes, batch, now, windows)
        due = [d for d in due if not mute.is_hold(d.timer)]
        unrouted = sorted({d.timer.alert.fingerprint for d in due if routes.escalation(d.timer.alert.labels) is None})
        if unrouted:  # routes.yaml no longer escalates these alerts: their remaining steps end
            await cancel(self.store, unrouted, "unrouted", now)
        # A step muted now waits, pending, for its window to end: looked at again a minute later.
        waiting = {d.id for d in due if d.timer.alert.fingerprint not in unrouted and muted_step(routes, d, now)}
        await self.store.postpone_escalations(sorted(waiting), now + MUTED_RECHECK_SECONDS)
        for batch in batches([d for d in due if d.timer.alert.fingerprint not in unrouted and d.id not in waiting]):
            await self._send(routes, batch, now)
        self.checked_at = now

    async def _release(self, routes: Routes, batch: list[DueTimer], now: float,
                       windows: list[MaintenanceWindow]) -> None:
        candidates = mute.released(batch, routes, now, windows, self.windows)
        if candidates is None:  # still muted (routes.yaml lengthened the window, or another window holds it)
            await self.store.postpone_escalations([d.id for d in batch], now + MUTED_RECHECK_SECONDS)
            return
        results = await outbox.put(self.intake, None, lambda _: self.store.escalate(
            [d.id for d in batch], now, candidates, None))
        if results is None:
            return  # another replica sent it, or it was resolved, acknowledged or silenced meanwhile
        log.info("the mute of %d held alert(s) %s ended: sent to %s", len(batch),
                 ", ".join(sorted({d.timer.alert.name for d in batch})),
                 ", ".join(r.receiver for r in results if r.notification_id is not None) or "nobody (deduplicated, "
                 "or no receiver left)")
        for result in results:
            if result.notification_id is not None:
                metrics.notifications.labels(result.receiver, routes.receivers[result.receiver].integration).inc()

    async def _send(self, routes: Routes, batch: list[DueTimer], now: float) -> None:
        t = batch[0].timer
        marker = Escalation(t.step, t.steps, t.after)
        candidates = notice(batch, routes)
        results = await outbox.put(self.intake, None, lambda _: self.store.escalate(
            [d.id for d in batch], now, candidates, marker))
        if results is None:
            return  # another replica sent it, or it was acknowledged meanwhile
        metrics.escalation_steps.labels("sent").inc(len(batch))
        names = sorted({d.timer.alert.name for d in batch})
        log.warning("escalating %d alert(s) %s (step %d of %d, %s) to %s", len(batch), ", ".join(names), t.step,
                    t.steps, text(t.after), ", ".join(r.receiver for r in results) or "nobody (no receiver left)")
        for result in results:
            if result.notification_id is not None:
                metrics.notifications.labels(result.receiver, routes.receivers[result.receiver].integration).inc()
