"""routes.yaml `escalate:` (checked like the rest of the file, shown by `relay routes test`) and the escalated
message every channel sends (says it is an escalation; alert text stays text)."""

from __future__ import annotations

import dataclasses
from datetime import timedelta
from pathlib import Path

import pytest

from relay.alerts import Escalation
from relay.channels.email import build_message as email_message
from relay.channels.pagerduty import build_events
from relay.channels.slack.message import build_message
from relay.config.routes import load_routes
from relay.errors import ConfigError
from relay.templating import Templates
from tests.fakes import notification
from tests.helpers import REPO, TEMPLATES, repo_routes
from tests.test_cli import run_relay
from tests.test_templating import EMAIL, NOW, PAGERDUTY, SLACK, assert_slack_safe, parse_html

CRITICAL_ROUTE = """  - matchers: ['severity="critical"']
    receivers: [slack-alerts, ops-email]
"""
LINE = next(i for i, line in enumerate((REPO / "routes.yaml").read_text().splitlines(), start=1)
            if line == CRITICAL_ROUTE.splitlines()[0])  # the critical route's first line


def routes_file(tmp_path: Path, escalate: str) -> Path:
    """The repository's routes.yaml with `escalate` (YAML lines, indented for the route) on its critical route."""
    path = repo_routes(tmp_path)
    path.write_text(path.read_text().replace(CRITICAL_ROUTE, CRITICAL_ROUTE + "    escalate:\n" + escalate))
    return path


STEPS = """      - {after: 10m, receivers: [pagerduty-oncall]}
      - after: 30m
        receivers: [ops-email, pagerduty-oncall]
"""


def test_a_routes_escalation_is_loaded_and_chosen_by_its_route(tmp_path: Path) -> None:
    routes = load_routes(routes_file(tmp_path, STEPS), Templates(TEMPLATES), {})
    chosen = routes.escalation({"alertname": "HighErrorRate", "severity": "critical"})
    assert chosen is not None
    assert [(s.after, s.receivers) for s in chosen.steps] == [
        (timedelta(minutes=10), ["pagerduty-oncall"]), (timedelta(minutes=30), ["ops-email", "pagerduty-oncall"])]
    assert routes.escalates
    # PodDown's own route (first) matches first and does not escalate; warnings and unrouted alerts neither.
    assert routes.escalation({"alertname": "PodDown", "severity": "critical"}) is None
    assert routes.escalation({"alertname": "HighLatency", "severity": "warning"}) is None
    assert routes.escalation({"alertname": "Other"}) is None
    assert not load_routes(REPO / "routes.yaml", Templates(TEMPLATES), {}).escalates


@pytest.mark.parametrize(
    ("steps", "line", "reason"),
    [
        ("      - {after: 10m, receivers: [pagerduty-oncall, nobody]}\n", 3,
         "route 3 escalate step 1 names unknown receiver 'nobody'"),
        ("      - {after: 10m, receivers: [pagerduty-oncall]}\n      - {after: 10m, receivers: [ops-email]}\n", 4,
         "route 3 escalate step 2: after 10m must be later than step 1's 10m"),
        ("      - {after: 30m, receivers: [pagerduty-oncall]}\n      - {after: 5m, receivers: [ops-email]}\n", 4,
         "route 3 escalate step 2: after 5m must be later than step 1's 30m"),
        ("      - {after: soon, receivers: [pagerduty-oncall]}\n", 3,
         "route 3 escalate step 1: after: invalid duration 'soon'"),
        ("      - {after: 0s, receivers: [pagerduty-oncall]}\n", 3, "after must be longer than 0s"),
        ("      - {after: 10m, receivers: []}\n", 3,
         "route 3 escalate step 1: receivers: List should have at least 1 item"),
        ("      - {after: 10m}\n", 3, "route 3 escalate step 1: receivers: Field required"),
        ("      - {after: 10m, receivers: [ops-email], repeat: 5m}\n", 3, "Extra inputs are not permitted"),
    ],
)
def test_a_broken_escalation_is_refused_with_file_line_and_reason(tmp_path: Path, steps: str, line: int,
                                                                 reason: str) -> None:
    path = routes_file(tmp_path, steps)
    with pytest.raises(ConfigError) as caught:
        load_routes(path, Templates(TEMPLATES), {})
    assert str(caught.value).startswith(f"{path}:{LINE + line}: "), str(caught.value)
    assert reason in str(caught.value)
    assert reason in str(caught.value)


async def test_routes_test_shows_the_escalation(tmp_path: Path) -> None:
    env = {"RELAY_ROUTES": str(routes_file(tmp_path, STEPS)), "RELAY_TEMPLATES": str(TEMPLATES)}
    code, out = await run_relay("routes", "test", "alertname=HighErrorRate", "severity=critical", env=env)
    assert code == 0, out
    assert out.splitlines() == [
        "slack-alerts,ops-email",
        "escalation (route 3), unless acknowledged, silenced or resolved: after 10m: pagerduty-oncall; "
        "after 30m: ops-email, pagerduty-oncall"]
    code, out = await run_relay("routes", "test", "--verify-receivers", "slack-alerts", "severity=warning", env=env)
    assert (code, out) == (0, "slack-alerts\n")


def test_every_channel_says_an_escalation_is_one_and_keeps_alert_text_as_text() -> None:
    plain = notification("firing-higherrorrate")  # its summary holds <!channel>, *bold* and a disguised link
    escalated = dataclasses.replace(plain, escalation=Escalation(1, 2, 600.0))
    says = "Escalation 1 of 2: not acknowledged for 10m"

    slack = build_message(escalated, Templates(TEMPLATES), SLACK, now=NOW)
    assert_slack_safe(slack)
    assert says in slack["blocks"][0]["text"]["text"] and says in slack["text"]
    assert says not in str(build_message(plain, Templates(TEMPLATES), SLACK, now=NOW))

    mail = email_message(escalated, Templates(TEMPLATES), EMAIL, now=NOW)
    assert str(mail["Subject"]).startswith(f"[{says}] [FIRING:")
    html = parse_html(mail)
    assert f"{says}. Nobody acknowledged" in "".join(html.text)
    assert "<!channel> *bold* <https://evil.example|click>" in "".join(html.text)
    assert not any("evil" in href for href in html.hrefs)

    [event] = build_events(escalated, Templates(TEMPLATES), PAGERDUTY, now=NOW)
    assert event["payload"]["summary"].startswith(f"[{says}] [FIRING]")
