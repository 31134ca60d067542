"""Worker capacity: how many sends may start, for whom, and what an enqueue in progress is offered (pure).

The dispatcher keeps the state (sends running, slots offered to enqueues, a claim in progress); these functions
only count, so the limits are table-tested without a dispatcher.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping


def free(workers: int, running: int, offered: Mapping[str, int], claiming: int) -> int:
    """Workers neither sending, nor offered to an enqueue in progress, nor reserved by a claim in progress."""
    return workers - running - sum(offered.values()) - claiming


def room(per_receiver: int, configured: Iterable[str], offered: Mapping[str, int],
         running: Iterable[str]) -> dict[str, int]:
    """How many more sends each receiver may start: one slow provider must not take every worker.

    Every configured receiver is named, also those with nothing in flight (a claim or an offer would let an
    unnamed receiver take every free worker, e.g. a backlog after a restart); `running` names the receiver of
    each send in flight.
    """
    left = dict.fromkeys(configured, per_receiver)
    for receiver, slots in offered.items():
        left[receiver] = left.get(receiver, per_receiver) - slots
    for receiver in running:
        left[receiver] = left.get(receiver, per_receiver) - 1
    return left


def offer(receivers: Iterable[str], free: int, room: Mapping[str, int], per_receiver: int) -> dict[str, int]:
    """The slots one webhook's enqueue reserves per receiver (one per candidate that fits), within `free` and
    each receiver's `room`; a receiver that does not fit is named with 0."""
    offered: dict[str, int] = {}
    for receiver in receivers:
        fits = free > 0 and room.get(receiver, per_receiver) - offered.get(receiver, 0) > 0
        offered[receiver] = offered.get(receiver, 0) + int(fits)
        free -= int(fits)
    return offered
