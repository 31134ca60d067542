"""`relay routes check --strict`: each finding a CI job would stop on, with file and line, and no false alarm."""

from __future__ import annotations

import itertools
import shutil
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from relay.cli.review import check as routescheck
from relay.cli.review.rulefiles import RuleAlert
from relay.config.matchers import parse_matcher
from relay.config.routes import load_routes
from relay.templating import Templates
from tests.helpers import REPO, without_heartbeats
from tests.test_cli import run_relay

HEAD = """receivers:
  - name: slack
    slack: {webhook_url: "${SLACK_URL:-https://hooks.example/x}"}
  - name: pager
    pagerduty: {routing_key: "${PD_KEY}"}
"""


def check(tmp_path: Path, text: str, alerts: list[RuleAlert] | None = None, environ: dict[str, str] | None = None,
          allowed: set[str] | None = None) -> list[str]:
    path = tmp_path / "routes.yaml"
    path.write_text(text)
    env = {"PD_KEY": "k"} if environ is None else environ
    routes = load_routes(path, Templates(), env)
    return [str(f).removeprefix(f"{path}") for f in routescheck.findings(path, routes, alerts or [], env,
                                                                            allowed or set())]


ROUTED = """routes:
  - matchers: ['severity=~"critical|warning|info"']
    receivers: [slack, pager]
"""


def test_a_clean_file_has_no_findings(tmp_path: Path) -> None:
    assert check(tmp_path, HEAD + ROUTED) == []


def test_unset_variables_without_default_are_named_with_their_line(tmp_path: Path) -> None:
    assert check(tmp_path, HEAD + ROUTED, environ={}) == [
        ":5: ${PD_KEY} is unset and has no default (set it, write ${PD_KEY:-default}, or name it with "
        "--allow-unset PD_KEY when only the deployment has it)"]
    assert check(tmp_path, HEAD + ROUTED, environ={"PD_KEY": ""}) != []  # set but empty is as good as unset
    assert check(tmp_path, HEAD + ROUTED, environ={}, allowed={"PD_KEY"}) == []


def test_a_receiver_nothing_sends_to(tmp_path: Path) -> None:
    text = HEAD + "  - name: spare\n    slack: {webhook_url: x}\n  - name: backup\n    slack: {webhook_url: y}\n"
    text = text.replace("pagerduty: {", "fallback: backup\n    pagerduty: {") + ROUTED
    assert check(tmp_path, text) == [
        ":7: receiver spare is used by no route, escalation, default_receivers, fallback or heartbeat"]
    assert check(tmp_path, text + "default_receivers: [spare]\n") == []
    escalated = text.replace("    receivers: [slack, pager]\n",
                             "    receivers: [slack, pager]\n    escalate: [{after: 10m, receivers: [spare]}]\n")
    assert check(tmp_path, escalated) == []  # an escalation step sends to it


def routes(*entries: str) -> str:
    out = [HEAD, "routes:"]
    for entry in entries:
        matchers, _, rest = entry.partition(";")
        quoted = ", ".join(f"'{m.strip()}'" for m in matchers.split(",") if m.strip())
        out.append(f"  - matchers: [{quoted}]\n    receivers: [slack]{rest}")
    return "\n".join(out) + "\ndefault_receivers: [pager]\n"


def unreachable(tmp_path: Path, *entries: str) -> list[str]:
    return [f for f in check(tmp_path, routes(*entries), [RuleAlert({"alertname": "A", "severity": "critical"})])
            if "can never match" in f]


def test_a_route_an_earlier_route_takes_every_alert_of(tmp_path: Path) -> None:
    assert unreachable(tmp_path, 'severity="critical"', 'severity="critical", team="db"') == [
        ':10: route 2 (severity="critical", team="db") can never match: route 1 (line 8, severity="critical") '
        "takes every alert it would and has no `continue: true`"]
    assert len(unreachable(tmp_path, "", 'severity="critical"')) == 1  # a catch-all
    assert len(unreachable(tmp_path, 'severity=~"critical|warning"', 'severity="warning"')) == 1
    assert len(unreachable(tmp_path, 'severity=~"crit.*"', 'severity="critical"')) == 1
    assert len(unreachable(tmp_path, 'team!="web"', 'team=~"db|cache"')) == 1
    assert len(unreachable(tmp_path, 'team=~"d.*"', 'team=~"d.*", severity="critical"')) == 1  # the same matcher
    assert unreachable(tmp_path, 'severity="a", severity="b"') == [
        ':8: route 1 (severity="a", severity="b") can never match: no value of severity satisfies all its matchers']


