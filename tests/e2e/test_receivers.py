"""The four new receivers in a whole relay: a webhook from Alertmanager's fixtures goes out to local Discord,
Telegram, Teams and webhook servers, the resolve edits Discord's and Telegram's messages (the ids kept in relay's
store on SQLite and on PostgreSQL) and is a new Teams card; and relay's webhook receiver feeds another relay's
own /webhook, which accepts its v4 body like Alertmanager's."""

from __future__ import annotations

import json
from pathlib import Path

from tests.channel_contract import assert_leaks_no_secret
from tests.fakes.discord import WEBHOOK_TOKEN, DiscordServer
from tests.fakes.teams import SIG, TeamsServer
from tests.fakes.telegram import BOT_TOKEN, CHAT_ID, TelegramServer
from tests.fakes.webhook import WebhookServer
from tests.helpers import RunningRelay, fixture, poll_until, relay_settings, running_relay

ROUTES = """\
receivers:
  - name: discord-ops
    discord: {{webhook_url: "{discord}"}}
  - name: telegram-ops
    telegram: {{bot_token: "{token}", chat_id: {chat}, api_url: "{telegram}"}}
  - name: teams-ops
    teams: {{webhook_url: "{teams}"}}
  - name: hook-ops
    webhook: {{url: "{hook}"}}
default_receivers: [discord-ops, telegram-ops, teams-ops, hook-ops]
"""


async def test_an_alert_and_its_resolve_reach_discord_telegram_teams_and_a_webhook(tmp_path: Path,
                                                                                   database_url: str) -> None:
    async with DiscordServer() as discord, TelegramServer() as telegram, TeamsServer() as teams, \
            WebhookServer() as hook:
        routes = tmp_path / "routes.yaml"
        routes.write_text(ROUTES.format(discord=discord.url, token=BOT_TOKEN, chat=CHAT_ID,
                                        telegram=telegram.base_url, teams=teams.url, hook=hook.url()))
        # Each provider first fails echoing its secret (as a proxy or a verbose API might): retried, then delivered.
        discord.respond_with(500, {"message": f"echo {WEBHOOK_TOKEN}", "code": 0})
        telegram.respond_with(502, f"bad gateway for /bot{BOT_TOKEN}/sendMessage")
        teams.respond_with(503, {"error": {"code": "Busy", "message": f"sig={SIG}"}})
        async with running_relay(relay_settings(tmp_path, routes, database_url=database_url)) as relay:
            assert (await relay.post(fixture("firing-poddown.json"))).status_code == 200
            await discord.wait_for_messages(1)
            await telegram.wait_for_messages(1)
            await teams.wait_for_cards(1)
            [firing] = await hook.wait_for(1)
            assert firing["status"] == "firing" and firing["receiver"] == "hook-ops"

            assert (await relay.post(fixture("resolved-poddown.json"))).status_code == 200
            await hook.wait_for(2)
            await teams.wait_for_cards(2)
            await poll_until(lambda: len(discord.edits) == 1 and len(telegram.edits) == 1)
            assert len(discord.order) == 1 and len(telegram.sent) == 1  # edited, not posted again
            [message] = discord.messages.values()
            assert message["embeds"][0]["title"].startswith("[RESOLVED] PodDown")
            assert telegram.messages[telegram.sent[0]]["text"].startswith("✅ [RESOLVED] PodDown")
            assert teams.cards[1]["body"][0]["style"] == "good"
            await poll_until(lambda: _all_delivered(relay), timeout=10)
            shown = [json.dumps(await relay.history(limit="100"))]
            for row in await relay.history(limit="100"):
                shown.append((await relay.admin("GET", f"/api/v1/notifications/{row['id']}")).text)
            shown.append((await relay.client.get("/metrics")).text)
            assert "HTTP 500" in "".join(shown) and "HTTP 502" in "".join(shown)  # the failures are in history
            assert_leaks_no_secret(shown, [WEBHOOK_TOKEN, BOT_TOKEN, SIG])


async def _all_delivered(relay: RunningRelay) -> bool:
    history = await relay.history()
    return len(history) == 8 and all(row["state"] == "delivered" for row in history)


async def test_relay_behind_relay_the_webhook_body_is_what_relays_own_webhook_accepts(tmp_path: Path) -> None:
    async with WebhookServer() as consumer:
        inner_dir, outer_dir = tmp_path / "inner", tmp_path / "outer"
        inner_dir.mkdir()
        outer_dir.mkdir()
        inner_routes = f"receivers:\n  - name: final\n    webhook: {{url: \"{consumer.url()}\"}}\n"
        (inner_dir / "routes.yaml").write_text(inner_routes + "default_receivers: [final]\n")
        inner_settings = relay_settings(inner_dir, inner_dir / "routes.yaml", webhook_token="inner-SECRET-token")
        async with running_relay(inner_settings) as inner:
            (outer_dir / "routes.yaml").write_text(
                f"receivers:\n  - name: forward\n    webhook:\n      url: \"{inner.url}/webhook\"\n"
                "      http_config: {bearer_token: inner-SECRET-token}\n"
                "default_receivers: [forward]\n")
            async with running_relay(relay_settings(outer_dir, outer_dir / "routes.yaml")) as outer:
                sent = fixture("firing-highlatency-group2.json")
                assert (await outer.post(sent)).status_code == 200
                [body] = await consumer.wait_for(1)
    assert [a["fingerprint"] for a in body["alerts"]] == [a["fingerprint"] for a in sent["alerts"]]
    assert [a["labels"] for a in body["alerts"]] == [a["labels"] for a in sent["alerts"]]
    assert body["groupKey"] == sent["groupKey"] and body["receiver"] == "final"
