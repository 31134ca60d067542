"""routes.yaml `time_intervals:` read and run as Alertmanager reads and runs them.

Each case below is worked out by hand from Alertmanager's configuration docs (`time_interval`: times start
inclusive, end exclusive, `24:00`; weekdays and ranges; days_of_month with negatives counted from the month's end;
months by name or number; years; `location`, UTC by default; fields ANDed, entries ORed), not from relay's code.
The same snippets go through Debian's real `amtool check-config`: what Alertmanager accepts relay accepts, what it
refuses relay refuses, with file and line.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
import yaml

from relay.config.routes import load_routes
from relay.config.timeintervals import TimeInterval
from relay.errors import ConfigError
from relay.templating import Templates
from tests.helpers import TEMPLATES


def interval(*entries: dict[str, Any]) -> TimeInterval:
    return TimeInterval.model_validate({"name": "t", "time_intervals": list(entries)})


def at(text: str) -> datetime:
    return datetime.fromisoformat(text)


NINE_TO_FIVE = {"times": [{"start_time": "09:00", "end_time": "17:00"}]}
EVENINGS = {"times": [{"start_time": "18:00", "end_time": "24:00"}]}
SEOUL_WEEKNIGHTS = {**EVENINGS, "weekdays": ["monday:friday"], "location": "Asia/Seoul"}
NY_TWO_AM = {"times": [{"start_time": "02:00", "end_time": "03:00"}], "location": "America/New_York"}
NY_ONE_AM = {"times": [{"start_time": "01:00", "end_time": "02:00"}], "location": "America/New_York"}
NY_MORNING = {"times": [{"start_time": "08:00", "end_time": "09:00"}], "location": "America/New_York"}

CASES = [
    # times: start inclusive, end exclusive, UTC when no location is given
    (NINE_TO_FIVE, "2026-03-09T09:00:00Z", True),
    (NINE_TO_FIVE, "2026-03-09T16:59:59Z", True),
    (NINE_TO_FIVE, "2026-03-09T17:00:00Z", False),
    (NINE_TO_FIVE, "2026-03-09T08:59:59Z", False),
    (NINE_TO_FIVE, "2026-03-09T18:00:00+09:00", True),  # 09:00 UTC, written with another offset
    # 24:00 ends the day: 23:59 is in, the next midnight is not
    (EVENINGS, "2026-03-09T23:59:59Z", True),
    (EVENINGS, "2026-03-10T00:00:00Z", False),
    (EVENINGS, "2026-03-09T18:00:00Z", True),
    # a zone's wall clock and weekday: Friday 18:00 in Seoul is 09:00 UTC; Saturday 00:00 there is out
    (SEOUL_WEEKNIGHTS, "2026-03-06T09:00:00Z", True),
    (SEOUL_WEEKNIGHTS, "2026-03-06T14:59:00Z", True),
    (SEOUL_WEEKNIGHTS, "2026-03-06T15:00:00Z", False),
    (SEOUL_WEEKNIGHTS, "2026-03-06T08:59:00Z", False),
    (SEOUL_WEEKNIGHTS, "2026-03-08T10:00:00Z", False),  # Sunday 19:00 in Seoul
    (SEOUL_WEEKNIGHTS, "2026-03-08T15:00:00Z", False),  # Monday 00:00 in Seoul: before 18:00
    # DST in America/New_York on 2026-03-08: 02:00-03:00 does not happen that day; 01:30 EST does
    (NY_TWO_AM, "2026-03-08T06:59:59Z", False),  # 01:59:59 EST
    (NY_TWO_AM, "2026-03-08T07:00:00Z", False),  # 03:00 EDT: the clock jumped over 02:xx
    (NY_TWO_AM, "2026-03-08T07:30:00Z", False),
    (NY_TWO_AM, "2026-03-09T06:30:00Z", True),  # 02:30 EDT the day after
    (NY_ONE_AM, "2026-03-08T06:30:00Z", True),  # 01:30 EST
    (NY_MORNING, "2026-03-06T13:30:00Z", True),  # 08:30 EST is 13:30 UTC before the change ...
    (NY_MORNING, "2026-03-09T13:30:00Z", False),  # ... and 09:30 EDT after it
    (NY_MORNING, "2026-03-09T12:30:00Z", True),
    # the last day of the month, counted back: February, leap years, 30-day months
    ({"days_of_month": ["-1"]}, "2026-02-28T12:00:00Z", True),
    ({"days_of_month": ["-1"]}, "2028-02-28T12:00:00Z", False),
    ({"days_of_month": ["-1"]}, "2028-02-29T12:00:00Z", True),
    ({"days_of_month": ["-1"]}, "2026-04-30T12:00:00Z", True),
    ({"days_of_month": ["-1"]}, "2026-03-31T12:00:00Z", True),
    ({"days_of_month": ["-1"], "location": "America/New_York"}, "2026-03-31T16:00:00Z", True),  # see the module doc
    ({"days_of_month": ["-3:-1"]}, "2026-02-26T00:00:00Z", True),
    ({"days_of_month": ["-3:-1"]}, "2026-02-25T23:59:59Z", False),
    ({"days_of_month": ["-3:-1"]}, "2026-04-28T00:00:00Z", True),
    ({"days_of_month": ["-3:-1"]}, "2026-04-27T12:00:00Z", False),
    ({"days_of_month": ["31"]}, "2026-02-28T12:00:00Z", False),  # February has no 31st
    ({"days_of_month": ["29:31"]}, "2026-02-28T12:00:00Z", False),
    ({"days_of_month": ["29:31"]}, "2028-02-29T12:00:00Z", True),
    ({"days_of_month": ["25:31"]}, "2026-02-28T12:00:00Z", True),  # the end stops at the month's last day
    ({"days_of_month": ["-31:-1"]}, "2026-02-01T00:00:00Z", True),
    ({"days_of_month": ["1:-1"]}, "2026-02-14T00:00:00Z", True),
    ({"days_of_month": [1, "15"]}, "2026-02-15T00:00:00Z", True),  # a YAML number is read as text
    # the day in the zone, not in UTC: 1 March 08:00 in Seoul is still 28 February in UTC
    ({"days_of_month": ["1"], "location": "Asia/Seoul"}, "2026-02-28T23:00:00Z", True),
    ({"days_of_month": ["1"]}, "2026-02-28T23:00:00Z", False),
    # months by name, number and range; years and their bounds
    ({"months": ["february"]}, "2026-02-01T00:00:00Z", True),
    ({"months": ["2"]}, "2026-02-28T23:59:59Z", True),
    ({"months": ["February"]}, "2026-03-01T00:00:00Z", False),
    ({"months": ["may:august"]}, "2026-08-31T23:59:00Z", True),
    ({"months": ["may:august"]}, "2026-09-01T00:00:00Z", False),
    ({"years": ["2026:2027"]}, "2025-12-31T23:59:59Z", False),
    ({"years": ["2026:2027"]}, "2026-01-01T00:00:00Z", True),
    ({"years": ["2026:2027"]}, "2027-12-31T23:59:59Z", True),
    ({"years": ["2026:2027"]}, "2028-01-01T00:00:00Z", False),
    ({"years": ["2026"], "location": "Asia/Seoul"}, "2025-12-31T15:00:00Z", True),  # New Year in Seoul
    # weekdays: names in any case, ranges
    ({"weekdays": ["Saturday", "sunday"]}, "2026-03-08T12:00:00Z", True),
    ({"weekdays": ["saturday", "sunday"]}, "2026-03-09T00:00:00Z", False),
    ({"weekdays": ["monday:friday"]}, "2026-03-06T23:59:59Z", True),
    ({"weekdays": ["sunday:saturday"]}, "2026-03-07T12:00:00Z", True),
    # fields ANDed within an entry
    ({**NINE_TO_FIVE, "weekdays": ["monday:friday"]}, "2026-03-07T10:00:00Z", False),
    ({**NINE_TO_FIVE, "weekdays": ["monday:friday"]}, "2026-03-06T10:00:00Z", True),
    ({"months": ["march"], "days_of_month": ["-1"], "years": ["2026"]}, "2026-03-31T00:00:00Z", True),
    ({"months": ["march"], "days_of_month": ["-1"], "years": ["2026"]}, "2027-03-31T00:00:00Z", False),
    # an empty entry holds always
    ({}, "2026-03-08T07:00:00Z", True),
]


@pytest.mark.parametrize(("entry", "when", "expected"), CASES)
def test_an_entry_holds_what_alertmanager_says(entry: dict[str, Any], when: str, expected: bool) -> None:
    assert interval(entry).contains(at(when)) is expected


def test_entries_are_ored_and_an_interval_without_entries_holds_nothing() -> None:
    nights_and_weekends = interval(EVENINGS, {"weekdays": ["saturday", "sunday"]})
    assert nights_and_weekends.contains(at("2026-03-07T10:00:00Z"))  # Saturday
    assert nights_and_weekends.contains(at("2026-03-09T20:00:00Z"))  # Monday evening
    assert not nights_and_weekends.contains(at("2026-03-09T10:00:00Z"))
    assert not TimeInterval.model_validate({"name": "never"}).contains(at("2026-03-09T10:00:00Z"))


# (entry, the reason relay gives); amtool check-config refuses each of them too
REFUSED = [
    ({"weekdays": ["funday"]}, "funday is not a valid weekday"),
    ({"weekdays": ["1"]}, "1 is not a valid weekday"),
    ({"weekdays": ["friday:monday"]}, "start day cannot be after end day"),
    ({"weekdays": ["saturday:sunday"]}, "a range runs from sunday to saturday"),  # a weekend is two items
    ({"times": [{"start_time": "09:00", "end_time": "25:00"}]}, "couldn't parse timestamp 25:00"),
    ({"times": [{"start_time": "09:00", "end_time": "24:01"}]}, "couldn't parse timestamp 24:01"),
    ({"times": [{"start_time": "9:00", "end_time": "17:00"}]}, "couldn't parse timestamp 9:00"),
    ({"times": [{"start_time": "17:00", "end_time": "09:00"}]}, "start time cannot be equal or greater than end"),
    ({"times": [{"start_time": "17:00", "end_time": "17:00"}]}, "start time cannot be equal or greater than end"),
    ({"times": [{"start_time": "17:00"}]}, "both start and end times must be provided"),
    ({"location": "Mars/Olympus_Mons"}, "unknown time zone Mars/Olympus_Mons"),
    ({"location": "Europe"}, "unknown time zone Europe"),  # a folder of the zone database: IsADirectoryError
    ({"days_of_month": ["0"]}, "0 is not a valid day of the month: out of range"),
    ({"days_of_month": ["32"]}, "32 is not a valid day of the month: out of range"),
    ({"days_of_month": ["-32"]}, "-32 is not a valid day of the month: out of range"),
    ({"days_of_month": ["-1:5"]}, "end day must be negative if start day is negative"),
    ({"days_of_month": ["10:5"]}, "end day 5 is always before start day 10"),
    ({"days_of_month": ["first"]}, "'first' is not a valid day of the month"),
    ({"months": ["december:january"]}, "end month january is before start month december"),
    ({"months": ["smarch"]}, "smarch is not a valid month"),
    ({"years": ["2027:2026"]}, "end year 2026 is before start year 2027"),
    ({"weekdays": ["monday:tuesday:friday"]}, "couldn't parse range"),
    ({"hours": ["9"]}, "Extra inputs are not permitted"),
]

ACCEPTED = [entry for entry, _, _ in CASES] + [{"location": "UTC"}, {"location": "Local"}]


def routes_yaml(entry: dict[str, Any], extra: str = "") -> str:
    return yaml.safe_dump({
        "receivers": [{"name": "r", "webhook": {"url": "http://127.0.0.1:9/x"}}],
        "routes": [{"matchers": ['severity="warning"'], "receivers": ["r"], "mute_time_intervals": ["t"]}],
        "time_intervals": [{"name": "t", "time_intervals": [entry]}],
    }, sort_keys=False) + extra


def alertmanager_yml(entry: dict[str, Any]) -> str:
    return yaml.safe_dump({
        "route": {"receiver": "r", "routes": [{"receiver": "r", "matchers": ['severity="warning"'],
                                               "mute_time_intervals": ["t"]}]},
        "receivers": [{"name": "r"}],
        "time_intervals": [{"name": "t", "time_intervals": [entry]}],
    }, sort_keys=False)


def relay_refuses(tmp_path: Path, text: str) -> ConfigError | None:
    path = tmp_path / "routes.yaml"
    path.write_text(text)
    try:
        load_routes(path, Templates(TEMPLATES), {})
    except ConfigError as exc:
        return exc
    return None


@pytest.mark.parametrize(("entry", "reason"), REFUSED)
def test_what_alertmanager_refuses_is_refused_with_file_line_and_reason(tmp_path: Path, entry: dict[str, Any],
                                                                        reason: str) -> None:
    text = routes_yaml(entry)
    error = relay_refuses(tmp_path, text)
    assert error is not None
    assert reason in error.reason
    assert error.file == str(tmp_path / "routes.yaml")
    lines = text.splitlines()
    key = next(n for n, line in enumerate(lines, start=1) if line.lstrip(" -").startswith(next(iter(entry)) + ":"))
    assert error.line is not None and key <= error.line <= key + 2  # the field, or the item under it


@pytest.mark.parametrize("entry", ACCEPTED)
def test_what_alertmanager_accepts_is_accepted(tmp_path: Path, entry: dict[str, Any]) -> None:
    assert relay_refuses(tmp_path, routes_yaml(entry)) is None


def test_interval_names_are_unique(tmp_path: Path) -> None:
    text = routes_yaml({}, "- name: t\n")
    error = relay_refuses(tmp_path, text)
    assert error is not None and "time interval 't' is not unique" in error.reason
    assert error.line == len(text.splitlines())  # the second one's line


def test_a_route_naming_an_undefined_interval_is_refused_on_its_line(tmp_path: Path) -> None:
    text = routes_yaml({}).replace("- t\n", "- nights\n", 1)
    error = relay_refuses(tmp_path, text)
    assert error is not None
    assert "route 1 mute_time_intervals item 1: undefined time interval 'nights'" in error.reason
    assert error.line is not None and text.splitlines()[error.line - 1].strip() == "- nights"


AMTOOL = shutil.which("amtool")


def amtool_accepts(tmp_path: Path, entry: dict[str, Any]) -> bool:
    path = tmp_path / "alertmanager.yml"
    path.write_text(alertmanager_yml(entry))
    done = subprocess.run([AMTOOL or "amtool", "check-config", str(path)], capture_output=True, text=True,
                          timeout=30, check=False)
    return done.returncode == 0


@pytest.mark.skipif(AMTOOL is None, reason="Debian's prometheus-alertmanager (amtool) is not installed")
def test_the_same_files_through_amtool_check_config(tmp_path: Path) -> None:
    """Every accepted case and every refused one, through the real amtool: both sides agree on each."""
    disagree = []
    for entry in ACCEPTED:
        if not amtool_accepts(tmp_path, entry):
            disagree.append(("amtool refuses", entry))
    for entry, _ in REFUSED:
        if amtool_accepts(tmp_path, entry):
            disagree.append(("amtool accepts", entry))
    assert disagree == []


NIGHTS_ROUTES = """receivers:
  - {name: slack-alerts, webhook: {url: "http://127.0.0.1:9/slack"}}
  - {name: ops-email, webhook: {url: "http://127.0.0.1:9/email"}}
  - {name: fallback, webhook: {url: "http://127.0.0.1:9/fallback"}}
