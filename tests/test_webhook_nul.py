"""A NUL in one alert of a group must not keep the group's other alerts from being delivered (issue 11, item 2).

On PostgreSQL such a webhook was answered 503 "store unavailable" for ever, so Alertmanager re-sent it and no alert
of the group ever reached anyone; SQLite took it. Now every store keeps a visible U+FFFD in place of the NUL.
"""

from __future__ import annotations

import json
from pathlib import Path

from tests.conftest import Providers
from tests.contract.test_store_data import poisoned
from tests.helpers import relay_settings, running_relay


async def test_a_group_with_a_nul_alert_is_accepted_and_delivered_whole(tmp_path: Path, providers: Providers,
                                                                        database_url: str) -> None:
    body = poisoned()
    settings = relay_settings(tmp_path, providers.routes, database_url=database_url)
    async with running_relay(settings) as relay:
        answer = await relay.post(body)
        [message] = await providers.slack.wait_for(1)
        ready = (await relay.client.get("/readyz")).status_code
    assert answer.status_code == 200, answer.text
    text = json.dumps(message, ensure_ascii=False)
    assert "server-7d9f-1" in text and "server-7d9f-2" in text  # the innocent alerts
    assert "x\ufffdy" in text and "\\u0000" not in text  # the poisoned one (its summary), NUL shown as U+FFFD
    assert ready == 200
