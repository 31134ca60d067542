"""Escalation with a real relay and the suite's Slack, SMTP and PagerDuty servers (steps shortened to seconds).

The repository's critical route (Slack and email) escalates to PagerDuty, then to email again. An unacknowledged
critical reaches PagerDuty after its step and not before (measured with relay's own recorded times); an
acknowledge or a resolve in time prevents it; a restart keeps the timer; replicas on PostgreSQL escalate once.
"""

from __future__ import annotations

import re
import shutil
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from relay.alerts.fingerprint import fingerprint
from relay.cli.admin import _show
from relay.services import Services
from relay.stages import escalation
from tests.conftest import Providers
from tests.e2e.process import RelayProcess
from tests.fakes.slack import DEFAULT_TOKEN, SIGNING_SECRET
from tests.helpers import (
    RunningRelay,
    poll_until,
    postgres_database,
    relay_settings,
    repo_routes,
    running_relay,
    seconds,
)
from tests.requirements import ALERTMANAGER
from tests.slack_bot import slack_bot

AM_BINARY = shutil.which("prometheus-alertmanager") or shutil.which("alertmanager")
CRITICAL_ROUTE = """  - matchers: ['severity="critical"']
    receivers: [slack-alerts, ops-email]
"""


def routes_with_escalation(tmp_path: Path, providers: Providers, first: str = "1s", second: str = "2s") -> Path:
    path = repo_routes(tmp_path, providers.pagerduty.url)
    text = path.read_text()
    assert CRITICAL_ROUTE in text
    path.write_text(text.replace(CRITICAL_ROUTE, CRITICAL_ROUTE + f"""    escalate:
      - {{after: {first}, receivers: [pagerduty-oncall]}}
      - {{after: {second}, receivers: [ops-email]}}
"""))
    return path


LABELS = {"alertname": "HighErrorRate", "severity": "critical", "namespace": "ojeomneo"}


def webhook(status: str = "firing", summary: str = "5xx ratio is 7% <!channel>") -> dict[str, Any]:
    alert = {"status": status, "labels": LABELS, "annotations": {"summary": summary},
             "startsAt": "2026-12-01T10:00:00.000Z",
             "endsAt": "2026-12-01T10:20:00Z" if status == "resolved" else "0001-01-01T00:00:00Z",
             "generatorURL": "http://prometheus:9090/graph", "fingerprint": fingerprint(LABELS)}
    return {"version": "4", "groupKey": '{}:{alertname="HighErrorRate"}', "status": status, "receiver": "relay",
            "alerts": [alert], "groupLabels": {"alertname": "HighErrorRate"}, "commonLabels": LABELS,
            "commonAnnotations": alert["annotations"], "externalURL": "http://alertmanager:9093", "truncatedAlerts": 0}


def services(relay: RunningRelay) -> Services:
    found = relay.app.state.services
    assert isinstance(found, Services)
    return found


def advanced(relay: RunningRelay, seconds: float) -> float:
    """Move the relay's clock (relay.runtime.Runtime.clock: a webhook's arrival time and every periodic check's now)
    `seconds` forward instead of waiting for them to pass; the moment it reads now."""
    runtime = services(relay).runtime
    before = runtime.clock
    runtime.clock = lambda: before() + seconds
    return runtime.clock()


async def checked_after(relay: RunningRelay, moment: float) -> None:
    """Wait until the relay's escalation checker has run a check that began after `moment`."""
    await poll_until(lambda: services(relay).escalator.checked_at > moment, timeout=15)


async def steps_counted(relay: RunningRelay, outcome: str) -> float:
    text = (await relay.client.get("/metrics")).text
    found = re.search(rf'^relay_escalation_steps_total{{outcome="{outcome}"}} (\S+)$', text, re.MULTILINE)
    return float(found.group(1)) if found else 0.0


async def all_delivered(relay: RunningRelay) -> bool:
    return all(row["state"] == "delivered" for row in await relay.history())


