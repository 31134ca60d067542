"""Who may call what (relay/auth.py): the webhook token, the admin token, and a browser on another site."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from tests.conftest import Providers
from tests.helpers import RunningRelay, fixture, poll_until, relay_settings, running_relay

WEBHOOK = "webhook-tok-SECRET"
ADMIN = "admin-tok-SECRET"
ADMIN_CALLS = (("GET", "/api/v1/notifications"), ("GET", "/api/v1/notifications/1"), ("POST", "/-/reload"),
               ("POST", "/api/v1/notifications/1/cancel"), ("POST", "/api/v1/dead-letters/1/retry"),
               ("DELETE", "/api/v1/dead-letters/1"))
FORGED = [{"Content-Type": "text/plain", "Origin": "http://evil.example"},  # what a form or fetch() sends
          {"Content-Type": "text/plain"},  # the same without Origin
          {"Content-Type": "application/x-www-form-urlencoded"},
          {"X-Relay-Request": "1", "Origin": "http://evil.example"},  # a header only passes from the same origin
          {"Content-Type": "application/json", "Origin": "null"}]  # a sandboxed page


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def dead_pagerduty_letter(relay: RunningRelay, token: str | None = None) -> int:
    """A dead letter, as an unconfigured PagerDuty receiver leaves one."""
    answer = await relay.post(fixture("firing-poddown.json"), token=token)
    notification_id = int(answer.json()["receivers"]["pagerduty-oncall"]["notification_id"])

    async def dead() -> bool:
        return [r["state"] for r in await relay.history(ids=str(notification_id))] == ["dead"]

    await poll_until(dead)
    return notification_id


async def test_the_webhook_token_posts_webhooks_and_only_the_admin_token_opens_the_admin_api(
        tmp_path: Path, providers: Providers) -> None:
    settings = relay_settings(tmp_path, providers.routes, webhook_token=WEBHOOK, admin_token=f"{ADMIN}\n")
    async with running_relay(settings) as relay:
        for method, path in ADMIN_CALLS:
            for headers in ({}, bearer(WEBHOOK), {**bearer(WEBHOOK), "X-Relay-Request": "1"}):
                answer = await relay.client.request(method, path, headers=headers)
                assert answer.status_code == 401, (method, path, headers)
        assert (await relay.client.get("/api/v1/notifications", headers=bearer(ADMIN))).status_code == 200
        assert (await relay.client.post("/-/reload", headers=bearer(ADMIN))).status_code == 200  # a script's curl
        assert (await relay.post(fixture("firing-poddown.json"), token=ADMIN)).status_code == 401
        assert (await relay.post(fixture("firing-poddown.json"), token=WEBHOOK)).status_code == 200


async def test_without_an_admin_token_the_webhook_token_opens_nothing(tmp_path: Path, providers: Providers) -> None:
    """The upgrade: a relay that had only RELAY_WEBHOOK_TOKEN closes its admin API and says what to set."""
    async with running_relay(relay_settings(tmp_path, providers.routes, webhook_token=WEBHOOK)) as relay:
        for method, path in ADMIN_CALLS:
            answer = await relay.client.request(method, path, headers={**bearer(WEBHOOK), "X-Relay-Request": "1"})
            assert answer.status_code == 403, (method, path)
            assert "needs RELAY_ADMIN_TOKEN" in answer.json()["error"]
        assert (await relay.post(fixture("firing-poddown.json"), token=WEBHOOK)).status_code == 200


def test_the_admin_token_must_differ_from_the_webhook_token(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="RELAY_ADMIN_TOKEN must differ from RELAY_WEBHOOK_TOKEN"):
        relay_settings(tmp_path, tmp_path / "routes.yaml", webhook_token=WEBHOOK, admin_token=f" {WEBHOOK}\n")


async def test_a_browser_on_another_site_cannot_replay_or_reload(tmp_path: Path, providers: Providers,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """No token: relay on loopback. A page elsewhere can still make the browser POST to 127.0.0.1 (text/plain needs
    no preflight); such a request must not re-page anyone."""
    monkeypatch.delenv("PAGERDUTY_ROUTING_KEY")
    async with running_relay(relay_settings(tmp_path, providers.routes)) as relay:
        dead = await dead_pagerduty_letter(relay)
        monkeypatch.setenv("PAGERDUTY_ROUTING_KEY", "R0UTINGKEYSECRET0000000000000000")
        assert (await relay.admin("POST", "/-/reload")).status_code == 200  # now a replay would page
        for headers in FORGED:
            for method, path in (("POST", f"/api/v1/dead-letters/{dead}/retry"), ("POST", "/-/reload"),
                                 ("DELETE", f"/api/v1/dead-letters/{dead}")):
                answer = await relay.client.request(method, path, headers=headers, content=b"x")
                assert answer.status_code == 403, (headers, path, answer.text)
        assert [r["state"] for r in await relay.history(ids=str(dead))] == ["dead"]
        # What the relay command sends, and a JSON request from relay's own origin, are served.
        assert (await relay.admin("POST", f"/api/v1/dead-letters/{dead}/retry")).status_code == 200
        await providers.pagerduty.wait_for(1)
        same_origin = {"Content-Type": "application/json", "Origin": relay.url}
        assert (await relay.client.post("/-/reload", headers=same_origin, content=b"{}")).status_code == 200
    assert len(providers.pagerduty.events) == 1


async def test_a_browser_on_another_site_cannot_cancel_a_pending_notification(tmp_path: Path,
                                                                              providers: Providers) -> None:
    """The cancel endpoint (issue 11's 'also found') changes state like a replay: a forged POST must not drop a page
    that is waiting for its retry."""
    providers.slack.fail_all(500)
    settings = relay_settings(tmp_path, providers.routes, retry_initial_seconds=300, retry_max_seconds=600)
    async with running_relay(settings) as relay:
        answer = await relay.post(fixture("firing-highlatency-group2.json"))
        [(receiver, pending)] = [(name, r["notification_id"]) for name, r in answer.json()["receivers"].items()
                                 if r["notification_id"] is not None and name.startswith("slack")]

        async def tried() -> bool:
            return [r["attempts"] for r in await relay.history(ids=str(pending))] == [1]

        await poll_until(tried)
        for headers in FORGED:
            answer = await relay.client.post(f"/api/v1/notifications/{pending}/cancel", headers=headers, content=b"x")
            assert answer.status_code == 403, (headers, answer.text)
        assert [r["state"] for r in await relay.history(ids=str(pending))] == ["pending"], receiver
        assert (await relay.admin("POST", f"/api/v1/notifications/{pending}/cancel")).status_code == 200
        assert [r["state"] for r in await relay.history(ids=str(pending))] == ["cancelled"]


@pytest.mark.parametrize("host", ["evil.example", "evil.example:8080", "127.0.0.1.evil.example", "10.0.0.1", ""])
async def test_a_relay_without_token_refuses_foreign_host_names(tmp_path: Path, providers: Providers,
                                                                 host: str) -> None:
    """DNS rebinding: evil.example first resolves to the attacker, then to 127.0.0.1, and the page (same origin
    now) reads history and posts webhooks. A loopback relay answers only loopback names."""
    async with running_relay(relay_settings(tmp_path, providers.routes)) as relay:
        headers = {"Host": host, "X-Relay-Request": "1"}
        for method, path in (*ADMIN_CALLS, ("GET", "/metrics")):
            answer = await relay.client.request(method, path, headers=headers)
            assert answer.status_code == 421, (method, path)
            assert "not a loopback name" in answer.json()["error"]
        assert (await relay.client.post("/webhook", json=fixture("firing-poddown.json"), headers=headers)
                ).status_code == 421
        assert await relay.history() == []  # nothing was accepted
        port = relay.url.rsplit(":", 1)[1]
        for name in ("localhost", f"localhost:{port}", f"127.0.0.1:{port}", "[::1]", f"[::1]:{port}", "127.0.0.2"):
            answer = await relay.client.get("/api/v1/notifications", headers={"Host": name})
            assert answer.status_code == 200, name
        assert (await relay.post(fixture("firing-poddown.json"))).status_code == 200


async def test_a_relay_with_a_token_serves_any_host_name(tmp_path: Path, providers: Providers) -> None:
    """With tokens (relay behind a Service or a proxy), the Host is whatever name clients use."""
    settings = relay_settings(tmp_path, providers.routes, webhook_token=WEBHOOK, admin_token=ADMIN)
    async with running_relay(settings) as relay:
        headers = {"Host": "relay.monitoring.svc:8080"}
        answer = await relay.client.post("/webhook", json=fixture("firing-poddown.json"),
                                         headers={**headers, **bearer(WEBHOOK)})
        assert answer.status_code == 200
        answer = await relay.client.get("/api/v1/notifications", headers={**headers, **bearer(ADMIN)})
        assert answer.status_code == 200 and answer.json()["notifications"]
        assert (await relay.client.get("/metrics", headers=headers)).status_code == 200


async def test_a_request_without_host_is_refused_by_a_loopback_relay(tmp_path: Path, providers: Providers) -> None:
    async with running_relay(relay_settings(tmp_path, providers.routes)) as relay:
        reader, writer = await asyncio.open_connection("127.0.0.1", int(relay.url.rsplit(":", 1)[1]))
        writer.write(b"GET /api/v1/notifications HTTP/1.0\r\n\r\n")  # HTTP/1.0 may leave out Host
        answer = (await asyncio.wait_for(reader.read(), 10)).decode()
        writer.close()
    assert answer.startswith("HTTP/1.1 421"), answer