routes:
  - matchers: ['severity="warning"']
    receivers: [slack-alerts]
    mute_time_intervals: [seoul-nights]
  - matchers: ['severity="critical"']
    receivers: [ops-email]
    active_time_intervals: [seoul-nights]
    continue: true
  - matchers: ['severity="critical"']
    receivers: [slack-alerts]
default_receivers: [fallback]
time_intervals:
  - name: seoul-nights
    time_intervals:
      - times: [{start_time: "18:00", end_time: "24:00"}]
        weekdays: ["monday:friday"]
        location: Asia/Seoul
"""


@pytest.mark.parametrize(("labels", "when", "receivers"), [
    ({"severity": "warning"}, "2026-03-06T19:30:00+09:00", []),  # muted, and the walk stops there: no default
    ({"severity": "warning"}, "2026-03-06T12:00:00+09:00", ["slack-alerts"]),
    ({"severity": "warning"}, None, ["slack-alerts"]),  # no instant: no interval applies
    ({"severity": "critical"}, "2026-03-06T19:30:00+09:00", ["ops-email", "slack-alerts"]),
    ({"severity": "critical"}, "2026-03-06T12:00:00+09:00", ["slack-alerts"]),  # outside its active interval
    ({"severity": "info"}, "2026-03-06T19:30:00+09:00", ["fallback"]),
])
def test_a_muted_route_still_matches_and_ends_the_walk(tmp_path: Path, labels: dict[str, str], when: str | None,
                                                       receivers: list[str]) -> None:
    path = tmp_path / "routes.yaml"
    path.write_text(NIGHTS_ROUTES)
    routes = load_routes(path, Templates(TEMPLATES), {})
    walk = routes.walk(labels, at(when) if when else None)
    assert [t.receiver for t in walk.targets] == receivers


def routes_test(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    path = tmp_path / "routes.yaml"
    path.write_text(NIGHTS_ROUTES)
    env = {**os.environ, "RELAY_ROUTES": str(path), "RELAY_TEMPLATES": str(TEMPLATES)}
    return subprocess.run([sys.executable, "-m", "relay", "routes", "test", *args], capture_output=True, text=True,
                          env=env, timeout=60, check=False)


def test_routes_test_at_an_instant_names_muted_routes_on_stderr(tmp_path: Path) -> None:
    night = routes_test(tmp_path, "--at", "2026-03-06T10:30:00Z", "severity=warning")  # 19:30 in Seoul
    assert (night.returncode, night.stdout) == (0, "\n")
    assert "muted: slack-alerts (route 1 muted by time interval 'seoul-nights' at 2026-03-06T10:30:00+00:00)" \
        in night.stderr
    noon = routes_test(tmp_path, "--at", "2026-03-06T12:00:00+09:00", "severity=critical")
    assert (noon.returncode, noon.stdout) == (0, "slack-alerts\n")
    assert "muted: ops-email (route 2 outside its active time intervals 'seoul-nights'" in noon.stderr
    untimed = routes_test(tmp_path, "severity=warning")
    assert untimed.stdout == "slack-alerts\n"
    assert "time intervals are not applied without --at TIME" in untimed.stderr


def test_routes_test_at_refuses_a_time_without_offset(tmp_path: Path) -> None:
    done = routes_test(tmp_path, "--at", "2026-03-06T19:30:00", "severity=warning")
    assert done.returncode == 2
    assert "has no offset: add Z or one like +09:00 (RFC 3339)" in done.stderr


STEPS_ROUTES = NIGHTS_ROUTES.replace("""    mute_time_intervals: [seoul-nights]
""", """    mute_time_intervals: [seoul-nights]
    escalate:
      - {after: 10m, receivers: [ops-email]}
      - {after: 30m, receivers: [fallback], active_time_intervals: [always]}
