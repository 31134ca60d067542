"""`relay routes diff`: a routes.yaml pull request shows exactly whose pager it changes."""

from __future__ import annotations

from pathlib import Path

from relay.config.diff import MAX_PROBES, diff, receivers_of, untried
from relay.config.routes import Routes, load_routes
from relay.templating import Templates
from tests.helpers import ROUTES, TEMPLATES
from tests.test_cli import run_relay

ENV = {"SLACK_WEBHOOK_URL": "https://hooks.slack.example/services/T/B/X", "PAGERDUTY_ROUTING_KEY": "k" * 32}


def edited(tmp_path: Path, old: str, new: str) -> Path:
    text = ROUTES.read_text()
    assert old in text
    path = tmp_path / "new-routes.yaml"
    path.write_text(text.replace(old, new, 1))  # the first route that says it
    return path


def changes(path: Path, alerts: list[dict[str, str]] | None = None) -> list[str]:
    templates = Templates(TEMPLATES)
    return [str(c) for c in diff(load_routes(ROUTES, templates, ENV), load_routes(path, templates, ENV),
                                 alerts or [])]


def test_the_same_file_changes_nothing() -> None:
    assert changes(ROUTES) == []


def test_dropping_a_receiver_names_the_alert_and_both_answers(tmp_path: Path) -> None:
    path = edited(tmp_path, "receivers: [slack-alerts, ops-email, pagerduty-oncall]",
                  "receivers: [slack-alerts, pagerduty-oncall]")
    assert changes(path) == [
        'PodDown: slack-alerts, ops-email, pagerduty-oncall -> slack-alerts, pagerduty-oncall']


def test_a_wider_regex_is_found_from_its_alternatives(tmp_path: Path) -> None:
    path = edited(tmp_path, """['severity="critical"']""", """['severity=~"critical|page"']""")
    # The fast-burn route matches severity="critical" only, so its alert with severity="page" changes too.
    assert changes(path) == [
        'AvailabilityErrorBudgetBurn (severity=page): slack-alerts -> slack-alerts, ops-email',
        'any alert with severity=page: slack-alerts -> slack-alerts, ops-email']


def test_rule_file_alerts_are_checked_by_name(tmp_path: Path) -> None:
    path = edited(tmp_path, """  - matchers: ['severity="warning"']""",
                  """  - matchers: ['team="db"']\n    receivers: [ops-email]\n  - matchers: ['severity="warning"']""")
    critical = {"alertname": "DBConnectionExhausted", "severity": "critical", "team": "db"}  # matched earlier
    warning = {"alertname": "DBSlowQueries", "severity": "warning", "team": "db"}
    assert changes(path, [critical, warning]) == [
        'AvailabilityErrorBudgetBurn (team=db): slack-alerts -> ops-email',  # its warning burn
        'DBSlowQueries (team=db): slack-alerts -> ops-email',
        'any alert with team=db: slack-alerts -> ops-email']


async def test_cli_reads_prometheus_rules_and_can_fail_the_build(tmp_path: Path) -> None:
    path = edited(tmp_path, "receivers: [slack-alerts, ops-email, pagerduty-oncall]", "receivers: [slack-alerts]")
    rules = tmp_path / "rules.yml"
    rules.write_text("groups:\n- name: server\n  rules:\n  - alert: PodDown\n    expr: up == 0\n"
                     "    labels: {severity: critical}\n")
    code, out = await run_relay("routes", "diff", str(ROUTES), str(path), "--rules", str(rules), "--exit-code",
                                env=ENV)
    assert code == 1, out
    assert "PodDown: slack-alerts, ops-email, pagerduty-oncall -> slack-alerts\n" in out
    assert "STOPS PAGING: PodDown loses pagerduty-oncall (after: slack-alerts)\n" in out
    code, out = await run_relay("routes", "diff", str(ROUTES), str(ROUTES), "--exit-code", env=ENV)
    assert code == 0 and "no alert changes receivers" in out


CRITICAL = """  - matchers: ['severity="critical"']
    receivers: [slack-alerts, ops-email]
"""


def with_escalation(tmp_path: Path, name: str, steps: str) -> Path:
    path = tmp_path / name
    path.write_text(ROUTES.read_text().replace(CRITICAL, CRITICAL + "    escalate:\n" + steps, 1))
    return path


