"""routes.yaml: the plan's routing table, matcher semantics, and refusals that name file and line."""

from __future__ import annotations

from pathlib import Path

import pytest

from relay.config.matchers import parse_matcher
from relay.config.routes import load_routes
from relay.errors import ConfigError
from relay.templating import Templates
from tests.helpers import ROUTES, TEMPLATES

ENV = {"SLACK_WEBHOOK_URL": "https://hooks.slack.example/services/T/B/X", "PAGERDUTY_ROUTING_KEY": "k" * 32}

# The monitoring plan's alert table (DESIGN.md).
PLAN = [
    ("HighErrorRate", "critical", ["slack-alerts", "ops-email"]),
    ("HighLatency", "warning", ["slack-alerts"]),
    ("PodDown", "critical", ["slack-alerts", "ops-email", "pagerduty-oncall"]),
    ("HighMemory", "warning", ["slack-alerts"]),
    ("DBConnectionExhausted", "critical", ["slack-alerts", "ops-email"]),
    ("RedisCacheHitLow", "warning", ["slack-alerts"]),
    ("RedisMemoryHigh", "warning", ["slack-alerts"]),
]


def load(path: Path, env: dict[str, str] | None = None):  # type: ignore[no-untyped-def]
    return load_routes(path, Templates(TEMPLATES), ENV if env is None else env)


@pytest.mark.parametrize(("alertname", "severity", "receivers"), PLAN)
def test_repo_routes_follow_the_plan(alertname: str, severity: str, receivers: list[str]) -> None:
    routes = load(ROUTES)
    labels = {"alertname": alertname, "severity": severity, "namespace": "ojeomneo"}
    assert [t.receiver for t in routes.targets(labels)] == receivers


def test_unknown_alert_goes_to_default_receivers() -> None:
    assert [t.receiver for t in load(ROUTES).targets({"alertname": "Other", "severity": "info"})] == ["slack-alerts"]


def test_environment_fills_secrets_and_defaults() -> None:
    routes = load(ROUTES, {**ENV, "OPS_EMAIL": "oncall@example.org", "SMTP_REQUIRE_TLS": "false"})
    email = routes.receivers["ops-email"].email
    assert email is not None
    assert email.to == ["oncall@example.org"]
    assert email.smarthost == "localhost:587"
    assert email.require_tls is False
    assert routes.unconfigured() == {}


def test_unset_secret_still_loads_as_unconfigured() -> None:
    routes = load(ROUTES, {})
    assert routes.unconfigured() == {"slack-alerts": "webhook_url or token", "pagerduty-oncall": "routing_key"}


@pytest.mark.parametrize(
    ("matcher", "labels", "expected"),
    [
        ('severity="critical"', {"severity": "critical"}, True),
        ('severity!="critical"', {"severity": "warning"}, True),
        ('severity=~"crit.*"', {"severity": "critical"}, True),
        ('severity=~"crit"', {"severity": "critical"}, False),  # anchored
        ('severity!~"warn|info"', {"severity": "critical"}, True),
        ('team=""', {"severity": "critical"}, True),  # a missing label is the empty string
        ("severity=critical", {"severity": "critical"}, True),
        ('summary="say \\"hi\\""', {"summary": 'say "hi"'}, True),
    ],
)
def test_matchers(matcher: str, labels: dict[str, str], expected: bool) -> None:
    assert parse_matcher(matcher).matches(labels) is expected


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "routes.yaml"
    path.write_text(text)
    return path


BASE = """receivers:
  - name: a
    slack:
      webhook_url: https://hooks.slack.example/x
  - name: b
    slack:
      webhook_url: https://hooks.slack.example/y
"""


