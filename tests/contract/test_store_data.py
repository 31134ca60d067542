"""Hostile data at the Store seam: both stores accept, or refuse, exactly the same inputs (issue 11, item 2).

A NUL in any text, or a huge fingerprint or groupKey, made PostgreSQL refuse a group that SQLite stored, and
relay reported that as "store unavailable" (503) for ever, so Alertmanager re-sent the group and none of its
innocent alerts was delivered.
"""

from __future__ import annotations

import copy
import secrets
import time
from datetime import timedelta
from typing import Any

import pytest

from relay.alerts import NUL_SHOWN_AS, WebhookMessage
from relay.channels.threads import Threads
from relay.errors import StoreRejected, StoreUnavailable
from relay.store.base import Attempt, Candidate, Store
from relay.store.records import HistoryFilter
from tests.helpers import fixture

HOUR = timedelta(hours=1)
NUL = "\x00"


def poisoned() -> dict[str, Any]:
    """A group of three whose first alert has a NUL in every text field Alertmanager sends, keys included."""
    body = fixture("firing-highmemory-group3-truncated.json")
    body["groupKey"] += NUL
    bad = body["alerts"][0]
    bad["labels"] = {**bad["labels"], "alertname": "High" + NUL + "Memory", "pod": NUL, "k" + NUL: "v"}
    bad["annotations"] = {**bad["annotations"], "summary": "x" + NUL + "y"}
    bad["fingerprint"] += NUL
    bad["generatorURL"] += NUL
    body["extra" + NUL] = {"nested": [NUL]}  # unknown fields are kept in the payload too
    return body


def candidate(group: WebhookMessage, receiver: str = "slack-alerts") -> Candidate:
    return Candidate(receiver, "slack", group, tuple(HOUR for _ in group.alerts), timedelta(hours=24))


async def delivered_alerts(store: Store, now: float) -> list[list[dict[str, str]]]:
    """Claim and complete everything, in lane order; the labels of each notification's alerts."""
    out = []
    while claimed := (await store.claim("w1", 10, now, 60)).claimed:
        for item in claimed:
            out.append([dict(a.labels) for a in item.notification.alerts])
            await store.complete(item.notification.id, "w1", Attempt(now, 0.01, "delivered"))
    return out


async def test_nul_anywhere_is_stored_as_a_visible_replacement_on_both_stores(store: Store) -> None:
    now = time.time()
    body = poisoned()
    first = copy.deepcopy(body)
    first["alerts"] = first["alerts"][1:2]  # one innocent alert first: the group then takes the partial-dedup path
    [one] = await store.enqueue([candidate(WebhookMessage.model_validate(first))], now)
    [rest] = await store.enqueue([candidate(WebhookMessage.model_validate(body))], now)
    assert (one.alerts_enqueued, rest.alerts_enqueued, rest.alerts_deduplicated) == (1, 2, 1)
    detail = await store.detail(rest.notification_id or 0)
    assert detail is not None and detail["group_key"].endswith(NUL_SHOWN_AS)
    sent = await delivered_alerts(store, now)
    assert [[a["pod"] for a in alerts] for alerts in sent] == [["server-7d9f-1"], [NUL_SHOWN_AS, "server-7d9f-2"]]
    assert sent[1][0]["alertname"] == "High\ufffdMemory" and sent[1][0]["k\ufffd"] == "v"
    [row] = await store.history(HistoryFilter(ids=(rest.notification_id or 0,)))
    assert sorted(row["alertnames"]) == ["HighMemory", "High\ufffdMemory"]
    threads = Threads(store, "slack-alerts")
    group = WebhookMessage.model_validate(body)
    await threads.remember(group.alerts[:1], "ref-1")
    assert list((await threads.find(group.alerts)).values()) == ["ref-1"]


async def test_a_nul_that_bypassed_validation_is_refused_alike_and_nothing_is_written(store: Store) -> None:
    clean = WebhookMessage.model_validate(fixture("firing-poddown.json"))
    sneaked = clean.model_copy(update={"groupKey": "g" + NUL})  # model_copy does not validate
    with pytest.raises(StoreRejected, match="NUL"):
        await store.enqueue([candidate(clean, "ops-email"), candidate(sneaked)], time.time())
    assert await store.history(HistoryFilter()) == []
    [again] = await store.enqueue([candidate(clean, "ops-email")], time.time())
    assert again.alerts_enqueued == 1  # no dedup mark was left behind by the refused enqueue


@pytest.mark.parametrize("field", ["fingerprint", "groupKey"])
async def test_a_huge_key_is_stored_and_deduplicated_on_both_stores(store: Store, field: str) -> None:
    body = fixture("firing-poddown.json")
    huge = secrets.token_hex(6000)  # 12 KB that does not compress: over PostgreSQL's index row limit
    if field == "fingerprint":
        body["alerts"][0]["fingerprint"] = huge
    else:
        body["groupKey"] = huge
    group = WebhookMessage.model_validate(body)
    now = time.time()
    [first] = await store.enqueue([candidate(group)], now)
    [again] = await store.enqueue([candidate(group)], now + 1)
    assert (first.alerts_enqueued, again.alerts_deduplicated) == (1, 1)
    [alerts] = await delivered_alerts(store, now)
    assert alerts[0]["alertname"] == "PodDown"
    detail = await store.detail(first.notification_id or 0)
    assert detail is not None and (detail["alerts"][0]["fingerprint"] == huge or detail["group_key"] == huge)
    await Threads(store, "slack-alerts").remember(group.alerts, "ref")
    assert list((await Threads(store, "slack-alerts").find(group.alerts)).values()) == ["ref"]


# PostgreSQL's own words when its disk is full (SQLSTATE 53100), raised where it would be: on writing rows.
DISK_FULL = """
CREATE FUNCTION relay_test_disk_full() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN RAISE EXCEPTION 'could not extend file "base/16384/16385": No space left on device' USING ERRCODE = '53100';
END $$;
CREATE TRIGGER disk_full_n BEFORE INSERT OR UPDATE ON notifications EXECUTE FUNCTION relay_test_disk_full();
CREATE TRIGGER disk_full_r BEFORE INSERT OR UPDATE ON message_refs EXECUTE FUNCTION relay_test_disk_full();
"""


async def test_postgres_is_not_ready_while_its_writes_fail_and_ready_again_after(store: Store,
                                                                                 database_url: str) -> None:
    """Issue 11, item 13 on PostgreSQL (tests/reliability/test_store_faults.py fills a real disk under SQLite)."""
    if not database_url.startswith("postgresql"):
        pytest.skip("SQLite's full disk is a real one in tests/reliability/test_store_faults.py")
    import asyncpg

    group = WebhookMessage.model_validate(fixture("firing-poddown.json"))
    admin = await asyncpg.connect(database_url)
    try:
        await store.ready()
        await admin.execute(DISK_FULL)
        with pytest.raises(StoreUnavailable, match="No space left"):
            await store.enqueue([candidate(group)], time.time())
        with pytest.raises(StoreUnavailable, match="No space left"):  # reads still work; writes do not
            await store.ready()
        await admin.execute("DROP TRIGGER disk_full_n ON notifications; DROP TRIGGER disk_full_r ON message_refs")
        await store.ready()  # its probe write went through
        [accepted] = await store.enqueue([candidate(group)], time.time())
        assert accepted.alerts_enqueued == 1
    finally:
        await admin.close()
