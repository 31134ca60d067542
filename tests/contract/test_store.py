"""The Store contract: every implementation must pass these (SQLite today; PostgreSQL joins the params)."""

from __future__ import annotations

import asyncio
import time
from datetime import timedelta

import pytest

from relay.alerts import WebhookMessage
from relay.channels.threads import Threads
from relay.store import open_store
from relay.store.base import Attempt, Candidate, Handoff, Store
from relay.store.records import HistoryFilter
from tests.helpers import fixture

HOUR = timedelta(hours=1)


def candidate(name: str, receiver: str = "slack-alerts", interval: timedelta = HOUR,
              group_key: str | None = None) -> Candidate:
    body = fixture(name)
    body["groupKey"] = group_key or body["groupKey"]
    group = WebhookMessage.model_validate(body)
    return Candidate(receiver, "slack", group, tuple(interval for _ in group.alerts), timedelta(hours=24))


async def test_enqueue_then_claim_returns_the_notification(store: Store) -> None:
    now = time.time()
    [result] = await store.enqueue([candidate("firing-highlatency-group2.json")], now)
    assert (result.alerts_enqueued, result.alerts_deduplicated) == (2, 0)
    claim = await store.claim("w1", 10, now, 60)
    [claimed] = claim.claimed
    assert claimed.notification.id == result.notification_id
    assert [a.fingerprint for a in claimed.notification.alerts] == ["818fa104f282a75c", "ac877533ed9eda06"]


async def test_same_alerts_twice_are_deduplicated_until_repeat_interval(store: Store) -> None:
    now = time.time()
    first = await store.enqueue([candidate("firing-poddown.json", interval=HOUR)], now)
    again = await store.enqueue([candidate("firing-poddown.json", interval=HOUR)], now + 60)
    reminder = await store.enqueue([candidate("firing-poddown.json", interval=HOUR)], now + 3601)
    assert first[0].notification_id is not None
    assert again[0].notification_id is None and again[0].alerts_deduplicated == 1
    assert reminder[0].notification_id is not None


async def test_dedup_is_per_receiver_and_status(store: Store) -> None:
    now = time.time()
    await store.enqueue([candidate("firing-poddown.json")], now)
    other = await store.enqueue([candidate("firing-poddown.json", receiver="ops-email")], now)
    resolved = await store.enqueue([candidate("resolved-poddown.json")], now)
    resolved_again = await store.enqueue([candidate("resolved-poddown.json")], now)
    assert other[0].notification_id is not None
    assert resolved[0].notification_id is not None
    assert resolved_again[0].notification_id is None


async def test_a_firing_after_its_resolve_was_shown_is_a_new_page_and_its_resolve_closes_it(store: Store) -> None:
    """Issue 20: relay showed a resolve (Alertmanager's or its own, inferred) and the same episode fires again: that
    is delivered, not dropped as a duplicate until repeat_interval, and the resolve after it is delivered too. Only a
    re-send of the state last shown is a duplicate."""
    now = time.time()
    steps = [("firing-poddown.json", 0), ("resolved-poddown.json", 10), ("firing-poddown.json", 20),
             ("firing-poddown.json", 30), ("resolved-poddown.json", 40), ("resolved-poddown.json", 50),
             ("firing-poddown.json", 60)]
    delivered = []
    for name, at in steps:
        [result] = await store.enqueue([candidate(name, interval=HOUR)], now + at)
        delivered.append(result.notification_id is not None)
    assert delivered == [True, True, True, False, True, False, True]


async def test_dedup_follows_the_order_states_were_shown_not_the_order_webhooks_arrived(store: Store) -> None:
    """Two halves of an HA pair, or two replicas: a webhook received earlier can commit later. Here the resolve was
    received at 10 and shown; the other half's firing, received at 8 but committed after it, pages again (a firing
    after a shown resolve); that half's resolve, received at 9, must then close the page, not be dropped because its
    time is older than the resolve shown before (seen in tests/reliability/test_postgres.py: pages left open)."""
    now = time.time()
    delivered = []
    for name, at in [("firing-poddown.json", 0), ("resolved-poddown.json", 10), ("firing-poddown.json", 8),
                     ("resolved-poddown.json", 9)]:
        [result] = await store.enqueue([candidate(name, interval=HOUR)], now + at)
        delivered.append(result.notification_id is not None)
    assert delivered == [True, True, True, True]


