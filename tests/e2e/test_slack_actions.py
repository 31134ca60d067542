"""Acting from the Slack message, with the real Alertmanager (Debian's prometheus-alertmanager) and the suite's Slack
and PagerDuty: the suite's Slack clicks relay's buttons with signed block_actions requests, as Slack does."""

from __future__ import annotations

import asyncio
import json
import re
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiohttp import web

from tests.e2e.process import RelayProcess, free_port
from tests.e2e.test_alertmanager import BINARY, TOKEN, alertmanager, now
from tests.fakes.pagerduty import PagerDutyServer
from tests.fakes.slack import DEFAULT_TOKEN, SIGNING_SECRET, TEAM_ID, Posted, SlackWebhookServer
from tests.helpers import RunningRelay, poll_until, relay_settings, running_relay
from tests.requirements import ALERTMANAGER
from tests.slack_bot import slack_bot
from tests.test_cli import run_relay

pytestmark = ALERTMANAGER.unless(None if BINARY else "needs Debian prometheus-alertmanager")

ROUTES = "receivers:\n" + slack_bot() + """  - name: pagerduty-oncall
    pagerduty:
      routing_key: ${PD_KEY}
      url: ${PD_URL}
routes:
  - matchers: ['severity="critical"']
    receivers: [slack-bot, pagerduty-oncall]
default_receivers: [slack-bot]
"""

# Alertmanager re-sends the group every second while it fires, so that a silence visibly stops it.
REPEATING = """
route:
  receiver: relay
  group_by: [alertname]
  group_wait: 0s
  group_interval: 1s
  repeat_interval: 1s
receivers:
  - name: relay
    webhook_configs:
      - url: {url}/webhook
        send_resolved: true
        http_config:
          authorization:
            credentials: {token}
"""
LABELS = {"alertname": "PodDown", "severity": "critical", "namespace": "ojeomneo", "pod": "server-0"}


def env(slack: SlackWebhookServer, pagerduty: PagerDutyServer, am_api: str = "http://127.0.0.1:9") -> dict[str, str]:
    return {"SLACK_TOKEN": DEFAULT_TOKEN, "SLACK_API_URL": slack.api_url, "PD_KEY": "R0UTINGKEY0000000000000000000001",
            "PD_URL": pagerduty.url, "AM_API_URL": am_api}


def text(posted: Posted | dict[str, Any]) -> str:
    return json.dumps(posted.body if isinstance(posted, Posted) else posted, ensure_ascii=False)


def action_ids(posted: Posted) -> list[str]:
    return [e["action_id"] for b in posted.body.get("blocks", []) if b["type"] == "actions" for e in b["elements"]]


def mrkdwn(value: Any) -> list[str]:
    """Every text of a message that Slack reads as mrkdwn: mrkdwn objects and the top-level text."""
    found: list[str] = []
    if isinstance(value, dict):
        if value.get("type") == "mrkdwn" or "blocks" in value:
            found.append(str(value.get("text", "")))
        for item in value.values():
            found += mrkdwn(item)
    elif isinstance(value, list):
        for item in value:
            found += mrkdwn(item)
    return found


async def am_get(am: str, path: str, **params: str) -> Any:
    async with httpx.AsyncClient(timeout=5) as client:
        answer = await client.get(am + path, params=params)
    answer.raise_for_status()
    return answer.json()


async def webhooks_accepted(relay_url: str) -> float:
    async with httpx.AsyncClient(timeout=5) as client:
        exposition = (await client.get(relay_url + "/metrics")).text
    found = re.search(r'^relay_webhook_requests_total\{code="200"\} (\S+)$', exposition, re.MULTILINE)
    return float(found.group(1)) if found else 0.0


