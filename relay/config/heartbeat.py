"""The `heartbeats:` section of routes.yaml, and which alerts are heartbeats (relay consumes them, never routes them).

Pure configuration: relay.heartbeat raises and resolves the notice; this module is what routes.yaml and the
webhook need to know about a heartbeat, so loading routes.yaml loads nothing of the switch.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import timedelta
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from relay.alerts import Alert
from relay.config.durations import Duration
from relay.config.matchers import Matcher, parse_matchers


class HeartbeatConfig(BaseModel):
    """One `heartbeats:` entry of routes.yaml."""

    model_config = ConfigDict(extra="forbid", frozen=True, arbitrary_types_allowed=True)

    name: str = Field(pattern=r"^[A-Za-z0-9_.-]+$", max_length=64)
    matchers: list[Matcher] = Field(min_length=1)
    max_silence: Duration
    receivers: list[str] = Field(min_length=1)
    annotations: dict[str, str] = Field(default_factory=dict)
    # first_arrival: missing only after one has arrived; start: also if none arrives within max_silence of relay
    # first watching for it (a routes.yaml for a pipeline known to send it).
    arm: Literal["first_arrival", "start"] = "first_arrival"

    @field_validator("matchers", mode="before")
    @classmethod
    def _parse(cls, value: Any) -> Any:
        return parse_matchers(value)

    @field_validator("max_silence")
    @classmethod
    def _positive(cls, value: timedelta) -> timedelta:
        if value <= timedelta(0):
            raise ValueError("max_silence must be longer than 0s")
        return value

    def matches(self, labels: Mapping[str, str]) -> bool:
        return all(m.matches(labels) for m in self.matchers)

    def armed(self, last_seen: float | None) -> bool:
        """Whether relay may call this heartbeat missing, given when it last arrived (None: never)."""
        return self.arm == "start" or last_seen is not None

    @property
    def alert_label(self) -> str:
        """What people call the heartbeat alert: its alertname when the matchers name one."""
        return next((m.value for m in self.matchers if m.name == "alertname" and m.op == "="), self.name)


def is_heartbeat(heartbeats: list[HeartbeatConfig], alert: Alert) -> bool:
    """Whether an alert belongs to a heartbeat: then it is consumed, never routed."""
    return any(h.matches(alert.labels) for h in heartbeats)


def arrived(heartbeats: list[HeartbeatConfig], alerts: list[Alert]) -> tuple[list[str], int]:
    """The heartbeats a webhook brings (a firing alert of theirs), and how many of its alerts are heartbeats.

    A resolved heartbeat alert does not count as arriving: Alertmanager resolves the Watchdog when Prometheus
    stopped sending it, which is the very failure to report.
    """
    names: set[str] = set()
    consumed = 0
    for alert in alerts:
        found = [h.name for h in heartbeats if h.matches(alert.labels)]
        consumed += bool(found)
        if alert.status == "firing":
            names.update(found)
    return sorted(names), consumed