async def test_partial_dedup_keeps_only_new_alerts(store: Store) -> None:
    now = time.time()
    group = fixture("firing-highlatency-group2.json")
    one = {**group, "alerts": group["alerts"][:1]}
    msg = WebhookMessage.model_validate(one)
    await store.enqueue([Candidate("slack-alerts", "slack", msg, (HOUR,), HOUR)], now)
    [result] = await store.enqueue([candidate("firing-highlatency-group2.json")], now)
    assert (result.alerts_enqueued, result.alerts_deduplicated) == (1, 1)
    detail = await store.detail(result.notification_id or 0)
    assert detail is not None and [a["fingerprint"] for a in detail["alerts"]] == ["ac877533ed9eda06"]
    # The group again with its second alert resolved: only the resolve is new, and the message is a resolve.
    both = fixture("firing-highlatency-group2.json")
    both["alerts"][1] = {**both["alerts"][1], "status": "resolved", "endsAt": "2026-11-20T10:15:00Z"}
    mixed = WebhookMessage.model_validate(both)
    [resolve] = await store.enqueue([Candidate("slack-alerts", "slack", mixed, (HOUR, HOUR), HOUR)], now)
    assert (resolve.alerts_enqueued, resolve.alerts_deduplicated) == (1, 1)
    [row] = await store.history(HistoryFilter(ids=(resolve.notification_id or 0,)))
    assert (row["status"], row["alertnames"]) == ("resolved", ["HighLatency"])
    sent = []  # the lane delivered in order, as a worker sees it
    while claimed := (await store.claim("w1", 10, now, 60)).claimed:
        [head] = claimed
        sent.append((head.notification.group.status, [(a.fingerprint, a.status) for a in head.notification.alerts]))
        await store.complete(head.notification.id, "w1", Attempt(now, 0.01, "delivered"))
    assert sent == [("firing", [("818fa104f282a75c", "firing")]), ("firing", [("ac877533ed9eda06", "firing")]),
                    ("resolved", [("ac877533ed9eda06", "resolved")])]


async def test_lane_is_fifo_and_a_head_blocks_its_lane(store: Store) -> None:
    now = time.time()
    firing = await store.enqueue([candidate("firing-poddown.json")], now)
    resolved = await store.enqueue([candidate("resolved-poddown.json")], now)
    other_lane = await store.enqueue([candidate("firing-highlatency-group2.json")], now)
    claim = await store.claim("w1", 10, now, 60)
    ids = {c.notification.id for c in claim.claimed}
    assert ids == {firing[0].notification_id, other_lane[0].notification_id}
    head = next(c for c in claim.claimed if c.notification.id == firing[0].notification_id)
    assert (await store.claim("w1", 10, now, 60)).claimed == []  # leased heads are not handed out twice
    await store.complete(head.notification.id, "w1", Attempt(now, 0.01, "delivered"))
    [following] = (await store.claim("w1", 10, now, 60)).claimed
    assert following.notification.id == resolved[0].notification_id


async def test_retry_later_keeps_the_lane_and_reports_next_due(store: Store) -> None:
    now = time.time()
    [first] = await store.enqueue([candidate("firing-poddown.json")], now)
    await store.enqueue([candidate("resolved-poddown.json")], now)
    [claimed] = (await store.claim("w1", 10, now, 60)).claimed
    await store.retry_later(claimed.notification.id, "w1", Attempt(now, 0.1, "retry", "http_500"), now + 30)
    claim = await store.claim("w1", 10, now + 1, 60)
    assert claim.claimed == [] and claim.next_due == pytest.approx(now + 30)
    [again] = (await store.claim("w1", 10, now + 31, 60)).claimed
    assert again.notification.id == first.notification_id and again.notification.attempts == 1


async def test_expired_lease_is_claimed_again(store: Store) -> None:
    now = time.time()
    await store.enqueue([candidate("firing-poddown.json")], now)
    [claimed] = (await store.claim("dead-worker", 10, now, 5)).claimed
    assert (await store.claim("w2", 10, now + 1, 5)).claimed == []
    [reclaimed] = (await store.claim("w2", 10, now + 6, 5)).claimed
    assert reclaimed.notification.id == claimed.notification.id
    # The first worker's late answer no longer counts: the lease belongs to w2.
    await store.complete(claimed.notification.id, "dead-worker", Attempt(now, 1, "delivered"))
    [row] = await store.history(HistoryFilter(ids=(claimed.notification.id,)))
    assert row["state"] == "pending"