async def test_silence_unsilence_and_acknowledge_from_slack(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    async with SlackWebhookServer() as slack, PagerDutyServer() as pagerduty:
        am_port = free_port()
        for key, value in env(slack, pagerduty, f"http://127.0.0.1:{am_port}").items():
            monkeypatch.setenv(key, value)
        routes = tmp_path / "routes.yaml"
        routes.write_text(ROUTES)
        settings = relay_settings(tmp_path, routes, webhook_token=TOKEN, admin_token="admin-token-0123",
                                  slack_signing_secret=SIGNING_SECRET)
        async with running_relay(settings) as relay, alertmanager(tmp_path, relay.url, REPEATING, am_port) as am:
            alert = {"labels": LABELS, "annotations": {"summary": "Pod down"}, "startsAt": now()}
            async with httpx.AsyncClient() as client:
                assert (await client.post(f"{am}/api/v2/alerts", json=[alert])).status_code == 200
            await slack.wait_for(1, timeout=20)
            [trigger] = await pagerduty.wait_for(1)
            [message] = slack.top_level()
            assert action_ids(message) == ["relay:acknowledge", "relay:silence:3600", "relay:silence:14400",
                                           "relay:silence:86400", "relay:silence_until"]
            before = await webhooks_accepted(relay.url)
            await poll_until(lambda: _more(relay.url, before + 2), timeout=10)  # Alertmanager re-sends it

            clicked = time.time()
            answer = await slack.click(message, "relay:silence:3600").send(relay.url)
            assert answer.status_code == 200, answer.text
            [update] = await slack.wait_for_updates(1)
            [silence] = [s for s in await am_get(am, "/api/v2/silences") if s["status"]["state"] == "active"]
            assert sorted((m["name"], m["value"], m["isRegex"], m["isEqual"]) for m in silence["matchers"]) == sorted(
                (k, v, False, True) for k, v in LABELS.items())
            assert "U0KIM" in silence["createdBy"]
            assert f"https://ojeomneo.slack.com/archives/{message.channel}/p{message.ts.replace('.', '')}" in \
                silence["comment"]
            ends = silence["endsAt"].replace("Z", "+00:00")
            assert 3590 < datetime.fromisoformat(ends).timestamp() - clicked < 3610
            assert "Silenced until" in text(update) and "<@U0KIM>" in text(update)
            assert action_ids(message) == ["relay:acknowledge", "relay:unsilence"]
            await poll_until(lambda: len(slack.replies(message.ts)) == 1)
            [reply] = slack.replies(message.ts)
            assert "silenced this until" in text(reply) and silence["id"] in text(reply)

            [state] = [a["status"] for a in await am_get(am, "/api/v2/alerts")]
            assert state["state"] == "suppressed" and state["silencedBy"] == [silence["id"]]
            # An absence needs a window: what was on its way arrives in 1.5 s, then 3 s (3 repeat intervals) of quiet.
            await asyncio.sleep(1.5)
            quiet = await webhooks_accepted(relay.url)
            await asyncio.sleep(3.0)
            assert await webhooks_accepted(relay.url) == quiet  # Alertmanager no longer notifies it

            answer = await slack.click(message, "relay:unsilence").send(relay.url)
            assert answer.status_code == 200, answer.text
            await slack.wait_for_updates(2)
            [expired] = [s for s in await am_get(am, "/api/v2/silences") if s["id"] == silence["id"]]
            assert expired["status"]["state"] == "expired"
            assert "Silenced until" not in text(message) and "relay:silence:3600" in action_ids(message)

            answer = await slack.click(message, "relay:acknowledge").send(relay.url)
            assert answer.status_code == 200, answer.text
            await pagerduty.wait_for(2)
            await slack.wait_for_updates(3)
            acknowledge = pagerduty.events[1]
            assert acknowledge["event_action"] == "acknowledge" and acknowledge["dedup_key"] == trigger["dedup_key"]
            assert "Acknowledged by <@U0KIM>" in text(message) and "relay:acknowledge" not in action_ids(message)
            await poll_until(lambda: len(slack.replies(message.ts)) == 3)  # silenced, unsilenced, acknowledged
            # Explain (and the console's notification page) says who acknowledged it, from the message's state.
            code, out = await run_relay("explain", *(f"{k}={v}" for k, v in LABELS.items()), "--url", relay.url,
                                        env={"RELAY_ADMIN_TOKEN": "admin-token-0123"})
            assert code == 0, out
            assert "acknowledged by U0KIM from Slack (slack-bot)" in out
            assert f"Alertmanager {am}: no active or pending silence matches this alert" in out  # unsilenced


            async def actions_done() -> bool:
                done = [h for h in await relay.history(state="delivered") if h["integration"] == "action"]
                return len(done) == 4

            await poll_until(actions_done)  # Slack's silence, unsilence and acknowledge, PagerDuty's acknowledge
            actions = [h for h in await relay.history() if h["integration"] == "action"]
            detail = (await relay.admin("GET", f"/api/v1/notifications/{actions[-1]['id']}")).json()
            assert detail["action"]["kind"] == "silence" and detail["action"]["user"] == "U0KIM"
        assert SIGNING_SECRET not in json.dumps([r.body for r in slack.requests])


async def _more(relay_url: str, count: float) -> bool:
    return await webhooks_accepted(relay_url) >= count


async def test_a_silenced_alert_that_resolves_is_shown_resolved(tmp_path: Path, monkeypatch: pytest.MonkeyPatch
                                                                ) -> None:
    async with SlackWebhookServer() as slack, PagerDutyServer() as pagerduty:
        am_port = free_port()
        for key, value in env(slack, pagerduty, f"http://127.0.0.1:{am_port}").items():
            monkeypatch.setenv(key, value)
        routes = tmp_path / "routes.yaml"
        routes.write_text(ROUTES)
        settings = relay_settings(tmp_path, routes, webhook_token=TOKEN, slack_signing_secret=SIGNING_SECRET,
                                  admin_token="admin-token-0123", silence_watch_seconds=0.5,
                                  absence_grace_seconds=1.0)
        async with running_relay(settings) as relay, alertmanager(tmp_path, relay.url, port=am_port) as am:
            alert = {"labels": LABELS, "annotations": {"summary": "Pod down"}, "startsAt": now()}
            started = alert["startsAt"]  # as its webhooks carry it (the API's alert list cuts it to milliseconds)
            async with httpx.AsyncClient() as client:
                assert (await client.post(f"{am}/api/v2/alerts", json=[alert])).status_code == 200
                await slack.wait_for(1, timeout=20)
                [message] = slack.top_level()
                [firing] = await am_get(am, "/api/v2/alerts")
                answer = await slack.click(message, "relay:silence:3600").send(relay.url)
                assert answer.status_code == 200, answer.text
                await slack.wait_for_updates(1)
                alert["endsAt"] = now()  # resolved while silenced: Alertmanager sends no resolve
                assert (await client.post(f"{am}/api/v2/alerts", json=[alert])).status_code == 200
            await slack.wait_for_updates(2, timeout=20)
            trigger, resolve = await pagerduty.wait_for(2)
            assert (resolve["event_action"], resolve["dedup_key"]) == ("resolve", trigger["dedup_key"])
            assert "[RESOLVED] PodDown" in text(message) and "relay:unsilence" not in text(message)
            await poll_until(lambda: any("RESOLVED" in text(r).upper() for r in slack.replies(message.ts)))
            [shown] = [h for h in await relay.history() if h["receiver"] == "pagerduty-oncall"
                       and h["status"] == "resolved"]
            why = (await relay.admin("GET", f"/api/v1/notifications/{shown['id']}")).json()["inferred"]
            assert why["by"] == "silence watch" and why["alertmanager_up_seconds"] >= 1.0
            assert "absent from Alertmanager for" in why["reason"]
            code, shown_out = await run_relay("notifications", "show", str(shown["id"]), "--url", relay.url,
                                              env={"RELAY_ADMIN_TOKEN": "admin-token-0123"})
            assert code == 0 and "resolved by relay (silence watch, silence " in shown_out, shown_out
            code, explained = await run_relay("explain", firing["fingerprint"], "--url", relay.url,
                                              env={"RELAY_ADMIN_TOKEN": "admin-token-0123"})
            assert code == 0 and "resolved (startsAt " in explained, explained
            assert "inferred by relay's silence watch (silence " in explained
            assert "absent from Alertmanager for" in explained
            assert "then its resolve: a firing of it arriving now is notified again" in explained

            # The same episode firing again after relay showed its resolve (as Alertmanager re-sends it, same
            # startsAt and fingerprint): a new page, not a duplicate dropped until repeat_interval.
            again = {"version": "4", "groupKey": '{}:{alertname="PodDown"}', "status": "firing", "receiver": "relay",
                     "externalURL": am, "groupLabels": {"alertname": "PodDown"},
                     "alerts": [{"status": "firing", "labels": LABELS, "startsAt": started,
                                 "fingerprint": firing["fingerprint"]}]}
            assert (await relay.post(again, token=TOKEN)).status_code == 200
            [*_, paged] = await pagerduty.wait_for(3)
        assert (paged["event_action"], paged["dedup_key"]) == ("trigger", trigger["dedup_key"])
        assert pagerduty.open_incidents() != {}


async def watch_answers(relay_url: str, answer: str) -> float:
    async with httpx.AsyncClient(timeout=5) as client:
        exposition = (await client.get(relay_url + "/metrics")).text
    found = re.search(rf'^relay_silence_watch_answers_total\{{answer="{answer}"\}} (\S+)$', exposition, re.MULTILINE)
    return float(found.group(1)) if found else 0.0


async def test_a_restarted_alertmanager_closes_no_incident(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Issue 20 #1: an alert silenced from Slack and still firing; Alertmanager restarts and answers [] until
    Prometheus sends the alert again. relay must not take that for a resolve: PagerDuty's incident stays open."""
    async with SlackWebhookServer() as slack, PagerDutyServer() as pagerduty:
        am_port = free_port()
        for key, value in env(slack, pagerduty, f"http://127.0.0.1:{am_port}").items():
            monkeypatch.setenv(key, value)
        routes = tmp_path / "routes.yaml"
        routes.write_text(ROUTES)
        settings = relay_settings(tmp_path, routes, webhook_token=TOKEN, slack_signing_secret=SIGNING_SECRET,
                                  silence_watch_seconds=0.2, absence_grace_seconds=60.0)
        alert = {"labels": LABELS, "annotations": {"summary": "Pod down"}, "startsAt": now()}
        async with running_relay(settings) as relay, httpx.AsyncClient() as client:
            # The counters are the process's (other tests' relays ran in it too): counted from here.
            firing, restarted = await watch_answers(relay.url, "firing"), await watch_answers(relay.url, "restarted")
            async with alertmanager(tmp_path, relay.url, port=am_port) as am:
                assert (await client.post(f"{am}/api/v2/alerts", json=[alert])).status_code == 200
                await slack.wait_for(1, timeout=20)
                [trigger] = await pagerduty.wait_for(1)
                [message] = slack.top_level()
                answer = await slack.click(message, "relay:silence:3600").send(relay.url)
                assert answer.status_code == 200, answer.text
                await slack.wait_for_updates(1)
                await poll_until(lambda: _answered(relay.url, "firing", firing + 1), timeout=10)  # seen silenced
            async with alertmanager(tmp_path, relay.url, port=am_port) as am:  # the restart: it knows no alert
                assert await am_get(am, "/api/v2/alerts") == []
                assert [s["status"]["state"] for s in await am_get(am, "/api/v2/silences")] == ["active"]
                async def asked_thrice_or_resolved() -> bool:
                    return len(pagerduty.events) > 1 or await _answered(relay.url, "restarted", restarted + 3)

                await poll_until(asked_thrice_or_resolved, timeout=10)
                assert pagerduty.events == [trigger]  # three empty answers, and no resolve
                seen = await watch_answers(relay.url, "firing")
                # Prometheus sends the alert again; Alertmanager has it (silenced) and relay sees it firing.
                assert (await client.post(f"{am}/api/v2/alerts", json=[alert])).status_code == 200
                await poll_until(lambda: _answered(relay.url, "firing", seen + 1), timeout=10)
        assert pagerduty.events == [trigger]  # no resolve: the incident is still open
        assert pagerduty.open_incidents() != {}
        assert "RESOLVED" not in text(message).upper() and "Silenced until" in text(message)
        assert not any("RESOLVED" in text(r).upper() for r in slack.replies(message.ts))


async def _answered(relay_url: str, answer: str, count: float) -> bool:
    return await watch_answers(relay_url, answer) >= count


async def test_a_silence_asked_for_while_relay_dies_is_created_once_after_restart(tmp_path: Path) -> None:
    async with SlackWebhookServer() as slack, PagerDutyServer() as pagerduty:
        routes = tmp_path / "routes.yaml"
        routes.write_text(ROUTES)
        unreachable = f"http://127.0.0.1:{free_port()}"  # Alertmanager's API, not up yet
        base = {**env(slack, pagerduty, unreachable), "RELAY_SLACK_SIGNING_SECRET": SIGNING_SECRET}
        async with alertmanager(tmp_path, "http://127.0.0.1:9") as am:
            relay = RelayProcess(tmp_path, routes, base)
            await relay.start()
            try:
                webhook = {"version": "4", "groupKey": '{}:{alertname="PodDown"}', "status": "firing",
                           "receiver": "relay", "externalURL": am, "groupLabels": {"alertname": "PodDown"},
                           "alerts": [{"status": "firing", "labels": LABELS, "startsAt": now(),
                                       "fingerprint": "f00dfeedf00dfeed"}]}
                async with httpx.AsyncClient(timeout=10) as client:
                    assert (await client.post(relay.url + "/webhook", json=webhook)).status_code == 200
                await slack.wait_for(1)
                await poll_until(lambda: _refs_kept(relay.url), timeout=10)
                [message] = slack.top_level()
                answer = await slack.click(message, "relay:silence:14400").send(relay.url)
                assert answer.status_code == 200, answer.text
                await poll_until(lambda: _attempted(relay.url), timeout=10)  # Alertmanager could not be reached
            finally:
                await relay.kill()
            relay = RelayProcess(tmp_path, routes, {**base, "AM_API_URL": am})
            await relay.start()
            try:
                await slack.wait_for_updates(1, timeout=20)
                await poll_until(lambda: _all_delivered(relay.url), timeout=10)
            finally:
                await relay.terminate()
            silences = [s for s in await am_get(am, "/api/v2/silences") if s["status"]["state"] == "active"]
        assert len(silences) == 1 and "U0KIM" in silences[0]["createdBy"]
        assert "Silenced until" in text(message)


async def _history(relay_url: str) -> list[dict[str, Any]]:
    async with httpx.AsyncClient(timeout=5, headers={"X-Relay-Request": "1"}) as client:
        return list((await client.get(relay_url + "/api/v1/notifications")).json()["notifications"])


async def _refs_kept(relay_url: str) -> bool:
    return any(h["state"] == "delivered" for h in await _history(relay_url))


async def _attempted(relay_url: str) -> bool:
    return any(h["integration"] == "action" and h["attempts"] >= 1 for h in await _history(relay_url))


async def _all_delivered(relay_url: str) -> bool:
    return all(h["state"] == "delivered" for h in await _history(relay_url))


async def test_hostile_labels_stay_text_and_a_double_click_silences_once(tmp_path: Path,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    async with SlackWebhookServer() as slack, PagerDutyServer() as pagerduty:
        am_port = free_port()
        for key, value in env(slack, pagerduty, f"http://127.0.0.1:{am_port}").items():
            monkeypatch.setenv(key, value)
        routes = tmp_path / "routes.yaml"
        routes.write_text(ROUTES)
        settings = relay_settings(tmp_path, routes, webhook_token=TOKEN, slack_signing_secret=SIGNING_SECRET)
        hostile = "PodDown\u202e <!channel> *now* <http://evil.example|click>"
        labels = {**LABELS, "alertname": hostile, "severity": "warning", "pod": "@here <@U0BOSS>"}
        async with running_relay(settings) as relay, alertmanager(tmp_path, relay.url, port=am_port) as am:
            alert = {"labels": labels, "annotations": {"summary": "<!everyone> down"}, "startsAt": now()}
            async with httpx.AsyncClient() as client:
                assert (await client.post(f"{am}/api/v2/alerts", json=[alert])).status_code == 200
            await slack.wait_for(1, timeout=20)
            [message] = slack.top_level()
            first = slack.click(message, "relay:silence:3600")
            second = slack.click(message, "relay:silence:14400", timestamp=int(time.time()) - 1)
            assert (await first.send(relay.url)).status_code == 200
            assert (await second.send(relay.url)).json()["status"] == "duplicate"
            [update] = await slack.wait_for_updates(1)
            silences = await am_get(am, "/api/v2/silences")
        assert len(silences) == 1  # two clicks on one button: one silence
        [silence] = silences
        assert {m["name"]: m["value"] for m in silence["matchers"]} == labels  # matchers are the alert's labels as is
        shown = json.dumps(mrkdwn(update), ensure_ascii=False)  # plain_text (the header) is never parsed by Slack
        for raw in ("<!channel>", "<!everyone>", "<http://evil.example|click>", "<@U0BOSS>", "\u202e"):
            assert raw not in shown and raw not in silence["comment"] and raw not in silence["createdBy"]
        assert "&lt;!channel&gt;" in shown and "[U+202E]" in shown
        assert hostile not in silence["comment"] and labels["pod"] not in silence["comment"]  # no alert text there


TWO_TEAMS = """
receivers:
  - name: web-slack
    slack:
      token: ${SLACK_TOKEN}
      channel: "#web-alerts"
      api_url: ${SLACK_API_URL}
      actions: {team_id: TEAM, allowed_users: [U0WEB], alertmanager: {url: "http://127.0.0.1:9"}}
  - name: web-pagerduty
    pagerduty:
      routing_key: R0UTINGKEYWEB000000000000000000001
      url: ${PD_URL}
  - name: db-slack
    slack:
      token: ${SLACK_TOKEN}
      channel: "#db-alerts"
      api_url: ${SLACK_API_URL}
      actions: {team_id: TEAM, allowed_users: [U0DB], alertmanager: {url: "http://127.0.0.1:9"}}
  - name: db-pagerduty
    pagerduty:
      routing_key: R0UTINGKEYDB0000000000000000000001
      url: ${PD_URL}
  - name: db-lead
    slack:
      token: ${SLACK_TOKEN}
      channel: "#db-lead"
      api_url: ${SLACK_API_URL}
routes:
  - matchers: ['namespace="ojeomneo"']
    receivers: [web-slack, web-pagerduty]
    continue: true
  - matchers: ['service="postgres"']
    receivers: [db-slack, db-pagerduty]
    escalate: [{after: 3s, receivers: [db-lead]}]
default_receivers: [web-slack]
""".replace("TEAM", TEAM_ID)


async def delivered(relay: RunningRelay) -> bool:
    return all(h["state"] == "delivered" for h in await relay.history())


async def test_acknowledge_reaches_only_the_clicking_teams_pagerduty_and_escalation(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Issue 20 #7: an alert routed to two teams (web and db, each with its Slack, PagerDuty and allowed users).
    A web engineer's Acknowledge acknowledged the db team's PagerDuty incident too and cancelled the db escalation.
    It acknowledges the web incident only; the db incident stays open and the db escalation still goes out. The db
    engineer's own Acknowledge then acknowledges the db incident."""
    async with SlackWebhookServer() as slack, PagerDutyServer() as pagerduty:
        for key, value in env(slack, pagerduty).items():
            monkeypatch.setenv(key, value)
        routes = tmp_path / "routes.yaml"
        routes.write_text(TWO_TEAMS)
        settings = relay_settings(tmp_path, routes, webhook_token=TOKEN, admin_token="admin-token-0123",
                                  slack_signing_secret=SIGNING_SECRET)
        labels = {"alertname": "DBConnectionExhausted", "severity": "critical", "namespace": "ojeomneo",
                  "service": "postgres"}
        webhook = {"version": "4", "groupKey": '{}:{alertname="DBConnectionExhausted"}', "status": "firing",
                   "receiver": "relay", "externalURL": "http://alertmanager.example", "groupLabels": {},
                   "alerts": [{"status": "firing", "labels": labels, "startsAt": now(),
                               "fingerprint": "0dbc0dbc0dbc0dbc"}]}
        async with running_relay(settings) as relay:
            async with httpx.AsyncClient(timeout=10, headers={"Authorization": f"Bearer {TOKEN}"}) as client:
                assert (await client.post(relay.url + "/webhook", json=webhook)).status_code == 200
            await slack.wait_for(2)
            triggers = await pagerduty.wait_for(2)
            keys = {e["routing_key"]: e["dedup_key"] for e in triggers}
            await poll_until(lambda: delivered(relay), timeout=10)
            [web] = [m for m in slack.top_level() if m.body.get("channel") == "#web-alerts"]
            [db] = [m for m in slack.top_level() if m.body.get("channel") == "#db-alerts"]

            answer = await slack.click(db, "relay:acknowledge", user="U0WEB").send(relay.url)
            assert answer.status_code == 403  # the web engineer may not act on db's message at all
            answer = await slack.click(web, "relay:acknowledge", user="U0WEB").send(relay.url)
            assert answer.status_code == 200, answer.text
            await slack.wait_for_updates(1)
            [_, _, acknowledge] = await pagerduty.wait_for(3)
            assert (acknowledge["event_action"], acknowledge["routing_key"]) == (
                "acknowledge", "R0UTINGKEYWEB000000000000000000001")
            # The db escalation still goes out (3 s after the alert arrived) to the db lead.
            await poll_until(lambda: any(m.body.get("channel") == "#db-lead" for m in slack.top_level()),
                             timeout=15)
            await poll_until(lambda: delivered(relay), timeout=10)
            assert [e["event_action"] for e in pagerduty.events] == ["trigger", "trigger", "acknowledge"]

            answer = await slack.click(db, "relay:acknowledge", user="U0DB").send(relay.url)
            assert answer.status_code == 200, answer.text
            [*_, acknowledged] = await pagerduty.wait_for(4)
            assert (acknowledged["event_action"], acknowledged["dedup_key"]) == (
                "acknowledge", keys["R0UTINGKEYDB0000000000000000000001"])


@pytest.mark.parametrize("configured", ["url", "external_urls"])
async def test_a_webhook_naming_another_host_gets_no_call_and_no_credential(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, configured: str) -> None:
    """Issue 20 #2: whoever holds the webhook token can name any externalURL. With `url`, the Silence click and the
    watch after it go to the configured Alertmanager (the real one here) with its bearer token; with `external_urls`
    naming only that one, a webhook naming another host gets no call at all (the click is a dead letter saying why).
    Either way the host the webhook named (a loopback server standing for it) is never called: no token, and no say
    in a resolve."""
    foreign: list[tuple[str, str, dict[str, str]]] = []

    async def record(request: web.Request) -> web.Response:
        foreign.append((request.method, request.path_qs, dict(request.headers)))
        return web.json_response([])

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", record)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    elsewhere = f"http://127.0.0.1:{runner.addresses[0][1]}"
    try:
        async with SlackWebhookServer() as slack, PagerDutyServer() as pagerduty:
            am_port = free_port()
            for key, value in env(slack, pagerduty, f"http://127.0.0.1:{am_port}").items():
                monkeypatch.setenv(key, value)
            routes = tmp_path / "routes.yaml"
            where = "url: ${AM_API_URL}" if configured == "url" else "external_urls: ['${AM_API_URL}']"
            routes.write_text(ROUTES.replace("          url: ${AM_API_URL:-}\n",
                                             f"          {where}\n          bearer_token: am-SECRET-1\n"))
            settings = relay_settings(tmp_path, routes, webhook_token=TOKEN, slack_signing_secret=SIGNING_SECRET,
                                      admin_token="admin-token-0123", silence_watch_seconds=0.2,
                                      absence_grace_seconds=60.0)
            async with running_relay(settings) as relay, alertmanager(tmp_path, "http://127.0.0.1:9",
                                                                      port=am_port) as am:
                restarted = await watch_answers(relay.url, "restarted")
                forged = {"version": "4", "groupKey": '{}:{alertname="PodDown"}', "status": "firing",
                          "receiver": "relay", "externalURL": elsewhere, "groupLabels": {"alertname": "PodDown"},
                          "alerts": [{"status": "firing", "labels": LABELS, "startsAt": now(),
                                      "fingerprint": "f00dfeedf00dfeed"}]}
                assert (await relay.post(forged, token=TOKEN)).status_code == 200
                await slack.wait_for(1, timeout=20)

                async def delivered() -> bool:  # where the message went is committed
                    return any(h["state"] == "delivered" for h in await relay.history())

                await poll_until(delivered, timeout=10)
                [message] = slack.top_level()
                answer = await slack.click(message, "relay:silence:3600").send(relay.url)
                assert answer.status_code == 200, answer.text

                async def acted() -> list[dict[str, Any]]:
                    return [h for h in await relay.history()
                            if h["integration"] == "action" and h["state"] != "pending"]

                async def acted_or_called_elsewhere() -> bool:
                    return bool(foreign) or bool(await acted())

                await poll_until(acted_or_called_elsewhere, timeout=10)
                assert foreign == []
                if configured == "url":
                    await slack.wait_for_updates(1)
                    [silence] = await am_get(am, "/api/v2/silences")  # made at the configured Alertmanager
                    assert silence["status"]["state"] == "active" and "Silenced until" in text(message)
                    await poll_until(lambda: _answered(relay.url, "restarted", restarted + 2), timeout=10)  # watched
                else:
                    [click] = await acted()
                    assert click["state"] == "dead" and "not one of actions.alertmanager.external_urls" in \
                        click["last_error"]
                    assert await am_get(am, "/api/v2/silences") == [] and "Silenced until" not in text(message)
        assert foreign == []
    finally:
        await runner.cleanup()
