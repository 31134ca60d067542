"""Time as relay reads and writes it: one module, so every timestamp relay parses or writes has one spelling.

Alertmanager writes RFC 3339 with nanoseconds and `Z`, and Go's zero time
(`0001-01-01T00:00:00Z`) for "no end"; the store keeps Unix seconds; the admin
API shows those as RFC 3339 with milliseconds, as Alertmanager's API does. This
module imports nothing from relay, so every layer can use it.
"""

from __future__ import annotations

from datetime import UTC, datetime

# Alertmanager writes Go's zero time for "no end".
GO_ZERO_TIME = "0001-01-01T00:00:00Z"
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


def rfc3339(when: datetime) -> str:
    """`2026-12-08T02:56:04.689123Z`: a time as Alertmanager's webhook carries it (microseconds, UTC)."""
    return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def rfc3339_millis(epoch: float) -> str:
    """`2026-12-08T02:56:04.689Z`: a stored Unix time as the admin API shows it (milliseconds, UTC)."""
    return datetime.fromtimestamp(epoch, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def epoch(value: float | str | None) -> float | None:
    """A time from the admin API (RFC 3339) or from the store itself (Unix seconds: test-alert --direct) as Unix
    seconds."""
    if value is None or isinstance(value, int | float):
        return value
    return datetime.fromisoformat(value).timestamp()