async def test_retry_now_brings_a_receivers_backoffs_forward_but_not_its_rate_limits(store: Store) -> None:
    now = time.time()
    lanes = ["backoff", "rate-limited", "in-flight", "new"]
    ids = {}
    for lane in lanes:  # four alerts, each its own group
        body = fixture("firing-poddown.json")
        body["groupKey"], body["alerts"][0]["fingerprint"] = lane, f"{lane}-fingerprint"
        group = WebhookMessage.model_validate(body)
        [result] = await store.enqueue([Candidate("slack-alerts", "slack", group, (HOUR,), HOUR)], now)
        ids[lane] = result.notification_id
    [mail] = await store.enqueue([candidate("firing-poddown.json", receiver="ops-email")], now)
    claimed = {c.notification.id for c in (await store.claim("w1", 4, now, 60)).claimed}
    assert claimed == {ids["backoff"], ids["rate-limited"], ids["in-flight"], ids["new"]}
    await store.retry_later(ids["backoff"], "w1", Attempt(now, 0.1, "retry", "connection_error"), now + 300)
    await store.retry_later(ids["rate-limited"], "w1", Attempt(now, 0.1, "retry", "rate_limited"), now + 300)
    await store.retry_later(ids["new"], "w1", Attempt(now, 0, "deferred", "rate_limited"), now + 300,
                            count_attempt=False)
    [other] = (await store.claim("w2", 10, now, 60)).claimed
    assert other.notification.id == mail.notification_id
    await store.retry_later(mail.notification_id or 0, "w2", Attempt(now, 0.1, "retry", "smtp_4xx"), now + 300)

    assert await store.retry_now("slack-alerts", now + 1) == 1
    due = (await store.claim("w3", 10, now + 1, 60)).claimed
    assert [c.notification.id for c in due] == [ids["backoff"]]  # not the other receiver's, nor a rate limit's
    assert await store.retry_now("slack-alerts", now + 1) == 0


async def test_dead_letter_frees_the_lane_and_can_be_replayed(store: Store) -> None:
    now = time.time()
    [first] = await store.enqueue([candidate("firing-poddown.json")], now)
    same_lane = fixture("firing-poddown.json")["groupKey"]
    [second] = await store.enqueue([candidate("firing-highlatency-group2.json", group_key=same_lane)], now)
    [claimed] = (await store.claim("w1", 10, now, 60)).claimed
    await store.dead_letter(claimed.notification.id, "w1", Attempt(now, 0.1, "dead", "invalid_token"))
    [nxt] = (await store.claim("w1", 10, now, 60)).claimed
    assert nxt.notification.id == second.notification_id
    stats = await store.stats(now)
    assert stats.dead == {"slack-alerts": 1} and stats.pending == {"slack-alerts": 1}
    [row] = await store.history(HistoryFilter(state="dead"))
    assert row["id"] == first.notification_id and "invalid_token" in row["last_error"]
    assert await store.replay(first.notification_id, now) == "replayed"
    assert await store.replay(first.notification_id, now) == "missing"
    assert (await store.stats(now)).dead == {}


async def test_concurrent_enqueues_all_commit_and_dedup_each_other(store: Store) -> None:
    now = time.time()
    results = await asyncio.gather(*(store.enqueue([candidate("firing-poddown.json")], now) for _ in range(50)))
    written = [r[0].notification_id for r in results if r[0].notification_id is not None]
    assert len(written) == 1  # an HA pair's simultaneous copies notify once


async def test_history_filters(store: Store) -> None:
    now = time.time()
    await store.enqueue([candidate("firing-poddown.json"), candidate("firing-highlatency-group2.json",
                                                                      receiver="ops-email")], now)
    assert [r["alertnames"] for r in await store.history(HistoryFilter(alertname="PodDown"))] == [["PodDown"]]
    assert [r["receiver"] for r in await store.history(HistoryFilter(receiver="ops-email"))] == ["ops-email"]


