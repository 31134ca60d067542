"""deploy/prometheus: promtool check and test every rule file, and every alert links to a runbook that exists."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.helpers import REPO
from tests.requirements import ALERTMANAGER

PROMETHEUS = REPO / "deploy" / "prometheus"
RUNBOOKS = REPO / "docs" / "runbooks"
RUNBOOK_URL = re.compile(r"^https://github\.com/ojeomneo/relay/blob/main/(docs/runbooks/[A-Za-z]+\.md)$")
RULE_FILES = sorted(p for p in PROMETHEUS.glob("*.yml") if not p.name.endswith(".test.yml"))
PROMTOOL = shutil.which("promtool")


def promtool() -> str:
    """promtool's path; a skip locally without it, a failure in CI (which installs it)."""
    if PROMTOOL is None:
        ALERTMANAGER.missing("needs promtool (apt-get install prometheus)")
    return PROMTOOL


def alerting_rules(path: Path) -> list[dict[str, Any]]:
    groups = yaml.safe_load(path.read_text())["groups"]
    return [rule for group in groups for rule in group["rules"] if "alert" in rule]


def test_there_are_rule_files_with_their_tests() -> None:
    names = {p.name for p in RULE_FILES}
    assert {"rules.yml", "relay-rules.yml"} <= names
    for path in RULE_FILES:
        assert path.with_suffix(".test.yml").exists(), f"{path.name} has no promtool test file"


@pytest.mark.parametrize("path", RULE_FILES, ids=lambda p: p.name)
def test_promtool_check_rules_is_clean(path: Path) -> None:
    result = subprocess.run([promtool(), "check", "rules", str(path)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout and "WARNING" not in result.stdout + result.stderr


@pytest.mark.parametrize("path", RULE_FILES, ids=lambda p: p.name)
def test_promtool_unit_tests_pass(path: Path) -> None:
    test_file = path.with_suffix(".test.yml")
    result = subprocess.run([promtool(), "test", "rules", test_file.name], capture_output=True, text=True,
                            timeout=120, cwd=PROMETHEUS)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_the_plans_alerts_are_all_there_with_the_plans_severities() -> None:
    severities = {rule["alert"]: rule["labels"]["severity"] for rule in alerting_rules(PROMETHEUS / "rules.yml")}
    assert {name: severities.get(name) for name in (
        "HighErrorRate", "HighLatency", "PodDown", "HighMemory", "DBConnectionExhausted", "RedisCacheHitLow",
        "RedisMemoryHigh", "Watchdog")} == {
        "HighErrorRate": "critical", "HighLatency": "warning", "PodDown": "critical", "HighMemory": "warning",
        "DBConnectionExhausted": "critical", "RedisCacheHitLow": "warning", "RedisMemoryHigh": "warning",
        "Watchdog": "none"}


@pytest.mark.parametrize("path", RULE_FILES, ids=lambda p: p.name)
def test_every_alert_says_how_bad_what_and_where_its_runbook_is(path: Path) -> None:
    rules = alerting_rules(path)
    assert rules
    for rule in rules:
        name = rule["alert"]
        assert rule["labels"]["severity"] in {"critical", "warning", "none"}, name
        annotations = rule["annotations"]
        assert annotations["summary"].strip() and annotations["description"].strip(), name
        match = RUNBOOK_URL.match(annotations["runbook_url"])
        assert match, f"{name}: runbook_url {annotations['runbook_url']!r} is not a docs/runbooks link"
        assert match.group(1) == f"docs/runbooks/{name}.md", name
        assert (REPO / match.group(1)).is_file(), f"{name}: {match.group(1)} does not exist"


def test_every_runbook_belongs_to_an_alert() -> None:
    """A runbook without an alert is a renamed alert's leftover: links in old messages would lead there."""
    alerts = {rule["alert"] for path in RULE_FILES for rule in alerting_rules(path)}
    documented = {p.stem for p in RUNBOOKS.glob("*.md") if p.stem != "README"}
    assert documented - alerts <= {"RelayHeartbeatMissing"}, "runbooks for no alert: " + ", ".join(
        sorted(documented - alerts - {"RelayHeartbeatMissing"}))


def test_every_runbook_answers_the_on_call_questions() -> None:
    """What it means for users, how to confirm, likely causes, mitigation, when to escalate (Watchdog pages no one)."""
    for page in RUNBOOKS.glob("*.md"):
        if page.stem in {"README", "Watchdog"}:
            continue
        headings = re.findall(r"^## (.+)$", page.read_text(), flags=re.MULTILINE)
        assert headings == ["What it means for users", "Confirm", "Likely causes", "Mitigate", "Escalate"], page.name


def test_links_between_runbooks_resolve() -> None:
    for page in RUNBOOKS.glob("*.md"):
        for target in re.findall(r"\]\(([A-Za-z]+\.md)(?:#[a-z-]+)?\)", page.read_text()):
            assert (RUNBOOKS / target).is_file(), f"{page.name} links to missing {target}"