def test_first_match_wins_unless_continue(tmp_path: Path) -> None:
    routes = load(write(tmp_path, BASE + """routes:
  - matchers: ['severity="critical"']
    receivers: [a]
    continue: true
    repeat_interval: 1h
  - matchers: ['severity=~"critical|warning"']
    receivers: [b]
  - matchers: ['severity=~".*"']
    receivers: [a]
"""))
    targets = routes.targets({"severity": "critical"})
    assert [(t.receiver, t.repeat_interval.total_seconds()) for t in targets] == [("a", 3600), ("b", 14400)]
    assert [t.receiver for t in routes.targets({"severity": "warning"})] == ["b"]


@pytest.mark.parametrize(
    ("tail", "line", "reason"),
    [
        ("routes:\n  - matchers: ['severity=\"critical\"']\n    receivers: [nobody]\n", 10,
         "unknown receiver 'nobody'"),
        ("routes:\n  - matchers: ['severity=~\"(unclosed\"']\n    receivers: [a]\n", 9, "bad regex"),
        ("routes:\n  - matchers: ['severity=\"x\"']\n    receivers: [a\n", 11, "invalid YAML"),
        ("routes:\n  - matchers: ['severity=\"x\"']\n    receivers: [a]\n    repeat_interval: soon\n", 11,
         "invalid duration"),
        ("default_receivers: [ghost]\n", 8, "unknown receiver 'ghost'"),
        ("routes:\n  - receivers: [a]\n    matchers: ['x=\"1\"']\n    colour: red\n", 11, "colour"),
        ("priority:\n  order: [critical, warning, critical]\n", 9, "names ['critical'] more than once"),
        ("priority:\n  label: severity\n  colour: red\n", 10, "colour"),
    ],
)
def test_broken_file_is_refused_with_file_line_and_reason(tmp_path: Path, tail: str, line: int, reason: str) -> None:
    path = write(tmp_path, BASE + tail)
    with pytest.raises(ConfigError) as caught:
        load(path)
    assert caught.value.file == str(path)
    assert caught.value.line == line
    assert reason in str(caught.value)
    assert str(caught.value).startswith(f"{path}:{line}: ")


def test_broken_template_is_refused(tmp_path: Path) -> None:
    (tmp_path / "slack").mkdir()
    (tmp_path / "slack" / "text.j2").write_text("{% for a in alerts %}no end\n")
    (tmp_path / "slack" / "title.j2").write_text("ok")
    (tmp_path / "slack" / "alert.j2").write_text("ok")
    with pytest.raises(ConfigError) as caught:
        load_routes(write(tmp_path, BASE), Templates(tmp_path), ENV)
    assert "text.j2" in str(caught.value)
    assert "syntax" in str(caught.value)


def test_secret_never_in_error(tmp_path: Path) -> None:
    path = write(tmp_path, """receivers:
  - name: a
    slack:
      webhook_url: ${SLACK_WEBHOOK_URL}
      colour: ${SLACK_WEBHOOK_URL}
""")
    with pytest.raises(ConfigError) as caught:
        load(path, {"SLACK_WEBHOOK_URL": "https://hooks.slack.example/services/SECRETPART"})
    assert "SECRETPART" not in str(caught.value)
    assert caught.value.line == 5


def test_fallback_cycle_is_refused(tmp_path: Path) -> None:
    text = BASE.replace("      webhook_url: https://hooks.slack.example/x\n",
                        "      webhook_url: https://hooks.slack.example/x\n    fallback: b\n")
    text = text.replace("      webhook_url: https://hooks.slack.example/y\n",
                        "      webhook_url: https://hooks.slack.example/y\n    fallback: a\n")
    with pytest.raises(ConfigError) as caught:
        load(write(tmp_path, text))
    assert "fallback cycle: a -> b -> a" in str(caught.value)
    assert caught.value.line == 5



