"""The console in Debian's Chromium, driven by Playwright, against a whole relay and the suite's providers.

Sign-in; the receivers view names every receiver of routes.yaml; a notification dead-lettered through /webhook
(PagerDuty answering 400) shows with its reason, and Retry once PagerDuty recovers delivers it; Explain says when an
alert was deduplicated and when it was folded into a storm summary (whose "full list" link lands on the console);
without a session nothing is shown, and a forged POST is refused and changes nothing. Hostile label text stays text.
"""

from __future__ import annotations

import os
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from relay.config.routes import load_routes
from relay.templating import Templates
from tests.conftest import Providers
from tests.fakes.slack import SlackLimit, SlackWebhookServer
from tests.helpers import RunningRelay, fixture, poll_until, relay_settings, running_relay, slack_text
from tests.requirements import CHROMIUM

CHROMIUM_BINARY = "/usr/bin/chromium"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
        "--disable-sync", "--no-first-run"]
# Markup, an attribute break-out and a script URL: each must show as these characters and run nothing.
HOSTILE = """<script>alert(1)</script>"'><img src=x onerror=alert(2)> <a href="javascript:alert(3)">x</a>"""
ADMIN, VIEWER, WEBHOOK = "console-admin-token-0123456789", "console-viewer-token-0123456789", "console-webhook-tok"

try:
    from playwright.async_api import Browser, Page, async_playwright
except ImportError:  # pragma: no cover - the test extras install it
    async_playwright = None

pytestmark = CHROMIUM.unless(
    "needs Debian's chromium (apt-get install chromium)" if not os.access(CHROMIUM_BINARY, os.X_OK)
    else "needs playwright (pip install -e '.[test]')" if async_playwright is None else None)


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    assert async_playwright is not None
    async with async_playwright() as driver:
        launched = await driver.chromium.launch(executable_path=CHROMIUM_BINARY, headless=True, args=ARGS)
        try:
            yield launched
        finally:
            await launched.close()


async def signed_in(browser: Browser, relay: RunningRelay, token: str = ADMIN) -> Page:
    page = await browser.new_page()
    await page.goto(relay.url + "/")
    await page.fill("input[name=token]", token)
    await page.click("button[type=submit]")
    await page.wait_for_url(relay.url + "/receivers")
    return page


def settings(tmp_path: Path, routes: Path, **overrides: Any) -> Any:
    return relay_settings(tmp_path, routes, webhook_token=WEBHOOK, admin_token=ADMIN, viewer_token=VIEWER, **overrides)


async def test_sign_in_shows_every_receiver_and_nothing_without_a_session(tmp_path: Path, providers: Providers,
                                                                         browser: Browser) -> None:
    async with running_relay(settings(tmp_path, providers.routes)) as relay:
        assert (await relay.post(fixture("firing-poddown.json"), token=WEBHOOK)).status_code == 200
        receivers = list(load_routes(providers.routes, Templates(None)).receivers)
        page = await browser.new_page()
        for path in ("/", "/receivers", "/notifications", "/notifications/1", "/dead-letters", "/maintenance",
                     "/explain"):
            await page.goto(relay.url + path)
            body = await page.inner_text("body")
            assert "Sign in" in body and "PodDown" not in body and not any(r in body for r in receivers), path
        await page.fill("input[name=token]", "not-the-token")
        await page.click("button[type=submit]")
        assert "does not sign in" in await page.inner_text("body")
        page = await signed_in(browser, relay)
        table = await page.inner_text("table")
        assert receivers and all(name in table for name in receivers)
        assert await page.locator("svg.chart").count() == len(receivers)
        cookie = next(c for c in await page.context.cookies() if c["name"] == "relay_session")
        assert cookie["httpOnly"] and cookie["sameSite"] == "Strict" and ADMIN not in cookie["value"]
        # Auto-refresh re-submits the page's own filter form (a POST: the filters never reach a URL) and keeps them.
        await page.clock.install()
        await page.goto(relay.url + "/notifications")
        await page.select_option("select[name=receiver]", "pagerduty-oncall")
        await page.check("input[name=refresh]")
        await page.click("button:has-text('Show')")
        assert await page.locator("tbody tr").count() == 1
        async with page.expect_navigation():
            await page.clock.fast_forward(31_000)
        assert page.url == relay.url + "/notifications"
        assert await page.locator("select[name=receiver]").input_value() == "pagerduty-oncall"
        assert await page.locator("input[name=refresh]").is_checked()
        assert "slack-alerts" not in await page.inner_text("tbody")
        await page.click("text=Sign out")
        await page.goto(relay.url + "/receivers")
        assert "Sign in" in await page.inner_text("body")