async def test_unacknowledged_critical_escalates_after_each_step_then_its_resolve_follows(
        tmp_path: Path, providers: Providers, database_url: str) -> None:
    settings = relay_settings(tmp_path, routes_with_escalation(tmp_path, providers), database_url=database_url)
    async with running_relay(settings) as relay:
        answer = (await relay.post(webhook())).json()
        assert set(answer["receivers"]) == {"slack-alerts", "ops-email"}
        [trigger] = await providers.pagerduty.wait_for(1)
        await providers.smtp.wait_for(2)  # the route's email, then step 2's
        await poll_until(lambda: all_delivered(relay))
        history = {(row["receiver"], (row["escalation"] or {}).get("step")): row for row in await relay.history()}
        first = seconds(history[("slack-alerts", None)]["received_at"])
        assert set(history) == {("slack-alerts", None), ("ops-email", None), ("pagerduty-oncall", 1),
                                ("ops-email", 2)}
        # Not before its step: relay's own times, from receiving the alert to enqueueing each step.
        assert seconds(history[("pagerduty-oncall", 1)]["received_at"]) - first >= 1.0
        assert seconds(history[("ops-email", 2)]["received_at"]) - first >= 2.0
        assert history[("pagerduty-oncall", 1)]["escalation"] == {"step": 1, "steps": 2, "after_seconds": 1.0}
        # The route's own notification shows where its alert's escalation went (relay notifications show).
        detail = (await relay.admin("GET", f"/api/v1/notifications/{history[('slack-alerts', None)]['id']}")).json()
        assert [(s["step"], s["state"], s["receivers"], s["notifications"]) for s in detail["escalation_steps"]] == [
            (1, "sent", ["pagerduty-oncall"], [history[("pagerduty-oncall", 1)]["id"]]),
            (2, "sent", ["ops-email"], [history[("ops-email", 2)]["id"]])]
        shown = _show(detail)
        assert "step 1 of 2 (after 1s, to pagerduty-oncall): sent " in shown
        escalated = (await relay.admin("GET", f"/api/v1/notifications/{history[('ops-email', 2)]['id']}")).json()
        assert "escalation step 2 of 2: its alerts were not acknowledged for 2s" in _show(escalated)

        assert trigger["event_action"] == "trigger"
        assert trigger["payload"]["summary"].startswith(
            "[Escalation 1 of 2: not acknowledged for 1s] [FIRING] HighErrorRate: 5xx ratio is 7% <!channel>")
        [_, mail] = providers.smtp.messages
        assert mail.message["Subject"].startswith("[Escalation 2 of 2: not acknowledged for 2s] [FIRING:1]")
        assert "Escalation 2 of 2: not acknowledged for 2s. Nobody acknowledged" in mail.message.get_body(
            ("plain",)).get_content()
        [slack] = providers.slack.messages
        assert "Escalation" not in str(slack)  # the route's own message is not an escalation

        await checked_after(relay, time.time() + 0.5)  # the last step was sent: nothing more comes
        assert len(providers.pagerduty.events) == 1 and len(providers.smtp.messages) == 2

        # The resolve reaches the route's receivers and every receiver a step reached.
        resolved = (await relay.post(webhook("resolved"))).json()
        assert set(resolved["receivers"]) == {"slack-alerts", "ops-email", "pagerduty-oncall"}
        [_, resolve] = await providers.pagerduty.wait_for(2)
        assert (resolve["event_action"], resolve["dedup_key"]) == ("resolve", trigger["dedup_key"])
        assert providers.pagerduty.open_incidents() == {}
        await providers.slack.wait_for(2)
        await providers.smtp.wait_for(3)
        await poll_until(lambda: all_delivered(relay))
        steps = await services(relay).store.escalations_of([fingerprint(LABELS)])
        assert [(s.step, s.state) for s in steps] == [(1, "sent"), (2, "sent")]
    assert len(providers.smtp.messages) == 3  # one resolve for ops-email, although two notifications reached it


async def test_an_acknowledge_in_time_prevents_the_escalation(tmp_path: Path, providers: Providers,
                                                              database_url: str) -> None:
    settings = relay_settings(tmp_path, routes_with_escalation(tmp_path, providers, "2s", "3s"),
                              database_url=database_url)
    async with running_relay(settings) as relay:
        await relay.post(webhook())
        await providers.slack.wait_for(1)
        acknowledged = await steps_counted(relay, "acknowledged")
        # What relay's Slack Acknowledge does for the alerts of the message it was clicked on.
        assert await escalation.cancel(services(relay).store, [fingerprint(LABELS)], "acknowledged") == 2
        await relay.post(webhook())  # Alertmanager re-sends the group: it does not re-arm the escalation
        await checked_after(relay, advanced(relay, 3.5))  # both steps were due by then
        await poll_until(lambda: all_delivered(relay))
        assert providers.pagerduty.events == []
        assert sorted(row["receiver"] for row in await relay.history()) == ["ops-email", "slack-alerts"]
        steps = await services(relay).store.escalations_of([fingerprint(LABELS)])
        assert [(s.state, s.reason) for s in steps] == [("cancelled", "acknowledged")] * 2
        assert await steps_counted(relay, "acknowledged") == acknowledged + 2