def test_a_receiver_given_only_the_resolved_alerts_of_a_firing_group_holds_a_resolved_group() -> None:
    from relay.alerts import WebhookMessage
    from relay.webhook import candidates

    routes = load(ROUTES)
    resolved = {"status": "resolved", "labels": {"alertname": "PodDown", "severity": "critical", "pod": "api-1"},
                "annotations": {}, "startsAt": "2026-12-01T10:00:00Z", "endsAt": "2026-12-01T10:05:00Z",
                "generatorURL": "", "fingerprint": "1"}
    firing = {**resolved, "status": "firing", "labels": {"alertname": "HighLatency", "severity": "warning"},
              "endsAt": "0001-01-01T00:00:00Z", "fingerprint": "2"}
    message = WebhookMessage.model_validate({
        "version": "4", "groupKey": "{}:{}", "truncatedAlerts": 0, "status": "firing", "receiver": "relay",
        "groupLabels": {}, "commonLabels": {}, "commonAnnotations": {}, "externalURL": "http://am:9093",
        "alerts": [resolved, firing]})
    status = {c.receiver: c.group.status for c in candidates(message, routes)}
    # PagerDuty and email were sent only the PodDown, now resolved: theirs is a resolve, whatever the group says.
    assert status == {"slack-alerts": "firing", "ops-email": "resolved", "pagerduty-oncall": "resolved"}


def test_priority_order_defaults_to_severity_and_is_configurable(tmp_path: Path) -> None:
    """routes.yaml `priority` says which alerts take a saturated destination's next token first
    (relay.alerts.priority)."""
    assert load(write(tmp_path, BASE)).priority.rank({"severity": "critical"}) == 0
    routes = load(write(tmp_path, BASE + "priority:\n  label: priority\n  order: [P1, P2]\n"))
    ranks = [routes.priority.rank(labels) for labels in
             ({"priority": "P1"}, {"priority": "P2"}, {"priority": "P9"}, {"severity": "critical"})]
    assert ranks == [0, 1, 2, 2]


def test_an_action_acts_for_its_own_route_and_escalation_only(tmp_path: Path) -> None:
    """Issue 20 #7: whom a click on a receiver's message may act for (relay.config.routes.Routes.acting_for): the
    receivers of the routes that name it, with their escalation steps; never another team's route."""
    from relay.config.routes import load_routes
    from relay.templating import Templates
    from tests.helpers import TEMPLATES

    path = tmp_path / "routes.yaml"
    path.write_text("""
receivers:
  - {name: web-slack, slack: {webhook_url: "http://127.0.0.1:9/a"}}
  - {name: web-pd, pagerduty: {routing_key: R0UTINGKEY000000000000000000000001}}
  - {name: db-slack, slack: {webhook_url: "http://127.0.0.1:9/b"}}
  - {name: db-pd, pagerduty: {routing_key: R0UTINGKEY000000000000000000000002}}
  - {name: db-lead, slack: {webhook_url: "http://127.0.0.1:9/c"}}
  - {name: catchall, slack: {webhook_url: "http://127.0.0.1:9/d"}}
routes:
  - matchers: ['namespace="ojeomneo"']
    receivers: [web-slack, web-pd]
    continue: true
  - matchers: ['service="postgres"']
    receivers: [db-slack, db-pd]
    escalate: [{after: 10m, receivers: [db-lead]}]
  - matchers: ['service="postgres"']
    receivers: [web-slack]
default_receivers: [catchall, web-pd]
""")
    routes = load_routes(path, Templates(TEMPLATES), {})
    both = {"namespace": "ojeomneo", "service": "postgres"}
    assert routes.acting_for("web-slack", both) == ({"web-slack", "web-pd"}, False)
    assert routes.acting_for("db-slack", both) == ({"db-slack", "db-pd", "db-lead"}, True)
    assert routes.acting_for("db-lead", both) == ({"db-slack", "db-pd", "db-lead"}, True)  # the escalated message
    # The third route is never reached (the second does not continue): web-slack acts for nothing there.
    assert routes.acting_for("web-slack", {"service": "postgres"}) == (set(), False)
    assert routes.acting_for("catchall", {"alertname": "Other"}) == ({"catchall", "web-pd"}, False)
    assert routes.acting_for("catchall", both) == (set(), False)