async def test_a_dead_letter_shows_its_reason_and_retry_delivers_it(tmp_path: Path, providers: Providers,
                                                                    browser: Browser, database_url: str) -> None:
    providers.pagerduty.fail_all(400)
    async with running_relay(settings(tmp_path, providers.routes, database_url=database_url)) as relay:
        assert (await relay.post(fixture("firing-poddown.json"), token=WEBHOOK)).status_code == 200

        async def dead() -> list[dict[str, Any]]:
            return await relay.history(state="dead")

        await poll_until(lambda: _nonempty(dead()))
        [letter] = await dead()
        page = await signed_in(browser, relay)
        await page.click("text=Receivers")
        health = await page.locator("tr", has_text="pagerduty-oncall").inner_text()
        assert "dead letters" in health and "400" in health  # its state now, and its last error's reason
        await page.click("text=Dead letters")
        row = page.locator("tr", has_text=f"{letter['id']}")
        assert "pagerduty-oncall" in await row.inner_text() and "400" in await row.inner_text()
        # A forged POST (another site's page: no cookie, its own Origin) is refused and changes nothing.
        async with httpx.AsyncClient(base_url=relay.url) as forger:
            for path in ("/dead-letters/act", "/dead-letters/confirm"):
                answer = await forger.post(path, data={"action": "purge", "id": str(letter["id"])},
                                           headers={"Origin": "https://evil.example"})
                assert answer.status_code == 403 and "PodDown" not in answer.text
        # ... and so is one riding a session from another Origin, or without the form's CSRF token.
        cookies = {c["name"]: c["value"] for c in await page.context.cookies()}
        async with httpx.AsyncClient(base_url=relay.url, cookies=cookies) as forger:
            answer = await forger.post("/dead-letters/act", data={"action": "purge", "id": str(letter["id"])},
                                       headers={"Origin": "https://evil.example"})
            assert answer.status_code == 403
            answer = await forger.post("/dead-letters/act", data={"action": "purge", "id": str(letter["id"])})
            assert answer.status_code == 403
        assert [r["id"] for r in await dead()] == [letter["id"]]
        # A viewer sees it but cannot retry it.
        viewer = await signed_in(browser, relay, VIEWER)
        await viewer.click("text=Dead letters")
        assert await viewer.locator("button", has_text="Retry").count() == 0
        providers.pagerduty.recover()
        await row.locator("button", has_text="Retry").click()
        assert f"Retry dead letter #{letter['id']}" in await page.inner_text("main")
        await page.click("text=Yes, retry")
        assert "put back in its lane" in await page.inner_text("main")
        await providers.pagerduty.wait_for(1)
        await poll_until(lambda: _state(relay, letter["id"], "delivered"))
        await page.goto(f"{relay.url}/notifications/{letter['id']}")
        main = await page.inner_text("main")
        assert "delivered" in main and "400" in main  # the timeline: the refused attempt, then the delivery
        assert providers.env["PAGERDUTY_ROUTING_KEY"] not in await page.content()  # the message shown is masked
        assert providers.pagerduty.events[0]["payload"]["summary"].startswith("[FIRING")


async def _nonempty(rows: Any) -> bool:
    return bool(await rows)


async def _state(relay: RunningRelay, notification_id: int, state: str) -> bool:
    answer = await relay.admin("GET", f"/api/v1/notifications/{notification_id}")
    return bool(answer.json()["state"] == state)


async def explain(page: Page, relay: RunningRelay, query: str) -> str:
    await page.goto(relay.url + "/explain")
    await page.fill("textarea[name=query]", query)
    await page.click("button:has-text('Explain')")
    return await page.inner_text("main")


