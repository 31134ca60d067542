"""Storms as both stores keep them (relay.storms): opening, folding and ending a storm, and a summary's view."""

from __future__ import annotations

from relay.alerts import WebhookMessage
from relay.store.records import Ended, Fold, Folded, StormState, StormView
from relay.store.rows import storable
from relay.store.script import Dialect, Runner, Script, single, want_all, want_count, want_row, want_rows
from relay.storms.fold import (
    REDRAW_SUFFIX,
    alertnames,
    choose,
    read_waiting,
    storm_lane,
    storm_of,
    summary_group,
)


def fold(d: Dialect, f: Fold) -> Script:
    """See Store.fold: what waits is read (and, on PostgreSQL, locked) first, so no claim takes it meanwhile."""
    q = d.queries
    chosen = choose(read_waiting((yield want_rows(q["storm_waiting"], f.receiver)), f.now), f.never_fold, f.label)
    if not chosen:
        return None
    if f.storm is None:
        opened = yield want_row(q["storm_open"], f.receiver, f.now)
        if opened is None:  # another replica opened one
            return None
        storm_id = int(opened[0])
    elif (yield want_count(q["storm_continue"], f.storm.id, f.storm.folded_at, f.now)):
        storm_id = f.storm.id
    else:  # another replica folded or ended it meanwhile
        return None
    group = summary_group(storm_id, [w.group for w in chosen if w.group is not None], f.relay_url)
    written = yield want_row(q["storm_summary"], f.receiver, f.integration, storm_lane(f.receiver, storm_id),
                         group.status, alertnames(group), storable(group.model_dump_json()), f.now,
                         f.now + f.give_up_after, min(w.priority for w in chosen))
    summary_id = int(written[0])
    folded = yield want_count(q["storm_fold"], summary_id, f.now, [w.id for w in chosen])
    yield want_count(q["storm_fold_attempts"], summary_id, f.now)
    yield want_count(q["storm_count"], storm_id, folded)
    return Folded(storm_id, summary_id, folded, len(group.alerts))


def storm_end(d: Dialect, storm_id: int, folded_at: float, now: float, redraw: bool) -> Script:
    """See Store.storm_end: the redraw is the storm's last summary again, marked (relay.storms.fold.redraws)."""
    q = d.queries
    if not (yield want_count(q["storm_end"], storm_id, folded_at, now)):
        return None
    storm = (yield want_row(q["storm_get"], storm_id)) if redraw else None
    last = None if storm is None else (yield want_row(q["storm_last"], storm_lane(storm["receiver"], storm_id)))
    if storm is None or last is None:
        return Ended(None)
    group = WebhookMessage.model_validate_json(last["payload"])
    group = group.model_copy(update={"groupKey": group.groupKey + REDRAW_SUFFIX})
    written = yield want_row(q["storm_summary"], storm["receiver"], last["integration"], last["lane"], group.status,
                         alertnames(group), storable(group.model_dump_json()), now,
                         now + last["give_up_at"] - last["received_at"], last["priority"])
    return Ended(int(written[0]))


def storm_view(d: Dialect, summary_id: int, lane: str) -> Script:
    storm_id = storm_of(lane)
    row = None if storm_id is None else (yield want_row(d.queries["storm_get"], storm_id))
    if row is None:
        return None
    summaries = yield want_rows(d.queries["storm_summaries"], lane, summary_id)
    alerts = [a for s in summaries for a in WebhookMessage.model_validate_json(s["payload"]).alerts]
    return StormView(StormState(*row), alerts, first=len(summaries) <= 1)


class StormScripts(Runner):
    """The Store methods of storms."""

    async def storm_backlog(self, due_by: float) -> dict[str, int]:
        rows = await self._script(want_all(self.dialect.queries["storm_backlog"], due_by), read=True)
        return {receiver: int(count) for receiver, count in rows}

    async def storms(self) -> list[StormState]:
        rows = await self._script(want_all(self.dialect.queries["storms_open"]), read=True)
        return [StormState(*row) for row in rows]

    async def fold(self, plan: Fold) -> Folded | None:
        folded: Folded | None = await self._script(fold(self.dialect, plan))
        return folded

    async def storm_end(self, storm_id: int, folded_at: float, now: float, redraw: bool = False) -> Ended | None:
        ended: Ended | None = await self._script(storm_end(self.dialect, storm_id, folded_at, now, redraw))
        return ended

    async def storm_view(self, summary_id: int, lane: str) -> StormView | None:
        found: StormView | None = await self._script(storm_view(self.dialect, summary_id, lane), read=True)
        return found

    async def storm_remember(self, storm_id: int, ref: str) -> None:
        await self._script(single(want_count(self.dialect.queries["storm_ref"], storm_id, ref)))