async def test_a_resolve_in_time_prevents_the_escalation(tmp_path: Path, providers: Providers) -> None:
    settings = relay_settings(tmp_path, routes_with_escalation(tmp_path, providers, "2s", "3s"))
    async with running_relay(settings) as relay:
        await relay.post(webhook())
        before = await steps_counted(relay, "resolved")
        resolved = (await relay.post(webhook("resolved"))).json()
        assert set(resolved["receivers"]) == {"slack-alerts", "ops-email"}  # no step was sent: no one else hears
        await checked_after(relay, advanced(relay, 3.5))  # both steps were due by then
        await poll_until(lambda: all_delivered(relay))
        assert providers.pagerduty.events == []
        assert len(await relay.history()) == 4
        steps = await services(relay).store.escalations_of([fingerprint(LABELS)])
        assert [(s.state, s.reason) for s in steps] == [("cancelled", "resolved")] * 2
        assert await steps_counted(relay, "resolved") == before + 2


async def test_a_routes_yaml_that_no_longer_escalates_cancels_what_is_left(tmp_path: Path,
                                                                          providers: Providers) -> None:
    routes = routes_with_escalation(tmp_path, providers, "2s", "3s")
    async with running_relay(relay_settings(tmp_path, routes)) as relay:
        await relay.post(webhook())
        repo_routes(tmp_path, providers.pagerduty.url)  # the same file, without the escalation
        await services(relay).runtime.reload()
        await checked_after(relay, advanced(relay, 3.5))  # both steps were due by then
        await poll_until(lambda: all_delivered(relay))
        assert providers.pagerduty.events == []
        steps = await services(relay).store.escalations_of([fingerprint(LABELS)])
        assert [(s.state, s.reason) for s in steps] == [("cancelled", "unrouted")] * 2


async def test_a_restart_keeps_the_timer(tmp_path: Path, providers: Providers) -> None:
    settings = relay_settings(tmp_path, routes_with_escalation(tmp_path, providers, "2s", "1h"))
    async with running_relay(settings) as relay:
        await relay.post(webhook())
        await poll_until(lambda: all_delivered(relay))
    assert providers.pagerduty.events == []  # stopped before the step was due
    async with running_relay(settings) as relay:  # the same SQLite file
        [trigger] = await providers.pagerduty.wait_for(1)
        assert "not acknowledged for 2s" in trigger["payload"]["summary"]
        await poll_until(lambda: all_delivered(relay))
        history = {row["receiver"]: row for row in await relay.history()}
        assert (seconds(history["pagerduty-oncall"]["received_at"])
                - seconds(history["slack-alerts"]["received_at"])) >= 2.0
        await checked_after(relay, time.time() + 0.5)
    assert len(providers.pagerduty.events) == 1


async def test_two_replicas_on_one_postgres_database_escalate_once(tmp_path: Path, providers: Providers) -> None:
    routes = routes_with_escalation(tmp_path, providers, "1s", "2s")
    async with postgres_database() as url:
        replica = RelayProcess(tmp_path, routes, providers.env, database_url=url)
        await replica.start()
        try:
            async with running_relay(relay_settings(tmp_path, routes, database_url=url)) as relay, \
                    httpx.AsyncClient(base_url=replica.url, timeout=10):
                await relay.post(webhook())
                await providers.pagerduty.wait_for(1)
                await providers.smtp.wait_for(2)
                # Both replicas checked for due steps past the last one meanwhile (the other checks every 0.2 s).
                await checked_after(relay, time.time() + 1)
                await poll_until(lambda: all_delivered(relay))
                assert len(providers.pagerduty.events) == 1 and len(providers.smtp.messages) == 2
                steps = [(row["receiver"], row["escalation"]["step"]) for row in await relay.history()
                         if row["escalation"]]
                assert sorted(steps) == [("ops-email", 2), ("pagerduty-oncall", 1)]
        finally:
            await replica.terminate()
        log = replica.log.read_text()
        assert "Traceback" not in log, log


BOT_ROUTES = "receivers:\n" + slack_bot() + """  - name: pagerduty-oncall
    pagerduty:
      routing_key: R0UTINGKEY0000000000000000000001
      url: ${PD_URL}
routes:
  - matchers: ['severity="critical"']
    receivers: [slack-bot]
    escalate: [{after: AFTER, receivers: [pagerduty-oncall]}]
"""


