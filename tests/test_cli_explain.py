"""`relay explain` against a running relay: the console's Explain answer in a terminal, through the admin API."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx

from tests.conftest import Providers
from tests.e2e.process import free_port
from tests.helpers import RunningRelay, fixture, relay_settings, running_relay
from tests.requirements import ALERTMANAGER
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


MUTED_ROUTES = """
time_intervals:
  - name: always
    time_intervals:
      - {}
receivers:
  - name: slack-bot
    slack:
      token: xoxb-explain-test
      channel: "#alerts"
      api_url: http://127.0.0.1:9/api
      actions:
        team_id: T0EXPLAIN
        alertmanager:
          url: AM_URL
routes:
  - matchers: ['alertname="PodDown"']
    receivers: [slack-bot]
    mute_time_intervals: [always]
default_receivers: [slack-bot]
"""


async def _explained(relay: RunningRelay, query: str) -> str:
    answer = await relay.admin("POST", "/api/v1/explain", json={"query": query})
    assert answer.status_code == 200, answer.text
    return "\n".join(line["text"] for section in answer.json()["sections"] for line in section["lines"])


async def test_explain_names_a_muted_route_and_alertmanagers_own_silences(tmp_path: Path) -> None:
    from tests.e2e.test_alertmanager import BINARY, alertmanager

    if BINARY is None:
        ALERTMANAGER.missing("needs Debian prometheus-alertmanager (apt-get install it)")
    labels = fixture("firing-poddown.json")["alerts"][0]["labels"]
    typed = ", ".join(f"{k}={v}" for k, v in labels.items())
    port = free_port()
    routes = tmp_path / "routes.yaml"
    routes.write_text(MUTED_ROUTES.replace("AM_URL", f"http://127.0.0.1:{port}"))
    settings = relay_settings(tmp_path, routes, admin_token=ADMIN)
    async with running_relay(settings) as relay:
        # Alertmanager not running: said so, and the rest of the answer stands.
        text = await _explained(relay, typed)
        assert f"Alertmanager http://127.0.0.1:{port} did not answer" in text
        assert "sends nothing now: muted by time interval 'always'" in text
        assert "slack-bot: not now, route 1 is muted by time interval 'always'" in text
        async with alertmanager(tmp_path, relay.url, port=port) as am, httpx.AsyncClient() as client:
            start = datetime.now(UTC)
            silence = {"matchers": [{"name": k, "value": v, "isRegex": False, "isEqual": True}
                                    for k, v in labels.items()],
                       "startsAt": start.isoformat(), "endsAt": (start + timedelta(hours=2)).isoformat(),
                       "createdBy": "oncall@ojeomneo", "comment": "<b>maintenance</b> @here"}
            made = await client.post(f"{am}/api/v2/silences", json=silence)
            assert made.status_code == 200, made.text
            silence_id = made.json()["silenceID"]
            text = await _explained(relay, typed)
            assert (f"silenced in Alertmanager {am}: silence {silence_id} (active) by oncall@ojeomneo until" in text
                    and "<b>maintenance</b> @here" in text)
            # Another alert: Alertmanager is asked, and says no silence matches it.
            text = await _explained(relay, typed.replace("server-abc-123", "server-other"))
            assert f"Alertmanager {am}: no active or pending silence matches this alert" in text


async def test_explain_numbers_escalation_steps_as_routes_yaml_does(tmp_path: Path, providers: Providers) -> None:
    """Steps count from 1, as in routes.yaml, `relay routes test` and `relay notifications show` (Explain and the
    console said 'step 2 of 2' for the first step)."""
    routes = tmp_path / "escalating.yaml"
    routes.write_text(f"""
receivers:
  - name: slack-alerts
    slack: {{webhook_url: "{providers.slack.url()}"}}
  - name: pagerduty-oncall
    pagerduty: {{routing_key: explain-steps-key, url: "{providers.pagerduty.url}"}}
routes:
  - matchers: ['alertname="PodDown"']
    receivers: [slack-alerts]
    escalate:
      - {{after: 1h, receivers: [pagerduty-oncall]}}
      - {{after: 2h, receivers: [pagerduty-oncall]}}
default_receivers: [slack-alerts]
""")
    body = fixture("firing-poddown.json")
    settings = relay_settings(tmp_path, routes, admin_token=ADMIN)
    async with running_relay(settings) as relay:
        assert (await relay.post(body)).status_code == 200
        text = await _explained(relay, body["alerts"][0]["fingerprint"])
        assert "step 1 of 2 (to pagerduty-oncall" in text and "step 2 of 2 (to pagerduty-oncall" in text, text
        assert "step 3 of 2" not in text
