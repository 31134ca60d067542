"""Retention: old history goes, but a dedup mark outlives the longest repeat_interval."""

from __future__ import annotations

import time
from datetime import timedelta
from pathlib import Path

from relay.alerts import WebhookMessage
from relay.runtime import Runtime
from relay.stages.retention import prune_once
from relay.store import open_store
from relay.store.base import Candidate
from tests.helpers import ROUTES, TEMPLATES, fixture


async def test_marks_outlive_retention_when_a_route_repeats_less_often(tmp_path: Path) -> None:
    routes = tmp_path / "routes.yaml"
    rare = "  - matchers: ['alertname=Rare']\n    receivers: [ops-email]\n    repeat_interval: 30d\n\n"
    routes.write_text(ROUTES.read_text().replace("\ndefault_receivers", rare + "default_receivers"))
    runtime = Runtime(routes, TEMPLATES)
    await runtime.start()
    store = open_store(f"sqlite:///{tmp_path / 'relay.db'}")
    await store.open()
    try:
        group = WebhookMessage.model_validate(fixture("firing-poddown.json"))
        day = timedelta(days=1)
        candidate = Candidate("ops-email", "email", group, (timedelta(days=30),), day)
        now = time.time()
        await store.enqueue([candidate], now)
        # Ten days on, with a week's retention: the 30-day reminder mark is still there, so no early repeat.
        await prune_once(store, runtime, timedelta(days=7), now + 10 * 86400)
        [again] = await store.enqueue([candidate], now + 10 * 86400)
        assert again.notification_id is None and again.alerts_deduplicated == 1
    finally:
        await store.close()
        await runtime.close()
