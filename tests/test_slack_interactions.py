"""POST /slack/interactions refuses what Slack did not sign, or signed for someone else, and changes nothing then;
a click it accepts acts once. The suite's Slack sends the requests as Slack does (relay.actions.endpoint)."""

from __future__ import annotations

import json
import logging
import re
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from relay.actions.endpoint import verify
from relay.config.routes import load_routes
from relay.errors import Rejected
from relay.templating import Templates
from tests.fakes.slack import DEFAULT_TOKEN, SIGNING_SECRET, Posted, SlackWebhookServer, signature
from tests.helpers import REPO, RunningRelay, fixture, poll_until, relay_settings, running_relay
from tests.slack_bot import slack_bot
from tests.test_cli import run_relay

NO_ALERTMANAGER = '"http://127.0.0.1:9"'
SLACK_HOOK = """  - name: slack-hook
    slack:
      webhook_url: ${SLACK_WEBHOOK_URL}
"""


def routes_yaml(restrict: str) -> str:
    """The bot with actions (`restrict`: who may click) and an incoming webhook, both getting every alert."""
    return ("receivers:\n" + slack_bot(NO_ALERTMANAGER, more=restrict) + SLACK_HOOK
            + "default_receivers: [slack-bot, slack-hook]\n")


@dataclass
class Setup:
    relay: RunningRelay
    slack: SlackWebhookServer
    message: Posted

    async def actions(self) -> list[dict[str, Any]]:
        return [h for h in await self.relay.history() if h["integration"] == "action"]


@pytest.fixture
def restrict() -> str:
    return ""


@pytest.fixture
async def setup(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, restrict: str) -> AsyncIterator[Setup]:
    async with SlackWebhookServer() as slack:
        slack.usergroups["S0ONCALL"] = ["U0ONCALL"]
        for key, value in {"SLACK_TOKEN": DEFAULT_TOKEN, "SLACK_API_URL": slack.api_url,
                           "SLACK_WEBHOOK_URL": slack.url()}.items():
            monkeypatch.setenv(key, value)
        routes = tmp_path / "routes.yaml"
        routes.write_text(routes_yaml(restrict))
        settings = relay_settings(tmp_path, routes, slack_signing_secret=SIGNING_SECRET)
        async with running_relay(settings) as relay:
            assert (await relay.post(fixture("firing-poddown.json"))).status_code == 200
            await slack.wait_for(2)
            await poll_until(lambda: _delivered(relay, 2))  # where the message went is committed
            [message] = slack.top_level()
            yield Setup(relay, slack, message)


async def _delivered(relay: RunningRelay, count: int) -> bool:
    return len(await relay.history(state="delivered")) >= count


async def test_incoming_webhook_messages_keep_plain_links_and_bot_messages_get_buttons(setup: Setup) -> None:
    [hook] = [m for m in setup.slack.messages if "thread_ts" not in m and m is not setup.message.body
              and "channel" not in m]
    assert "actions" not in json.dumps([b["type"] for b in hook.get("blocks", [])])
    assert "|Silence>" in json.dumps(hook)  # the link into Alertmanager's UI stays
    kinds = [b["type"] for b in setup.message.body["blocks"]]
    assert "actions" in kinds and "|Silence>" not in json.dumps(setup.message.body)  # the buttons replace it


async def test_an_acknowledge_updates_the_message_and_a_double_click_acts_once(setup: Setup) -> None:
    first = setup.slack.click(setup.message, "relay:acknowledge")
    again = setup.slack.click(setup.message, "relay:acknowledge", timestamp=int(time.time()) - 1)
    assert (await first.send(setup.relay.url)).status_code == 200
    answer = await again.send(setup.relay.url)
    assert answer.status_code == 200 and answer.json()["status"] == "duplicate"
    await setup.slack.wait_for_updates(1)
    await poll_until(lambda: len(setup.slack.replies(setup.message.ts)) == 1)
    assert "Acknowledged by <@U0KIM>" in json.dumps(setup.message.body)
    [reply] = setup.slack.replies(setup.message.ts)
    assert "<@U0KIM> acknowledged this" in reply.body["text"]
    [action] = await setup.actions()
    detail = (await setup.relay.admin("GET", f"/api/v1/notifications/{action['id']}")).json()
    assert detail["action"]["user"] == "U0KIM" and detail["action"]["kind"] == "acknowledge"
    await poll_until(lambda: _delivered(setup.relay, 3))
    code, out = await run_relay("notifications", "show", str(action["id"]), "--url", setup.relay.url, env={})
    assert code == 0, out
    assert f"notification {action['id']} to slack-bot (action): delivered" in out
    assert "action: acknowledge by u0kim (U0KIM) at " in out and "delivered" in out.split("attempts:")[1]


