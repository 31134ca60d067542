"""routes.yaml `time_intervals:`: named times of the week, month and year, as Alertmanager writes and reads them.

    time_intervals:
      - name: nights
        time_intervals:
          - times: [{start_time: "18:00", end_time: "24:00"}]
            weekdays: ["monday:friday"]
            location: Asia/Seoul

The syntax and meaning are Alertmanager's (`timeinterval.ContainsTime`), so one file reads the same in both: an
entry holds an instant when every field it sets holds it (`times` start inclusive, end exclusive, on the wall
clock of `location`, UTC by default); a named interval holds an instant when any of its entries does. What
Alertmanager refuses is refused here with its reason, the file and the line. Two choices differ on purpose:
`months` outside 1-12 is refused (Alertmanager 0.25 accepts `13` and never matches it), and a negative day of the
month counts from the calendar's last day (Go's hour arithmetic makes a month with a DST change an hour short, so
Alertmanager's `-1` is the 30th of March in America/New_York). Pure: no clock, no I/O beyond the zone database.
"""

from __future__ import annotations

import calendar
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, tzinfo
from typing import Annotated, Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, model_validator

WEEKDAYS = ("sunday", "monday", "tuesday", "wednesday", "thursday", "friday", "saturday")  # Go's 0 = Sunday
MONTHS = ("january", "february", "march", "april", "may", "june", "july", "august", "september", "october",
          "november", "december")
_TIME = re.compile(r"(([01][0-9]|2[0-3]):[0-5][0-9])|24:00")
_INTEGER = re.compile(r"[+-]?[0-9]+")  # what Go's strconv.Atoi takes


@dataclass(frozen=True)
class Span:
    """An inclusive range of weekdays (0 = Sunday), days of the month (negative: from its end), months or years."""

    begin: int
    end: int

    def holds(self, value: int) -> bool:
        return self.begin <= value <= self.end


def _text(value: Any) -> str:
    """A list item as Alertmanager reads it: YAML `5` and `"5"` are the same string."""
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise ValueError(f"expected a string, got {value!r}")
    return str(value).lower()


def _split(text: str) -> tuple[str, str]:
    parts = text.split(":")
    if len(parts) > 2:
        raise ValueError(f"couldn't parse range {text}, invalid format")
    return (parts[0], parts[-1])


def _integer(text: str, what: str) -> int:
    if not _INTEGER.fullmatch(text):
        raise ValueError(f"{text!r} is not a valid {what}")
    return int(text)


def _weekday(value: Any) -> Span:
    text = _text(value)
    ends = []
    for part in _split(text):
        if part not in WEEKDAYS:
            raise ValueError(f"{part} is not a valid weekday")
        ends.append(WEEKDAYS.index(part))
    if ends[0] > ends[1]:
        raise ValueError(f"start day cannot be after end day ({text}: a range runs from sunday to saturday)")
    return Span(ends[0], ends[1])


def _day_of_month(value: Any) -> Span:
    text = _text(value)
    begin, end = (_integer(part, "day of the month") for part in _split(text))
    for day in (begin, end):
        if day == 0 or not -31 <= day <= 31:
            raise ValueError(f"{day} is not a valid day of the month: out of range")
    if begin < 0 < end:
        raise ValueError("end day must be negative if start day is negative")
    # As Alertmanager: a range that is backwards in every month (counting a month as 28 days) is refused.
    if (28 + begin if begin < 0 else begin) > (28 + end if end < 0 else end):
        raise ValueError(f"end day {end} is always before start day {begin}")
    return Span(begin, end)


def _month(value: Any) -> Span:
    text = _text(value)
    ends = []
    for part in _split(text):
        number = MONTHS.index(part) + 1 if part in MONTHS else None
        if number is None:
            if not _INTEGER.fullmatch(part):
                raise ValueError(f"{part} is not a valid month")
            number = int(part)
        if not 1 <= number <= 12:
            raise ValueError(f"{part} is not a valid month: out of range")
        ends.append(number)
    if ends[0] > ends[1]:
        raise ValueError(f"end month {MONTHS[ends[1] - 1]} is before start month {MONTHS[ends[0] - 1]}")
    return Span(ends[0], ends[1])


def _year(value: Any) -> Span:
    text = _text(value)
    begin, end = (_integer(part, "year") for part in _split(text))
    if begin > end:
        raise ValueError(f"end year {end} is before start year {begin}")
    return Span(begin, end)


def _minutes(text: str) -> int:
    if not _TIME.fullmatch(text):
        raise ValueError(f"couldn't parse timestamp {text}, invalid format (HH:MM from 00:00 to 24:00)")
    hours, minutes = text.split(":")
    return int(hours) * 60 + int(minutes)


def zone(name: str) -> tzinfo | None:
    """The zone an entry's `location` names, as Go's time.LoadLocation reads it: "" and "UTC" are UTC, "Local" is
    this machine's zone (None here: converted with astimezone()); anything else is an IANA name."""
    if name in ("", "UTC"):
        return UTC
    if name == "Local":
        return None
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):  # OSError: a folder of the database, e.g. "Europe"
        raise ValueError(f"unknown time zone {name}") from None


