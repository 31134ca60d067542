"""`relay dead-letters` and `relay notifications list` against a running relay, as an operator uses them."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

import pytest

from tests.conftest import Providers
from tests.e2e.test_routing_table import webhook
from tests.helpers import fixture, poll_until, relay_settings, running_relay, seconds
from tests.test_cli import run_relay

TOKEN = "webhook-tok-SECRET"
ADMIN = "admin-tok-SECRET"


async def test_operator_inspects_replays_and_purges_dead_letters(tmp_path: Path,
                                                                providers: Providers,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PAGERDUTY_ROUTING_KEY")  # PagerDuty is unconfigured: its notifications dead-letter
    settings = relay_settings(tmp_path, providers.routes, webhook_token=TOKEN, admin_token=ADMIN)
    env = {"RELAY_WEBHOOK_TOKEN": TOKEN, "RELAY_ADMIN_TOKEN": ADMIN}
    async with running_relay(settings) as relay:
        first = (await relay.post(fixture("firing-poddown.json"), token=TOKEN)).json()
        second = (await relay.post(webhook("PodDown", "critical"), token=TOKEN)).json()
        ids = [body["receivers"]["pagerduty-oncall"]["notification_id"] for body in (first, second)]

        async def both_dead() -> bool:
            rows = await relay.history(state="dead")
            return sorted(r["id"] for r in rows) == sorted(ids)

        await poll_until(both_dead)
        code, out = await run_relay("dead-letters", "list", "--url", relay.url, env=env)
        assert code == 0, out
        assert sorted(int(line.split()[0]) for line in out.splitlines()[1:]) == sorted(ids)
        assert out.count("unconfigured") == 2 and "PodDown" in out

        code, out = await run_relay("dead-letters", "show", str(ids[0]), "--url", relay.url, env=env)
        assert code == 0, out
        assert "pod=server-abc-123" in out
        assert "dead" in out and "unconfigured" in out

        monkeypatch.setenv("PAGERDUTY_ROUTING_KEY", "R0UTINGKEYSECRET0000000000000000")
        assert (await relay.admin("POST", "/-/reload")).status_code == 200
        code, out = await run_relay("dead-letters", "retry", str(ids[0]), "--url", relay.url, env=env)
        assert (code, out.strip()) == (0, f"{ids[0]}: replayed")
        code, out = await run_relay("dead-letters", "purge", str(ids[1]), "--url", relay.url, env=env)
        assert (code, out.strip()) == (0, f"{ids[1]}: purged")
        [event] = await providers.pagerduty.wait_for(1)
        assert event["payload"]["summary"]
        code, out = await run_relay("dead-letters", "purge", str(ids[1]), "--url", relay.url, env=env)
        assert code == 1 and f"no dead letter {ids[1]}" in out
        code, out = await run_relay("dead-letters", "list", "--url", relay.url, env=env)
        assert out.strip() == "no notifications"
        code, out = await run_relay("notifications", "list", "--receiver", "pagerduty-oncall", "--url", relay.url,
                                    env=env)
        rows = [line.split() for line in out.splitlines()[1:]]
        assert [(row[0], row[4]) for row in rows] == [(str(ids[0]), "delivered")]  # the purged one is gone
    assert TOKEN not in out and ADMIN not in out


async def test_wrong_token_is_a_clear_error(tmp_path: Path, providers: Providers) -> None:
    settings = relay_settings(tmp_path, providers.routes, webhook_token=TOKEN, admin_token=ADMIN)
    async with running_relay(settings) as relay:
        code, out = await run_relay("dead-letters", "list", "--url", relay.url, env={"RELAY_ADMIN_TOKEN": "nope"})
        assert code == 1 and out.startswith("relay: ") and "nope" not in out
        assert out.strip() == ("relay: invalid bearer token: set RELAY_ADMIN_TOKEN to the running relay's "
                               "RELAY_ADMIN_TOKEN (it is sent when set)"), out
        code, out = await run_relay("test-alert", "--url", relay.url, env={"RELAY_WEBHOOK_TOKEN": "nope"})
        assert code == 1 and "nope" not in out
        assert out.splitlines()[-1] == ("relay: relay refused the webhook (401 invalid bearer token): set "
                                        "RELAY_WEBHOOK_TOKEN to the running relay's RELAY_WEBHOOK_TOKEN (it is sent "
                                        "when set)"), out
        # The webhook token Alertmanager holds does not open the admin API.
        code, out = await run_relay("dead-letters", "list", "--url", relay.url, env={"RELAY_WEBHOOK_TOKEN": TOKEN})
        assert code == 1 and out.startswith("relay: ") and TOKEN not in out


async def test_a_stuck_notification_is_named_by_test_alert_and_can_be_cancelled(
        tmp_path: Path, providers: Providers) -> None:
    """A test alert queued behind a stuck one in its lane says so, and cancelling the stuck one lets it go."""
    env = {**providers.env, "RELAY_ADMIN_TOKEN": ADMIN, "XDG_STATE_HOME": str(tmp_path / "state")}
    settings = relay_settings(tmp_path, providers.routes, admin_token=ADMIN, retry_initial_seconds=300,
                              retry_max_seconds=600)
    providers.slack.fail_all(500)
    async with running_relay(settings) as relay:
        code, out = await run_relay("test-alert", "--alertname", "Stuck", "--label", "try=1", "--timeout", "3",
                                    "--url", relay.url, env=env)
        assert code == 1 and "retrying (attempts 1" in out, out
        [stuck] = await relay.history()
        providers.slack.recover()  # Slack answers again, but the stuck one waits out its 300 s backoff

        code, out = await run_relay("test-alert", "--alertname", "Stuck", "--label", "try=2", "--timeout", "1",
                                    "--url", relay.url, env=env)
        assert code == 1
        assert (f"not yet sent; it waits behind notification {stuck['id']} of its lane (pending, 1 attempt, "
                f"last error: server_error: HTTP 500") in out, out
        assert f"`relay notifications cancel {stuck['id']}` would let it go" in out

        code, out = await run_relay("notifications", "cancel", str(stuck["id"]), "--url", relay.url, env=env)
        assert (code, out.strip()) == (0, f"{stuck['id']}: cancelled")
        [message] = await providers.slack.wait_for(1)
        assert "try=2" in json.dumps(message) and "try=1" not in json.dumps(message)
        code, out = await run_relay("notifications", "list", "--state", "cancelled", "--url", relay.url, env=env)
        assert [line.split()[0] for line in out.splitlines()[1:]] == [str(stuck["id"])], out
        detail = (await relay.admin("GET", f"/api/v1/notifications/{stuck['id']}")).json()
        assert [a["outcome"] for a in detail["attempt_log"]] == ["retry", "cancelled"]
        code, out = await run_relay("notifications", "cancel", str(stuck["id"]), "--url", relay.url, env=env)
        assert code == 1 and "no pending notification" in out
    assert len(providers.slack.messages) == 1  # the cancelled one was never sent


async def test_retry_all_replays_a_lane_oldest_first_and_reports_what_resolved_since(
        tmp_path: Path, providers: Providers, monkeypatch: pytest.MonkeyPatch) -> None:
    """Slack unconfigured: an alert's firing and its resolve both dead-letter. Once Slack is set, `retry --all` puts
    the firing back first, so Slack reads FIRING then RESOLVED. A firing whose resolve went out meanwhile is
    reported as not replayed, and that is not a failed command."""
    slack_url = providers.env["SLACK_WEBHOOK_URL"]
    monkeypatch.delenv("SLACK_WEBHOOK_URL")
    settings = relay_settings(tmp_path, providers.routes, admin_token=ADMIN)
    env = {"RELAY_ADMIN_TOKEN": ADMIN}
    async with running_relay(settings) as relay:
        for status in ("firing", "resolved"):
            assert (await relay.post(webhook("DiskFull", "warning", status))).status_code == 200
        early = (await relay.post(webhook("CpuHot", "warning"))).json()["receivers"]["slack-alerts"]

        async def dead(count: int) -> bool:
            return len(await relay.history(state="dead")) == count

        await poll_until(lambda: dead(3))
        monkeypatch.setenv("SLACK_WEBHOOK_URL", slack_url)
        assert (await relay.admin("POST", "/-/reload")).status_code == 200
        assert (await relay.post(webhook("CpuHot", "warning", "resolved"))).status_code == 200
        await providers.slack.wait_for(1)  # CpuHot's resolve, sent while its firing is a dead letter

        code, out = await run_relay("dead-letters", "retry", "--all", "--url", relay.url, env=env)
        assert code == 0, out
        lines = out.splitlines()
        assert [int(line.split(":")[0]) for line in lines] == sorted(int(line.split(":")[0]) for line in lines)
        assert f"{early['notification_id']}: dead letter {early['notification_id']} was not replayed: its alerts " \
               "have resolved since" in out
        assert out.count(": replayed") == 2
        messages = await providers.slack.wait_for(3)
        disk = [m["text"].split("\n")[0] for m in messages if "DiskFull" in m["text"]]
        assert [line.split("]")[0] for line in disk] == [":red_circle: [FIRING:1", ":white_check_mark: [RESOLVED"]
        code, out = await run_relay("dead-letters", "retry", "--all", "--url", relay.url, env=env)
        assert code == 0 and "was not replayed: its alerts have resolved since" in out, out  # it stays, reported
        code, out = await run_relay("dead-letters", "purge", "--all", "--url", relay.url, env=env)
        assert (code, out.strip()) == (0, f"{early['notification_id']}: purged")
        code, out = await run_relay("dead-letters", "retry", "--all", "--url", relay.url, env=env)
        assert (code, out.strip()) == (0, "nothing to do: no dead letters")
        code, out = await run_relay("dead-letters", "retry", "--url", relay.url, env=env)
        assert code == 2 and "name dead-letter ids, or --all" in out


async def test_dead_letters_show_says_a_pending_notification_is_not_dead(
        tmp_path: Path, providers: Providers) -> None:
    settings = relay_settings(tmp_path, providers.routes, admin_token=ADMIN, retry_initial_seconds=300,
                              retry_max_seconds=600)
    providers.slack.fail_all(500)
    async with running_relay(settings) as relay:
        body = (await relay.post(webhook("DiskFull", "warning"))).json()
        notification_id = body["receivers"]["slack-alerts"]["notification_id"]

        async def tried() -> bool:
            return [r["attempts"] for r in await relay.history()] == [1]

        await poll_until(tried)
        code, out = await run_relay("dead-letters", "show", str(notification_id), "--url", relay.url,
                                    env={"RELAY_ADMIN_TOKEN": ADMIN})
    assert code == 0, out
    first, second = out.splitlines()[:2]
    assert first.startswith(f"notification {notification_id} is not a dead letter: it is pending, relay is still "
                            "trying to deliver it (1 attempt so far; next attempt ")
    assert second == f"notification {notification_id} to slack-alerts (slack): pending"
    assert ", 1 attempt, last error: server_error: HTTP 500" in out


async def test_the_api_gives_times_in_rfc3339_and_the_payload_as_an_object(tmp_path: Path,
                                                                           providers: Providers) -> None:
    """What a script reading the admin API sees: times it can parse as dates, the webhook body as JSON."""
    rfc3339 = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
    async with running_relay(relay_settings(tmp_path, providers.routes)) as relay:
        body = (await relay.post(webhook("DiskFull", "warning"))).json()
        notification_id = body["receivers"]["slack-alerts"]["notification_id"]

        async def delivered() -> bool:
            return [r["state"] for r in await relay.history()] == ["delivered"]

        await poll_until(delivered)
        [row] = await relay.history()
        detail = (await relay.admin("GET", f"/api/v1/notifications/{notification_id}")).json()
        code, out = await run_relay("notifications", "show", str(notification_id), "--url", relay.url)
    for when in (row["received_at"], row["finished_at"], detail["received_at"], detail["attempt_log"][0]["started_at"]):
        assert rfc3339.match(when), when
    assert abs(seconds(row["received_at"]) - time.time()) < 60
    assert isinstance(detail["attempt_log"][0]["duration"], float)  # a duration stays seconds
    assert detail["payload"]["alerts"][0]["labels"]["alertname"] == "DiskFull"
    assert detail["payload"]["groupKey"] == webhook("DiskFull", "warning")["groupKey"]
    assert code == 0 and f"received {row['received_at'][:10]} {row['received_at'][11:19]}Z, 1 attempt" in out, out
