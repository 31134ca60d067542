"""relay.pacing.slots counts capacity: free workers, each receiver's room, and what an enqueue is offered."""

from __future__ import annotations

import pytest

from relay.pacing import slots


@pytest.mark.parametrize(("workers", "running", "offered", "claiming", "free"), [
    (32, 0, {}, 0, 32),
    (32, 5, {"a": 2, "b": 1}, 0, 24),
    (4, 2, {"a": 1}, 1, 0),
    (4, 3, {"a": 2}, 0, -1),  # an offer made before a claim landed: over, nothing more starts
])
def test_free(workers: int, running: int, offered: dict[str, int], claiming: int, free: int) -> None:
    assert slots.free(workers, running, offered, claiming) == free


@pytest.mark.parametrize(("configured", "offered", "running", "room"), [
    (["a", "b"], {}, [], {"a": 8, "b": 8}),  # every configured receiver is named, also with nothing in flight
    (["a"], {"a": 3}, ["a", "a"], {"a": 3}),
    (["a"], {"gone": 1}, ["gone"], {"a": 8, "gone": 6}),  # a receiver removed by a reload still counts its sends
    ([], {}, ["x"] * 9, {"x": -1}),
])
def test_room(configured: list[str], offered: dict[str, int], running: list[str], room: dict[str, int]) -> None:
    assert slots.room(8, configured, offered, running) == room


@pytest.mark.parametrize(("receivers", "free", "room", "offer"), [
    (["a", "b"], 4, {"a": 8, "b": 8}, {"a": 1, "b": 1}),
    (["a", "a", "a"], 4, {"a": 2}, {"a": 2}),  # a receiver's room caps its candidates
    (["a", "b", "c"], 2, {}, {"a": 1, "b": 1, "c": 0}),  # free workers cap the whole offer, in the webhook's order
    (["a"], 0, {"a": 8}, {"a": 0}),
    (["a", "b"], 3, {"a": 0, "b": -1}, {"a": 0, "b": 0}),  # full receivers get nothing, also when over
    (["new"], 1, {}, {"new": 1}),  # unnamed: the per-receiver limit
])
def test_offer(receivers: list[str], free: int, room: dict[str, int], offer: dict[str, int]) -> None:
    assert slots.offer(receivers, free, room, 8) == offer