async def test_explain_says_an_alert_was_deduplicated_and_hostile_text_stays_text(
        tmp_path: Path, providers: Providers, browser: Browser, database_url: str) -> None:
    body = fixture("firing-poddown.json")
    hostile = dict(body["alerts"][0]["labels"], pod=HOSTILE)
    async with running_relay(settings(tmp_path, providers.routes, database_url=database_url)) as relay:
        first = (await relay.post(body, token=WEBHOOK)).json()
        again = (await relay.post(body, token=WEBHOOK)).json()  # a re-sent group: every copy deduplicated
        assert again["alerts_deduplicated"] == 3 and again["notifications_enqueued"] == 0
        page = await signed_in(browser, relay)
        fp = body["alerts"][0]["fingerprint"]
        text = await explain(page, relay, fp)
        slack_id = first["receivers"]["slack-alerts"]["notification_id"]
        assert f"deduplicated against #{slack_id}" in text
        assert "from Alertmanager http://" in text and "route 1" in text
        for name in ("slack-alerts", "ops-email", "pagerduty-oncall"):
            assert f"{name}: firing of the episode" in text
        # Typed labels find the same alert (its fingerprint computed as Alertmanager does).
        typed = ", ".join(f"{k}={v}" for k, v in body["alerts"][0]["labels"].items())
        assert f"deduplicated against #{slack_id}" in await explain(page, relay, typed)
        # Labels that no alert had: nothing recorded, and the routes it would take.
        text = await explain(page, relay, "alertname=NeverFired, severity=warning")
        assert "relay has no record of this alert" in text and "goes to" in text
        # Hostile label values arrive, show in history, detail and Explain as the text they are, and run nothing.
        alert = dict(body["alerts"][0], labels=hostile, fingerprint="00000000000000aa")
        assert (await relay.post(dict(body, alerts=[alert]), token=WEBHOOK)).status_code == 200
        dialogs: list[str] = []
        page.on("dialog", lambda d: dialogs.append(d.message))
        await page.goto(relay.url + "/notifications")
        newest = page.locator("tbody tr").first
        await newest.locator("a").first.click()
        assert HOSTILE in await page.inner_text("main")
        text = await explain(page, relay, "00000000000000aa")
        assert HOSTILE in text and not dialogs
        assert await page.locator("main a[href^='javascript']").count() == 0
        # Typed back into a filter, it comes back in the input's value attribute as the same text, and finds its row.
        await page.goto(relay.url + "/notifications")
        await page.fill("input[name=label]", f"pod={HOSTILE}")
        await page.click("button:has-text('Show')")
        assert await page.locator("input[name=label]").input_value() == f"pod={HOSTILE}"
        assert await page.locator("tbody tr").count() == 3 and not dialogs  # its three receivers' notifications


async def test_explain_says_an_alert_was_folded_and_the_summary_link_lands_on_the_console(
        tmp_path: Path, browser: Browser) -> None:
    from tests.test_storm import EXTERNAL_URL, storm

    async with SlackWebhookServer(limit=SlackLimit()) as slack:
        routes = tmp_path / "routes.yaml"
        routes.write_text(f"receivers:\n  - name: alerts\n    slack:\n      webhook_url: {slack.url()}\n"
                          f"    storm: {{window: 2s}}\ndefault_receivers: [alerts]\n")
        async with running_relay(settings(tmp_path, routes, rate_limits=True, external_url=EXTERNAL_URL)) as relay:
            await storm(relay_with_token(relay), range(60))

            async def folded() -> bool:
                return any(r["summary_id"] for r in await relay.history(limit="1000"))

            await poll_until(folded, timeout=30)
            row = next(r for r in await relay.history(limit="1000") if r["summary_id"])
            detail = (await relay.admin("GET", f"/api/v1/notifications/{row['id']}")).json()
            fp = detail["alerts"][0]["fingerprint"]
            page = await signed_in(browser, relay)
            text = await explain(page, relay, fp)
            assert f"folded into the storm summary notification #{row['summary_id']}" in text
            await page.click("text=Storms")
            assert "alerts" in await page.inner_text("table")
            # The summary's "full list" link, opened in the browser, is the console's page of it, not JSON.
            await poll_until(lambda: any("/api/v1/notifications?summary=" in slack_text(m) for m in slack.messages),
                             timeout=30)
            link = next(re.search(r"https://relay\.ojeomneo\.example(/api/v1/notifications\?summary=\d+[^|>\"\\]*)",
                                  slack_text(m)) for m in slack.messages if "summary=" in slack_text(m))
            assert link is not None
            await page.goto(relay.url + link.group(1).replace("&amp;", "&"))
            assert re.search(r"/summaries/\d+$", page.url)
            assert "Every alert folded into" in await page.inner_text("main")


def relay_with_token(relay: RunningRelay) -> Any:
    class Posting:
        async def post(self, body: Any) -> httpx.Response:
            return await relay.post(body, token=WEBHOOK)

    return Posting()



