"""Token buckets and what the dispatcher keeps of them (relay.pacing.ratelimit), as pure values."""

from __future__ import annotations

from relay.pacing.ratelimit import DEFAULTS, PREPAID_FOR, Buckets, Budget, Prepaid, Waiting, by_destination, prepay


def test_the_default_buckets_are_shared_one_token_at_a_time_a_fast_one_a_few_at_once() -> None:
    assert {prepay(Budget("d", limit.rate, limit.burst)) for limit in DEFAULTS.values()} == {1}
    assert prepay(Budget("d", 1000.0, 1000)) == 50  # 50 ms of its rate per round trip
    assert prepay(Budget("d", 1000.0, 8)) == 2  # never more than a quarter of its burst


def test_prepaid_tokens_are_used_then_forgotten_after_a_moment() -> None:
    prepaid = Prepaid()
    prepaid.keep("d", 3, now=0.0)
    assert [prepaid.use("d", 1, now=0.1) for _ in range(4)] == [1, 1, 1, 0]
    prepaid.keep("d", 5, now=1.0)
    assert prepaid.use("d", 1, now=1.0 + PREPAID_FOR) == 0  # unused ones count as spent: never over budget


def test_buckets_grant_whole_tokens_and_say_when_the_next_is_due() -> None:
    buckets = Buckets()
    slow = Budget("slack:x", rate=0.5, burst=2)
    first = buckets.take({slow: 3})["slack:x"]
    assert first.granted == 2 and 1.9 < first.wait <= 2.0
    assert buckets.take({slow: 1})["slack:x"].granted == 0
    assert buckets.peek([slow])["slack:x"] < 1
    assert by_destination([Budget("a", 2, 4), Budget("a", 1, 9), Budget("b", 5, 1)]) == {
        "a": Budget("a", 1, 9), "b": Budget("b", 5, 1)}


def test_waiting_destinations_are_held_until_their_time_then_forgotten() -> None:
    waiting = Waiting()
    assert waiting.next_in(now=0.0) is None and not waiting
    waiting.hold("slack:x", 1.0, now=0.0)
    waiting.hold("slack:x", 0.5, now=0.0)  # a shorter wait never cuts a longer one (a 429's Retry-After)
    waiting.hold("email:y", 0.2, now=0.0)
    assert waiting.held(now=0.1) == {"slack:x", "email:y"} and waiting.next_in(now=0.1) == 0.1
    assert waiting.held(now=0.5) == {"slack:x"}
    assert waiting.held(now=1.0) == set() and waiting.next_in(now=1.0) is None