def bot_routes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, providers: Providers, after: str,
               am_api: str = "http://127.0.0.1:9") -> Path:
    for key, value in {"SLACK_TOKEN": DEFAULT_TOKEN, "SLACK_API_URL": providers.slack.api_url,
                       "PD_URL": providers.pagerduty.url, "AM_API_URL": am_api}.items():
        monkeypatch.setenv(key, value)
    path = tmp_path / "bot-routes.yaml"
    path.write_text(BOT_ROUTES.replace("AFTER", after))
    return path


async def test_an_acknowledge_clicked_in_slack_in_time_prevents_the_escalation(
        tmp_path: Path, providers: Providers, monkeypatch: pytest.MonkeyPatch) -> None:
    settings = relay_settings(tmp_path, bot_routes(tmp_path, monkeypatch, providers, "2s"),
                              slack_signing_secret=SIGNING_SECRET)
    async with running_relay(settings) as relay:
        await relay.post(webhook())
        await providers.slack.wait_for(1)
        await poll_until(lambda: all_delivered(relay))  # where the message went is committed
        [message] = providers.slack.top_level()
        assert (await providers.slack.click(message, "relay:acknowledge").send(relay.url)).status_code == 200
        await poll_until(lambda: all_delivered(relay))
        await checked_after(relay, advanced(relay, 2.5))  # the step was due by then
        assert providers.pagerduty.events == []
        steps = await services(relay).store.escalations_of([fingerprint(LABELS)])
        assert [(s.state, s.reason) for s in steps] == [("cancelled", "acknowledged")]


@ALERTMANAGER.unless(None if AM_BINARY else "needs Debian prometheus-alertmanager")
async def test_an_escalated_alert_silenced_then_resolved_closes_the_escalations_incident(
        tmp_path: Path, providers: Providers, monkeypatch: pytest.MonkeyPatch) -> None:
    """Alertmanager sends no resolve for a silenced alert; relay's own (it asks Alertmanager) reaches the step's
    PagerDuty receiver too, not only the route's."""
    from tests.e2e.process import free_port
    from tests.e2e.test_alertmanager import TOKEN, alertmanager, now

    am_port = free_port()
    routes = bot_routes(tmp_path, monkeypatch, providers, "1s", f"http://127.0.0.1:{am_port}")
    settings = relay_settings(tmp_path, routes, webhook_token=TOKEN, slack_signing_secret=SIGNING_SECRET,
                              silence_watch_seconds=0.5, absence_grace_seconds=1.0)
    async with running_relay(settings) as relay, alertmanager(tmp_path, relay.url, port=am_port) as am:
        alert = {"labels": LABELS, "annotations": {"summary": "5xx ratio is 7%"}, "startsAt": now()}
        async with httpx.AsyncClient() as client:
            assert (await client.post(f"{am}/api/v2/alerts", json=[alert])).status_code == 200
            await providers.slack.wait_for(1, timeout=20)
            [trigger] = await providers.pagerduty.wait_for(1)  # the escalation step, nobody having acknowledged
            assert "not acknowledged for 1s" in trigger["payload"]["summary"]
            [message] = providers.slack.top_level()
            assert (await providers.slack.click(message, "relay:silence:3600").send(relay.url)).status_code == 200
            await providers.slack.wait_for_updates(1)
            alert["endsAt"] = now()
            assert (await client.post(f"{am}/api/v2/alerts", json=[alert])).status_code == 200
        [_, resolve] = await providers.pagerduty.wait_for(2, timeout=20)
        assert (resolve["event_action"], resolve["dedup_key"]) == ("resolve", trigger["dedup_key"])
        assert providers.pagerduty.open_incidents() == {}
        # Issue 20: the same episode firing again after relay's resolve (as Alertmanager re-sends it once the silence
        # is gone) is a new page, and nobody acknowledging it, its escalation pages PagerDuty again.
        again = {"version": "4", "groupKey": '{}:{alertname="HighErrorRate"}', "status": "firing", "receiver": "relay",
                 "externalURL": am, "groupLabels": {}, "alerts": [{"status": "firing", "labels": LABELS,
                                                                  "startsAt": alert["startsAt"],
                                                                  "fingerprint": fingerprint(LABELS)}]}
        assert (await relay.post(again, token=TOKEN)).status_code == 200
        [*_, paged] = await providers.pagerduty.wait_for(3, timeout=20)
    assert (paged["event_action"], paged["dedup_key"]) == ("trigger", trigger["dedup_key"])
    assert "not acknowledged for 1s" in paged["payload"]["summary"]
