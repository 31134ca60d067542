"""Quiet hours on a live relay: a muted route holds a warning while a critical goes out, and the warning is sent when
the window ends, on both stores. relay's clock is moved forward (Runtime.clock), never waited for."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from relay.services import Services
from tests.fakes.slack import SlackWebhookServer
from tests.helpers import RunningRelay, postgres_database, relay_settings, running_relay
from tests.test_cli import run_relay

# Friday 19:30 in Seoul: inside the window; Saturday 00:00 there: the window has ended.
IN_WINDOW = datetime.fromisoformat("2026-03-06T10:30:00Z").timestamp()
WINDOW_END = datetime.fromisoformat("2026-03-06T15:00:00Z").timestamp()


def routes(tmp_path: Path, slack: SlackWebhookServer, email: SlackWebhookServer) -> Path:
    path = tmp_path / "routes.yaml"
    path.write_text(f"""receivers:
  - {{name: slack-alerts, slack: {{webhook_url: "{slack.url()}"}}}}
  - {{name: night-desk, slack: {{webhook_url: "{email.url()}"}}}}
routes:
  - matchers: ['severity="warning"']
    receivers: [slack-alerts]
    mute_time_intervals: [seoul-nights]
  - matchers: ['severity="critical"']
    receivers: [slack-alerts]
default_receivers: [night-desk]
time_intervals:
  - name: seoul-nights
    time_intervals:
      - times: [{{start_time: "18:00", end_time: "24:00"}}]
        weekdays: ["monday:friday"]
        location: Asia/Seoul
