"""Durations written as Prometheus and Alertmanager write them: `30s`, `5m`, `4h`, `1h30m`, `2d`, `500ms`.

The grammar is Prometheus's `model.ParseDuration`, exactly: whole numbers, each unit at most once and from the
largest down (`y w d h m s ms`; `y` is 365 days), and `0` the only number without a unit. A file Alertmanager or
Prometheus refuses (`90`, `1.5h`, `30m4h`) is refused here too, so one spelling works in all three.
"""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Annotated, Any

from pydantic import BeforeValidator, PlainSerializer

_UNITS = (("y", 365 * 86400_000), ("w", 7 * 86400_000), ("d", 86400_000), ("h", 3600_000), ("m", 60_000),
          ("s", 1000), ("ms", 1))
_GRAMMAR = re.compile("".join(rf"(?:([0-9]+){unit})?" for unit, _ in _UNITS))
_MAX_MILLIS = (2**63 - 1) // 1_000_000  # Go's time.Duration: int64 nanoseconds
_HINT = "use forms like 30s, 5m, 4h, 1h30m, 2d (units from the largest down, whole numbers, as Prometheus writes them)"


def parse_duration(text: str) -> timedelta:
    """Parse `1h30m`-style text as Prometheus does; `0` alone needs no unit."""
    if text == "0":
        return timedelta(0)
    if text == "":
        raise ValueError("empty duration: " + _HINT)
    match = _GRAMMAR.fullmatch(text)
    if match is None:
        raise ValueError(f"invalid duration {text!r}: {_HINT}")
    millis = sum(int(n) * size for n, (_, size) in zip(match.groups(), _UNITS, strict=True) if n is not None)
    if millis > _MAX_MILLIS:
        raise ValueError(f"duration {text!r} is out of range (at most about 292 years)")
    return timedelta(milliseconds=millis)


def format_duration(delta: timedelta) -> str:
    seconds = int(delta.total_seconds())
    out = ""
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if seconds >= size:
            out += f"{seconds // size}{unit}"
            seconds %= size
    return out or "0s"


def _coerce(value: Any) -> Any:
    if isinstance(value, bool):
        raise ValueError(f"invalid duration {value!r}: {_HINT}")
    if isinstance(value, int | float):  # YAML read `90` as a number: Prometheus reads it as the text "90"
        if value == 0:
            return timedelta(0)
        raise ValueError(f"invalid duration {value!r}: a number needs a unit ({value}s?); {_HINT}")
    if isinstance(value, str):
        return parse_duration(value)
    return value


Duration = Annotated[timedelta, BeforeValidator(_coerce), PlainSerializer(format_duration, return_type=str)]