""", 1) + """  - name: always
    time_intervals: [{}]
"""


def test_a_step_is_muted_with_its_route_unless_it_names_intervals_of_its_own(tmp_path: Path) -> None:
    path = tmp_path / "routes.yaml"
    path.write_text(STEPS_ROUTES)
    routes = load_routes(path, Templates(TEMPLATES), {})
    first, second = routes.spec.routes[0].escalate
    night, noon = at("2026-03-06T19:30:00+09:00"), at("2026-03-06T12:00:00+09:00")
    assert routes.step_muted(0, first, night) == "muted by time interval 'seoul-nights'"
    assert routes.step_muted(0, first, noon) is None
    assert routes.step_muted(0, second, night) is None  # it says so: it pages at any hour


@pytest.mark.parametrize(("when", "end"), [
    ("2026-03-06T19:30:00+09:00", "2026-03-06T15:00:00Z"),  # Friday night in Seoul: ends at midnight there
    ("2026-03-06T23:59:30+09:00", "2026-03-06T15:00:00Z"),
    ("2026-03-09T18:00:00+09:00", "2026-03-09T15:00:00Z"),  # Monday
])
def test_a_mute_ends_at_the_first_minute_its_interval_no_longer_holds(tmp_path: Path, when: str, end: str) -> None:
    path = tmp_path / "routes.yaml"
    path.write_text(NIGHTS_ROUTES)
    routes = load_routes(path, Templates(TEMPLATES), {})
    assert routes.mute_ends(0, at(when)) == at(end)


STRICT_ROUTES = """receivers:
  - {name: r, webhook: {url: "http://127.0.0.1:9/x"}}
