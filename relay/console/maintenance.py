"""The console's Maintenance page (issue 25): the windows, and for admins a form to add one and End on each.

A window is added and ended through relay.api.maintenance's own `add` and `end`, so the console refuses what the
admin API refuses, in the same words, and ending one here sends what it held as `relay maintenance end` does. The
form travels in a POST body like every console form; a URL holds at most nothing.
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from relay.api import maintenance as api
from relay.console.views import Ctx, positive
from relay.errors import Rejected
from relay.store.records import MaintenanceWindow

ENDED_SHOWN = 50
FIELDS = ("matchers", "starts_at", "ends_at", "comment", "time_interval")


def _state(window: MaintenanceWindow, now: float) -> str:
    return str(api.shown(window, now)["state"])


async def _render(ctx: Ctx, status: int = 200, problem: str | None = None, flash: str | None = None,
                  typed: dict[str, str] | None = None) -> Response:
    now = ctx.services.runtime.clock()
    windows = await ctx.services.store.maintenance(now, everything=True)
    current = [(w, _state(w, now)) for w in windows if _state(w, now) in ("active", "pending")]
    over = sorted((w for w in windows if _state(w, now) not in ("active", "pending")),
                  key=lambda w: (w.ended_at if w.ended_at is not None else w.ends_at, w.id), reverse=True)
    ended = [(w, _state(w, now)) for w in over[:ENDED_SHOWN]]
    routes = ctx.services.runtime.routes
    return ctx.render("maintenance.html", status, current=current, over=ended, problem=problem, flash=flash,
                      typed=typed or {}, intervals=sorted(routes.intervals) if routes else [])


async def windows(request: Request, ctx: Ctx) -> Response:
    return await _render(ctx)


async def add(request: Request, ctx: Ctx) -> Response:
    """The form's window, checked by the admin API's checks: refused with its reason on the page, nothing stored."""
    typed = {k: ctx.form.get(k, "") for k in FIELDS}
    body: dict[str, Any] = {
        "matchers": [line.strip() for line in typed["matchers"].splitlines() if line.strip()],
        "starts_at": typed["starts_at"].strip() or None, "ends_at": typed["ends_at"].strip() or None,
        "comment": typed["comment"], "created_by": f"console ({ctx.session.role})",
        "time_interval": typed["time_interval"].strip()}
    try:
        window = await api.add(ctx.services, body, ctx.services.runtime.clock())
    except ValueError as exc:  # MatcherError is a ValueError
        return await _render(ctx, 400, problem=str(exc).removeprefix("Value error, "), typed=typed)
    return await _render(ctx, flash=f"maintenance window {window.id} added")


async def confirm(request: Request, ctx: Ctx) -> Response:
    """End asks first: this page names the window and what ending it does; its button does it."""
    window = await _find(ctx, positive(ctx.form.get("id")))
    return ctx.render("maintenance_confirm.html", window=window)


async def end(request: Request, ctx: Ctx) -> Response:
    window_id = positive(ctx.form.get("id"))
    if window_id is None:
        raise Rejected(400, "an id must be a positive integer")
    ended = await api.end(ctx.services, window_id, ctx.services.runtime.clock())
    if ended is None:
        return await _render(ctx, 404, problem=f"no maintenance window {window_id} that is not over")
    return await _render(ctx, flash=f"maintenance window {ended.id} ended: what it held is sent if it still fires")


async def _find(ctx: Ctx, window_id: int | None) -> MaintenanceWindow:
    now = ctx.services.runtime.clock()
    for window in await ctx.services.store.maintenance(now):
        if window.id == window_id and _state(window, now) in ("active", "pending"):
            return window
    raise Rejected(404, f"no maintenance window {window_id} that is not over")
