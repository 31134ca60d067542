"""Retry-After from a provider is honoured, but never so far that a page becomes a dead letter (issue 11, item 4)."""

from __future__ import annotations

import logging
import math
from pathlib import Path

import pytest

from relay.pacing.retry import RetryPolicy, next_attempt
from tests.conftest import Providers
from tests.e2e.test_routing_table import webhook
from tests.helpers import RunningRelay, poll_until, relay_settings, running_relay

# What a broken or hostile provider (or proxy) has been seen to send with a 429.
HUGE_RETRY_AFTER = ["999999", "inf", "nan", "Fri, 01 Jan 2100 00:00:00 GMT", "-5"]

ROUTES = """\
receivers:
  - name: slack-alerts
    slack:
      webhook_url: ${SLACK_WEBHOOK_URL}
  - name: pagerduty-oncall
    pagerduty:
      routing_key: ${PAGERDUTY_ROUTING_KEY}
      url: %(pd_url)s
routes:
  - matchers: ['severity="page"']
    receivers: [pagerduty-oncall]
default_receivers: [slack-alerts]
"""


def test_retry_after_is_capped_at_the_maximum_backoff() -> None:
    policy = RetryPolicy(initial=1, maximum=300, jitter=0)
    assert policy.delay(1, retry_after=30) == 30
    assert policy.delay(1, retry_after=999999) == 300
    assert policy.delay(1, retry_after=math.inf) == 300
    assert policy.delay(1, retry_after=math.nan) == 1  # no usable hint: the usual backoff
    assert policy.delay(1, retry_after=-5) == 1
    assert next_attempt(policy, 1, now=0, give_up_at=86400, retry_after=math.inf) == 300


@pytest.mark.parametrize("integration", ["slack", "pagerduty"])
async def test_a_huge_retry_after_delays_a_page_but_does_not_dead_letter_it(
    tmp_path: Path, providers: Providers, caplog: pytest.LogCaptureFixture, integration: str
) -> None:
    caplog.set_level(logging.WARNING, logger="relay.dispatcher")
    routes = tmp_path / "hugeretry.yaml"
    routes.write_text(ROUTES % {"pd_url": providers.pagerduty.url})
    server = providers.slack if integration == "slack" else providers.pagerduty
    for value in HUGE_RETRY_AFTER:  # one 429 per notification, then the provider answers normally
        server.respond_with(429, None, {"Retry-After": value})
    severity = "page" if integration == "pagerduty" else "warning"
    async with running_relay(relay_settings(tmp_path, routes)) as relay:  # RELAY_RETRY_MAX_SECONDS=0.5
        for i in range(len(HUGE_RETRY_AFTER)):
            assert (await relay.post(webhook(f"Huge{i:02d}", severity))).status_code == 200
        await poll_until(lambda: _finished(relay, len(HUGE_RETRY_AFTER)), timeout=20)
        rows = await relay.history()
    assert sorted(r["state"] for r in rows) == ["delivered"] * len(HUGE_RETRY_AFTER)
    assert [r.status for r in server.requests].count(429) == len(HUGE_RETRY_AFTER)
    accepted = server.events if integration == "pagerduty" else server.messages  # type: ignore[attr-defined]
    assert len(accepted) == len(HUGE_RETRY_AFTER)
    capped = [r.getMessage() for r in caplog.records if "Retry-After" in r.getMessage()]
    assert len(capped) == 3 and all("waiting at most 0.5s" in line for line in capped)
    assert providers.env["PAGERDUTY_ROUTING_KEY"] not in caplog.text and "XXXXSECRET" not in caplog.text


async def _finished(relay: RunningRelay, count: int) -> bool:
    rows = await relay.history()
    return len(rows) == count and all(r["state"] != "pending" for r in rows)


def test_backoff_doubles_from_initial_up_to_the_maximum_with_bounded_jitter() -> None:
    policy = RetryPolicy(initial=2, maximum=60, jitter=0)
    assert [policy.delay(n) for n in range(1, 7)] == [2, 4, 8, 16, 32, 60]
    assert policy.delay(0) == 2  # no attempt counted yet: the first wait
    assert policy.delay(5000) == 60  # a week-long outage's attempt count overflows a float: still the maximum
    jittered = RetryPolicy(initial=1, maximum=300)  # default jitter: up to one `initial` more
    waits = [jittered.delay(3) for _ in range(200)]
    assert all(4 <= w <= 5 for w in waits) and len(set(waits)) > 1