routes:
  - matchers: ['severity="warning"']
    receivers: [r]
    mute_time_intervals: [always]
  - matchers: ['severity="info"']
    receivers: [r]
    active_time_intervals: [bygone]
  - matchers: ['severity="critical"']
    receivers: [r]
    mute_time_intervals: [nights]
default_receivers: [r]
time_intervals:
  - name: always
    time_intervals: [{}]
  - name: bygone
    time_intervals: [{years: ["2020:2021"], location: Asia/Seoul}]
  - name: nights
    time_intervals: [{times: [{start_time: "18:00", end_time: "24:00"}], location: Asia/Seoul}]
  - name: unused
"""


def test_routes_check_strict_flags_unused_intervals_and_routes_muted_at_all_times(tmp_path: Path) -> None:
    from relay.cli.review.check import always_muted_routes, unused_intervals
    from relay.config import yamlconfig

    path = tmp_path / "routes.yaml"
    path.write_text(STRICT_ROUTES)
    routes = load_routes(path, Templates(TEMPLATES), {})
    _, lines = yamlconfig.load(path, yamlconfig.AS_WRITTEN)
    text = STRICT_ROUTES.splitlines()
    [unused] = unused_intervals(path, routes, lines)
    assert unused.text == "time interval unused is used by no route or escalation step"
    assert unused.line is not None and text[unused.line - 1] == "  - name: unused"
    muted = always_muted_routes(path, routes, lines, at("2026-03-06T12:00:00Z"))
    assert [(f.line, f.text.split(" (")[0]) for f in muted] == [
        (4, "route 1 is muted at every minute of the next 366 days"),
        (7, "route 2 is muted at every minute of the next 366 days")]
    assert "outside its active time intervals 'bygone'" in muted[1].text


def test_routes_diff_reports_a_change_of_quiet_hours(tmp_path: Path) -> None:
    old = tmp_path / "old.yaml"
    old.write_text(NIGHTS_ROUTES.replace("    mute_time_intervals: [seoul-nights]\n", ""))
    new = tmp_path / "new.yaml"
    new.write_text(NIGHTS_ROUTES)
    env = {**os.environ, "RELAY_TEMPLATES": str(TEMPLATES)}
    done = subprocess.run([sys.executable, "-m", "relay", "routes", "diff", str(old), str(new)], capture_output=True,
                          text=True, env=env, cwd=tmp_path, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    assert ("any alert with severity=warning: to slack-alerts now muted 18:00\u201324:00 Asia/Seoul on weekdays"
            in done.stdout)
    back = subprocess.run([sys.executable, "-m", "relay", "routes", "diff", str(new), str(old), "--format", "json"],
                          capture_output=True, text=True, env=env, cwd=tmp_path, timeout=60, check=False)
    [change] = json.loads(back.stdout)["mutes"]
    assert (change["before"], change["after"]) == (
        ["slack-alerts muted 18:00\u201324:00 Asia/Seoul on weekdays"], [])


def test_routes_test_tree_draws_the_routes_with_their_intervals(tmp_path: Path) -> None:
    done = routes_test(tmp_path, "--tree", "--at", "2026-03-06T19:30:00+09:00")
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[1:] == [
        "├── 1. {severity=\"warning\"} -> slack-alerts  [muted by time interval 'seoul-nights' at "
        "2026-03-06T19:30:00+09:00]",
        "│   └── muted seoul-nights: 18:00\u201324:00 Asia/Seoul on weekdays",
        "├── 2. {severity=\"critical\"} -> ops-email (continue)",
        "│   └── only seoul-nights: 18:00\u201324:00 Asia/Seoul on weekdays",
        "├── 3. {severity=\"critical\"} -> slack-alerts",
        "└── default -> fallback",
    ]