def test_no_false_alarm_where_a_later_route_still_gets_alerts(tmp_path: Path) -> None:
    assert unreachable(tmp_path, 'severity="critical"; \n    continue: true', 'severity="critical", team="db"') == []
    assert unreachable(tmp_path, 'severity="critical"', 'severity=~"critical|warning"') == []
    assert unreachable(tmp_path, 'team="db"', 'severity="critical"') == []
    assert unreachable(tmp_path, 'severity!~"crit.*"', 'severity!="warning"') == []
    assert unreachable(tmp_path, 'severity=~"critical|warning"', 'severity=~"critical|w.rning"') == []
    assert unreachable(tmp_path, 'severity="critical"', 'severity!="critical"', 'severity="critical"') != []


def test_a_route_a_heartbeat_consumes(tmp_path: Path) -> None:
    text = routes('alertname="Watchdog"') + ("heartbeats:\n  - name: watchdog\n    matchers: ['alertname=\"Watchdog\"']"
                                             "\n    max_silence: 5m\n    receivers: [pager]\n")
    found = [f for f in check(tmp_path, text) if "can never match" in f]
    assert found == [':8: route 1 (alertname="Watchdog") can never match: heartbeat watchdog consumes every alert '
                     "it would"]


LABELS = ("a", "b")
VALUES = ("", "x", "y", "z", "xy", "other")
MATCHER_VALUES = ("", "x", "y", "x|y", "(x|z)", "x.*", ".*", "xy|", "[xy]")


@st.composite
def matcher_lists(draw: st.DrawFn) -> list[str]:
    count = draw(st.integers(0, 3))
    return [f'{draw(st.sampled_from(LABELS))}{draw(st.sampled_from(("=", "!=", "=~", "!~")))}'
            f'"{draw(st.sampled_from(MATCHER_VALUES))}"' for _ in range(count)]


@settings(max_examples=400, deadline=None)
@given(matcher_lists(), matcher_lists())
def test_covers_is_sound(earlier: list[str], later: list[str]) -> None:
    """Whenever the check says the earlier route takes every alert of the later one, it does, for every alert."""
    first, second = [parse_matcher(m) for m in earlier], [parse_matcher(m) for m in later]
    if not routescheck.covers(first, second):
        return
    for values in itertools.product(VALUES, repeat=len(LABELS)):
        labels = {k: v for k, v in zip(LABELS, values, strict=True) if v}
        if all(m.matches(labels) for m in second):
            assert all(m.matches(labels) for m in first), (earlier, later, labels)


def test_severities_no_route_handles(tmp_path: Path) -> None:
    text = routes('severity="critical"', 'severity="warning"')
    watchdog = RuleAlert({"alertname": "Watchdog", "severity": "none"}, {}, "rules.yml", 40)
    page = RuleAlert({"alertname": "DiskFull", "severity": "page"}, {}, "rules.yml", 12)
    assert check(tmp_path, text, [watchdog, page]) == [
        ': severity="info" matches no route: alerts with it reach only default_receivers (pager)',
        ': severity="none" matches no route: alerts with it reach only default_receivers (pager) (rules with it: '
        "Watchdog at rules.yml:40)",
        ': severity="page" matches no route: alerts with it reach only default_receivers (pager) (rules with it: '
        "DiskFull at rules.yml:12)"]
    # routed by another label, or consumed by a heartbeat: handled
    team = RuleAlert({"alertname": "DiskFull", "severity": "page", "team": "db"})
    beat = ("heartbeats:\n  - name: watchdog\n    matchers: ['alertname=\"Watchdog\"']\n    max_silence: 5m\n"
            "    receivers: [pager]\n")
    text = routes('severity=~"critical|info"', 'severity="warning"', 'team="db"') + beat
    assert check(tmp_path, text, [watchdog, team]) == []