async def test_a_replayed_request_is_refused(setup: Setup) -> None:
    click = setup.slack.click(setup.message, "relay:acknowledge")
    assert (await click.send(setup.relay.url)).status_code == 200
    answer = await click.send(setup.relay.url)
    assert answer.status_code == 409 and "replay" in answer.json()["error"]
    assert len(await setup.actions()) == 1


@pytest.mark.parametrize(("change", "status", "says"), [
    ({"secret": "not-the-signing-secret"}, 401, "does not match"),
    ({"timestamp": int(time.time()) - 301}, 401, "more than 5 minutes"),
    ({"team": "T0ELSEWHERE"}, 403, "workspace T0ELSEWHERE"),
])
async def test_what_slack_did_not_sign_for_this_app_changes_nothing(setup: Setup, change: dict[str, Any],
                                                                    status: int, says: str,
                                                                    caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    answer = await setup.slack.click(setup.message, "relay:acknowledge", **change).send(setup.relay.url)
    assert answer.status_code == status and says in answer.json()["error"]
    assert await setup.actions() == [] and setup.slack.updates == []
    assert SIGNING_SECRET not in caplog.text


async def test_unsigned_and_foreign_requests_are_refused(setup: Setup) -> None:
    async with httpx.AsyncClient(base_url=setup.relay.url) as client:
        unsigned = await client.post("/slack/interactions", content=b"payload=%7B%7D",
                                     headers={"Content-Type": "application/x-www-form-urlencoded"})
        assert unsigned.status_code == 401
        body = b"payload=" + b"%7B%22type%22%3A%22view_submission%22%7D"
        now = int(time.time())
        other = await client.post("/slack/interactions", content=body, headers={
            "Content-Type": "application/x-www-form-urlencoded", "X-Slack-Request-Timestamp": str(now),
            "X-Slack-Signature": signature(SIGNING_SECRET, now, body)})
        assert other.status_code == 400 and "block_actions" in other.json()["error"]
    assert await setup.actions() == []


@pytest.mark.parametrize("restrict", ["        allowed_users: [U0ALLOWED]"])
async def test_only_allowed_users_act(setup: Setup) -> None:
    refused = await setup.slack.click(setup.message, "relay:acknowledge").send(setup.relay.url)
    assert refused.status_code == 403 and "U0KIM" in refused.json()["error"]
    assert await setup.actions() == []
    allowed = await setup.slack.click(setup.message, "relay:acknowledge", user="U0ALLOWED").send(setup.relay.url)
    assert allowed.status_code == 200


@pytest.mark.parametrize("restrict", ["        allowed_usergroup: S0ONCALL"])
async def test_members_of_the_allowed_user_group_act(setup: Setup) -> None:
    refused = await setup.slack.click(setup.message, "relay:acknowledge").send(setup.relay.url)
    assert refused.status_code == 403
    allowed = await setup.slack.click(setup.message, "relay:acknowledge", user="U0ONCALL").send(setup.relay.url)
    assert allowed.status_code == 200
    assert [r.body for r in setup.slack.requests if r.path.endswith("usergroups.users.list")] == [
        {"usergroup": "S0ONCALL"}]  # asked once, then remembered


async def test_a_slack_connect_user_of_another_organisation_may_not_act(setup: Setup) -> None:
    """Suspected in issue 20: in a Slack Connect channel, a user of another organisation clicks in our workspace
    (`team.id` ours, `user.team_id` theirs); only the workspace was checked, so with no allowed_users they acted."""
    guest = await setup.slack.click(setup.message, "relay:acknowledge", user="U0GUEST",
                                    user_team="T0PARTNER").send(setup.relay.url)
    assert guest.status_code == 403 and "T0PARTNER" in guest.json()["error"]
    assert await setup.actions() == [] and setup.slack.updates == []
    own = await setup.slack.click(setup.message, "relay:acknowledge").send(setup.relay.url)
    assert own.status_code == 200


@pytest.mark.parametrize("restrict", ["        allowed_usergroup: S0ONCALL"])
async def test_a_user_group_slack_cannot_confirm_is_trusted_only_within_its_lifetime(
        setup: Setup, monkeypatch: pytest.MonkeyPatch) -> None:
    """Suspected in issue 20: when Slack's API failed, the last member list was used however old, so someone removed
    from the on-call group kept acting through an outage. It holds for USERGROUP_LIFETIME_SECONDS, then fails closed."""
    from relay.actions import endpoint as interactions

    clock = [time.monotonic()]
    monkeypatch.setattr(interactions, "clock", lambda: clock[0])
    monkeypatch.setattr(interactions, "_members", {})  # what earlier tests' clicks left behind
    first = await setup.slack.click(setup.message, "relay:acknowledge", user="U0ONCALL").send(setup.relay.url)
    assert first.status_code == 200
    await setup.slack.wait_for_updates(1)
    setup.slack.usergroups_down = True  # Slack's usergroups API answers 503 from now on
    clock[0] += interactions.USERGROUP_SECONDS + 1  # stale: asked again, Slack fails, the list still holds
    held = await setup.slack.click(setup.message, "relay:silence:3600", user="U0ONCALL").send(setup.relay.url)
    assert held.status_code == 200, held.text
    clock[0] += interactions.USERGROUP_LIFETIME_SECONDS  # past its lifetime: no longer trusted
    refused = await setup.slack.click(setup.message, "relay:silence:14400", user="U0ONCALL").send(setup.relay.url)
    assert refused.status_code == 503 and "S0ONCALL" in refused.json()["error"]
    assert len([r for r in setup.slack.requests if r.path.endswith("usergroups.users.list")]) == 3


def test_the_signature_is_checked_over_the_raw_body() -> None:
    now = time.time()
    body = b"payload=%7B%7D"
    sig = signature(SIGNING_SECRET, int(now), body)
    assert verify(body, str(int(now)), sig, SIGNING_SECRET, now) == sig
    with pytest.raises(Rejected) as refused:
        verify(body + b" ", str(int(now)), sig, SIGNING_SECRET, now)
    assert refused.value.status == 401


def test_the_set_up_guide_configures_what_relay_reads(tmp_path: Path) -> None:
    """docs/slack-app.md: the manifest's request URL is relay's endpoint, its routes.yaml loads with buttons."""
    guide = (REPO / "docs" / "slack-app.md").read_text()
    manifest, routes = [yaml.safe_load(block) for block in re.findall(r"```yaml\n(.*?)```", guide, re.S)][:2]
    assert manifest["settings"]["interactivity"]["request_url"].endswith("/slack/interactions")
    assert "chat:write" in manifest["oauth_config"]["scopes"]["bot"]
    path = tmp_path / "routes.yaml"
    path.write_text(yaml.safe_dump({**routes, "default_receivers": ["slack-alerts"]}))
    loaded = load_routes(path, Templates(), {"SLACK_BOT_TOKEN": "xoxb-1"})
    actions = loaded.receivers["slack-alerts"].slack.actions  # type: ignore[union-attr]
    assert actions is not None and actions.team_id == "T0123ABCD" and actions.allowed_usergroup == "S0ONCALL"


ESCALATING = "receivers:\n" + slack_bot(NO_ALERTMANAGER) + SLACK_HOOK + """routes:
  - matchers: ['alertname="PodDown"']
    receivers: [slack-bot]
    escalate: [{after: 1h, receivers: [slack-hook]}]
"""


async def test_an_acknowledge_from_slack_stops_the_escalation(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    async with SlackWebhookServer() as slack:
        for key, value in {"SLACK_TOKEN": DEFAULT_TOKEN, "SLACK_API_URL": slack.api_url,
                           "SLACK_WEBHOOK_URL": slack.url()}.items():
            monkeypatch.setenv(key, value)
        routes = tmp_path / "routes.yaml"
        routes.write_text(ESCALATING)
        async with running_relay(relay_settings(tmp_path, routes, slack_signing_secret=SIGNING_SECRET)) as relay:
            group = fixture("firing-poddown.json")
            assert (await relay.post(group)).status_code == 200
            await slack.wait_for(1)
            await poll_until(lambda: _delivered(relay, 1))
            store = relay.app.state.services.store
            fingerprints = [a["fingerprint"] for a in group["alerts"]]
            assert {s.state for s in await store.escalations_of(fingerprints)} == {"pending"}
            [message] = slack.top_level()
            assert (await slack.click(message, "relay:acknowledge").send(relay.url)).status_code == 200
            await poll_until(lambda: _delivered(relay, 2))
            steps = await store.escalations_of(fingerprints)
        assert steps and {(s.state, s.reason) for s in steps} == {("cancelled", "acknowledged")}
