"""How a storm's summary reads, whatever carries it: counts, the alerts by name (most severe first), where the rest is.

Built from alert values, so every text here is shown as text: relay.templating.neutralise makes hidden characters
visible, and each channel escapes for its target (Slack mrkdwn, HTML) when it writes a Summary out. Each alert is
counted once, by its latest status in the storm (a firing that resolved during the storm counts as resolved).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from urllib.parse import quote

from relay.alerts import Alert, Notification, alert_key
from relay.storms.fold import RELAY_URL, storm_of
from relay.templating import distinguishing
from relay.templating.escape import safe_url
from relay.templating.neutralise import visible

SEVERITIES = ("critical", "warning", "info")


def severity_rank(severity: str) -> int:
    return SEVERITIES.index(severity) if severity in SEVERITIES else len(SEVERITIES)


@dataclass(frozen=True)
class Line:
    """One alert of a summary: its status and the labels that tell it apart from the others of its name."""

    status: str
    labels: dict[str, str]

    @property
    def text(self) -> str:
        return " ".join(f"{k}={v}" for k, v in self.labels.items()) or "(no other labels)"


@dataclass(frozen=True)
class Family:
    """The alerts of one alertname."""

    name: str
    severity: str
    lines: list[Line]

    @property
    def firing(self) -> int:
        return sum(line.status == "firing" for line in self.lines)

    @property
    def resolved(self) -> int:
        return len(self.lines) - self.firing


@dataclass(frozen=True)
class Summary:
    storm_id: int
    summary_id: int
    receiver: str
    families: list[Family]
    ended: bool
    history_url: str  # the history of what this summary folded ("" when RELAY_EXTERNAL_URL is unset)

    @property
    def firing(self) -> int:
        return sum(f.firing for f in self.families)

    @property
    def resolved(self) -> int:
        return sum(f.resolved for f in self.families)

    @property
    def total(self) -> int:
        return self.firing + self.resolved

    @property
    def command(self) -> str:
        """The command that lists what this summary folded, for a reader without the link."""
        return f"relay notifications list --summary {self.summary_id}"

    @property
    def title(self) -> str:
        state = "Alert storm over" if self.ended else "Alert storm"
        return f"{state}: {self.total} alerts folded for {visible(self.receiver)} ({self.firing} firing, " \
               f"{self.resolved} resolved)"


def history_url(external_url: str | None, summary_id: int) -> str:
    """relay's history of the notifications folded into a summary (its admin API), if relay's URL is known."""
    base = safe_url(external_url or "")
    return f"{base.rstrip('/')}/api/v1/notifications?summary={quote(str(summary_id))}&limit=1000" if base else ""


def summarise(alerts: Sequence[Alert], *, storm_id: int, summary_id: int, receiver: str, ended: bool = False,
              external_url: str | None = None) -> Summary:
    """The summary of these alerts (the storm so far, or one fold's), each alert once in its latest status."""
    latest: dict[str, Alert] = {}
    for alert in alerts:
        latest.pop(alert_key(alert), None)
        latest[alert_key(alert)] = alert  # re-inserted: the order is the order of the latest news
    by_name: dict[str, list[Alert]] = {}
    for alert in latest.values():
        by_name.setdefault(alert.name, []).append(alert)
    families = []
    for name, members in by_name.items():
        severity = min((a.labels.get("severity", "") for a in members), key=severity_rank)
        lines = [Line(a.status, {visible(k): visible(v) for k, v in distinguishing(a.labels, {}, 1).items()})
                 for a in sorted(members, key=lambda a: a.status != "firing")]
        families.append(Family(visible(name) or "(no alertname)", visible(severity), lines))
    families.sort(key=lambda f: (severity_rank(f.severity), -f.firing, -len(f.lines), f.name))
    return Summary(storm_id, summary_id, receiver, families, ended, history_url(external_url, summary_id))


def of(notification: Notification, alerts: Sequence[Alert] | None = None, ended: bool = False) -> Summary:
    """The Summary a summary notification sends: of `alerts` (the storm so far) or of its own folded alerts."""
    storm_id = storm_of(notification.lane)
    assert storm_id is not None, "not a storm's summary"
    return summarise(notification.alerts if alerts is None else alerts, storm_id=storm_id,
                     summary_id=notification.id, receiver=notification.receiver, ended=ended,
                     external_url=notification.group.commonAnnotations.get(RELAY_URL))
