"""relay's metrics stay a bounded set of series whatever providers answer (relay/telemetry/metrics.py,
relay/errors.py)."""

from __future__ import annotations

import itertools
import re
import string
from pathlib import Path

from tests.conftest import Providers
from tests.e2e.test_routing_table import webhook
from tests.helpers import poll_until, relay_settings, running_relay

ERRORS = 150


def error_names(count: int) -> list[str]:
    """Distinct names shaped like Slack's (`channel_not_found`): lowercase letters and underscores."""
    letters = ("".join(p) for p in itertools.product(string.ascii_lowercase, repeat=2))
    return [f"made_up_error_{suffix}" for suffix in itertools.islice(letters, count)]


def reasons(metrics: str, name: str) -> dict[str, float]:
    """reason label -> value of one metric's series (receiver slack-alerts)."""
    out = {}
    for line in metrics.splitlines():
        found = re.match(name + r'\{(?=.*receiver="slack-alerts").*reason="([^"]*)".*\} (\S+)$', line)
        if found:
            out[found.group(1)] = float(found.group(2))
    return out


async def test_150_slack_error_names_are_a_handful_of_series_and_each_name_stays_in_history(
        tmp_path: Path, providers: Providers) -> None:
    names = error_names(ERRORS)
    for name in names:
        providers.slack.respond_with(400, name)
    async with running_relay(relay_settings(tmp_path, providers.routes)) as relay:
        before = (await relay.client.get("/metrics")).text  # one registry per process: other tests' series too
        for i in range(ERRORS):  # warnings go to Slack only
            assert (await relay.post(webhook(f"Warn{i:03d}", "warning"))).status_code == 200

        async def all_dead() -> bool:
            return len(await relay.history(state="dead", limit="1000")) == ERRORS

        await poll_until(all_dead, timeout=60)
        rows = await relay.history(state="dead", limit="1000")
        metrics = (await relay.client.get("/metrics")).text
    for metric in ("relay_notification_requests_failed_total", "relay_notifications_failed_total"):
        old, new = reasons(before, metric), reasons(metrics, metric)
        grew = {reason: value - old.get(reason, 0.0) for reason, value in new.items() if value != old.get(reason)}
        assert grew == {"client_error": ERRORS}, (metric, len(grew))  # one series (relay.errors.Reason), not 150
    # The provider's own name is what an operator reads in history (and `relay dead-letters list`).
    assert sorted(row["last_error"] for row in rows) == sorted(f"client_error: HTTP 400 {n}" for n in names)
