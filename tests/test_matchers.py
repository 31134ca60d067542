"""Matchers as Alertmanager writes and runs them (issue 22 #7, issue 20 #5): one per item or a comma or brace list,
Alertmanager's quoting, RE2 regexes (linear time; what RE2 refuses is refused at load with file and line), checked
against the real amtool."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import pytest
import yaml

from relay.config.matchers import Matcher, parse_matchers
from relay.config.routes import load_routes
from relay.errors import ConfigError
from relay.templating import Templates
from tests.helpers import ROUTES, TEMPLATES
from tests.requirements import ALERTMANAGER

ENV = {"SLACK_WEBHOOK_URL": "https://hooks.slack.example/services/T/B/X", "PAGERDUTY_ROUTING_KEY": "k" * 32}
ISSUE_PATTERN = ".*(timeout|deadline).*(exceeded|expired).*"

# Each item as routes.yaml (and Alertmanager's `matchers:`) may hold it.
ITEMS = [
    'severity="warning", team="web"',
    '{alertname=~"Disk.*", env!="dev"}',
    "{severity = critical , team=web,}",
    'instance=~"10\\.0\\..*"',  # Alertmanager keeps a backslash before anything but ", \ and n
    'summary="a, b"',  # a comma inside quotes is part of the value
    'quote="say \\"hi\\""',
    'path=~"C:\\\\\\\\temp"',  # \\ is one backslash in the value, so the regex is C:\\temp: a literal backslash
    'job!~"(api|web)-.*"',
    "__name__:total=x",
    'reason=~"' + ISSUE_PATTERN + '"',
    'lit=~"\\Q\\C\\E"',  # \C inside \Q...\E is two literal characters, for Go's regexp too
    'esc=~"a\\\\\\\\C"',  # the regex a\\C: a backslash, then C
]
LABELS = [
    {"severity": "warning", "team": "web"},
    {"severity": "warning", "team": "db"},
    {"alertname": "DiskFull", "env": "prod"},
    {"alertname": "DiskFull", "env": "dev"},
    {"severity": "critical", "team": "web"},
    {"instance": "10.0.3.4"},
    {"instance": "10x0y3.4"},
    {"summary": "a, b"},
    {"quote": 'say "hi"'},
    {"path": "C:\\temp"},
    {"job": "api-1"},
    {"job": "batch-1"},
    {"__name__:total": "x"},
    {"reason": "request timeout: deadline exceeded"},
    {"reason": "request ok"},
    {"lit": "\\C", "esc": "a\\C"},
]


def matchers(item: str) -> list[Matcher]:
    return list(parse_matchers([item]))


def test_comma_and_brace_lists_are_several_matchers() -> None:
    assert [str(m) for m in matchers(ITEMS[0])] == ['severity="warning"', 'team="web"']
    assert [str(m) for m in matchers(ITEMS[1])] == ['alertname=~"Disk.*"', 'env!="dev"']
    assert [str(m) for m in matchers(ITEMS[2])] == ['severity="critical"', 'team="web"']
    assert [m.value for m in matchers(ITEMS[3])] == ["10\\.0\\..*"]
    assert [m.value for m in matchers(ITEMS[4])] == ["a, b"]
    assert [m.value for m in matchers(ITEMS[5])] == ['say "hi"']


@pytest.mark.parametrize(("item", "reason"), [
    ('x=~"(a)\\\\1"', "invalid escape sequence: \\1 (regexes are RE2, as in Alertmanager"),
    ('x=~"a(?=b)"', "invalid perl operator: (?="),
    ('x=~"a\\\\C"', "invalid escape sequence: \\C"),  # RE2 takes \C (any byte); Go's regexp does not
    ('y="a"b"', 'a double quote inside the value must be written \\"'),
    ('z="abc', "the value's closing double quote is missing"),
    ("severity critical", "bad matcher 'severity critical'"),
    ('a="1",,b="2"', "bad matcher ''"),
])
def test_what_alertmanager_refuses_is_refused_at_load_with_file_and_line(tmp_path: Path, item: str,
                                                                         reason: str) -> None:
    text = ROUTES.read_text()
    anchor = """  - matchers: ['severity="warning"']"""
    path = tmp_path / "routes.yaml"
    written = yaml.safe_dump(item).strip().removesuffix("...").strip()
    path.write_text(text.replace(anchor, f"  - matchers:\n      - 'team=\"web\"'\n      - {written}", 1))
    line = text.split(anchor)[0].count("\n") + 3
    route = text.split(anchor)[0].count("  - matchers:") + 1
    with pytest.raises(ConfigError) as caught:
        load_routes(path, Templates(TEMPLATES), ENV)
    assert (caught.value.file, caught.value.line) == (str(path), line)
    assert str(caught.value).startswith(f"{path}:{line}: route {route} matcher 2: ")
    assert reason in caught.value.reason


def test_a_long_label_value_is_matched_in_linear_time() -> None:
    """Issue 20 #5: Python's re took 5.6 s on this pattern and a 64 KB value, on the event loop."""
    [matcher] = matchers(f'reason=~"{ISSUE_PATTERN}"')
    for value in ("x" * 65536, "timeout " * 8192, ("deadline " * 4096) + "x" * 30000):
        started = time.thread_time()  # CPU of this thread: what the event loop would have lost
        matcher.matches({"reason": value})
        assert time.thread_time() - started < 0.05


def test_the_routing_table_agrees_with_amtool(tmp_path: Path) -> None:
    """One Alertmanager route (and one relay route) per item, all `continue: true`: for every label set, amtool
    config routes test and relay name the same receivers."""
    amtool = ALERTMANAGER.which("amtool", install="apt-get install prometheus-alertmanager")
    config = {"route": {"receiver": "none", "routes": [
        {"receiver": f"r{i}", "matchers": [item], "continue": True} for i, item in enumerate(ITEMS)]},
        "receivers": [{"name": "none"}, *({"name": f"r{i}"} for i in range(len(ITEMS)))]}
    am = tmp_path / "alertmanager.yml"
    am.write_text(yaml.safe_dump(config))
    routes = tmp_path / "routes.yaml"
    routes.write_text(yaml.safe_dump({
        "receivers": [{"name": n, "email": {"to": ["x@example.com"], "smarthost": "localhost:25"}}
                      for n in ["none", *(f"r{i}" for i in range(len(ITEMS)))]],
        "routes": [{"matchers": [item], "receivers": [f"r{i}"], "continue": True} for i, item in enumerate(ITEMS)],
        "default_receivers": ["none"]}))
    loaded = load_routes(routes, Templates(TEMPLATES), {})
    for labels in LABELS:
        args = [str(Matcher(k, "=", v)) for k, v in labels.items()]  # amtool reads labels as matchers: quoted
        done = subprocess.run([str(amtool), "config", "routes", "test", f"--config.file={am}", *args],
                              capture_output=True, text=True, timeout=60, check=False)
        assert done.returncode == 0, done.stderr
        theirs = sorted(done.stdout.strip().split(","))
        ours = sorted(t.receiver for t in loaded.targets(labels))
        assert ours == theirs, labels
    assert len({tuple(sorted(t.receiver for t in loaded.targets(labels))) for labels in LABELS}) > 8  # tells apart
