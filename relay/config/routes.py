"""routes.yaml: receivers, the ordered route list, and which receivers an alert goes to.

Routes are tried in order; the first match wins unless it says
`continue: true`; alerts no route matches go to `default_receivers`.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

from pydantic import ValidationError

from relay.alerts.priority import Priority
from relay.config import yamlconfig
from relay.config.escalation import EscalationStep
from relay.config.receivers import ReceiverConfig, with_globals
from relay.config.routesfile import (
    DEFAULT_REPEAT_INTERVAL,
    Route,
    RoutesFile,
    check_names,
    describe_path,
    validation_error,
)
from relay.config.timeintervals import TimeInterval
from relay.errors import ConfigError
from relay.templating import Templates

__all__ = ["DEFAULT_REPEAT_INTERVAL", "Route", "Routes", "RoutesFile", "describe_path", "load_routes"]

log = logging.getLogger(__name__)

# A notification held by a route's mute is looked at again after this long at most (a route muted for good).
MAX_HOLD = timedelta(days=35)


@dataclass(frozen=True)
class Escalation:
    """The escalation an alert gets: that of the first route it matches that names one (`route`: its index)."""

    route: int
    steps: list[EscalationStep]


@dataclass(frozen=True)
class Target:
    """One receiver an alert goes to, with the repeat interval of the route that chose it."""

    receiver: str
    repeat_interval: timedelta


@dataclass(frozen=True)
class Muted:
    """A receiver an alert reached only through routes muted at that instant: the first such route (its index) and
    why, in words for history and `routes test` (`muted by time interval "nights"`)."""

    receiver: str
    route: int
    reason: str
    repeat_interval: timedelta


@dataclass(frozen=True)
class Walk:
    """Where one alert goes at one instant: the receivers to send to, and those its muted routes would have."""

    targets: list[Target]
    muted: list[Muted] = field(default_factory=list)


class Routes:
    """A loaded, validated routes.yaml: receivers by name and the routing function."""

    def __init__(self, spec: RoutesFile, source: str, digest: str,
                 defaulted: Mapping[yamlconfig.Path_, list[str]] | None = None) -> None:
        self.spec = spec
        self.source = source
        self.digest = digest
        self.receivers: dict[str, ReceiverConfig] = {r.name: with_globals(r, spec.global_) for r in spec.receivers}
        self.defaults = _on_defaults(spec, self.receivers, defaulted or {})
        self.priority: Priority = spec.priority.priority()
        self.intervals: dict[str, TimeInterval] = {t.name: t for t in spec.time_intervals}
        self.mutes = bool(self.muting_routes())
        self._mute_ends: dict[tuple[int, datetime], datetime] = {}

    def targets(self, labels: Mapping[str, str], at: datetime | None = None) -> list[Target]:
        """The receivers for one alert, in route order, each once (the first route naming it sets its interval);
        with `at`, without those only routes muted at that instant reach (see `walk`)."""
        return self.walk(labels, at).targets

    def walk(self, labels: Mapping[str, str], at: datetime | None = None) -> Walk:
        """Walk the routes for one alert. A route muted at `at` (its `mute_time_intervals` hold it, or it has
        `active_time_intervals` and none holds it) still matches and still ends the walk unless `continue`, as in
        Alertmanager, but its receivers are only noted as muted; a receiver another matching route sends to is sent
        to. Without `at`, no route is muted (as review tools read a file)."""
        chosen: dict[str, Target] = {}
        muted: dict[str, Muted] = {}
        matched = False
        for i, route in enumerate(self.spec.routes):
            if not route.matches(labels):
                continue
            matched = True
            why = self.muted_by(route.mute_time_intervals, route.active_time_intervals, at)
            for name in route.receivers:
                if why is None:
                    chosen.setdefault(name, Target(name, route.repeat_interval))
                else:
                    muted.setdefault(name, Muted(name, i, why, route.repeat_interval))
            if not route.continue_:
                break
        if not matched:
            for name in self.spec.default_receivers:
                chosen.setdefault(name, Target(name, DEFAULT_REPEAT_INTERVAL))
        return Walk(list(chosen.values()), [m for name, m in muted.items() if name not in chosen])

    def muted_by(self, mute: list[str], active: list[str], at: datetime | None) -> str | None:
        """Why a route or escalation step with these intervals sends nothing at `at`, or None if it sends."""
        if at is None:
            return None
        for name in mute:
            if self.intervals[name].contains(at):
                return f"muted by time interval {name!r}"
        if active and not any(self.intervals[name].contains(at) for name in active):
            return f"outside its active time intervals {', '.join(repr(n) for n in active)}"
        return None

    def escalation(self, labels: Mapping[str, str]) -> Escalation | None:
        """The escalation of an alert with these labels: of the first route it reaches (as `targets` walks them)
        that has `escalate:`; None if none does (alerts only `default_receivers` catch never escalate)."""
        for i, route in enumerate(self.spec.routes):
            if not route.matches(labels):
                continue
            if route.escalate:
                return Escalation(i, route.escalate)
            if not route.continue_:
                break
        return None

    def acting_for(self, receiver: str, labels: Mapping[str, str]) -> tuple[set[str], bool]:
        """Whom someone acting from `receiver`'s message may act for about an alert with these labels, and whether
        that includes the alert's escalation (issue 20 #7: an acknowledge on team A's Slack reached team B's
        PagerDuty and escalation). A route, with its escalation steps, is one team: the receivers of every route the
        alert reaches (as `targets` walks them) that names `receiver` among its receivers or escalation steps;
        `default_receivers` are one such route when none matches. The escalation is included when its route is one
        of those."""
        chosen = self.escalation(labels)
        team: set[str] = set()
        owns = False
        reached = [(i, r) for i, r in enumerate(self.spec.routes) if r.matches(labels)]
        cut = next((n for n, (_, r) in enumerate(reached) if not r.continue_), len(reached))
        for i, route in reached[:cut + 1]:
            members = {*route.receivers, *(name for step in route.escalate for name in step.receivers)}
            if receiver in members:
                team |= members
                owns = owns or (chosen is not None and chosen.route == i)
        if not reached and receiver in self.spec.default_receivers:
            team = set(self.spec.default_receivers)
        return team, owns

    def mute_ends(self, route: int, at: datetime) -> datetime:
        """When route `route`, muted at `at`, sends again: the first minute after `at` it is not muted (intervals are
        whole minutes of a wall clock), at most MAX_HOLD later (a route muted longer is looked at again then).
        Remembered per route and minute: every webhook in a muted minute asks the same."""
        start = at.astimezone(UTC).replace(second=0, microsecond=0) + timedelta(minutes=1)
        key = (route, start)
        if key not in self._mute_ends:
            spec = self.spec.routes[route]
            end = start
            while end - start < MAX_HOLD and self.muted_by(spec.mute_time_intervals, spec.active_time_intervals, end):
                end += timedelta(minutes=1)
            if len(self._mute_ends) > 10_000:
                self._mute_ends.clear()
            self._mute_ends[key] = end
        return self._mute_ends[key]

    def interval_ends(self, name: str, at: datetime) -> datetime:
        """When the time interval `name`, holding at `at`, stops holding: its first minute after `at` that it does
        not hold, at most MAX_HOLD later (a recurring maintenance window's hold is due then)."""
        interval = self.intervals[name]
        end = at.astimezone(UTC).replace(second=0, microsecond=0) + timedelta(minutes=1)
        limit = end + MAX_HOLD
        while end < limit and interval.contains(end):
            end += timedelta(minutes=1)
        return end

    def muted_throughout(self, route: int, start: datetime, horizon: timedelta) -> bool:
        """Whether route `route` is muted at every minute from `start` for `horizon` (stops at the first minute it
        is not, so a route muted only at times answers at once)."""
        spec = self.spec.routes[route]
        at = start.astimezone(UTC).replace(second=0, microsecond=0)
        end = at + horizon
        while at < end:
            if self.muted_by(spec.mute_time_intervals, spec.active_time_intervals, at) is None:
                return False
            at += timedelta(minutes=1)
        return True

    def step_muted(self, route: int, step: EscalationStep, at: datetime) -> str | None:
        """Why an escalation step sends nothing at `at`: its own intervals when it names any, else its route's (no
        one is paged at night for a muted route's escalation unless the step says so)."""
        if step.mute_time_intervals or step.active_time_intervals:
            return self.muted_by(step.mute_time_intervals, step.active_time_intervals, at)
        spec = self.spec.routes[route]
        return self.muted_by(spec.mute_time_intervals, spec.active_time_intervals, at)

    def muting_routes(self) -> list[int]:
        """The indexes of routes that name time intervals, on themselves or on an escalation step."""
        return [i for i, route in enumerate(self.spec.routes)
                if route.mute_time_intervals or route.active_time_intervals
                or any(step.mute_time_intervals or step.active_time_intervals for step in route.escalate)]

    @property
    def escalates(self) -> bool:
        """Whether any route escalates (else a webhook has no escalation to arm or end)."""
        return any(route.escalate for route in self.spec.routes)

    def longest_repeat_interval(self) -> timedelta:
        return max((route.repeat_interval for route in self.spec.routes), default=DEFAULT_REPEAT_INTERVAL)

    def unconfigured(self) -> dict[str, str]:
        """Receivers whose secret is unset, with the setting that is missing."""
        out = {}
        for name, receiver in self.receivers.items():
            missing = receiver.missing_secret()
            if missing:
                out[name] = missing
        return out


# Where a receiver's messages go; a value here that is only a `${VAR:-default}` placeholder (VAR unset) is worth
# saying at start: `localhost:587` or `ops@example` rarely is where a new user's alerts should go.
_DESTINATIONS = {"slack": ("webhook_url", "token", "channel", "api_url"), "email": ("to", "smarthost"),
                 "pagerduty": ("routing_key", "url"), "webhook": ("url",), "discord": ("webhook_url",),
                 "telegram": ("bot_token", "chat_id", "api_url"), "teams": ("webhook_url",)}
_SECRETS = {"webhook_url", "token", "routing_key", "bot_token"}
_GLOBALS = {"smarthost": "smtp_smarthost"}


def _on_defaults(spec: RoutesFile, receivers: Mapping[str, ReceiverConfig],
                 defaulted: Mapping[yamlconfig.Path_, list[str]]) -> dict[str, list[str]]:
    """Receiver name -> what of its destination comes only from defaults, as sentences for a warning."""
    out: dict[str, list[str]] = {}
    for i, raw in enumerate(spec.receivers):
        kind = raw.integration
        for name in _DESTINATIONS[kind]:
            variables = [v for path, names in defaulted.items() if path[:4] == ("receivers", i, kind, name)
                         for v in names]
            if not variables and name in _GLOBALS and getattr(getattr(raw, kind), name) is None:
                variables = defaulted.get(("global", _GLOBALS[name]), [])
            if not variables:
                continue
            value = getattr(getattr(receivers[raw.name], kind), name)
            shown = "" if name in _SECRETS else f" {', '.join(value) if isinstance(value, list) else value!s}"
            unset = ", ".join(dict.fromkeys(variables))
            out.setdefault(raw.name, []).append(f"{kind}.{name} is the routes.yaml default{shown} ({unset} unset)")
    return out


def load_routes(file: Path, templates: Templates, environ: Mapping[str, str] | None = None) -> Routes:
    """Load and fully check routes.yaml and the templates its receivers use; raise ConfigError if anything is wrong."""
    defaulted: dict[yamlconfig.Path_, list[str]] = {}
    data, lines = yamlconfig.load(file, environ, defaulted)
    if not isinstance(data, dict):
        raise ConfigError("expected a mapping with receivers, routes and default_receivers", file=str(file), line=1)
    try:
        spec = RoutesFile.model_validate(data)
    except ValidationError as exc:
        raise validation_error(exc, lines, str(file)) from None
    check_names(spec, lines, str(file))
    for i, receiver in enumerate(spec.receivers):
        try:
            templates.check(receiver.integration, receiver.templates, f"receiver {receiver.name!r}")
        except ConfigError as exc:
            if exc.file is None:
                raise ConfigError(exc.reason, file=str(file),
                                  line=yamlconfig.line_of(lines, ("receivers", i, "templates"))) from None
            raise
    digest = hashlib.sha256(file.read_bytes()).hexdigest()[:16]
    return Routes(spec, str(file), digest, defaulted)
