"""The console's screenshots in docs/console.md: `python -m tests.e2e.screenshots` (Debian's chromium, loopback only).

A relay on a temporary SQLite store with the repository's routes.yaml, the suite's Slack, SMTP and PagerDuty, a few
alerts (one re-sent, so it is deduplicated; PagerDuty refusing one, so it is a dead letter), then the receivers view
and Explain of the deduplicated alert, at a phone's width and a desktop's.
"""

from __future__ import annotations

import asyncio
import os
import tempfile
from pathlib import Path

from tests.e2e.test_console import ADMIN, ARGS, CHROMIUM_BINARY, WEBHOOK
from tests.e2e.test_routing_table import webhook
from tests.fakes.pagerduty import PagerDutyServer
from tests.fakes.slack import SlackWebhookServer
from tests.fakes.smtp import SmtpServer
from tests.helpers import REPO, fixture, poll_until, provider_env, relay_settings, repo_routes, running_relay

OUT = REPO / "docs" / "images"


async def main() -> None:
    from playwright.async_api import async_playwright

    tmp = Path(tempfile.mkdtemp(prefix="relay-screenshots-"))
    async with SlackWebhookServer() as slack, SmtpServer() as smtp, PagerDutyServer() as pagerduty:
        os.environ.update(provider_env(slack.url(), smtp.smarthost))
        settings = relay_settings(tmp, repo_routes(tmp, pagerduty.url), webhook_token=WEBHOOK, admin_token=ADMIN)
        async with running_relay(settings) as relay:
            for name, severity in (("HighErrorRate", "critical"), ("HighLatency", "warning"),
                                   ("RedisCacheHitLow", "warning"), ("HighMemory", "warning")):
                await relay.post(webhook(name, severity), token=WEBHOOK)
            body = fixture("firing-poddown.json")
            await relay.post(body, token=WEBHOOK)
            await relay.post(body, token=WEBHOOK)  # re-sent: deduplicated
            await pagerduty.wait_for(1)
            pagerduty.fail_all(400)
            await relay.post(webhook("PodDown", "critical"), token=WEBHOOK)  # another pod: PagerDuty refuses it
            await poll_until(lambda: _dead(relay))
            async with async_playwright() as driver:
                browser = await driver.chromium.launch(executable_path=CHROMIUM_BINARY, headless=True, args=ARGS)
                for width, suffix in ((1200, ""), (390, "-phone")):
                    page = await browser.new_page(viewport={"width": width, "height": 760})
                    await page.goto(relay.url + "/")
                    await page.fill("input[name=token]", ADMIN)
                    await page.click("button[type=submit]")
                    await page.wait_for_url(relay.url + "/receivers")
                    await page.screenshot(path=str(OUT / f"console-receivers{suffix}.png"), full_page=True)
                    await page.goto(relay.url + "/explain")
                    await page.fill("textarea[name=query]", body["alerts"][0]["fingerprint"])
                    await page.click("button:has-text('Explain')")
                    await page.screenshot(path=str(OUT / f"console-explain{suffix}.png"), full_page=width > 600)
                    await page.close()
                await browser.close()


async def _dead(relay: object) -> bool:
    return bool(await relay.history(state="dead"))  # type: ignore[attr-defined]


if __name__ == "__main__":
    OUT.mkdir(parents=True, exist_ok=True)
    asyncio.run(main())