""")
    return path


def alert(name: str, severity: str, status: str = "firing") -> dict[str, Any]:
    return {"status": status, "labels": {"alertname": name, "severity": severity},
            "annotations": {"summary": f"{name} summary"}, "startsAt": "2026-03-06T10:00:00Z",
            "endsAt": "0001-01-01T00:00:00Z" if status == "firing" else "2026-03-06T10:40:00Z",
            "generatorURL": "", "fingerprint": f"{abs(hash(name)) % 16**16:016x}"}


def group(*alerts: dict[str, Any]) -> dict[str, Any]:
    status = "firing" if any(a["status"] == "firing" for a in alerts) else "resolved"
    return {"version": "4", "groupKey": '{}:{alertname=~".*"}', "status": status, "receiver": "relay",
            "groupLabels": {}, "commonLabels": {}, "commonAnnotations": {}, "externalURL": "http://am.example",
            "truncatedAlerts": 0, "alerts": list(alerts)}


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def services_of(relay: RunningRelay) -> Services:
    found = relay.app.state.services
    assert isinstance(found, Services)
    return found


async def history(relay: RunningRelay) -> list[dict[str, Any]]:
    answer = await relay.client.get("/api/v1/notifications", headers={"Authorization": f"Bearer {relay.admin_token}"})
    assert answer.status_code == 200, answer.text
    items = answer.json()
    return list(items["notifications"] if isinstance(items, dict) else items)


def texts(slack: SlackWebhookServer) -> str:
    return "\n".join(str(m) for m in slack.messages)


@pytest.mark.usefixtures("database_url")
async def test_a_window_holds_the_warning_sends_the_critical_then_sends_the_warning(
        tmp_path: Path, database_url: str) -> None:
    async with SlackWebhookServer() as slack, SlackWebhookServer() as desk:
        settings = relay_settings(tmp_path, routes(tmp_path, slack, desk), database_url=database_url,
                                  admin_token="adm-token")
        async with running_relay(settings) as relay:
            clock = Clock(IN_WINDOW)
            services_of(relay).runtime.clock = clock
            answer = await relay.post(group(alert("HighLatency", "warning"), alert("PodDown", "critical")))
            assert answer.status_code == 200, answer.text
            summary = answer.json()
            assert summary["receivers"]["slack-alerts"]["enqueued"] == 1  # the critical only
            [muted] = summary["muted"]
            assert muted["alertname"] == "HighLatency" and muted["receivers"] == ["slack-alerts"]
            assert muted["reason"] == "route 1 muted by time interval 'seoul-nights' until 2026-03-06T15:00:00Z"
            await slack.wait_for(1)
            assert "PodDown" in texts(slack) and "HighLatency" not in texts(slack)
            assert desk.messages == []  # the muted route still ended the walk: nothing fell through to default
            explained = await relay.client.post("/api/v1/explain", json={"query": alert("HighLatency", "warning")[
                "fingerprint"]}, headers={"Authorization": f"Bearer {relay.admin_token}"})
            assert "muted: held for slack-alerts while route 1's time intervals mute it" in explained.text

            # Alertmanager re-sends the group inside the window: still held once, nothing more is sent.
            assert (await relay.post(group(alert("HighLatency", "warning"), alert("PodDown", "critical")))
                    ).status_code == 200
            escalator = services_of(relay).escalator
            await escalator.check(clock.now + 60)
            assert len(await history(relay)) == 1 and len(slack.messages) == 1

            clock.now = WINDOW_END
            await escalator.check(clock.now)
            await slack.wait_for(2)
            assert "HighLatency" in str(slack.messages[1]) and "PodDown" not in str(slack.messages[1])
            await escalator.check(clock.now + 60)  # sent once
            sent = [n for n in await history(relay) if n["receiver"] == "slack-alerts"]
            assert len(sent) == 2
            code, out = await run_relay("notifications", "show", str(max(n["id"] for n in sent)), "--url", relay.url,
                                        env={"RELAY_ADMIN_TOKEN": "adm-token"})
            assert code == 0, out
            assert "held while route 1 is muted (for slack-alerts): sent" in out, out
            assert desk.messages == []
            assert len(slack.messages) == 2


@pytest.mark.usefixtures("database_url")
async def test_a_resolve_inside_the_window_ends_the_hold(tmp_path: Path, database_url: str) -> None:
    """Nobody was told the warning fired, so when it resolves inside the window nothing is sent at its end."""
    async with SlackWebhookServer() as slack, SlackWebhookServer() as desk:
        settings = relay_settings(tmp_path, routes(tmp_path, slack, desk), database_url=database_url,
                                  admin_token="adm-token")
        async with running_relay(settings) as relay:
            clock = Clock(IN_WINDOW)
            services_of(relay).runtime.clock = clock
            assert (await relay.post(group(alert("HighLatency", "warning")))).status_code == 200
            clock.now += 600
            assert (await relay.post(group(alert("HighLatency", "warning", "resolved")))).status_code == 200
            steps = await services_of(relay).store.escalations_of([alert("HighLatency", "warning")["fingerprint"]])
            assert [(s.state, s.reason) for s in steps] == [("cancelled", "resolved")]
            clock.now = WINDOW_END
            await services_of(relay).escalator.check(clock.now)
            # Nothing is sent, then or later: the resolve was answered, and the dispatcher has nothing due.
            answer = await relay.client.get("/api/v1/notifications",
                                            headers={"Authorization": f"Bearer {relay.admin_token}"})
            assert answer.status_code == 200
            assert await history(relay) == []
            assert slack.messages == [] and desk.messages == []


@pytest.mark.usefixtures("database_url")
async def test_a_receiver_told_before_the_window_hears_the_resolve_inside_it(tmp_path: Path, database_url: str) -> None:
    """Alertmanager re-sends the firing inside the window (held), then its resolve: the receiver heard of the firing
    before the window, so it is told it is over (its message must not stay firing), and nothing is sent later."""
    async with SlackWebhookServer() as slack, SlackWebhookServer() as desk:
        settings = relay_settings(tmp_path, routes(tmp_path, slack, desk), database_url=database_url,
                                  admin_token="adm-token")
        async with running_relay(settings) as relay:
            clock = Clock(IN_WINDOW - 3 * 3600)  # Friday 16:30 in Seoul
            services_of(relay).runtime.clock = clock
            assert (await relay.post(group(alert("HighLatency", "warning")))).status_code == 200
            await slack.wait_for(1)
            clock.now = IN_WINDOW
            answer = await relay.post(group(alert("HighLatency", "warning")))
            assert [m["receivers"] for m in answer.json()["muted"]] == [["slack-alerts"]]
            clock.now += 600
            assert (await relay.post(group(alert("HighLatency", "warning", "resolved")))).status_code == 200
            await slack.wait_for(2)
            clock.now = WINDOW_END
            await services_of(relay).escalator.check(clock.now)
            assert [n["status"] for n in await history(relay)] == ["resolved", "firing"]
            assert len(slack.messages) == 2 and desk.messages == []


def plain_routes(tmp_path: Path, slack: SlackWebhookServer) -> Path:
    path = tmp_path / "routes.yaml"
    path.write_text(f"""receivers:
  - {{name: slack-alerts, slack: {{webhook_url: "{slack.url()}"}}}}
