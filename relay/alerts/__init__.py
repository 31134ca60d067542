"""Alertmanager's webhook payload (version 4) and relay's notification values.

The payload models accept unknown fields, because newer Alertmanager versions
add some (`notification_reason`, `routeLabels`) and relay must not refuse them.
A NUL character anywhere in a payload becomes U+FFFD (see `without_nul`).
"""

from __future__ import annotations

import enum
import hashlib
import json
import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator, model_validator

from relay.times import parse_time

Status = Literal["firing", "resolved"]
# Where a group relay resolved itself (relay.actions.silences) carries why, for history; never taken from a webhook.
INFERRED = "relayInferred"

# NUL cannot be stored in PostgreSQL text or jsonb (SQLite takes it): one NUL in a label made the whole group
# 503 forever on PostgreSQL. Both stores get the same text instead, with a replacement a reader can see.
NUL, NUL_SHOWN_AS = "\x00", "\ufffd"
# A JSON `\u0000` escape, not an escaped backslash followed by the text "u0000".
_NUL_ESCAPE = re.compile(rb"(?<!\\)((?:\\\\)*)\\u0000")


def without_nul(value: Any) -> Any:
    """`value` (decoded JSON) with every NUL in its strings, keys included, replaced by U+FFFD."""
    if isinstance(value, str):
        return value.replace(NUL, NUL_SHOWN_AS) if NUL in value else value
    if isinstance(value, dict):
        return {without_nul(k): without_nul(v) for k, v in value.items()}
    if isinstance(value, list):
        return [without_nul(v) for v in value]
    return value


def json_without_nul(body: bytes) -> bytes:
    """A JSON body with every `\\u0000` escape replaced by U+FFFD's (a raw NUL byte is not valid JSON anyway);
    a search for the escape costs little next to parsing, so bodies without one are not walked at all."""
    if b"\\u0000" not in body:
        return body
    return _NUL_ESCAPE.sub(rb"\1\\ufffd", body)


# PostgreSQL refuses an index row over ~2.7 KB (SQLite has no such limit): a huge fingerprint or groupKey made its
# group 503 forever there. Store keys hold a digest of such a value instead (Alertmanager's own are far shorter).
KEY_LIMIT = 256


def key_part(value: str) -> str:
    """`value` as part of a store key (dedup mark, lane, message reference): itself, or a digest when it is long."""
    if len(value) <= KEY_LIMIT:
        return value
    return "sha256:" + hashlib.sha256(value.encode("utf-8", "surrogatepass")).hexdigest()


def alert_key(alert: Alert) -> str:
    """One alert episode: its fingerprint and when it started (normalised, as Alertmanager's ns timestamps vary).

    Where a channel remembers a message per alert (relay.channels.threads) and what a storm summary lists."""
    started = parse_time(alert.startsAt)
    return f"{key_part(alert.fingerprint)}@{started.isoformat() if started else alert.startsAt}"


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

    @model_validator(mode="before")
    @classmethod
    def _no_nul(cls, data: Any, info: ValidationInfo) -> Any:
        """Python input is cleaned here; JSON input is cleaned before parsing by `from_json` (much cheaper)."""
        return without_nul(data) if info.mode == "python" else data

    @classmethod
    def from_json(cls, body: bytes | str) -> WebhookMessage:
        """Parse a webhook body (the one way untrusted JSON becomes a WebhookMessage: it removes NUL)."""
        return cls.model_validate_json(json_without_nul(body.encode() if isinstance(body, str) else body))


class State(enum.StrEnum):
    """Where a notification is in its life: waiting in the outbox, delivered, a dead letter, or cancelled by an
    operator before it was sent."""

    PENDING = "pending"
    DELIVERED = "delivered"
    DEAD = "dead"
    CANCELLED = "cancelled"


@dataclass(frozen=True)
class Escalation:
    """What makes a notification an escalation (relay.stages.escalation): step `step` of `steps`, sent because nobody
    acknowledged its alerts `after` seconds after relay first received them."""

    step: int
    steps: int
    after: float

    def to_json(self) -> str:
        return json.dumps({"step": self.step, "steps": self.steps, "after": self.after})

    @classmethod
    def from_json(cls, text: str | None) -> Escalation | None:
        """The stored column read back; None for an ordinary notification (or a value relay did not write)."""
        if not text:
            return None
        try:
            data = json.loads(text)
            return cls(int(data["step"]), int(data["steps"]), float(data["after"]))
        except (ValueError, TypeError, KeyError):
            return None


@dataclass(frozen=True)
class Notification:
    """What one receiver is told about one incoming group: the alerts that survived dedup.

    `group` is the webhook body with `alerts` narrowed to those alerts; it is
    what templates render from, and it is stored as JSON in the outbox.
    `priority` is its stored rank (relay.alerts.priority; OWN_RANK for relay's own notice, which a fallback copy
    keeps).
    """

    id: int
    receiver: str
    integration: str
    lane: str
    group: WebhookMessage
    received_at: datetime
    attempts: int = 0
    escalation: Escalation | None = None
    priority: int = 0

    @property
    def status(self) -> Status:
        return self.group.status

    @property
    def alerts(self) -> list[Alert]:
        return self.group.alerts


def group_status(alerts: list[Alert]) -> Status:
    """A group is firing while any of its alerts fires, as in Alertmanager."""
    return "firing" if any(a.status == "firing" for a in alerts) else "resolved"
