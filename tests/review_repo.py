"""A team's repository with a pull request: the base on `main` (pushed to `origin`), and a branch that narrows
paging, renames a receiver and changes a Slack template. The diff, CI-example and pre-commit tests use it."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

# Isolated from whoever runs the tests: no global git config, fixed identity and dates.
GIT_ENV = {
    "GIT_CONFIG_GLOBAL": os.devnull, "GIT_CONFIG_NOSYSTEM": "1", "GIT_AUTHOR_NAME": "Dev", "GIT_AUTHOR_EMAIL":
    "dev@example.com", "GIT_COMMITTER_NAME": "Dev", "GIT_COMMITTER_EMAIL": "dev@example.com",
    "GIT_AUTHOR_DATE": "2026-01-01T09:00:00Z", "GIT_COMMITTER_DATE": "2026-01-01T09:00:00Z",
}

RECEIVERS = """receivers:
  - name: slack-alerts
    slack: {webhook_url: "${SLACK_WEBHOOK_URL}", channel: "#alerts"}
  - name: %(email)s
    email: {to: [ops@example.com], from: relay@example.com, smarthost: "smtp.example.com:587"}
  - name: pagerduty-oncall
    pagerduty: {routing_key: "${PAGERDUTY_ROUTING_KEY}"}
"""
BASE_ROUTES = (RECEIVERS % {"email": "ops-email"}) + """
routes:
  - matchers: ['severity="critical"']
    receivers: [slack-alerts, ops-email, pagerduty-oncall]
  - matchers: ['severity=~"warning|info"']
    receivers: [slack-alerts]

default_receivers: [slack-alerts]
"""
# The pull request: only PodDown still pages; ops-email is renamed ops-mail (same settings).
HEAD_ROUTES = (RECEIVERS % {"email": "ops-mail"}) + """
routes:
  - matchers: ['alertname="PodDown"']
    receivers: [slack-alerts, ops-mail, pagerduty-oncall]
  - matchers: ['severity="critical"']
    receivers: [slack-alerts, ops-mail]
  - matchers: ['severity=~"warning|info"']
    receivers: [slack-alerts]

default_receivers: [slack-alerts]
"""
RULES = """groups:
  - name: app
    rules:
      - alert: HighErrorRate
        expr: job:errors:ratio5m > 0.05
        labels: {severity: critical}
        annotations: {summary: "5xx above 5%", runbook_url: "https://runbooks.example/HighErrorRate"}
      - alert: PodDown
        expr: kube_deployment_status_replicas_available == 0
        labels: {severity: critical}
        annotations: {summary: "No pods running"}
      - alert: HighLatency
        expr: job:latency:p99 > 2
        labels: {severity: warning}
        annotations: {summary: "p99 above 2s"}
"""
# A promtool unit-test file: never read as rules (it would add an alert named Ignored).
RULES_TEST = """rule_files: [rules.yml]
tests:
  - input_series: []
    alert_rule_test:
      - {eval_time: 1m, alertname: Ignored, exp_alerts: []}
groups:
  - name: not-rules
    rules:
      - alert: Ignored
        expr: vector(1)
        labels: {severity: page}
"""
BASE_TITLE = "[{{ status | upper }}] {{ commonLabels.alertname }}"
HEAD_TITLE = "[{{ status | upper }}] {{ commonLabels.alertname }} ({{ commonLabels.severity or 'no severity' }})"


def git(cwd: Path, *args: str) -> str:
    done = subprocess.run(["git", "-c", "init.defaultBranch=main", *args], cwd=cwd, env={**os.environ, **GIT_ENV},
                          capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, f"git {' '.join(args)}: {done.stderr}"
    return done.stdout


def write(root: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


def commit(root: Path, message: str) -> None:
    git(root, "add", "-A")
    git(root, "commit", "-q", "-m", message)


def base_files() -> dict[str, str]:
    return {"routes.yaml": BASE_ROUTES, "templates/slack/title.j2": BASE_TITLE,
            "deploy/prometheus/rules.yml": RULES, "deploy/prometheus/rules.test.yml": RULES_TEST}


def pull_request(tmp_path: Path, base: dict[str, str] | None = None) -> Path:
    """`origin` with main at the base, and a clone of it on branch `change` with the pull request committed."""
    upstream = tmp_path / "upstream"
    upstream.mkdir()
    git(upstream, "init", "-q")
    write(upstream, base_files() if base is None else base)
    commit(upstream, "base")
    clone = tmp_path / "repo"
    git(tmp_path, "clone", "-q", str(upstream), str(clone))
    git(clone, "checkout", "-q", "-b", "change")
    write(clone, {"routes.yaml": HEAD_ROUTES, "templates/slack/title.j2": HEAD_TITLE})
    commit(clone, "Only PodDown pages; ops-email is ops-mail; severity in the Slack title")
    return clone