async def test_outbox_survives_reopen(database_url: str) -> None:
    url = database_url
    first = open_store(url)
    await first.open()
    now = time.time()
    [result] = await first.enqueue([candidate("firing-poddown.json")], now)
    await first.claim("w1", 10, now, 600)  # leased by a process that then dies
    await first.close()
    second = open_store(url)
    await second.open()
    await second.release_leases()
    try:
        [claimed] = (await second.claim("w2", 10, now, 600)).claimed  # leases of the old process are released
        assert claimed.notification.id == result.notification_id
    finally:
        await second.close()


async def test_replay_never_reopens_an_alert_that_already_resolved(store: Store) -> None:
    now = time.time()
    [firing] = await store.enqueue([candidate("firing-poddown.json")], now)
    [claimed] = (await store.claim("w1", 10, now, 60)).claimed
    await store.dead_letter(claimed.notification.id, "w1", Attempt(now, 0.1, "dead", "unconfigured"))
    await store.enqueue([candidate("resolved-poddown.json")], now + 1)  # the resolve went out meanwhile
    assert await store.replay(firing.notification_id, now + 2) == "resolved"
    assert (await store.stats(now)).dead == {"slack-alerts": 1}


async def test_a_firing_whose_resolve_is_a_dead_letter_too_is_replayed_before_it(store: Store) -> None:
    """Both dead (Slack unconfigured): the resolve was never sent, so the firing re-opens nothing; replayed oldest
    first, the lane sends the firing, then the resolve."""
    now = time.time()
    ids = []
    for name in ("firing-poddown.json", "resolved-poddown.json"):
        [result] = await store.enqueue([candidate(name)], now)
        [claimed] = (await store.claim("w1", 10, now, 60)).claimed
        await store.dead_letter(claimed.notification.id, "w1", Attempt(now, 0.1, "dead", "unconfigured"))
        ids.append(result.notification_id)
    assert [await store.replay(i, now + 1) for i in ids] == ["replayed", "replayed"]
    for expected in ids:
        [claimed] = (await store.claim("w1", 10, now + 2, 60)).claimed
        assert claimed.notification.id == expected
        await store.complete(claimed.notification.id, "w1", Attempt(now + 2, 0.1, "delivered"))


async def test_claim_respects_room_per_receiver(store: Store) -> None:
    now = time.time()
    await store.enqueue([candidate("firing-poddown.json"), candidate("firing-highlatency-group2.json")], now)
    await store.enqueue([candidate("firing-poddown.json", receiver="ops-email")], now)
    claim = await store.claim("w1", 10, now, 60, room={"slack-alerts": 1})
    assert sorted(c.notification.receiver for c in claim.claimed) == ["ops-email", "slack-alerts"]
    assert [c.notification.receiver for c in (await store.claim("w1", 10, now, 60)).claimed] == ["slack-alerts"]


async def test_message_refs_are_per_receiver_and_alert_episode(store: Store) -> None:
    firing = WebhookMessage.model_validate(fixture("firing-highlatency-group2.json"))
    resolved = WebhookMessage.model_validate(fixture("resolved-highlatency-group2.json"))
    slack = Threads(store, "slack-alerts")
    await slack.remember(firing.alerts, '{"ts": "1.0"}')
    # The resolve carries the same fingerprints and startsAt (its endsAt differs): it finds the firing's message.
    assert set((await slack.find(resolved.alerts)).values()) == {'{"ts": "1.0"}'}
    assert len(await slack.find(resolved.alerts)) == 2
    assert await Threads(store, "ops-email").find(resolved.alerts) == {}
    later = firing.alerts[0].model_copy(update={"startsAt": "2030-01-01T00:00:00Z"})
    assert await slack.find([later]) == {}  # a new episode of the same alert starts a new thread
    await slack.remember(firing.alerts[:1], '{"ts": "2.0"}')
    assert sorted((await slack.find(firing.alerts)).values()) == ['{"ts": "1.0"}', '{"ts": "2.0"}']