default_receivers: [slack-alerts]
""")
    return path


def labelled(name: str, service: str) -> dict[str, Any]:
    found = alert(name, "warning")
    found["labels"]["service"] = service
    return found


async def admin(relay: RunningRelay, method: str, path: str, **kwargs: Any) -> Any:
    answer = await relay.client.request(method, path, headers={"Authorization": f"Bearer {relay.admin_token}"},
                                        **kwargs)
    return answer.status_code, answer.json()


@pytest.mark.usefixtures("database_url")
async def test_a_maintenance_window_holds_what_it_matches_until_it_is_ended(tmp_path: Path, database_url: str) -> None:
    async with SlackWebhookServer() as slack:
        settings = relay_settings(tmp_path, plain_routes(tmp_path, slack), database_url=database_url,
                                  admin_token="adm-token")
        async with running_relay(settings) as relay:
            clock = Clock(IN_WINDOW)
            services_of(relay).runtime.clock = clock
            status, made = await admin(relay, "POST", "/api/v1/maintenance", json={
                "matchers": ['service="api"'], "ends_at": "2026-03-06T12:30:00Z", "comment": "upgrade <!channel>",
                "created_by": "kim"})
            assert status == 201, made
            assert (made["state"], made["starts_at"], made["ends_at"]) == (
                "active", "2026-03-06T10:30:00.000Z", "2026-03-06T12:30:00.000Z")

            answer = await relay.post(group(labelled("ApiDown", "api"), labelled("WebSlow", "web")))
            [muted] = answer.json()["muted"]
            assert muted["alertname"] == "ApiDown"
            assert muted["reason"] == (f"in maintenance window {made['id']} ('upgrade <!channel>') until "
                                       "2026-03-06T12:30:00Z")
            await slack.wait_for(1)
            assert "WebSlow" in texts(slack) and "ApiDown" not in texts(slack)
            status, listed = await admin(relay, "GET", "/api/v1/maintenance")
            assert [w["id"] for w in listed["windows"]] == [made["id"]]

            clock.now += 600
            status, ended = await admin(relay, "POST", f"/api/v1/maintenance/{made['id']}/end")
            assert (status, ended["state"]) == (200, "ended")
            await slack.wait_for(2)  # the checker was nudged: no waiting for the window's planned end
            assert "ApiDown" in str(slack.messages[1])
            assert (await admin(relay, "GET", "/api/v1/maintenance"))[1]["windows"] == []
            assert (await admin(relay, "POST", f"/api/v1/maintenance/{made['id']}/end"))[0] == 404


@pytest.mark.parametrize(("body", "error"), [
    ({"matchers": [], "ends_at": "2026-03-06T12:30:00Z", "comment": "x"}, "matchers must be a list of 1 to 50"),
    ({"matchers": ['service=~"("'], "ends_at": "2026-03-06T12:30:00Z", "comment": "x"}, "service"),
    ({"matchers": ['service="api"'], "ends_at": "2026-03-06T12:30:00", "comment": "x"}, "has no offset"),
    ({"matchers": ['service="api"'], "ends_at": "2026-03-06T10:00:00Z", "comment": "x"}, "ends_at must be later"),
    ({"matchers": ['service="api"'], "ends_at": "2026-03-06T12:30:00Z"}, "comment is required"),
])
async def test_a_bad_window_is_refused_with_a_reason_and_stores_nothing(tmp_path: Path, body: dict[str, Any],
                                                                        error: str) -> None:
    async with SlackWebhookServer() as slack:
        settings = relay_settings(tmp_path, plain_routes(tmp_path, slack), admin_token="adm-token")
        async with running_relay(settings) as relay:
            services_of(relay).runtime.clock = Clock(IN_WINDOW)
            status, answer = await admin(relay, "POST", "/api/v1/maintenance", json=body)
            assert status == 400 and error in answer["error"], answer
            assert (await admin(relay, "GET", "/api/v1/maintenance?all=1"))[1]["windows"] == []


async def test_two_replicas_on_postgresql_agree_on_a_window(tmp_path: Path) -> None:
    """A window made through one replica mutes the webhook another one receives; ended through the first, what the
    second held is sent once."""
    async with SlackWebhookServer() as slack, postgres_database() as url:
        path = plain_routes(tmp_path, slack)
        first = relay_settings(tmp_path, path, database_url=url, admin_token="adm-token")
        second = relay_settings(tmp_path, path, database_url=url, admin_token="adm-token")
        async with running_relay(first) as a, running_relay(second) as b:
            clock = Clock(IN_WINDOW)
            services_of(a).runtime.clock = services_of(b).runtime.clock = clock
            status, made = await admin(a, "POST", "/api/v1/maintenance", json={
                "matchers": ['service="api"'], "ends_at": "2026-03-06T12:30:00Z", "comment": "deploy"})
            assert status == 201
            answer = await b.post(group(labelled("ApiDown", "api")))
            assert [m["alertname"] for m in answer.json()["muted"]] == ["ApiDown"]
            clock.now += 60
            assert (await admin(a, "POST", f"/api/v1/maintenance/{made['id']}/end"))[0] == 200
            await slack.wait_for(1)
            await services_of(b).escalator.check(clock.now + 1)
            await services_of(a).escalator.check(clock.now + 1)
            assert len(await history(a)) == 1  # both replicas' history: one store
            assert len(slack.messages) == 1 and "ApiDown" in texts(slack)


async def test_relay_maintenance_add_list_end(tmp_path: Path) -> None:
    async with SlackWebhookServer() as slack:
        settings = relay_settings(tmp_path, plain_routes(tmp_path, slack), admin_token="adm-token")
        async with running_relay(settings) as relay:
            env = {"RELAY_ADMIN_TOKEN": "adm-token"}
            code, out = await run_relay("maintenance", "add", "--matchers", 'service="api"', "--until", "2h",
                                        "--comment", "database upgrade", "--created-by", "kim", "--url", relay.url,
                                        env=env)
            assert code == 0, out
            assert "maintenance window 1 added" in out and 'service="api"  (database upgrade by kim)' in out
            code, out = await run_relay("maintenance", "list", "--url", relay.url, env=env)
            assert code == 0 and "   1  active" in out, out
            code, out = await run_relay("maintenance", "end", "1", "--url", relay.url, env=env)
            assert (code, out.strip()) == (0, "maintenance window 1 ended: what it held is sent if it still fires")
            code, out = await run_relay("maintenance", "list", "--url", relay.url, env=env)
            assert out.strip() == "no maintenance windows"
            code, out = await run_relay("maintenance", "add", "--matchers", 'service="api"', "--until",
                                        "2026-03-06T22:00:00", "--comment", "x", "--url", relay.url, env=env)
            assert code != 0 and "has no offset" in out


@pytest.mark.parametrize(("step", "paged_in_window"), [
    ("{after: 10m, receivers: [night-desk]}", False),  # muted with its route
    ("{after: 10m, receivers: [night-desk], active_time_intervals: [always]}", True),  # the step says so
])
async def test_a_muted_routes_escalation_waits_for_the_window_unless_the_step_says_so(
        tmp_path: Path, step: str, paged_in_window: bool) -> None:
    async with SlackWebhookServer() as slack, SlackWebhookServer() as desk:
        path = routes(tmp_path, slack, desk)
        path.write_text(path.read_text().replace(
            "    mute_time_intervals: [seoul-nights]\n",
            f"    mute_time_intervals: [seoul-nights]\n    escalate:\n      - {step}\n", 1)
            + "  - name: always\n    time_intervals: [{}]\n")
        settings = relay_settings(tmp_path, path, admin_token="adm-token")
        async with running_relay(settings) as relay:
            clock = Clock(IN_WINDOW)
            services_of(relay).runtime.clock = clock
            assert (await relay.post(group(alert("HighLatency", "warning")))).status_code == 200
            escalator = services_of(relay).escalator
            clock.now = IN_WINDOW + 11 * 60
            await escalator.check(clock.now)
            steps = await services_of(relay).store.escalations_of([alert("HighLatency", "warning")["fingerprint"]])
            assert {s.step: s.state for s in steps} == {-1: "pending", 1: "sent" if paged_in_window else "pending"}
            if paged_in_window:
                await desk.wait_for(1)
            assert len(desk.messages) == int(paged_in_window) and slack.messages == []
            clock.now = WINDOW_END
            await escalator.check(clock.now)
            await desk.wait_for(1)
            await slack.wait_for(1)  # the held warning
            await escalator.check(clock.now + 60)
            assert len(desk.messages) == 1 and len(slack.messages) == 1


async def test_a_recurring_window_mutes_only_while_its_interval_holds(tmp_path: Path) -> None:
    async with SlackWebhookServer() as slack, SlackWebhookServer() as desk:
        path = routes(tmp_path, slack, desk)
        settings = relay_settings(tmp_path, path, admin_token="adm-token")
        async with running_relay(settings) as relay:
            clock = Clock(IN_WINDOW - 6 * 3600)  # Friday 13:30 in Seoul
            services_of(relay).runtime.clock = clock
            status, made = await admin(relay, "POST", "/api/v1/maintenance", json={
                "matchers": ['service="api"'], "ends_at": "2026-03-20T00:00:00Z", "comment": "nightly batch",
                "time_interval": "seoul-nights"})
            assert (status, made["time_interval"]) == (201, "seoul-nights"), made
            answer = await relay.post(group({**labelled("ApiDown", "api"), "labels": {
                "alertname": "ApiDown", "severity": "critical", "service": "api"}}))
            assert "muted" not in answer.json()  # the afternoon: the window is not muting
            await slack.wait_for(1)
            clock.now = IN_WINDOW
            answer = await relay.post(group({**labelled("DbDown", "api"), "labels": {
                "alertname": "DbDown", "severity": "critical", "service": "api"}}))
            [muted] = answer.json()["muted"]
            assert muted["reason"] == (f"in maintenance window {made['id']} ('nightly batch') until "
                                       "2026-03-06T15:00:00Z")  # midnight in Seoul, not the window's end
            clock.now = WINDOW_END
            await services_of(relay).escalator.check(clock.now)
            await slack.wait_for(2)
            assert "DbDown" in str(slack.messages[1])
            status, refused = await admin(relay, "POST", "/api/v1/maintenance", json={
                "matchers": ['service="api"'], "ends_at": "2026-03-20T00:00:00Z", "comment": "x",
                "time_interval": "sundays"})
            assert status == 400 and "time_interval 'sundays' is not defined in routes.yaml" in refused["error"]
