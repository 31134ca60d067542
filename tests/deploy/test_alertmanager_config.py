"""deploy/alertmanager/alertmanager.yml: amtool accepts it, routes as documented, keeps secrets in files."""

from __future__ import annotations

import shutil
import subprocess
from typing import Any

import pytest
import yaml

from tests.helpers import REPO
from tests.requirements import ALERTMANAGER

CONFIG = REPO / "deploy" / "alertmanager" / "alertmanager.yml"
AMTOOL = shutil.which("amtool")
PLAN = ("HighErrorRate", "HighLatency", "PodDown", "HighMemory", "DBConnectionExhausted", "RedisCacheHitLow",
        "RedisMemoryHigh", "AvailabilityErrorBudgetBurn")


def amtool(*args: str) -> subprocess.CompletedProcess[str]:
    if AMTOOL is None:
        ALERTMANAGER.missing("needs amtool (apt-get install prometheus-alertmanager)")
    return subprocess.run([AMTOOL, *args], capture_output=True, text=True, timeout=60)


def config() -> dict[str, Any]:
    return dict(yaml.safe_load(CONFIG.read_text()))


def test_amtool_check_config_is_clean() -> None:
    result = amtool("check-config", str(CONFIG))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


@pytest.mark.parametrize(("labels", "receivers"), [
    *[((f"alertname={name}", "severity=critical", "namespace=ojeomneo", "service=ojeomneo-api"), "relay")
      for name in PLAN],
    (("alertname=Watchdog", "severity=none"), "heartbeat"),
    (("alertname=RelayDeliveriesFailing", "component=relay", "severity=critical"), "relay-direct,relay"),
    (("alertname=RelayDeadLetters", "component=relay", "severity=warning"), "relay-direct,relay"),
    (("alertname=SomethingNew", "severity=info"), "relay"),
])
def test_routes_send_everything_to_relay_relays_health_also_directly_and_the_watchdog_to_the_heartbeat(
        labels: tuple[str, ...], receivers: str) -> None:
    result = amtool("config", "routes", "test", f"--config.file={CONFIG}", f"--verify.receivers={receivers}",
                    *labels)
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_watchdog_is_sent_every_minute_and_alerts_within_the_plans_minute() -> None:
    route = config()["route"]
    assert (route["group_wait"], route["group_interval"]) == ("10s", "30s")
    [watchdog] = [r for r in route["routes"] if r.get("matchers") == ['alertname="Watchdog"']]
    assert (watchdog["group_wait"], watchdog["repeat_interval"]) == ("0s", "1m")


def test_every_webhook_sends_resolves_except_the_heartbeats_and_no_secret_is_inline() -> None:
    receivers = {r["name"]: r for r in config()["receivers"]}
    for hook in receivers["relay"]["webhook_configs"]:
        assert hook["send_resolved"] is True
        assert hook["http_config"]["authorization"]["credentials_file"].startswith("/etc/alertmanager/secrets/")
    assert [h["send_resolved"] for h in receivers["heartbeat"]["webhook_configs"]] == [False, False]
    text = CONFIG.read_text()
    for inline in ("credentials:", "routing_key:", "service_key:", "auth_password:", "smtp_auth_password:",
                   "api_key:", "bearer_token:"):
        assert inline not in text, f"{inline} puts a secret in the file; use the _file variant"


def test_pod_down_inhibits_the_same_services_errors_and_latency() -> None:
    rules = config()["inhibit_rules"]
    assert {"source_matchers": ['alertname="PodDown"'], "target_matchers": ['alertname=~"HighErrorRate|HighLatency"'],
            "equal": ["namespace", "service"]} in rules