async def test_a_maintenance_window_added_in_the_console_holds_an_alert_until_it_is_ended(
        tmp_path: Path, providers: Providers, browser: Browser) -> None:
    from datetime import UTC, datetime, timedelta

    body = fixture("firing-poddown.json")
    until = (datetime.now(UTC) + timedelta(hours=1)).isoformat(timespec="seconds").replace("+00:00", "Z")
    hostile_matcher = 'pod!="<script>alert(4)</script><img src=x onerror=alert(5)>"'
    async with running_relay(settings(tmp_path, providers.routes)) as relay:
        page = await signed_in(browser, relay)
        dialogs: list[str] = []
        page.on("dialog", lambda d: dialogs.append(d.message))
        await page.click("text=Maintenance")

        async def add(matchers: str, ends_at: str, starts_at: str = "") -> str:
            await page.fill("textarea[name=matchers]", matchers)
            await page.fill("input[name=starts_at]", starts_at)
            await page.fill("input[name=ends_at]", ends_at)
            await page.fill("input[name=comment]", f"database upgrade {HOSTILE}")
            await page.click("button:has-text('Add window')")
            return await page.inner_text("main")

        # Refused in plain words, with what was typed kept, and nothing stored.
        text = await add('service=~"("', until)
        assert "Not added:" in text and "service" in text
        text = await add('alertname="PodDown"', "2026-01-01T00:00:00Z", starts_at="2026-01-01T01:00:00Z")
        assert "ends_at must be later than starts_at" in text
        assert await page.locator("textarea[name=matchers]").input_value() == 'alertname="PodDown"'
        assert (await relay.admin("GET", "/api/v1/maintenance?all=1")).json()["windows"] == []

        text = await add(f'alertname="PodDown"\n{hostile_matcher}', until)
        [window] = (await relay.admin("GET", "/api/v1/maintenance")).json()["windows"]
        assert f"maintenance window {window['id']} added" in text
        row = page.locator("tr", has_text=f"database upgrade {HOSTILE}")
        assert 'alertname="PodDown"' in await row.inner_text() and hostile_matcher in await row.inner_text()
        assert "console (admin)" in await row.inner_text() and "active" in await row.inner_text()
        assert not dialogs

        # An alert it matches is held: recorded as muted by the window, nothing sent to any provider.
        answer = (await relay.post(body, token=WEBHOOK)).json()
        assert {m["alertname"] for m in answer["muted"]} == {"PodDown"}
        assert all(f"in maintenance window {window['id']}" in m["reason"] for m in answer["muted"])
        text = await explain(page, relay, body["alerts"][0]["fingerprint"])
        assert f"by maintenance window {window['id']} (until it ends): pending" in text
        assert providers.pagerduty.events == [] and providers.slack.messages == []

        # A viewer sees the window but no form and no End.
        viewer = await signed_in(browser, relay, VIEWER)
        await viewer.click("text=Maintenance")
        assert "database upgrade" in await viewer.inner_text("main")
        assert await viewer.locator("main form").count() == 0

        # A forged POST (the admin's cookie, no CSRF token; or a foreign Origin) is refused and changes nothing.
        cookies = {c["name"]: c["value"] for c in await page.context.cookies()}
        async with httpx.AsyncClient(base_url=relay.url, cookies=cookies) as forger:
            for path, data in (("/maintenance/end", {"id": str(window["id"])}),
                               ("/maintenance/add", {"matchers": 'alertname="X"', "ends_at": until,
                                                     "comment": "forged"})):
                assert (await forger.post(path, data=data)).status_code == 403
                answer = await forger.post(path, data=data, headers={"Origin": "https://evil.example"})
                assert answer.status_code == 403
        assert [w["state"] for w in (await relay.admin("GET", "/api/v1/maintenance?all=1")).json()["windows"]] \
            == ["active"]

        # End, confirmed on a page of its own: what the window held is delivered.
        await page.click("text=Maintenance")
        await page.locator("tr", has_text="database upgrade").locator("button", has_text="End").click()
        assert f"End maintenance window #{window['id']} now" in await page.inner_text("main")
        await page.click("text=Yes, end it")
        assert f"maintenance window {window['id']} ended" in await page.inner_text("main")
        await providers.pagerduty.wait_for(1)
        assert providers.pagerduty.events[0]["payload"]["summary"].startswith("[FIRING")
        assert "no active maintenance windows" in await page.inner_text("main")
        assert "database upgrade" in await page.locator("h2:has-text('Ended') + div").inner_text()
        assert not dialogs
