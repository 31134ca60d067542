"""Each receiver's health at a glance: what the receivers view shows, read from history (never from a replica's
memory, so every replica shows the same)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from relay.store.base import Store
from relay.store.console import Reader

HOUR = 3600.0
ERROR_WINDOW = 24 * HOUR  # how far back "last error" looks (attempts have no index on time: a bounded scan)


@dataclass
class Health:
    name: str
    integration: str
    last_success: float | None = None
    last_error_at: float | None = None
    last_error: str = ""
    last_error_id: int | None = None
    delivered_hour: int = 0
    failed_hour: int = 0
    p95: float | None = None
    pending: int = 0
    dead: int = 0
    rate_limited: int = 0
    storm: int | None = None  # the open storm's id
    latencies: list[tuple[float, float]] = field(default_factory=list)  # (finished_at, seconds), last hour

    @property
    def status(self) -> str:
        """One word for the row: what a person on call would look at first."""
        if self.dead:
            return "dead letters"
        if self.last_error_at is not None and (self.last_success is None or self.last_error_at > self.last_success):
            return "failing"
        if self.storm is not None:
            return "storm"
        if self.rate_limited:
            return "rate-limited"
        return "ok"


def p95(values: Sequence[float]) -> float | None:
    """The 95th percentile (nearest rank), None without values."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(0, -(-95 * len(ordered) // 100) - 1)]


async def receivers(store: Store, reader: Reader, names: Mapping[str, str], now: float) -> list[Health]:
    """`names`: every receiver of routes.yaml (name -> integration), in its order."""
    found = {name: Health(name, integration) for name, integration in names.items()}

    def of(name: str) -> Health:  # a receiver that left routes.yaml still shows while history has it
        return found.setdefault(name, Health(name, "(not in routes.yaml)"))

    for row in await reader.rows("delivered_since", now - HOUR):
        health = of(row["receiver"])
        health.delivered_hour += 1
        health.latencies.append((row["finished_at"], max(0.0, row["latency"])))
    for row in await reader.rows("failures_since", now - ERROR_WINDOW):
        health = of(row["receiver"])
        if row["started_at"] >= now - HOUR:
            health.failed_hour += 1
        if health.last_error_at is None:  # newest first
            health.last_error_at = row["started_at"]
            health.last_error = row["reason"] + (f": {row['detail']}" if row["detail"] else "")
            health.last_error_id = row["notification_id"]
    for row in await reader.rows("rate_limited", True):
        of(row["receiver"]).rate_limited = row["waiting"]
    stats = await store.stats(now)
    for name, count in stats.pending.items():
        of(name).pending = count
    for name, count in stats.dead.items():
        of(name).dead = count
    for storm in await store.storms():
        of(storm.receiver).storm = storm.id
    for health in found.values():
        health.p95 = p95([seconds for _, seconds in health.latencies])
        if health.latencies:
            health.last_success = health.latencies[-1][0]
        else:
            last = await reader.row("last_delivered", health.name)
            health.last_success = last["finished_at"] if last else None
    return list(found.values())


def chart(points: Sequence[tuple[float, float]], now: float, width: int = 240, height: int = 56) -> str:
    """A server-rendered SVG of the last hour's delivery latencies (one dot per delivery, seconds on a square-root
    scale so one slow retry does not flatten the rest). Only numbers go in: no text of an alert."""
    plot = height - 14  # the bottom line holds the axis' words
    axis = (f'<line x1="0" y1="{plot}" x2="{width}" y2="{plot}" class="axis"/>'
            f'<text x="0" y="{height - 2}">60 min ago</text><text x="{width}" y="{height - 2}" '
            f'text-anchor="end">now</text>')
    if not points:
        label = "no deliveries in the last hour"
        return (f'<svg class="chart" viewBox="0 0 {width} {height}" width="{width}" height="{height}" role="img" '
                f'aria-label="{label}"><title>{label}</title>{axis}</svg>')
    top = max(seconds for _, seconds in points) or 1.0
    dots = []
    for finished, seconds in points:
        x = 3 + (width - 6) * min(1.0, max(0.0, 1 - (now - finished) / HOUR))
        y = 3 + (plot - 6) * (1 - (seconds / top) ** 0.5)
        dots.append(f'<circle cx="{x:.1f}" cy="{y:.1f}" r="2"/>')
    label = f"{len(points)} deliveries in the last hour, slowest {top:.2f} s"
    return (f'<svg class="chart" viewBox="0 0 {width} {height}" width="{width}" height="{height}" role="img" '
            f'aria-label="{label}"><title>{label}</title>{axis}<text x="0" y="9">'
            f'slowest {top:.2f} s</text>{"".join(dots)}</svg>')
