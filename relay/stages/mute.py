"""Holding what a muted route would send, and sending what still fires when its time interval ends.

A route muted at the instant a webhook arrives (`mute_time_intervals` holds it, or `active_time_intervals` does not,
relay.config.routes.Routes.walk) sends nothing then. Alertmanager drops such a notification and sends at a later
flush; relay does better: each firing alert it would have sent is held as a durable timer in the escalation store
(one per alert episode and route, its step `-(route + 1)`, its receivers those the mute kept, due when the mute
ends), with the reason in its payload (`relay_muted`), so Explain and history show why and until when. What
cancels an escalation cancels a hold the same way and says why: an acknowledge, a silence, or a resolve inside the
window (nobody was told it fired, so nobody is told it resolved). When the window ends, the Escalator sends what is
still held, through dedup with its route's repeat interval, so an alert its receivers heard of before the window is
not sent twice. A resolve is never held (it closes what people were told; see docs/configuration.md).

Maintenance windows made at run time (relay maintenance, the admin API) mute the same way: an alert a window
matches is held for every receiver it reaches (step `-(HOLD_BASE + window id)`), due when the window (or, for a
recurring one, the current stretch of its time interval) ends; ending a window early makes its holds due at once.
A hold or step that comes due while still muted is postponed, not sent.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections import defaultdict
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from relay.alerts import Alert, WebhookMessage, group_status
from relay.config.heartbeat import is_heartbeat
from relay.config.matchers import Matcher, parse_matchers
from relay.store.base import Candidate, Store
from relay.store.maintenance import HOLD_BASE
from relay.store.records import DueTimer, Episode, MaintenanceWindow, Timer
from relay.store.rows import episode

if TYPE_CHECKING:
    from relay.config.routes import Routes

# The payload field of a held group that says why it was held (kept in the notification it becomes).
MUTED = "relay_muted"


def is_hold(timer: Timer) -> bool:
    """Whether a stored timer is a mute's hold (steps of an escalation count from 1)."""
    return timer.step < 0


def instant(epoch: float) -> datetime:
    return datetime.fromtimestamp(epoch, UTC)


class Windows:
    """The maintenance windows that webhooks and the escalation checker ask about, read from the store at most once
    every REFRESH seconds (a window another replica made mutes here within that), and at once after one made or
    ended here. Their matchers are parsed once."""

    REFRESH = 1.0

    def __init__(self) -> None:
        self._windows: list[MaintenanceWindow] = []
        self._read_at = -math.inf
        self._parsed: dict[tuple[str, ...], list[Matcher]] = {}

    def changed(self) -> None:
        self._read_at = -math.inf

    async def current(self, store: Store, now: float) -> list[MaintenanceWindow]:
        if time.monotonic() - self._read_at >= self.REFRESH:
            self._windows = await store.maintenance(now)
            self._read_at = time.monotonic()
        return self._windows

    def matching(self, windows: Sequence[MaintenanceWindow], labels: Mapping[str, str], now: float,
                 routes: Routes | None = None) -> MaintenanceWindow | None:
        """The first window muting at `now` whose matchers all match `labels`: active, and for a recurring one, its
        time interval holds (one routes.yaml no longer defines mutes nothing: when in doubt, deliver)."""
        for window in windows:
            if not window.active(now) or not recurs(window, routes, now):
                continue
            if window.matchers not in self._parsed:
                self._parsed[window.matchers] = parse_matchers(list(window.matchers))
            if all(m.matches(labels) for m in self._parsed[window.matchers]):
                return window
        return None


def recurs(window: MaintenanceWindow, routes: Routes | None, now: float) -> bool:
    """Whether a window's recurrence holds at `now` (a window without one: always)."""
    if not window.time_interval:
        return True
    interval = routes.intervals.get(window.time_interval) if routes is not None else None
    return interval is not None and interval.contains(instant(now))


def window_ends(window: MaintenanceWindow, routes: Routes, now: float) -> float:
    """When a window muting at `now` stops: its end, or sooner the end of its recurrence's current stretch."""
    if not window.time_interval:
        return window.ends_at
    return min(window.ends_at, routes.interval_ends(window.time_interval, instant(now)).timestamp())


def stamp(epoch: float) -> str:
    return instant(epoch).isoformat().replace("+00:00", "Z")