async def test_cli_strict_fails_with_file_and_line_and_checks_every_file(tmp_path: Path) -> None:
    good, bad = tmp_path / "good.yaml", tmp_path / "bad.yaml"
    good.write_text(HEAD + ROUTED)
    bad.write_text(HEAD + ROUTED + "  - matchers: ['severity=\"critical\"', 'team=\"db\"']\n    receivers: [pager]\n")
    code, out = await run_relay("routes", "check", "--strict", str(good), str(bad), env={"PD_KEY": "k"},
                                cwd=tmp_path)
    assert code == 1, out
    assert f"{good}: ok (2 receivers, 1 routes, strict)" in out
    assert f"relay: {bad}:9: route 2 (severity=\"critical\", team=\"db\") can never match: route 1 (line 7" in out
    code, out = await run_relay("routes", "check", str(good), str(bad), env={"PD_KEY": "k"}, cwd=tmp_path)
    assert code == 0, out  # without --strict these load, and that is all routes check asks
    code, out = await run_relay("routes", "check", "--strict", str(good), env={"PD_KEY": ""}, cwd=tmp_path)
    assert code == 1 and f"relay: {good}:5: ${{PD_KEY}} is unset" in out
    code, out = await run_relay("routes", "check", "--strict", "--allow-unset", "OTHER,PD_KEY", str(good),
                                env={"PD_KEY": ""}, cwd=tmp_path)
    assert code == 0, out


async def test_cli_strict_reads_the_repositorys_rule_files(tmp_path: Path) -> None:
    """From the repository root, deploy/prometheus's severities count. The example routes.yaml passes: its
    heartbeat consumes the Watchdog and `info` has a route. Without the heartbeat, the Watchdog's `none` is named
    with its rule's line."""
    code, out = await run_relay("routes", "check", "--strict", "--allow-unset",
                                "SLACK_WEBHOOK_URL,PAGERDUTY_ROUTING_KEY", cwd=REPO)
    assert code == 0, out
    (tmp_path / "deploy").mkdir()
    shutil.copytree(REPO / "deploy" / "prometheus", tmp_path / "deploy" / "prometheus")
    (tmp_path / "routes.yaml").write_text(without_heartbeats((REPO / "routes.yaml").read_text()))
    code, out = await run_relay("routes", "check", "--strict", "--allow-unset",
                                "SLACK_WEBHOOK_URL,PAGERDUTY_ROUTING_KEY", cwd=tmp_path)
    assert code == 1
    rules = (REPO / "deploy" / "prometheus" / "rules.yml").read_text().splitlines()
    line = next(i for i, text in enumerate(rules, 1) if text.strip() == "- alert: Watchdog")
    problems = [text for text in out.splitlines() if text.startswith("relay: ")]
    assert problems == [
        'relay: routes.yaml: severity="none" matches no route: alerts with it reach only default_receivers '
        f"(slack-alerts) (rules with it: Watchdog at deploy/prometheus/rules.yml:{line})"]


def test_an_escalation_an_earlier_escalating_route_takes_first(tmp_path: Path) -> None:
    escalate = "\n    escalate: [{after: 10m, receivers: [pager]}]"
    text = routes(f'severity="critical";\n    continue: true{escalate}', f'severity="critical", team="db";{escalate}')
    assert [f for f in check(tmp_path, text) if "escalation" in f] == [
        ":14: route 2's escalation never runs: route 1 (line 8, severity=\"critical\") escalates every alert it "
        "would first (an alert gets one escalation)"]
    # Without the first escalation, or when the first route does not take all of the second's alerts: fine.
    assert [f for f in check(tmp_path, text.replace(escalate, "", 1)) if "escalation" in f] == []
    text = routes(f'team="db";\n    continue: true{escalate}', f'severity="critical";{escalate}')
    assert [f for f in check(tmp_path, text) if "escalation" in f] == []
