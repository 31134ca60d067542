"""Slack actions and silence watches as both stores keep them (relay.actions): a click's marks
and rows in one transaction, and the silences whose alerts relay watches for a resolve."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

from relay.actions.model import ACTION, ActionRow
from relay.alerts import Notification
from relay.store.base import Acted, Claimed, Enqueued, Handoff
from relay.store.records import Watch
from relay.store.rows import storable
from relay.store.script import Dialect, Runner, Script, single, want_count, want_row, want_rows


def act(d: Dialect, marks: Sequence[str], rows: Sequence[ActionRow], now: float, handoff: Handoff | None) -> Script:
    """The marks first: the first that exists refuses the click (a request's mark written before it stays: a replay
    of that request is refused too). Each row has a lane of its own, so each is its lane's head."""
    q = d.queries
    for mark in marks:
        if (yield want_row(q["action_mark"], mark, now)) is None:
            return Acted(mark)
    taken: dict[str, int] = {}
    written: list[Enqueued] = []
    for action in rows:
        group = action.group
        leased = handoff is not None and handoff.take(taken, action.receiver)
        give_up_at = now + action.give_up_after
        lease_until = now + handoff.lease if handoff is not None and leased else 0.0
        owner = handoff.owner if handoff is not None and leased else None
        names = ",".join(sorted({a.name for a in group.alerts}))
        found = yield want_row(q["action_insert"], action.receiver, action.lane, group.status, names,
                           storable(action.payload()), now, give_up_at, lease_until, owner)
        notification_id = int(found["id"])
        claimed = None
        if leased:
            notification = Notification(notification_id, action.receiver, ACTION, action.lane, group,
                                        datetime.fromtimestamp(now, UTC), 0)
            claimed = Claimed(notification, give_up_at, lease_until)
        written.append(Enqueued(action.receiver, notification_id, len(group.alerts), 0, claimed))
    return Acted(None, written)


def watches_due(d: Dialect, now: float, next_check: float, limit: int) -> Script:
    yield want_count(d.queries["watch_ended"], now)
    rows = yield want_rows(d.queries["watch_due"], now, next_check, limit)
    return [Watch(r["receiver"], r["silence_id"], r["payload"], float(r["ends_at"]),
                  None if r["absent_since"] is None else float(r["absent_since"])) for r in rows]


class ActionScripts(Runner):
    """The Store methods of actions and silence watches."""

    async def act(self, marks: Sequence[str], rows: Sequence[ActionRow], now: float,
                  handoff: Handoff | None = None) -> Acted:
        acted: Acted = await self._script(act(self.dialect, marks, rows, now, handoff))
        return acted

    async def watch_silence(self, watch: Watch, next_check: float) -> None:
        await self._script(single(want_count(self.dialect.queries["watch_put"], watch.receiver, watch.silence_id,
                                          storable(watch.payload), watch.ends_at, next_check)))

    async def unwatch_silence(self, receiver: str, silence_id: str) -> None:
        await self._script(single(want_count(self.dialect.queries["watch_drop"], receiver, silence_id)))

    async def watch_absent(self, receiver: str, silence_id: str, absent_since: float | None) -> None:
        await self._script(single(want_count(self.dialect.queries["watch_absent"], receiver, silence_id, absent_since)))

    async def watches_due(self, now: float, next_check: float, limit: int) -> list[Watch]:
        due: list[Watch] = await self._script(watches_due(self.dialect, now, next_check, limit))
        return due
