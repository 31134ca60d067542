"""The real Alertmanager (Debian's prometheus-alertmanager) posting to relay, as in production."""

from __future__ import annotations

import asyncio
import contextlib
import shutil
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import httpx

from tests.conftest import Providers
from tests.e2e.process import free_port
from tests.helpers import poll_until, relay_settings, running_relay, slack_text
from tests.requirements import ALERTMANAGER

BINARY = shutil.which("prometheus-alertmanager") or shutil.which("alertmanager")
TOKEN = "am-relay-token-SECRET"

pytestmark = ALERTMANAGER.unless(None if BINARY else "needs Debian prometheus-alertmanager (apt-get install it)")

CONFIG = """
route:
  receiver: relay
  group_by: [alertname]
  group_wait: 0s
  group_interval: 1s
  repeat_interval: 1h
receivers:
  - name: relay
    webhook_configs:
      - url: {url}/webhook
        send_resolved: true
        http_config:
          authorization:
            credentials: {token}
"""


@contextlib.asynccontextmanager
async def alertmanager(tmp_path: Path, relay_url: str, template: str = CONFIG, port: int | None = None
                       ) -> AsyncIterator[str]:
    """A real Alertmanager on loopback posting to relay; its externalURL (what its webhooks carry) is its own URL.
    `port` lets relay's routes.yaml name it before it runs (actions.alertmanager.url)."""
    assert BINARY is not None
    config = tmp_path / "alertmanager.yml"
    config.write_text(template.format(url=relay_url, token=TOKEN))
    port = port or free_port()
    log = (tmp_path / "alertmanager.log").open("ab")
    proc = await asyncio.create_subprocess_exec(
        BINARY, f"--config.file={config}", f"--storage.path={tmp_path / 'am-data'}",
        f"--web.listen-address=127.0.0.1:{port}", f"--web.external-url=http://127.0.0.1:{port}",
        "--cluster.listen-address=", stdout=log, stderr=log)
    url = f"http://127.0.0.1:{port}"

    async def ready() -> bool:
        try:
            async with httpx.AsyncClient() as client:
                return (await client.get(f"{url}/-/ready", timeout=1)).status_code == 200
        except httpx.HTTPError:
            return False

    try:
        await poll_until(ready, timeout=20, interval=0.1)
        yield url
    finally:
        proc.terminate()
        await asyncio.wait_for(proc.wait(), 10)
        log.close()


def now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


async def test_alertmanager_to_slack_email_and_pagerduty_and_back(tmp_path: Path, providers: Providers) -> None:
    settings = relay_settings(tmp_path, providers.routes, webhook_token=TOKEN)
    async with running_relay(settings) as relay, alertmanager(tmp_path, relay.url) as am:
        labels = {"alertname": "PodDown", "severity": "critical", "namespace": "ojeomneo", "pod": "server-0"}
        alert = {"labels": labels, "annotations": {"summary": "Pod down", "description": "서버 파드가 없습니다"},
                 "startsAt": now(), "generatorURL": "http://prometheus:9090/graph"}
        async with httpx.AsyncClient() as client:
            assert (await client.post(f"{am}/api/v2/alerts", json=[alert])).status_code == 200
            [firing] = await providers.slack.wait_for(1, timeout=20)
            assert "PodDown" in slack_text(firing) and "서버 파드가 없습니다" in slack_text(firing)
            [mail] = await providers.smtp.wait_for(1)
            assert "PodDown" in mail.message["Subject"]
            [trigger] = await providers.pagerduty.wait_for(1)
            assert trigger["event_action"] == "trigger"

            alert["endsAt"] = now()
            assert (await client.post(f"{am}/api/v2/alerts", json=[alert])).status_code == 200
            await providers.slack.wait_for(2, timeout=20)
            await providers.pagerduty.wait_for(2)
        resolve = providers.pagerduty.events[1]
        assert resolve["event_action"] == "resolve"
        assert resolve["dedup_key"] == trigger["dedup_key"]
        assert "RESOLVED" in slack_text(providers.slack.messages[1]).upper()
        assert len(providers.slack.messages) == 2  # Alertmanager's re-sends are not notified twice