async def test_removing_an_escalation_step_says_who_is_no_longer_paged(tmp_path: Path) -> None:
    old = with_escalation(tmp_path, "old.yaml", "      - {after: 10m, receivers: [pagerduty-oncall]}\n"
                                                "      - {after: 30m, receivers: [ops-email]}\n")
    new = with_escalation(tmp_path, "new.yaml", "      - {after: 30m, receivers: [ops-email]}\n")
    code, out = await run_relay("routes", "diff", str(old), str(new), "--exit-code", env=ENV)
    assert code == 1, out
    assert ("STOPS PAGING when unacknowledged: HighErrorRate (severity=critical) no longer escalates to "
            "pagerduty-oncall (escalation after: after 30m: ops-email)\n") in out
    assert ("  HighErrorRate (severity=critical): after 10m: pagerduty-oncall; after 30m: ops-email -> "
            "after 30m: ops-email\n") in out
    assert "PodDown" not in out  # its own route comes first and does not escalate
    code, out = await run_relay("routes", "diff", str(old), str(new), "--format", "markdown", env=ENV)
    assert "**⚠ 6 alerts stop escalating**" in out and "### ⚠ Stops escalating" in out
    assert "| `HighErrorRate (severity=critical)` | `pagerduty-oncall` (**stops paging**) | `after 30m: ops-email` |" \
        in out
    # Adding an escalation loses nobody: listed, no warning.
    code, out = await run_relay("routes", "diff", str(ROUTES), str(new), env=ENV)
    assert "STOPS" not in out and "  HighErrorRate (severity=critical): (none) -> after 30m: ops-email\n" in out


async def test_a_pull_request_adding_a_teams_receiver_and_a_discord_title_shows_both(tmp_path: Path) -> None:
    """`routes diff` over the new receivers: whose alerts now reach Teams, and the Discord message that reads
    differently, rendered as relay would send it, with no secret in the output."""
    discord_url = "https://discord.com/api/webhooks/1/diff-SECRET-discord-token"
    teams_url = "https://prod-1.logic.azure.com/workflows/x/triggers/manual/paths/invoke?sig=diff-SECRET-sig"
    env = {**ENV, "DISCORD_WEBHOOK_URL": discord_url, "TEAMS_WORKFLOW_URL": teams_url}
    base = ("receivers:\n  - name: discord-ops\n    discord: {webhook_url: '${DISCORD_WEBHOOK_URL}'}\n{extra}"
            "routes:\n  - matchers: ['severity=\"critical\"']\n    receivers: [{to}]\n"
            "default_receivers: [discord-ops]\n")
    old = tmp_path / "old.yaml"
    old.write_text(base.replace("{extra}", "").replace("{to}", "discord-ops"))
    (tmp_path / "templates").mkdir()
    (tmp_path / "templates" / "title.j2").write_text("{{ status }}: {{ commonLabels.alertname }}\n")
    new = tmp_path / "new.yaml"
    new.write_text(base.replace("{extra}", "    templates: {title: title.j2}\n  - name: teams-ops\n"
                                "    teams: {webhook_url: '${TEAMS_WORKFLOW_URL}'}\n")
                   .replace("{to}", "discord-ops, teams-ops"))
    code, out = await run_relay("routes", "diff", str(old), str(new), "--templates", str(tmp_path / "templates"),
                                env=env)
    assert code == 0, out
    assert "any alert with severity=critical: discord-ops -> discord-ops, teams-ops" in out
    assert "messages of discord-ops (discord): title: discord/title.j2 -> title.j2 changed" in out
    assert "\n+      \"title\": \"firing: RelayDown\"," in out  # rendered for the repository's rules
    assert "diff-SECRET" not in out


def many_labels(tmp_path: Path, name: str, labels: int, values: int, first: str) -> Path:
    """A routes.yaml with one route per label, each taking `values` values of it: the pairs of labels grow as
    labels² x values²."""
    alternatives = "|".join(f"v{j}" for j in range(values))
    routes = "".join(f"  - matchers: ['l{i:03}=~\"{alternatives}\"']\n    receivers: [{first if i == 0 else 'a'}]\n"
                     for i in range(labels))
    path = tmp_path / name
    path.write_text("receivers:\n  - name: a\n    email: {to: [a@example.com], smarthost: 'smtp:25'}\n"
                    "  - name: b\n    email: {to: [b@example.com], smarthost: 'smtp:25'}\nroutes:\n" + routes
                    + "default_receivers: [b]\n")
    return path


async def test_a_file_with_many_labels_is_diffed_within_a_bound_and_says_what_it_did_not_try(tmp_path: Path) -> None:
    """Issue 20 (suspected, held): the label-pair fallback had no bound; 100 labels of 20 values each made 2.4
    million probes (minutes). Now at most MAX_PROBES pairs, after one alert per route, and the review says so."""
    old = many_labels(tmp_path, "old.yaml", 100, 20, "a")
    new = many_labels(tmp_path, "new.yaml", 100, 20, "b")
    templates = Templates(TEMPLATES)
    before, after = load_routes(old, templates, {}), load_routes(new, templates, {})
    calls = 0

    def counted(routes: Routes, labels: dict[str, str]) -> tuple[str, ...]:
        nonlocal calls
        calls += 1
        return receivers_of(routes, labels)

    found = [str(c) for c in diff(before, after, answer=counted)]
    # a probe asks both sides, and one that differs asks again per label to reduce it: at most 8 calls for a pair
    assert calls <= 8 * (MAX_PROBES + 200)
    assert "any alert with l000=v0: a -> b" in found  # the route's own alert finds the change the pairs may not
    assert untried(before, after) == 4950 * 22 * 22 - MAX_PROBES  # 4,950 pairs of labels, 22 x 22 values each
    code, out = await run_relay("routes", "diff", str(old), str(new), env=ENV)
    assert code == 0 and "combinations of label values were not tried" in out