async def test_many_deliveries_recording_threads_at_once_never_fail(store: Store) -> None:
    """Deliveries record where they announced alerts while others do the same: every record must stick.

    (SQLite once handed each record's cursor to the event loop, which reset the cached statement from the wrong
    thread while the writer was running it: about 1 in 1,000 records failed with "API misuse", and that email
    was sent again.)"""
    async def deliveries(n: int) -> None:
        for i in range(100):
            await store.remember_refs("ops-email", [f"{n}-{i}-{j}" for j in range(20)], f"<{n}.{i}@relay>")

    await asyncio.gather(*(deliveries(n) for n in range(40)))
    keys = [f"{n}-99-{j}" for n in range(40) for j in range(20)]
    assert await store.find_refs("ops-email", keys) == {f"{n}-99-{j}": f"<{n}.99@relay>"
                                                        for n in range(40) for j in range(20)}


async def test_prune_forgets_old_deliveries_and_marks_but_keeps_pending_and_dead_letters(store: Store) -> None:
    now = time.time()
    [delivered] = await store.enqueue([candidate("firing-poddown.json")], now)
    [dead] = await store.enqueue([candidate("firing-highlatency-group2.json")], now)
    [pending] = await store.enqueue([candidate("firing-higherrorrate.json")], now)
    claims = {c.notification.id: c for c in (await store.claim("w1", 10, now, 60)).claimed}
    await store.complete(delivered.notification_id, "w1", Attempt(now, 0.1, "delivered"))
    await store.dead_letter(dead.notification_id, "w1", Attempt(now, 0.1, "dead", "invalid_token"))
    await store.retry_later(claims[pending.notification_id].notification.id, "w1", Attempt(now, 0.1, "retry"), now)
    await Threads(store, "slack-alerts").remember(WebhookMessage.model_validate(
        fixture("firing-poddown.json")).alerts, "ref")

    assert await store.prune(now - 60, now - 60) == 0  # nothing is old yet
    assert await store.prune(now + 1, now + 1) == 1
    rows = {r["id"]: r["state"] for r in await store.history(HistoryFilter())}
    assert rows == {dead.notification_id: "dead", pending.notification_id: "pending"}
    # The dedup mark is gone too: the same firing is a new notification, and its thread is forgotten.
    [again] = await store.enqueue([candidate("firing-poddown.json")], now + 2)
    assert again.notification_id is not None
    resolved = WebhookMessage.model_validate(fixture("resolved-poddown.json"))
    assert await Threads(store, "slack-alerts").find(resolved.alerts) == {}


async def test_detail_shows_alerts_and_attempts_and_purge_removes_only_dead_letters(store: Store) -> None:
    now = time.time()
    [result] = await store.enqueue([candidate("firing-poddown.json")], now)
    assert result.notification_id is not None
    [claimed] = (await store.claim("w1", 10, now, 60)).claimed
    await store.retry_later(claimed.notification.id, "w1", Attempt(now, 0.2, "retry", "http_500", "HTTP 500"), now)
    assert await store.purge(result.notification_id) is False  # pending: not a dead letter
    [claimed] = (await store.claim("w1", 10, now + 1, 60)).claimed
    await store.dead_letter(claimed.notification.id, "w1", Attempt(now + 1, 0.1, "dead", "invalid_token"))
    detail = await store.detail(result.notification_id)
    assert detail is not None and detail["state"] == "dead"
    assert [a["labels"]["alertname"] for a in detail["alerts"]] == ["PodDown"]
    assert [(a["outcome"], a["reason"]) for a in detail["attempt_log"]] == [("retry", "http_500"),
                                                                           ("dead", "invalid_token")]
    assert await store.purge(result.notification_id) is True
    assert await store.detail(result.notification_id) is None
    assert (await store.stats(now)).dead == {}
    assert await store.detail(10**9) is None


async def test_handoff_leases_new_lane_heads_only_within_the_offer(store: Store) -> None:
    now = time.time()
    offer = Handoff("w1", 60, limit=2, room={"ops-email": 0})
    [first, mail] = await store.enqueue([candidate("firing-poddown.json"),
                                         candidate("firing-poddown.json", receiver="ops-email")], now, offer)
    assert first.claimed is not None and first.claimed.notification.id == first.notification_id
    assert [a.fingerprint for a in first.claimed.notification.alerts] == ["1080c9b07277e8d8"]
    assert mail.claimed is None  # no room for that receiver: it waits for a claim
    # The resolve lands in the same lane behind its firing: never handed off ahead of it.
    [resolved] = await store.enqueue([candidate("resolved-poddown.json")], now, offer)
    assert resolved.notification_id is not None and resolved.claimed is None
    claim = await store.claim("w2", 10, now, 60)
    assert [c.notification.id for c in claim.claimed] == [mail.notification_id]  # the handed-off head is leased
    await store.complete(first.notification_id, "w1", Attempt(now, 0.01, "delivered"))
    [nxt] = (await store.claim("w2", 10, now, 60)).claimed
    assert nxt.notification.id == resolved.notification_id


