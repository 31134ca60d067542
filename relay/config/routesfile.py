"""routes.yaml as written: the schema of the file (Route, RoutesFile) and the checks that the names it uses resolve
(receivers, fallbacks, heartbeats, time intervals, escalation steps), with messages that number items from 1.

relay.config.routes builds the live Routes from it; this module only reads and refuses.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from relay.alerts.priority import PriorityConfig
from relay.config import yamlconfig
from relay.config.durations import Duration, parse_duration
from relay.config.escalation import EscalationStep, check_escalation
from relay.config.heartbeat import HeartbeatConfig
from relay.config.matchers import Matcher, MatcherError, parse_matchers
from relay.config.receivers import GlobalConfig, ReceiverConfig
from relay.config.timeintervals import TimeInterval
from relay.errors import ConfigError

DEFAULT_REPEAT_INTERVAL = parse_duration("4h")


class Route(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True, arbitrary_types_allowed=True)

    matchers: list[Matcher] = Field(default_factory=list)
    receivers: list[str] = Field(min_length=1)
    continue_: bool = Field(default=False, alias="continue")
    repeat_interval: Duration = DEFAULT_REPEAT_INTERVAL
    escalate: list[EscalationStep] = Field(default_factory=list)
    mute_time_intervals: list[str] = Field(default_factory=list)
    active_time_intervals: list[str] = Field(default_factory=list)

    @field_validator("matchers", mode="before")
    @classmethod
    def _parse(cls, value: Any) -> Any:
        return parse_matchers(value)

    def matches(self, labels: Mapping[str, str]) -> bool:
        return all(m.matches(labels) for m in self.matchers)


class RoutesFile(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    global_: GlobalConfig = Field(default_factory=GlobalConfig, alias="global")
    receivers: list[ReceiverConfig] = Field(min_length=1)
    routes: list[Route] = Field(default_factory=list)
    default_receivers: list[str] = Field(default_factory=list)
    heartbeats: list[HeartbeatConfig] = Field(default_factory=list)
    priority: PriorityConfig = Field(default_factory=PriorityConfig)
    time_intervals: list[TimeInterval] = Field(default_factory=list)

    @model_validator(mode="after")
    def _names_resolve(self) -> RoutesFile:
        names = [r.name for r in self.receivers]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"duplicate receiver name(s): {dupes}")
        return self


def check_names(spec: RoutesFile, lines: dict[yamlconfig.Path_, int], file: str) -> None:
    names = {r.name for r in spec.receivers}
    for i, route in enumerate(spec.routes):
        for j, name in enumerate(route.receivers):
            if name not in names:
                raise ConfigError(f"route {i + 1} names unknown receiver {name!r}; known: {sorted(names)}",
                                  file=file, line=yamlconfig.line_of(lines, ("routes", i, "receivers", j)))
    for j, name in enumerate(spec.default_receivers):
        if name not in names:
            raise ConfigError(f"default_receivers names unknown receiver {name!r}; known: {sorted(names)}",
                              file=file, line=yamlconfig.line_of(lines, ("default_receivers", j)))
    check_heartbeats(spec, names, lines, file)
    check_intervals(spec, lines, file)
    for i, route in enumerate(spec.routes):
        check_escalation(i, route.escalate, names, lines, file)
    fallbacks = {r.name: r.fallback for r in spec.receivers if r.fallback}
    for i, receiver in enumerate(spec.receivers):
        if receiver.fallback and receiver.fallback not in names:
            raise ConfigError(f"receiver {receiver.name!r} has unknown fallback {receiver.fallback!r}",
                              file=file, line=yamlconfig.line_of(lines, ("receivers", i, "fallback")))
        chain: list[str] = [receiver.name]
        nxt: str | None = receiver.fallback
        while nxt:
            if nxt in chain:  # a dead letter would bounce between them for ever
                raise ConfigError(f"fallback cycle: {' -> '.join([*chain, nxt])}", file=file,
                                  line=yamlconfig.line_of(lines, ("receivers", i, "fallback")))
            chain.append(nxt)
            nxt = fallbacks.get(nxt)


def check_intervals(spec: RoutesFile, lines: dict[yamlconfig.Path_, int], file: str) -> None:
    """As Alertmanager: interval names are unique, and a route names only intervals the file defines."""
    known: set[str] = set()
    for i, interval in enumerate(spec.time_intervals):
        if interval.name in known:
            raise ConfigError(f"time interval {interval.name!r} is not unique", file=file,
                              line=yamlconfig.line_of(lines, ("time_intervals", i, "name")))
        known.add(interval.name)
    uses: list[tuple[yamlconfig.Path_, list[str]]] = []
    for i, route in enumerate(spec.routes):
        uses += [(("routes", i, key), getattr(route, key)) for key in ("mute_time_intervals", "active_time_intervals")]
        for j, step in enumerate(route.escalate):
            uses += [(("routes", i, "escalate", j, key), getattr(step, key))
                     for key in ("mute_time_intervals", "active_time_intervals")]
    for path, names in uses:
        for k, name in enumerate(names):
            if name not in known:
                raise ConfigError(f"{describe_path((*path, k))}: undefined time interval {name!r}; "
                                  f"defined: {sorted(known)}", file=file, line=yamlconfig.line_of(lines, (*path, k)))


def check_heartbeats(spec: RoutesFile, receivers: set[str], lines: dict[yamlconfig.Path_, int], file: str) -> None:
    seen: set[str] = set()
    for i, beat in enumerate(spec.heartbeats):
        if beat.name in seen:  # its state in the store is keyed by name
            raise ConfigError(f"duplicate heartbeat name {beat.name!r}", file=file,
                              line=yamlconfig.line_of(lines, ("heartbeats", i, "name")))
        seen.add(beat.name)
        for j, name in enumerate(beat.receivers):
            if name not in receivers:
                raise ConfigError(f"heartbeat {beat.name!r} names unknown receiver {name!r}; "
                                  f"known: {sorted(receivers)}",
                                  file=file, line=yamlconfig.line_of(lines, ("heartbeats", i, "receivers", j)))


# A list's items are named as people count them, from 1, the same in every message: `route 3`, not `routes.2`.
_ITEMS = {"routes": "route", "receivers": "receiver", "heartbeats": "heartbeat", "escalate": "escalate step",
          "matchers": "matcher", "default_receivers": "default_receivers item", "time_intervals": "time interval",
          "times": "times item", "weekdays": "weekdays item", "days_of_month": "days_of_month item",
          "months": "months item", "years": "years item"}


def describe_path(loc: yamlconfig.Path_) -> str:
    """`("routes", 2, "escalate", 0, "after")` as `route 3 escalate step 1: after`."""
    items: list[str] = []
    keys: list[str] = []
    rest = list(loc)
    while rest:
        part = rest.pop(0)
        number = rest[0] if rest else None
        if isinstance(part, str) and isinstance(number, int):
            rest.pop(0)
            label = "entry" if part == "time_intervals" and items else _ITEMS.get(part, part + " item")
            items.append(f"{label} {number + 1}")
        else:
            keys.append(str(part))
    named = " ".join(items)
    dotted = ".".join(keys)
    return f"{named}: {dotted}" if named and dotted else named or dotted or "file"


def validation_error(exc: ValidationError, lines: dict[yamlconfig.Path_, int], file: str) -> ConfigError:
    first = exc.errors(include_url=False, include_input=False)[0]
    loc = tuple(p for p in first["loc"] if not (isinstance(p, str) and ("[" in p or p.startswith("function-"))))
    error = first.get("ctx", {}).get("error")
    if isinstance(error, MatcherError) and error.item is not None:
        loc = (*loc, error.item)  # the list item that holds the bad matcher: its own line
    reason = first["msg"].removeprefix("Value error, ")
    return ConfigError(f"{describe_path(loc)}: {reason}", file=file, line=yamlconfig.line_of(lines, loc))
