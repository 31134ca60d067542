"""Alertmanager's webhook payload (version 4) and relay's notification values.

The payload models accept unknown fields, because newer Alertmanager versions
add some (`notification_reason`, `routeLabels`) and relay must not refuse them.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

Status = Literal["firing", "resolved"]

# Alertmanager writes Go's zero time for "no end".
_GO_ZERO_YEAR = 1


def parse_time(value: str) -> datetime | None:
    """Parse an RFC 3339 timestamp as Alertmanager writes it (nanoseconds, `Z`); Go's zero time is None."""
    text = value.strip()
    if text.endswith("Z"):
        text = text[:-1] + "+00:00"
    main, sep, rest = text.partition(".")
    if sep:  # Python keeps microseconds: cut the fraction to six digits, keep the offset.
        digits = ""
        for i, ch in enumerate(rest):
            if not ch.isdigit():
                offset = rest[i:]
                break
            digits += ch
        else:
            offset = ""
        text = f"{main}.{digits[:6].ljust(6, '0')}{offset}"
    parsed = datetime.fromisoformat(text)
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    if parsed.year <= _GO_ZERO_YEAR:
        return None
    return parsed


class Alert(BaseModel):
    """One alert of a webhook; `fingerprint` + `startsAt` name one firing episode."""

    model_config = ConfigDict(extra="allow", frozen=True)

    status: Status
    labels: dict[str, str]
    annotations: dict[str, str] = Field(default_factory=dict)
    startsAt: str
    endsAt: str = "0001-01-01T00:00:00Z"
    generatorURL: str = ""
    fingerprint: str = Field(min_length=1)

    @field_validator("startsAt", "endsAt")
    @classmethod
    def _rfc3339(cls, value: str) -> str:
        try:
            parse_time(value)
        except ValueError:
            raise ValueError("must be an RFC 3339 timestamp such as 2026-11-26T07:37:16.83Z") from None
        return value

    @property
    def name(self) -> str:
        return self.labels.get("alertname", "")

    @property
    def starts_at(self) -> datetime | None:
        return parse_time(self.startsAt)

    @property
    def ends_at(self) -> datetime | None:
        return parse_time(self.endsAt)


class WebhookMessage(BaseModel):
    """The body Alertmanager POSTs to a webhook receiver (version 4)."""

    model_config = ConfigDict(extra="allow", frozen=True)

    version: Literal["4"]
    groupKey: str
    status: Status
    receiver: str
    alerts: list[Alert] = Field(min_length=1)
    groupLabels: dict[str, str] = Field(default_factory=dict)
    commonLabels: dict[str, str] = Field(default_factory=dict)
    commonAnnotations: dict[str, str] = Field(default_factory=dict)
    externalURL: str = ""
    truncatedAlerts: int = Field(default=0, ge=0)


class State(enum.StrEnum):
    """Where a notification is in its life: waiting in the outbox, delivered, or a dead letter."""

    PENDING = "pending"
    DELIVERED = "delivered"
    DEAD = "dead"


@dataclass(frozen=True)
class Notification:
    """What one receiver is told about one incoming group: the alerts that survived dedup.

    `group` is the webhook body with `alerts` narrowed to those alerts; it is
    what templates render from, and it is stored as JSON in the outbox.
    """

    id: int
    receiver: str
    integration: str
    lane: str
    group: WebhookMessage
    received_at: datetime
    attempts: int = 0

    @property
    def status(self) -> Status:
        return self.group.status

    @property
    def alerts(self) -> list[Alert]:
        return self.group.alerts


def group_status(alerts: list[Alert]) -> Status:
    """A group is firing while any of its alerts fires, as in Alertmanager."""
    return "firing" if any(a.status == "firing" for a in alerts) else "resolved"
