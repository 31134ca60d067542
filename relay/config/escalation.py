"""routes.yaml `escalate:`: the steps of a route's escalation, and their checks (file, line, reason).

    escalate:
      - {after: 10m, receivers: [pagerduty-oncall]}
      - {after: 30m, receivers: [ops-email]}

A step's `after` counts from when relay first received the firing alert; each step must come later than the one
before (a step at the same time would be the same step), and names known receivers. relay.stages.escalation runs them.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta

from pydantic import BaseModel, ConfigDict, Field, field_validator

from relay.config import yamlconfig
from relay.config.durations import Duration, format_duration
from relay.errors import ConfigError


class EscalationStep(BaseModel):
    """One step: who hears of a firing alert nobody acknowledged, silenced or resolved `after` it arrived."""

    model_config = ConfigDict(extra="forbid", frozen=True, arbitrary_types_allowed=True)

    after: Duration
    receivers: list[str] = Field(min_length=1)
    mute_time_intervals: list[str] = Field(default_factory=list)
    active_time_intervals: list[str] = Field(default_factory=list)

    @field_validator("after")
    @classmethod
    def _positive(cls, value: timedelta) -> timedelta:
        if value <= timedelta(0):
            raise ValueError("after must be longer than 0s (the first notification is the route's own receivers)")
        return value

    def __str__(self) -> str:
        return f"after {format_duration(self.after)}: {', '.join(self.receivers)}"


def check_escalation(route: int, steps: Sequence[EscalationStep], receivers: set[str],
                     lines: dict[yamlconfig.Path_, int], file: str) -> None:
    """Refuse a step naming an unknown receiver, or one not later than the step before it."""
    for j, step in enumerate(steps):
        if j and step.after <= steps[j - 1].after:
            raise ConfigError(f"route {route + 1} escalate step {j + 1}: after {format_duration(step.after)} must be "
                              f"later than step {j}'s {format_duration(steps[j - 1].after)}", file=file,
                              line=yamlconfig.line_of(lines, ("routes", route, "escalate", j, "after")))
        for k, name in enumerate(step.receivers):
            if name not in receivers:
                raise ConfigError(f"route {route + 1} escalate step {j + 1} names unknown receiver {name!r}; "
                                  f"known: {sorted(receivers)}", file=file,
                                  line=yamlconfig.line_of(lines, ("routes", route, "escalate", j, "receivers", k)))


def describe(steps: Sequence[EscalationStep]) -> str:
    """One line, as `relay routes test` and review reports show it: `after 10m: pagerduty-oncall; after 30m: …`."""
    return "; ".join(str(step) for step in steps)
