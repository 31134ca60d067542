"""Maintenance windows as both stores keep them (relay.stages.mute mutes what they match)."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from relay.store.records import MaintenanceWindow
from relay.store.script import Dialect, Runner, Script, want_count, want_row, want_rows

# A hold armed for a maintenance window has step -(HOLD_BASE + its id), apart from a route's -(route + 1).
HOLD_BASE = 1_000_000


def window_of(row: Mapping[str, Any]) -> MaintenanceWindow:
    return MaintenanceWindow(row["id"], tuple(json.loads(row["matchers"])), row["starts_at"], row["ends_at"],
                             row["comment"], row["created_by"], row["created_at"], row["ended_at"],
                             row["time_interval"])


def add_maintenance(d: Dialect, matchers: Sequence[str], starts_at: float, ends_at: float, comment: str,
                    created_by: str, now: float, time_interval: str) -> Script:
    row = yield want_row(d.queries["maintenance_add"], json.dumps(list(matchers)), starts_at, ends_at, comment,
                         created_by, now, time_interval)
    return window_of(row)


def maintenance(d: Dialect, now: float, everything: bool) -> Script:
    return [window_of(row) for row in (yield want_rows(d.queries["maintenance_list"], now, everything))]


def end_maintenance(d: Dialect, window: int, now: float) -> Script:
    """End the window and make its holds due now (they wait for another window still muting their alerts)."""
    row = yield want_row(d.queries["maintenance_end"], now, window)
    if row is None:
        return None
    yield want_count(d.queries["maintenance_holds_due"], now, -(HOLD_BASE + window))
    return window_of(row)


class MaintenanceScripts(Runner):
    """The Store methods of maintenance windows."""

    async def add_maintenance(self, matchers: Sequence[str], starts_at: float, ends_at: float, comment: str,
                              created_by: str, now: float, time_interval: str = "") -> MaintenanceWindow:
        made: MaintenanceWindow = await self._script(add_maintenance(self.dialect, matchers, starts_at, ends_at,
                                                                     comment, created_by, now, time_interval))
        return made

    async def maintenance(self, now: float, everything: bool = False) -> list[MaintenanceWindow]:
        found: list[MaintenanceWindow] = await self._script(maintenance(self.dialect, now, everything), read=True)
        return found

    async def end_maintenance(self, window: int, now: float) -> MaintenanceWindow | None:
        ended: MaintenanceWindow | None = await self._script(end_maintenance(self.dialect, window, now))
        return ended
