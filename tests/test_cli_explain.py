"""`relay explain` against a running relay: the console's Explain answer in a terminal, through the admin API."""

from __future__ import annotations

import json
from pathlib import Path

from tests.conftest import Providers
from tests.helpers import fixture, relay_settings, running_relay
from tests.test_cli import run_relay

ADMIN = "explain-admin-token"


async def test_relay_explain_names_the_routes_the_dedup_and_every_delivery(tmp_path: Path,
                                                                          providers: Providers) -> None:
    body = fixture("firing-poddown.json")
    settings = relay_settings(tmp_path, providers.routes, webhook_token="explain-webhook", admin_token=ADMIN)
    async with running_relay(settings) as relay:
        first = (await relay.post(body, token="explain-webhook")).json()
        await providers.pagerduty.wait_for(1)
        env = {"RELAY_ADMIN_TOKEN": ADMIN}
        fp = body["alerts"][0]["fingerprint"]
        code, out = await run_relay("explain", fp, "--url", relay.url, env=env)
        assert code == 0, out
        slack_id = first["receivers"]["slack-alerts"]["notification_id"]
        assert out.startswith(f"alert {fp} {{alertname=\"PodDown\"")
        assert f"deduplicated against #{slack_id}" in out and "from Alertmanager http://" in out
        assert "+ " in out and "route 1" in out and "pagerduty-oncall (pagerduty) firing: attempt delivered" in out
        labels = [f"{k}={v}" for k, v in body["alerts"][0]["labels"].items()]
        code, typed = await run_relay("explain", *labels, "--url", relay.url, "--json", env=env)
        assert code == 0 and json.loads(typed)["fingerprint"] == fp
        code, out = await run_relay("explain", fp, "--url", relay.url, env={"RELAY_ADMIN_TOKEN": "wrong"})
        assert code == 1 and "invalid bearer token" in out
        answer = await relay.client.post("/api/v1/explain", json={"query": fp})
        assert answer.status_code == 401  # the admin API's rule: no token, no answer
        code, out = await run_relay("explain", "not a label", "--url", relay.url, env=env)
        assert code == 1 and "expected a fingerprint or labels as name=value" in out
