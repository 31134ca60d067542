"""Which notification goes first when a destination cannot take them all now: the most severe, then the oldest.

A notification's priority is the rank of its most severe alert in the configured order (routes.yaml `priority`,
by default the `severity` label: critical, warning, info, then anything else). It is worked out at enqueue from the
alerts that survived dedup and stored with the notification, so a claim reads lane heads in priority order from an
index; a reload that changes the order applies to notifications enqueued after it.

relay's own notices (relay.heartbeat: the pipeline in front of relay is broken) rank OWN_RANK whatever the order
says: ahead of every alert and of a person's click (-1, relay.actions.model), and never folded into a storm's summary
(relay.storms.fold), because they say that no other alert may be reaching anyone.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from pydantic import BaseModel, ConfigDict, Field, field_validator


class PriorityConfig(BaseModel):
    """routes.yaml `priority`: the label that says how severe an alert is, and its values, most severe first."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    label: str = Field(default="severity", min_length=1)
    order: tuple[str, ...] = Field(default=("critical", "warning", "info"), min_length=1)

    @field_validator("order")
    @classmethod
    def _each_once(cls, order: tuple[str, ...]) -> tuple[str, ...]:
        twice = sorted({v for v in order if order.count(v) > 1})
        if twice:
            raise ValueError(f"priority.order names {twice} more than once")
        return order

    def priority(self) -> Priority:
        return Priority(self.label, self.order)


OWN_RANK = -2  # relay's own notices; a click's action row is -1; alerts 0 and up


@dataclass(frozen=True)
class Priority:
    label: str = "severity"
    order: tuple[str, ...] = ("critical", "warning", "info")
    own: bool = False  # relay's own notice: OWN_RANK, whatever its labels

    def rank(self, labels: Mapping[str, str]) -> int:
        """0 for the first value of the order; a value not in it (or no label) ranks after all of them."""
        if self.own:
            return OWN_RANK
        value = labels.get(self.label)
        try:
            return self.order.index(value) if value is not None else len(self.order)
        except ValueError:
            return len(self.order)

    def of(self, alerts: Iterable[Mapping[str, str]]) -> int:
        """The rank of the most severe of these alerts' label sets."""
        return min((self.rank(labels) for labels in alerts), default=len(self.order))


DEFAULT = Priority()
OWN = Priority(own=True)  # given only by relay's own code (relay.heartbeat.notice.notice), never by a webhook's labels