def holds(message: WebhookMessage, routes: Routes, received_at: float,
          windows: Sequence[MaintenanceWindow] = (), cache: Windows | None = None) -> list[Timer]:
    """The holds to arm for a webhook's firing alerts: those in a maintenance window (every receiver they reach
    now), and those that reach receivers only through muted routes."""
    if not routes.mutes and not windows:
        return []
    at = instant(received_at)
    out: list[Timer] = []
    for alert in message.alerts:
        if alert.status != "firing" or is_heartbeat(routes.spec.heartbeats, alert):
            continue
        window = (cache or Windows()).matching(windows, alert.labels, received_at, routes) if windows else None
        if window is not None:
            targets = tuple(t.receiver for t in routes.walk(alert.labels, at).targets)
            ends = window_ends(window, routes, received_at)
            why = f"in maintenance window {window.id} ({window.comment!r}) until {stamp(ends)}"
            if targets:
                group = message.model_copy(update={"alerts": [alert], "status": "firing", "truncatedAlerts": 0,
                                                   MUTED: why})
                out.append(Timer(group, -(HOLD_BASE + window.id), 0, 0.0, targets, ends))
        by_route: dict[int, list[str]] = defaultdict(list)
        reasons: dict[int, str] = {}
        for muted in routes.walk(alert.labels, at).muted:
            by_route[muted.route].append(muted.receiver)
            reasons[muted.route] = muted.reason
        for route, receivers in by_route.items():
            until = routes.mute_ends(route, at)
            why = f"route {route + 1} {reasons[route]} until {stamp(until.timestamp())}"
            group = message.model_copy(update={"alerts": [alert], "status": "firing", "truncatedAlerts": 0,
                                               MUTED: why})
            out.append(Timer(group, -(route + 1), 0, 0.0, tuple(receivers), until.timestamp()))
    return out


def withheld(chosen: list[Candidate], held: Sequence[Timer]) -> list[Candidate]:
    """`chosen` without the firing alerts a maintenance window holds from each receiver."""
    gone = {(name, t.alert.fingerprint) for t in held if t.step <= -HOLD_BASE for name in t.receivers}
    if not gone:
        return chosen
    out: list[Candidate] = []
    for cand in chosen:
        keep = [i for i, a in enumerate(cand.group.alerts)
                if a.status != "firing" or (cand.receiver, a.fingerprint) not in gone]
        if len(keep) == len(cand.group.alerts):
            out.append(cand)
        elif keep:
            alerts = [cand.group.alerts[i] for i in keep]
            group = cand.group.model_copy(update={"alerts": alerts, "status": group_status(alerts)})
            out.append(dataclasses.replace(cand, group=group,
                                           repeat_intervals=tuple(cand.repeat_intervals[i] for i in keep)))
    return out


def released(batch: Sequence[DueTimer], routes: Routes, now: float, windows: Sequence[MaintenanceWindow] = (),
             cache: Windows | None = None) -> list[Candidate] | None:
    """What a due hold sends now: one candidate per receiver, of the alerts that still reach it unmuted, through dedup
    with their route's repeat interval; None while a receiver of it is still muted (a routes.yaml change lengthened
    the window: the hold waits). Receivers the alerts no longer reach are left out (the hold is sent to nobody)."""
    at = instant(now)
    chosen: dict[str, list[tuple[Alert, timedelta]]] = defaultdict(list)
    for due in batch:
        if windows and (cache or Windows()).matching(windows, due.timer.alert.labels, now, routes) is not None:
            return None  # a maintenance window (another, or one made longer) mutes it still
        walk = routes.walk(due.timer.alert.labels, at)
        if {m.receiver for m in walk.muted} & set(due.timer.receivers):
            return None
        reached = {t.receiver: t.repeat_interval for t in walk.targets}
        for name in due.timer.receivers:
            if name in reached and name in routes.receivers:
                chosen[name].append((due.timer.alert, reached[name]))
    first = batch[0].timer
    out = []
    for name, pairs in chosen.items():
        alerts = [alert for alert, _ in pairs]
        common = {k: v for k, v in first.alert.labels.items() if all(a.labels.get(k) == v for a in alerts)}
        annotations = {k: v for k, v in first.alert.annotations.items()
                       if all(a.annotations.get(k) == v for a in alerts)}
        group = first.group.model_copy(update={"alerts": alerts, "status": "firing", "commonLabels": common,
                                               "commonAnnotations": annotations})
        receiver = routes.receivers[name]
        out.append(Candidate(name, receiver.integration, group, tuple(i for _, i in pairs), receiver.give_up_after,
                             routes.priority))
    return out


async def unannounced_resolves_dropped(store: Store, chosen: list[Candidate],
                                       held_from: Mapping[Episode, Sequence[str]]) -> list[Candidate]:
    """`chosen` without the resolves of alerts whose firing a mute held from a receiver that never heard of it: the
    resolve ended the hold (history says `resolved`), and nobody is told of the end of what they were not told of.
    Both facts are proof (a pending hold the resolve cancelled; no firing mark for that receiver and episode); a
    receiver told before the window (Alertmanager re-sent the firing inside it) hears the resolve."""
    pairs = [(name, ep) for ep, names in held_from.items() for name in names]
    told = await store.told(pairs)
    silent = {pair for pair in pairs if pair not in told}
    out: list[Candidate] = []
    for cand in chosen:
        keep = [i for i, alert in enumerate(cand.group.alerts)
                if alert.status != "resolved" or (cand.receiver, episode(alert)) not in silent]
        if len(keep) == len(cand.group.alerts):
            out.append(cand)
        elif keep:
            alerts = [cand.group.alerts[i] for i in keep]
            group = cand.group.model_copy(update={"alerts": alerts, "status": group_status(alerts)})
            out.append(dataclasses.replace(cand, group=group,
                                           repeat_intervals=tuple(cand.repeat_intervals[i] for i in keep)))
    return out
