"""The monitoring plan's table, end to end: each alert reaches exactly its destinations, readable and once."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from relay.alerts.fingerprint import fingerprint
from tests.conftest import Providers
from tests.helpers import fixture, poll_until, relay_settings, running_relay, slack_text
from tests.test_routes import PLAN


def webhook(alertname: str, severity: str, status: str = "firing") -> dict[str, Any]:
    labels = {"alertname": alertname, "severity": severity, "namespace": "ojeomneo", "service": "server"}
    alert = {"status": status, "labels": labels, "annotations": {"summary": f"{alertname} summary"},
             "startsAt": "2026-11-26T07:40:12.571836967Z",
             "endsAt": "2026-11-26T07:45:00Z" if status == "resolved" else "0001-01-01T00:00:00Z",
             "generatorURL": "http://prometheus:9090/graph", "fingerprint": fingerprint(labels)}
    return {"receiver": "relay", "status": status, "alerts": [alert], "groupLabels": {"alertname": alertname},
            "commonLabels": labels, "commonAnnotations": alert["annotations"], "externalURL": "http://am:9093",
            "version": "4", "groupKey": f'{{}}:{{alertname="{alertname}"}}', "truncatedAlerts": 0}


async def test_each_plan_alert_reaches_exactly_its_destinations(tmp_path: Path, providers: Providers) -> None:
    expected = {"slack": [], "email": [], "pagerduty": []}  # type: dict[str, list[str]]
    for alertname, _, receivers in PLAN:
        for receiver, integration in (("slack-alerts", "slack"), ("ops-email", "email"),
                                      ("pagerduty-oncall", "pagerduty")):
            if receiver in receivers:
                expected[integration].append(alertname)
    async with running_relay(relay_settings(tmp_path, providers.routes)) as relay:
        for alertname, severity, _ in PLAN:
            assert (await relay.post(webhook(alertname, severity))).status_code == 200
        await providers.slack.wait_for(len(expected["slack"]))
        await providers.smtp.wait_for(len(expected["email"]))
        await providers.pagerduty.wait_for(len(expected["pagerduty"]))
        await poll_until(lambda: _all_finished(relay), timeout=10)

    slack_got = sorted(name for name, *_ in PLAN if any(name in slack_text(m) for m in providers.slack.messages))
    assert slack_got == sorted(expected["slack"])
    assert len(providers.slack.messages) == len(expected["slack"])
    mail_subjects = [m.message["Subject"] for m in providers.smtp.messages]
    assert sorted(s.split("] ", 1)[1].split()[0] for s in mail_subjects) == sorted(expected["email"])
    assert all(m.rcpt_tos == ["ops@ojeomneo.example"] for m in providers.smtp.messages)
    assert [e["payload"]["class"] for e in providers.pagerduty.events] == expected["pagerduty"]


async def _all_finished(relay: Any) -> bool:
    rows = await relay.history()
    return bool(rows) and all(r["state"] == "delivered" for r in rows)


async def test_unconfigured_receiver_dead_letters_and_replays(tmp_path: Path, providers: Providers,
                                                              monkeypatch: Any) -> None:
    monkeypatch.delenv("PAGERDUTY_ROUTING_KEY")
    async with running_relay(relay_settings(tmp_path, providers.routes)) as relay:
        body = (await relay.post(fixture("firing-poddown.json"))).json()
        pd_id = body["receivers"]["pagerduty-oncall"]["notification_id"]

        async def dead() -> bool:
            return [r["state"] for r in await relay.history(ids=str(pd_id))] == ["dead"]

        await poll_until(dead)
        [row] = await relay.history(ids=str(pd_id))
        assert row["last_error"].startswith("unconfigured")
        metrics = (await relay.client.get("/metrics")).text
        assert 'relay_dead_letters{receiver="pagerduty-oncall"} 1.0' in metrics
        assert 'reason="unconfigured"' in metrics

        # The operator sets the key and replays the dead letter.
        monkeypatch.setenv("PAGERDUTY_ROUTING_KEY", "R0UTINGKEYSECRET0000000000000000")
        assert (await relay.admin("POST", "/-/reload")).status_code == 200
        answer = await relay.admin("POST", f"/api/v1/dead-letters/{pd_id}/retry")
        assert answer.json() == {"status": "replayed", "id": pd_id}
        [event] = await providers.pagerduty.wait_for(1)
        assert event["event_action"] == "trigger"
    assert json.dumps(row).find("R0UTINGKEY") == -1
