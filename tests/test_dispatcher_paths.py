"""The dispatcher's paths through the scripted channel double, on a real store and runtime (issue 13's guard).

Rate-limit deferral, an unknown receiver, a channel raising unexpectedly, shutdown handing claimed work back, and
the ordinary outcomes (transient, permanent, Retry-After), asserted as a user sees them: history, each
notification's attempt log, what the provider was called with, and the metrics.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import REGISTRY

from relay import outbox
from relay.dispatcher import Dispatcher, DispatcherOptions
from relay.errors import DeliveryUnfinished, PermanentDeliveryError, Reason, TransientDeliveryError
from relay.pacing.ratelimit import Buckets, Budget, by_destination
from relay.pacing.retry import RetryPolicy
from relay.runtime import Runtime
from relay.store import open_store
from relay.store.base import Enqueued, Handoff, Store
from relay.store.records import HistoryFilter
from tests.channel_contract import assert_leaks_no_secret
from tests.doubles import DELIVERED, Hold, ScriptedChannel, Step, candidate, group, scripted_runtime, swap
from tests.helpers import poll_until

WEBHOOK_URL = "https://hooks.slack.com/services/T0000/B0000/XXXXSECRETXXXXXXXXXXXXXX"
SECRET = WEBHOOK_URL.rsplit("/", 1)[-1]
FAST = RetryPolicy(initial=0.05, maximum=0.5, jitter=0)


def receiver_yaml(name: str, extra: str = "", url: str = WEBHOOK_URL) -> str:
    return f'  - name: {name}\n    slack:\n      webhook_url: "{url}"\n{extra}'


def write_routes(tmp_path: Path, *receivers: str) -> Path:
    path = tmp_path / "routes.yaml"
    first = receivers[0].split("\n", 1)[0].removeprefix("  - name: ")
    path.write_text("receivers:\n" + "".join(receivers) + f"routes: []\ndefault_receivers: [{first}]\n")
    return path


@pytest.fixture
async def store(database_url: str) -> AsyncIterator[Store]:
    """Both stores, for the paths that run store-specific SQL (deferral, leases, handing back)."""
    s = open_store(database_url)
    await s.open()
    yield s
    await s.close()


# The paths that are the dispatcher's alone run on SQLite only: a fresh PostgreSQL database per case costs more
# than it checks (the contract suite covers both stores' outcome recording).
SQLITE_ONLY = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)


@contextlib.asynccontextmanager
async def dispatching(store: Store, runtime: Runtime, **options: Any) -> AsyncIterator[Dispatcher]:
    """A dispatcher's claim loop running for the block, stopped (grace 2 s) and its runtime closed after."""
    options.setdefault("policy", FAST)
    options.setdefault("default_rate_limits", False)  # as the suite's relay_settings; the rate-limit tests turn it on
    dispatcher = Dispatcher(store, runtime, DispatcherOptions(**options))
    task = asyncio.create_task(dispatcher.run())
    try:
        yield dispatcher
    finally:
        await dispatcher.stop(2)
        await task
        await runtime.close()


async def enqueue(store: Store, receiver: str, group_key: str, *alertnames: str,
                  give_up_after: timedelta = timedelta(hours=24)) -> list[int]:
    """One webhook per alert name, all in one lane (receiver + groupKey), in that order; their ids."""
    ids = []
    for name in alertnames:
        [done] = await store.enqueue([candidate(receiver, group(group_key, name), give_up_after=give_up_after)],
                                     time.time())
        assert done.notification_id is not None
        ids.append(done.notification_id)
    return ids


async def row(store: Store, notification_id: int) -> dict[str, Any]:
    detail = await store.detail(notification_id)
    assert detail is not None
    return detail


async def settled(store: Store, ids: list[int], timeout: float = 10.0) -> list[dict[str, Any]]:
    """Await every notification leaving `pending` (delivered, dead), then each one's detail in `ids` order."""
    async def done() -> bool:
        return all(r["state"] != "pending" for r in await store.history(HistoryFilter(ids=tuple(ids))))

    await poll_until(done, timeout=timeout)
    return [await row(store, i) for i in ids]


def log_of(detail: dict[str, Any]) -> list[tuple[str, str, str]]:
    return [(a["outcome"], a["reason"], a["detail"]) for a in detail["attempt_log"]]