class TimeRange(BaseModel):
    """Minutes of the day, from `start_time` (inclusive) to `end_time` (exclusive); `24:00` ends the day."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    start_time: str = ""
    end_time: str = ""

    @model_validator(mode="after")
    def _ordered(self) -> TimeRange:
        if not self.start_time or not self.end_time:
            raise ValueError("both start and end times must be provided")
        if _minutes(self.start_time) >= _minutes(self.end_time):
            raise ValueError("start time cannot be equal or greater than end time")
        return self

    @property
    def start(self) -> int:
        return _minutes(self.start_time)

    @property
    def end(self) -> int:
        return _minutes(self.end_time)


Weekday = Annotated[Span, BeforeValidator(_weekday)]
DayOfMonth = Annotated[Span, BeforeValidator(_day_of_month)]
Month = Annotated[Span, BeforeValidator(_month)]
Year = Annotated[Span, BeforeValidator(_year)]


class Entry(BaseModel):
    """One entry of a named interval: every field it sets must hold (an empty entry holds always)."""

    model_config = ConfigDict(extra="forbid", frozen=True, arbitrary_types_allowed=True)

    times: list[TimeRange] | None = None
    weekdays: list[Weekday] | None = None
    days_of_month: list[DayOfMonth] | None = None
    months: list[Month] | None = None
    years: list[Year] | None = None
    location: str | None = None

    @model_validator(mode="after")
    def _zone(self) -> Entry:
        if self.location is not None:
            zone(self.location)
        return self

    def contains(self, when: datetime) -> bool:
        """Whether this entry holds the instant `when` (an aware datetime), read on its location's wall clock."""
        local = _local(when, self.location)
        minute = local.hour * 60 + local.minute
        if self.times is not None and not any(r.start <= minute < r.end for r in self.times):
            return False
        if self.days_of_month is not None and not any(_day_holds(s, local) for s in self.days_of_month):
            return False
        if self.months is not None and not any(s.holds(local.month) for s in self.months):
            return False
        weekday = local.isoweekday() % 7  # Go counts from Sunday = 0
        if self.weekdays is not None and not any(s.holds(weekday) for s in self.weekdays):
            return False
        return self.years is None or any(s.holds(local.year) for s in self.years)


def _local(when: datetime, location: str | None) -> datetime:
    if when.tzinfo is None:
        raise ValueError("a time interval is asked about a time without a zone")
    if location is None:
        return when.astimezone(UTC)
    target = zone(location)
    return when.astimezone(target) if target is not None else when.astimezone()


def _day_holds(span: Span, local: datetime) -> bool:
    """Alertmanager's day-of-month test: negatives count back from the month's last day, a range starting past the
    month's end holds nothing, an end past it stops at the last day."""
    days = calendar.monthrange(local.year, local.month)[1]
    begin = days + span.begin + 1 if span.begin < 0 else span.begin
    end = days + span.end + 1 if span.end < 0 else span.end
    if begin > days:
        return False
    return max(begin, -days) <= local.day <= min(end, days)


class TimeInterval(BaseModel):
    """A named interval: it holds an instant when any of its entries does (none: never)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(min_length=1)
    time_intervals: list[Entry] | None = None

    def contains(self, when: datetime) -> bool:
        return any(entry.contains(when) for entry in self.time_intervals or ())


def active(intervals: Mapping[str, TimeInterval], names: Sequence[str], when: datetime) -> str | None:
    """The first of `names` whose interval holds `when`, or None."""
    return next((name for name in names if intervals[name].contains(when)), None)


def _span(span: Span, names: Sequence[str] | None = None, first: int = 0) -> str:
    def name(n: int) -> str:
        return names[n - first] if names is not None else str(n)
    return name(span.begin) if span.begin == span.end else f"{name(span.begin)}:{name(span.end)}"


def describe_entry(entry: Entry) -> str:
    """One entry in words, as review reports show it: `18:00-24:00 Asia/Seoul on weekdays`, with an en dash."""
    parts: list[str] = []
    if entry.weekdays is not None:
        days = ", ".join(_span(s, WEEKDAYS) for s in entry.weekdays)
        parts.append("on weekdays" if days == "monday:friday" else f"on {days}")
    if entry.days_of_month is not None:
        parts.append("on days " + ", ".join(_span(s) for s in entry.days_of_month) + " of the month")
    if entry.months is not None:
        parts.append("in " + ", ".join(_span(s, MONTHS, 1) for s in entry.months))
    if entry.years is not None:
        parts.append("in " + ", ".join(_span(s) for s in entry.years))
    zone_name = entry.location or "UTC"
    if entry.times is not None:
        return " ".join([", ".join(f"{r.start_time}\u2013{r.end_time}" for r in entry.times), zone_name, *parts])
    return f"{' '.join(parts)} ({zone_name})" if parts else "always"


def describe(interval: TimeInterval) -> str:
    """A named interval in words: its entries joined by `or` (`never` when it has none)."""
    return " or ".join(describe_entry(e) for e in interval.time_intervals or ()) or "never"
