"""The `relay` command as a user runs it: serve's refusals, test-alert over HTTP and --direct."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

from tests.conftest import Providers
from tests.helpers import REPO, TEMPLATES, relay_settings, repo_routes, running_relay


async def run_relay(*args: str, env: dict[str, str] | None = None, cwd: Path = REPO) -> tuple[int, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "relay", *args, cwd=cwd, env={**os.environ, **(env or {})},
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
    out, _ = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode is not None
    return proc.returncode, out.decode()


async def test_serve_refuses_a_public_address_without_token(tmp_path: Path) -> None:
    code, out = await run_relay("serve", env={"RELAY_HOST": "0.0.0.0", "RELAY_WEBHOOK_TOKEN": "",
                                              "RELAY_DATABASE_URL": f"sqlite:///{tmp_path / 'r.db'}"})
    assert code == 2
    assert "refusing to listen on 0.0.0.0 without RELAY_WEBHOOK_TOKEN" in out


async def test_serve_refuses_a_broken_routes_file_with_file_and_line(tmp_path: Path) -> None:
    broken = tmp_path / "routes.yaml"
    broken.write_text((REPO / "routes.yaml").read_text().replace("receivers: [slack-alerts]\n\ndefault",
                                                                  "receivers: [slack-alertz]\n\ndefault"))
    code, out = await run_relay("serve", env={"RELAY_ROUTES": str(broken), "RELAY_TEMPLATES": str(TEMPLATES)})
    assert code == 1
    assert f"{broken}:29: route 3 names unknown receiver 'slack-alertz'" in out


async def test_test_alert_reports_delivery_per_receiver(tmp_path: Path, providers: Providers) -> None:
    env = {**providers.env, "RELAY_WEBHOOK_TOKEN": "tok-SECRET", "XDG_STATE_HOME": str(tmp_path / "state")}
    async with running_relay(relay_settings(tmp_path, providers.routes, webhook_token="tok-SECRET")) as relay:
        code, out = await run_relay("test-alert", "--alertname", "PodDown", "--severity", "critical",
                                    "--label", "pod=api-0", "--url", relay.url, env=env)
        assert code == 0, out
        for receiver in ("slack-alerts", "ops-email", "pagerduty-oncall"):
            assert f"{receiver}" in out
        assert out.count("delivered in") == 3
        [trigger] = providers.pagerduty.events
        code, out = await run_relay("test-alert", "--alertname", "PodDown", "--severity", "critical",
                                    "--label", "pod=api-0", "--url", relay.url, "--resolve", env=env)
        assert code == 0, out
    resolve = providers.pagerduty.events[1]
    assert (resolve["event_action"], resolve["dedup_key"]) == ("resolve", trigger["dedup_key"])
    assert "tok-SECRET" not in out


async def test_test_alert_direct_delivers_in_process(tmp_path: Path, providers: Providers) -> None:
    env = {**providers.env, "XDG_STATE_HOME": str(tmp_path), "RELAY_ROUTES": str(providers.routes),
           "RELAY_TEMPLATES": str(TEMPLATES), "RELAY_DATABASE_URL": f"sqlite:///{tmp_path / 'direct.db'}",
           "RELAY_RATE_LIMITS": "false"}
    code, out = await run_relay("test-alert", "--direct", "--severity", "warning", env=env)
    assert code == 0, out
    assert "slack-alerts" in out and "delivered in" in out
    [message] = providers.slack.messages
    assert "RelayTestAlert" in str(message)


async def test_test_alert_shows_dead_letters(tmp_path: Path, providers: Providers) -> None:
    routes = repo_routes(tmp_path)
    env = {**providers.env, "XDG_STATE_HOME": str(tmp_path), "SLACK_WEBHOOK_URL": "", "RELAY_ROUTES": str(routes),
           "RELAY_TEMPLATES": str(TEMPLATES),
           "RELAY_DATABASE_URL": f"sqlite:///{tmp_path / 'direct.db'}"}
    code, out = await run_relay("test-alert", "--direct", env=env)
    assert code == 1
    assert "slack-alerts" in out and "dead-lettered: unconfigured" in out