async def test_replay_of_a_dead_letter_older_than_retention_sends_no_firing_alert(store: Store) -> None:
    now = time.time()
    [firing] = await store.enqueue([candidate("firing-poddown.json")], now)
    [claimed] = (await store.claim("w1", 10, now, 60)).claimed
    await store.dead_letter(claimed.notification.id, "w1", Attempt(now, 0.1, "dead", "unconfigured"))
    await store.enqueue([candidate("resolved-poddown.json")], now + 1)
    later = now + 8 * 86400
    await store.prune(later - 7 * 86400, later - 7 * 86400)  # the resolve's dedup mark is forgotten
    assert await store.replay(firing.notification_id, later, forgotten_before=later - 7 * 86400) == "too_old"
    assert (await store.stats(later)).dead == {"slack-alerts": 1}


async def test_cancel_takes_a_waiting_notification_out_of_its_lane_and_history_keeps_it(store: Store) -> None:
    now = time.time()
    [stuck] = await store.enqueue([candidate("firing-poddown.json")], now)
    [behind] = await store.enqueue([candidate("resolved-poddown.json")], now)
    assert stuck.notification_id is not None and behind.notification_id is not None
    [claimed] = (await store.claim("w1", 10, now, 60)).claimed
    cancelled = Attempt(now, 0.0, "cancelled", "cancelled", "by an operator")
    assert await store.cancel(stuck.notification_id, now, cancelled) == "in_flight"  # being sent: not now
    await store.retry_later(claimed.notification.id, "w1", Attempt(now, 0.1, "retry", "server_error"), now + 300)
    rows = {r["id"]: r for r in await store.history(HistoryFilter())}
    assert rows[behind.notification_id]["behind"] == stuck.notification_id  # it waits for the stuck one
    assert rows[stuck.notification_id]["behind"] is None

    assert await store.cancel(stuck.notification_id, now + 1, cancelled) == "cancelled"
    [following] = (await store.claim("w1", 10, now + 2, 60)).claimed  # the lane goes on at once
    assert following.notification.id == behind.notification_id
    detail = await store.detail(stuck.notification_id)
    assert detail is not None and detail["state"] == "cancelled" and detail["behind"] is None
    assert [(a["outcome"], a["reason"]) for a in detail["attempt_log"]] == [("retry", "server_error"),
                                                                           ("cancelled", "cancelled")]
    assert (await store.stats(now)).pending == {"slack-alerts": 1}  # only the one that goes on
    assert await store.cancel(stuck.notification_id, now + 3, cancelled) == "missing"  # once
    assert await store.cancel(10**9, now + 3, cancelled) == "missing"
    assert await store.replay(stuck.notification_id, now + 3) == "missing"  # not a dead letter
    assert await store.prune(now + 10, now - 60) == 1 and await store.detail(stuck.notification_id) is None


async def test_attempts_with_the_same_start_are_listed_in_the_order_they_were_recorded(store: Store) -> None:
    """Deferrals (a rate limit, a shutdown hand-back) record attempts at one instant: history keeps their order."""
    now = time.time()
    [result] = await store.enqueue([candidate("firing-poddown.json")], now)
    assert result.notification_id is not None
    starts = [now + (i % 3) for i in range(30)]  # three instants, recorded out of order, ten attempts each
    for i, started in enumerate(starts):
        [claimed] = (await store.claim("w1", 10, now + 10, 60)).claimed
        await store.retry_later(claimed.notification.id, "w1", Attempt(started, 0.0, "deferred", f"r{i}"), now,
                                count_attempt=False)
    detail = await store.detail(result.notification_id)
    assert detail is not None
    expected = [f"r{i}" for _, i in sorted((started, i) for i, started in enumerate(starts))]
    assert [a["reason"] for a in detail["attempt_log"]] == expected