def metric(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


# 1, 2: rate-limit deferral ------------------------------------------------------------------------------------


async def test_a_rate_limited_lane_waits_for_its_token_in_order_without_spending_attempts(
        tmp_path: Path, store: Store) -> None:
    """Issue 14 changed how: a notification waits for its destination's token in the outbox, untouched (it is
    claimed only with a token), so a wait leaves no `deferred` attempt row and no `rate_limited` error any more."""
    routes = write_routes(tmp_path, receiver_yaml("team-slack", "    rate_limit: {rate: 1, burst: 1}\n"))
    channel = ScriptedChannel()
    runtime = await scripted_runtime(routes, {"team-slack": channel})
    requests = metric("relay_notification_requests_total", receiver="team-slack", integration="slack")
    ids = await enqueue(store, "team-slack", "lane-1", "Lane1", "Lane2", "Lane3")
    async with dispatching(store, runtime, default_rate_limits=True) as dispatcher:
        dispatcher.wake()
        await channel.wait_for(lambda c: len(c.calls) == 1)
        waiting = await row(store, ids[1])
        assert (waiting["state"], waiting["attempts"], waiting["last_error"]) == ("pending", 0, None)
        assert waiting["attempt_log"] == []  # not claimed, not touched while it waits for its token
        first, second, third = await settled(store, ids)

    assert channel.delivered == [("Lane1",), ("Lane2",), ("Lane3",)]  # lane order kept
    assert [c.attempts_before for c in channel.calls] == [0, 0, 0]  # the waits cost no attempt
    assert [(d["state"], d["attempts"]) for d in (first, second, third)] == [("delivered", 1)] * 3
    assert log_of(first) == log_of(second) == log_of(third) == [("delivered", "", "")]
    starts = [d["attempt_log"][0]["started_at"] for d in (first, second, third)]
    assert starts[1] - starts[0] >= 0.9 and starts[2] - starts[1] >= 0.9  # one token a second, burst 1
    # A wait is not a provider call.
    assert metric("relay_notification_requests_total", receiver="team-slack", integration="slack") - requests == 3


@SQLITE_ONLY
async def test_lanes_to_one_destination_share_its_bucket_but_do_not_wait_for_each_other(
        tmp_path: Path, store: Store) -> None:
    """Two receivers on one webhook URL are one destination: one bucket (burst 2). Lane B's head goes out with
    lane A's head at once, not behind lane A's backlog; lane A's second then waits, because B took a token."""
    limit = "    rate_limit: {rate: 2, burst: 2}\n"
    routes = write_routes(tmp_path, receiver_yaml("slack-a", limit), receiver_yaml("slack-b", limit))
    a, b = ScriptedChannel(), ScriptedChannel()
    runtime = await scripted_runtime(routes, {"slack-a": a, "slack-b": b})
    assert a.destination == b.destination
    lane_a = await enqueue(store, "slack-a", "g", "A1", "A2", "A3")
    [b1] = await enqueue(store, "slack-b", "g", "B1")
    async with dispatching(store, runtime, default_rate_limits=True) as dispatcher:
        dispatcher.wake()
        a1, a2, a3, only_b = await settled(store, [*lane_a, b1])

    assert a.delivered == [("A1",), ("A2",), ("A3",)] and b.delivered == [("B1",)]
    assert all(log_of(d) == [("delivered", "", "")] for d in (a1, a2, a3, only_b))  # waits are not attempts
    start = {name: d["attempt_log"][0]["started_at"] for name, d in zip(("A1", "A2", "A3", "B1"),
                                                                         (a1, a2, a3, only_b), strict=True)}
    assert max(start["A1"], start["B1"]) < start["A2"] < start["A3"]  # both heads found a token at once
    assert start["A2"] - min(start["A1"], start["B1"]) >= 0.4  # the shared bucket was empty: 2 a second
    assert [d["attempts"] for d in (a1, a2, a3, only_b)] == [1, 1, 1, 1]


class CountingClaims:
    """The store, counting the claims made of it and the notifications they leased."""

    def __init__(self, store: Store) -> None:
        self.store, self.calls, self.rows = store, 0, 0

    async def claim(self, *args: Any, **kwargs: Any) -> Any:
        claim = await self.store.claim(*args, **kwargs)
        self.calls += 1
        self.rows += len(claim.claimed)
        return claim

    def __getattr__(self, name: str) -> Any:
        return getattr(self.store, name)


async def test_a_backlog_waiting_for_tokens_costs_a_claim_per_token_not_per_notification(
        tmp_path: Path, store: Store) -> None:
    """Issue 14: 200 notifications wait on a 20/s destination. Each claim takes only what has a token (nothing is
    claimed to be put back), the dispatcher claims about once per token (a wake for the token, one for the send
    that finished), and the waiting rows are never touched."""
    routes = write_routes(tmp_path, receiver_yaml("team-slack", "    rate_limit: {rate: 20, burst: 1}\n"))
    channel = ScriptedChannel()
    runtime = await scripted_runtime(routes, {"team-slack": channel})
    ids = [i for n in range(200) for i in await enqueue(store, "team-slack", f"lane-{n}", f"Storm{n:03d}")]
    counting = CountingClaims(store)
    async with dispatching(counting, runtime, default_rate_limits=True) as dispatcher:  # type: ignore[arg-type]
        dispatcher.wake()
        await channel.wait_for(lambda c: len(c.delivered) >= 30)
        sent, claims, leased = len(channel.calls), counting.calls, counting.rows
    assert leased <= sent + 1  # what was claimed was sent (one claim may be leasing as we look)
    assert claims <= 3 * sent + 5, f"{claims} claims for {sent} tokens"
    untouched = [await row(store, i) for i in ids[-20:]]
    assert all(d["attempts"] == 0 and d["attempt_log"] == [] and d["last_error"] is None for d in untouched)


# Completions claim only when something may wait (issue 24) ------------------------------------------------------
# The idle poll is pushed out of reach, so whatever is delivered here was claimed on a wake, not found by the poll.


@pytest.fixture
def no_idle_poll(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("relay.dispatcher.IDLE_POLL_SECONDS", 60.0)


async def send_through_outbox(dispatcher: Dispatcher, store: Store, receiver: str, group_key: str,
                              alertname: str) -> Enqueued:
    """What the webhook does: enqueue through relay.outbox, handed straight to the dispatcher when it can be."""
    [done] = await outbox.enqueue(dispatcher, store, [candidate(receiver, group(group_key, alertname))], time.time())
    return done


@SQLITE_ONLY
async def test_sends_handed_off_by_the_webhook_claim_nothing_after_they_finish(
        tmp_path: Path, store: Store, no_idle_poll: None) -> None:
    """Each webhook's notification is the head of its own lane and handed off at its commit; its completion used to
    wake the claim loop for a claim that found nothing (one empty claim per alert). Now 20 such sends cost no
    claim at all once the first claim has seen an empty outbox."""
    routes = write_routes(tmp_path, receiver_yaml("team-slack"))
    channel = ScriptedChannel()
    counting = CountingClaims(store)
    async with dispatching(counting, await scripted_runtime(routes, {"team-slack": channel})) as dispatcher:  # type: ignore[arg-type]
        await poll_until(lambda: counting.calls >= 1)  # the claim at start: an empty outbox
        before = counting.calls
        for n in range(20):
            done = await send_through_outbox(dispatcher, store, "team-slack", f"lane-{n}", f"Own{n}")
            assert done.claimed is not None  # handed off, not left for a claim
            await channel.wait_for(lambda c, n=n: len(c.delivered) == n + 1)
        claims = counting.calls - before
    assert claims == 0, f"{claims} claims for 20 handed-off sends"


@SQLITE_ONLY
async def test_a_lane_waiting_behind_a_send_goes_as_soon_as_the_send_finishes(
        tmp_path: Path, store: Store, no_idle_poll: None) -> None:
    """The second notification of a lane cannot be handed off while the first is being sent: the send's completion
    claims it (with the idle poll a minute away, nothing else would)."""
    routes = write_routes(tmp_path, receiver_yaml("team-slack"))
    hold = Hold()
    channel = ScriptedChannel([hold])
    async with dispatching(store, await scripted_runtime(routes, {"team-slack": channel})) as dispatcher:
        first = await send_through_outbox(dispatcher, store, "team-slack", "lane", "First")
        await asyncio.wait_for(hold.entered.wait(), 10)
        second = await send_through_outbox(dispatcher, store, "team-slack", "lane", "Second")
        assert first.claimed is not None and second.claimed is None
        hold.release()
        await channel.wait_for(lambda c: c.delivered == [("First",), ("Second",)])


@SQLITE_ONLY
async def test_a_receiver_at_its_room_gets_the_rest_of_its_backlog_as_sends_finish(
        tmp_path: Path, store: Store, no_idle_poll: None) -> None:
    """Six lanes wait for one receiver allowed two sends at once: the claim takes two and leaves four due, so each
    completion must claim again."""
    routes = write_routes(tmp_path, receiver_yaml("team-slack"))
    channel = ScriptedChannel()
    for n in range(6):
        await enqueue(store, "team-slack", f"lane-{n}", f"Waiting{n}")
    async with dispatching(store, await scripted_runtime(routes, {"team-slack": channel}),
                           workers_per_receiver=2) as dispatcher:
        dispatcher.wake()
        await channel.wait_for(lambda c: len(c.delivered) == 6)


@SQLITE_ONLY
async def test_an_unfinished_send_goes_on_at_once_without_waiting_for_the_poll(
        tmp_path: Path, store: Store, no_idle_poll: None) -> None:
    """A send that went out in part is due again at once (no backoff): its completion must claim it."""
    routes = write_routes(tmp_path, receiver_yaml("team-slack"))
    channel = ScriptedChannel([DeliveryUnfinished("summary shown; details follow")])
    counting = CountingClaims(store)
    async with dispatching(counting, await scripted_runtime(routes, {"team-slack": channel})) as dispatcher:  # type: ignore[arg-type]
        await poll_until(lambda: counting.calls >= 1)  # the claim at start saw an empty outbox
        await send_through_outbox(dispatcher, store, "team-slack", "lane", "InParts")
        await channel.wait_for(lambda c: c.delivered == [("InParts",)])
    assert [c.result for c in channel.calls] == ["raised DeliveryUnfinished", "delivered"]


async def test_an_enqueue_that_hands_off_runs_the_offers_prepare_once_before_it_returns(store: Store) -> None:
    """Both stores run Handoff.prepare on the caller's loop while the commit is on its way (SQLite: before COMMIT;
    PostgreSQL: while the statement is at the server), so it is done when the enqueue returns; once, however
    many notifications it wrote."""
    ran: list[str] = []
    offer = Handoff("prepare-test", 60.0, 4, {"team-slack": 4}, prepare=lambda: ran.append("prepared"))
    done = await store.enqueue([candidate("team-slack", group("lane-a", "Ahead")),
                                candidate("team-slack", group("lane-b", "Ahead2"))], time.time(), offer)
    assert ran == ["prepared"]
    assert all(d.claimed is not None for d in done)


@SQLITE_ONLY
async def test_a_large_groups_send_does_not_hold_the_webhooks_answer(tmp_path: Path, store: Store) -> None:
    """A group over PREPARE_MAX_ALERTS is rendered by its send: started first, that render would come before the
    webhook's 200 (100-alert webhooks were ingested 20-30% slower). Its send starts after the enqueue returns."""
    routes = write_routes(tmp_path, receiver_yaml("team-slack"))
    hold = Hold()
    channel = ScriptedChannel([hold])
    names = [f"Big{n}" for n in range(outbox.PREPARE_MAX_ALERTS + 1)]
    async with dispatching(store, await scripted_runtime(routes, {"team-slack": channel})) as dispatcher:
        [done] = await outbox.enqueue(dispatcher, store, [candidate("team-slack", group("big", *names))], time.time())
        assert done.claimed is not None and channel.calls == []
        await asyncio.wait_for(hold.entered.wait(), 10)
        hold.release()
        await channel.wait_for(lambda c: c.delivered == [tuple(names)])


@SQLITE_ONLY
async def test_a_handed_off_send_has_started_when_the_enqueue_returns(tmp_path: Path, store: Store) -> None:
    """The webhook answers after its enqueue returns: by then the handed-off notification is already with its
    channel (its request on the wire), not waiting for the answer to be written first."""
    routes = write_routes(tmp_path, receiver_yaml("team-slack"))
    hold = Hold()
    channel = ScriptedChannel([hold])
    async with dispatching(store, await scripted_runtime(routes, {"team-slack": channel})) as dispatcher:
        done = await send_through_outbox(dispatcher, store, "team-slack", "lane", "StartedFirst")
        assert done.claimed is not None
        assert [c.alertnames for c in channel.calls] == [("StartedFirst",)]
        hold.release()
        await channel.wait_for(lambda c: c.delivered == [("StartedFirst",)])


class GatedCompletions:
    """The store, with every `complete` (the record of a delivery) held until the gate opens."""

    def __init__(self, store: Store) -> None:
        self.store, self.gate, self.waiting = store, asyncio.Event(), 0

    async def complete(self, *args: Any, **kwargs: Any) -> None:
        self.waiting += 1
        await self.gate.wait()
        await self.store.complete(*args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.store, name)


@SQLITE_ONLY
async def test_a_receivers_slot_is_free_once_the_provider_answered_not_once_that_is_recorded(
        tmp_path: Path, store: Store) -> None:
    """One send at a time for the receiver; the first delivery's record is held back: the second lane's notification
    is sent meanwhile (the slot was held through the record's commit, and at 200/s a receiver's slots waited on the
    writer). Both records land once the store lets them: each delivered once."""
    routes = write_routes(tmp_path, receiver_yaml("team-slack"))
    channel = ScriptedChannel()
    ids = [i for n in range(2) for i in await enqueue(store, "team-slack", f"lane-{n}", f"Slot{n}")]
    gated = GatedCompletions(store)
    async with dispatching(gated, await scripted_runtime(routes, {"team-slack": channel}),  # type: ignore[arg-type]
                           workers_per_receiver=1) as dispatcher:
        dispatcher.wake()
        await channel.wait_for(lambda c: len(c.delivered) == 2)
        assert gated.waiting == 2  # neither delivery recorded yet
        gated.gate.set()
        rows = await settled(store, ids)
    assert [(r["state"], r["attempts"]) for r in rows] == [("delivered", 1), ("delivered", 1)]
    assert len(channel.calls) == 2


class GatedAndCounted(GatedCompletions):
    """GatedCompletions that also counts claims and the notifications they leased."""

    def __init__(self, store: Store) -> None:
        super().__init__(store)
        self.claims, self.leased = 0, 0

    async def claim(self, *args: Any, **kwargs: Any) -> Any:
        claim = await self.store.claim(*args, **kwargs)
        self.claims, self.leased = self.claims + 1, self.leased + len(claim.claimed)
        return claim


@SQLITE_ONLY
async def test_a_receiver_records_at_most_its_slots_at_once_then_its_sends_keep_their_slot(
        tmp_path: Path, store: Store) -> None:
    """What a SIGKILL can repeat is what was sent and not recorded: a receiver's sends leave their slot for the
    record only while at most `workers_per_receiver` records are pending. With one slot and every record held: the
    first send records (its slot goes to the second), the second keeps its slot, and a claim leases nothing more."""
    routes = write_routes(tmp_path, receiver_yaml("team-slack"))
    channel = ScriptedChannel()
    for n in range(3):
        await enqueue(store, "team-slack", f"lane-{n}", f"Capped{n}")
    gated = GatedAndCounted(store)
    async with dispatching(gated, await scripted_runtime(routes, {"team-slack": channel}),  # type: ignore[arg-type]
                           workers_per_receiver=1) as dispatcher:
        dispatcher.wake()
        await channel.wait_for(lambda c: len(c.delivered) == 2)
        await poll_until(lambda: gated.waiting == 2)
        claims, leased = gated.claims, gated.leased
        dispatcher.wake()
        await poll_until(lambda: gated.claims > claims)
        assert gated.leased == leased == 2 and len(channel.calls) == 2
        gated.gate.set()
        await channel.wait_for(lambda c: len(c.delivered) == 3)


# 3: unknown receiver -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("comes_back", [False, True], ids=["removed-for-good", "back-before-give-up"])
@SQLITE_ONLY
async def test_a_notification_whose_receiver_was_removed_by_a_reload(
        tmp_path: Path, store: Store, comes_back: bool) -> None:
    """Today: a notification whose receiver a reload removed is a transient `config` failure ("no receiver 'x' in
    routes.yaml"), retried with backoff and counted as attempts, so a reload that brings the receiver back
    delivers it; otherwise it becomes a dead letter `gave_up` at its give-up time. No provider is called for it
    and no provider-call metric moves; other receivers keep delivering meanwhile."""
    routes = write_routes(tmp_path, receiver_yaml("team-slack"), receiver_yaml("old-slack"))
    team, old = ScriptedChannel(), ScriptedChannel()
    runtime = await scripted_runtime(routes, {"team-slack": team, "old-slack": old})
    give_up = timedelta(hours=1 if comes_back else 0, seconds=1)
    [orphan] = await enqueue(store, "old-slack", "g", "Orphan1", give_up_after=give_up)
    routes.write_text(routes.read_text().replace(receiver_yaml("old-slack"), ""))
    await runtime.reload()
    assert "old-slack" not in runtime.channels
    swap(runtime, {"team-slack": team})
    failed = metric("relay_notification_requests_failed_total", receiver="old-slack", integration="slack",
                    reason="config")
    gave_up = metric("relay_notifications_failed_total", receiver="old-slack", integration="slack", reason="gave_up")
    async with dispatching(store, runtime) as dispatcher:
        dispatcher.wake()

        async def retried() -> bool:
            return int((await row(store, orphan))["attempts"]) >= 2

        await poll_until(retried)
        waiting = await row(store, orphan)
        assert waiting["state"] == "pending"
        assert waiting["last_error"] == "config: no receiver 'old-slack' in routes.yaml"
        [fine] = await enqueue(store, "team-slack", "h", "Fine1")
        dispatcher.wake()
        await team.wait_for(lambda c: c.delivered == [("Fine1",)])
        if comes_back:
            routes.write_text(routes.read_text().replace("routes: []", receiver_yaml("old-slack") + "routes: []"))
            await runtime.reload()
            swap(runtime, {"team-slack": team, "old-slack": old})
        [final] = await settled(store, [orphan])

    reasons = {(o, r, d) for o, r, d in log_of(final)[:-1]}
    assert reasons == {("retry", "config", "no receiver 'old-slack' in routes.yaml")}
    if comes_back:
        assert final["state"] == "delivered" and old.delivered == [("Orphan1",)]
        assert final["attempts"] == len(final["attempt_log"])  # every config failure counted, then the send
    else:
        assert final["state"] == "dead" and old.calls == []
        assert final["last_error"] == "gave_up: config: no receiver 'old-slack' in routes.yaml"
        assert log_of(final)[-1] == ("dead", "gave_up", "config: no receiver 'old-slack' in routes.yaml")
        assert metric("relay_notifications_failed_total", receiver="old-slack", integration="slack",
                      reason="gave_up") - gave_up == 1
    assert metric("relay_notification_requests_failed_total", receiver="old-slack", integration="slack",
                  reason="config") == failed  # never a provider call
    assert (await row(store, fine))["state"] == "delivered"


# 4: a channel raising unexpectedly ---------------------------------------------------------------------------


@pytest.mark.parametrize("forever", [False, True], ids=["once", "every-time"])
@SQLITE_ONLY
async def test_a_channel_that_raises_unexpectedly_is_retried_as_internal(
        tmp_path: Path, store: Store, caplog: pytest.LogCaptureFixture, forever: bool) -> None:
    """Today: an exception that is not a DeliveryError is a transient `internal` failure whose detail is only the
    exception's type (its message may quote anything): retried with backoff and counted, a dead letter `gave_up`
    at give-up if it never stops; the traceback is logged; other lanes and later notifications keep flowing."""
    routes = write_routes(tmp_path, receiver_yaml("team-slack"))
    bug = ZeroDivisionError("bug while rendering for the webhook")
    steps: list[Step] = [bug] * (1000 if forever else 1)
    channel = ScriptedChannel(per_alertname={"Bug1": steps})
    runtime = await scripted_runtime(routes, {"team-slack": channel})
    internal = metric("relay_notification_requests_failed_total", receiver="team-slack", integration="slack",
                      reason="internal")
    give_up = timedelta(seconds=1) if forever else timedelta(hours=1)
    [buggy] = await enqueue(store, "team-slack", "g", "Bug1", give_up_after=give_up)
    [other] = await enqueue(store, "team-slack", "h", "Fine1")
    async with dispatching(store, runtime) as dispatcher:
        dispatcher.wake()
        await channel.wait_for(lambda c: ("Fine1",) in c.delivered and len(c.calls) >= 2)
        [later] = await enqueue(store, "team-slack", "i", "Later1")
        dispatcher.wake()
        failing, fine, after = await settled(store, [buggy, other, later])

    assert fine["state"] == after["state"] == "delivered"
    bug_calls = [c for c in channel.calls if c.alertnames == ("Bug1",)]
    assert all(c.result == "raised ZeroDivisionError" for c in bug_calls[:-1])
    assert set(log_of(failing)[:-1]) == {("retry", "internal", "ZeroDivisionError")}
    if forever:
        assert failing["state"] == "dead" and failing["last_error"] == "gave_up: internal: ZeroDivisionError"
        assert failing["attempts"] == len(bug_calls) >= 2
    else:
        assert failing["state"] == "delivered" and bug_calls[-1].result == DELIVERED
        assert failing["attempts"] == 2 and [c.attempts_before for c in bug_calls] == [0, 1]
    assert metric("relay_notification_requests_failed_total", receiver="team-slack", integration="slack",
                  reason="internal") - internal == len([c for c in bug_calls if c.result != DELIVERED])
    assert "channel slack raised unexpectedly" in caplog.text and "ZeroDivisionError" in caplog.text
    assert_leaks_no_secret([str(await store.history(HistoryFilter())), str(failing)], [str(bug)])


# 5: shutdown hands claimed work back -------------------------------------------------------------------------


@pytest.mark.parametrize("restart", ["release_leases", "lease_expires"])
async def test_a_send_cut_off_by_shutdown_stays_in_the_outbox_and_is_sent_once_after(
        tmp_path: Path, database_url: str, caplog: pytest.LogCaptureFixture, restart: str) -> None:
    """Today: stop(grace) cancels a send still in flight after `grace`; nothing is recorded for it (no attempt, no
    attempt row), it stays pending under the stopped dispatcher's lease. The next relay on that store frees
    the lease at start (`release_leases`, as `relay serve` does) and sends it at once; another replica that does
    not gets it when the lease ends. Either way it is sent once more and delivered once."""
    routes = write_routes(tmp_path, receiver_yaml("team-slack"))
    hold = Hold()
    first_channel = ScriptedChannel([hold])
    store = open_store(database_url)
    await store.open()
    [held] = await enqueue(store, "team-slack", "g", "Held1")
    async with dispatching(store, await scripted_runtime(routes, {"team-slack": first_channel}),
                           lease=1.0) as dispatcher:
        dispatcher.wake()
        await asyncio.wait_for(hold.entered.wait(), 10)
        await dispatcher.stop(0.05)
    assert [c.result for c in first_channel.calls] == ["cancelled"]
    assert "1 deliveries did not finish in 0s; they stay in the outbox" in caplog.text
    left = await row(store, held)
    assert (left["state"], left["attempts"], left["attempt_log"]) == ("pending", 0, [])
    await store.close()

    store = open_store(database_url)  # the restart: same database, new process
    await store.open()
    if restart == "release_leases":
        await store.release_leases()
    second_channel = ScriptedChannel()
    async with dispatching(store, await scripted_runtime(routes, {"team-slack": second_channel})) as dispatcher:
        dispatcher.wake()
        [final] = await settled(store, [held])
    await store.close()
    assert second_channel.delivered == [("Held1",)] and len(second_channel.calls) == 1
    assert (final["state"], final["attempts"], log_of(final)) == ("delivered", 1, [("delivered", "", "")])


async def test_work_handed_off_while_stopping_goes_back_to_the_outbox_at_once(tmp_path: Path, store: Store) -> None:
    """Today: a webhook's enqueue that leased its lane head to the dispatcher (handoff) while it was stopping gets
    it returned at once (`adopt`): pending, no attempt counted, a `deferred shutting_down` row, lease freed, so
    another dispatcher on the store sends it without waiting for the lease or a restart."""
    routes = write_routes(tmp_path, receiver_yaml("team-slack"))
    first_channel = ScriptedChannel()
    async with dispatching(store, await scripted_runtime(routes, {"team-slack": first_channel})) as dispatcher:
        offer = dispatcher.handoff(["team-slack"])
        assert offer is not None
        stopping = asyncio.create_task(dispatcher.stop(2))
        await asyncio.sleep(0)  # one turn of the loop: the stop has begun (a yield, not a wait for time)
        [done] = await store.enqueue([candidate("team-slack", group("g", "Late1"))], time.time(), offer)
        assert done.claimed is not None and done.notification_id is not None
        dispatcher.adopt([done.claimed], offer)
        await stopping

        async def returned() -> bool:
            return bool((await row(store, done.notification_id or 0))["attempt_log"])

        await poll_until(returned)
    assert first_channel.calls == []
    back = await row(store, done.notification_id)
    assert (back["state"], back["attempts"], log_of(back)) == ("pending", 0, [("deferred", "shutting_down", "")])

    second_channel = ScriptedChannel()  # no release_leases: the lease was given back
    async with dispatching(store, await scripted_runtime(routes, {"team-slack": second_channel}),
                           lease=3600) as dispatcher:
        dispatcher.wake()
        [final] = await settled(store, [done.notification_id])
    assert second_channel.delivered == [("Late1",)]
    assert (final["state"], final["attempts"]) == ("delivered", 1)


# 6: the ordinary outcomes ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Case:
    steps: list[Step]
    state: str
    log: list[tuple[str, str, str]]  # the attempt log: (outcome, reason, detail)
    last_error: str | None = None
    policy: RetryPolicy = FAST
    give_up_after: timedelta = timedelta(hours=1)
    waited: float = 0.0  # at least this long between the failed attempt's end and the next send
    warns: str = ""
    leaks: list[str] = field(default_factory=list)


CASES = [
    pytest.param(Case([TransientDeliveryError(Reason.SERVER_ERROR, "HTTP 503 service_unavailable"), DELIVERED],
                      "delivered", [("retry", "server_error", "HTTP 503 service_unavailable"), ("delivered", "", "")],
                      waited=0.05), id="transient-then-delivered"),
    pytest.param(Case([PermanentDeliveryError(Reason.AUTH, "HTTP 403 invalid_token", code="invalid_token")], "dead",
                      [("dead", "auth", "HTTP 403 invalid_token")], "auth: HTTP 403 invalid_token"),
                 id="permanent-dead-letter"),
    pytest.param(Case([PermanentDeliveryError(Reason.NOT_FOUND, f"HTTP 404 Not Found: {WEBHOOK_URL}")], "dead",
                      [("dead", "not_found", "HTTP 404 Not Found: ***")], "not_found: HTTP 404 Not Found: ***",
                      leaks=[WEBHOOK_URL, SECRET]), id="permanent-quoting-the-secret-is-scrubbed"),
    pytest.param(Case([TransientDeliveryError(Reason.RATE_LIMITED, "HTTP 429", retry_after=0.3), DELIVERED],
                      "delivered", [("retry", "rate_limited", "HTTP 429"), ("delivered", "", "")],
                      policy=RetryPolicy(initial=0.01, maximum=5, jitter=0), waited=0.3), id="retry-after-waited"),
    pytest.param(Case([TransientDeliveryError(Reason.RATE_LIMITED, "HTTP 429", retry_after=3600), DELIVERED],
                      "delivered", [("retry", "rate_limited", "HTTP 429"), ("delivered", "", "")],
                      policy=RetryPolicy(initial=0.01, maximum=0.3, jitter=0), waited=0.3,
                      warns="asked to wait 3600s (Retry-After); waiting at most 0.3s"), id="retry-after-capped"),
    pytest.param(Case([TransientDeliveryError(Reason.SERVER_ERROR, "HTTP 500")] * 1000, "dead",
                      [("retry", "server_error", "HTTP 500")], "gave_up: server_error: HTTP 500",
                      give_up_after=timedelta(seconds=0.6)), id="transient-until-give-up"),
]


@pytest.mark.parametrize("case", CASES)
@SQLITE_ONLY
async def test_outcomes_land_in_history_as_the_channel_reported_them(
        tmp_path: Path, store: Store, caplog: pytest.LogCaptureFixture, case: Case) -> None:
    routes = write_routes(tmp_path, receiver_yaml("team-slack"))
    channel = ScriptedChannel(case.steps)
    runtime = await scripted_runtime(routes, {"team-slack": channel})
    [nid] = await enqueue(store, "team-slack", "g", "Out1", give_up_after=case.give_up_after)
    async with dispatching(store, runtime, policy=case.policy) as dispatcher:
        dispatcher.wake()
        [final] = await settled(store, [nid])

    assert final["state"] == case.state and final["last_error"] == case.last_error
    attempts = log_of(final)
    if case.last_error and case.last_error.startswith("gave_up"):  # retried until give-up, then the dead letter
        assert set(attempts[:-1]) == set(case.log) and len(attempts) >= 3
        assert attempts[-1] == ("dead", "gave_up", case.last_error.removeprefix("gave_up: "))
    else:
        assert attempts == case.log
    assert final["attempts"] == len(channel.calls) == len(attempts)
    assert [c.attempts_before for c in channel.calls] == list(range(len(channel.calls)))
    first, *rest = final["attempt_log"]
    if rest:
        assert rest[0]["started_at"] >= first["started_at"] + first["duration"] + case.waited - 1e-3
    assert case.warns in caplog.text
    assert_leaks_no_secret([caplog.text, str(await store.history(HistoryFilter())), str(final)], case.leaks)


# Found while writing these, and fixed: an unexpected exception's log quoted secrets; receivers with different
# limits on one destination refilled its bucket for each other. --


@SQLITE_ONLY
async def test_an_unexpected_exception_quoting_the_webhook_url_is_logged_without_it(
        tmp_path: Path, store: Store, caplog: pytest.LogCaptureFixture) -> None:
    routes = write_routes(tmp_path, receiver_yaml("team-slack"))
    channel = ScriptedChannel([ValueError(f"cannot post to {WEBHOOK_URL}")])
    runtime = await scripted_runtime(routes, {"team-slack": channel})
    [nid] = await enqueue(store, "team-slack", "g", "Bug1")
    async with dispatching(store, runtime) as dispatcher:
        dispatcher.wake()
        [final] = await settled(store, [nid])
    assert final["state"] == "delivered"
    assert_leaks_no_secret([str(final)], [WEBHOOK_URL, SECRET])  # history is clean today
    assert_leaks_no_secret([caplog.text], [WEBHOOK_URL, SECRET])


def test_receivers_with_different_limits_on_one_destination_cannot_refill_its_bucket() -> None:
    buckets = Buckets()
    strict, loose = Budget("slack:one-webhook", 1, 1), Budget("slack:one-webhook", 1, 2)
    granted = [buckets.take({b: 1})["slack:one-webhook"].granted for b in (strict, loose, strict, loose)]
    assert sum(granted) <= 2, "four sends at one instant to a destination allowing at most 2 at once"
    assert by_destination([loose, strict]) == {"slack:one-webhook": strict}  # a claim uses the strictest
