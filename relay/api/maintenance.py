"""Maintenance windows through the admin API: list, add, end (relay maintenance, the console).

A window mutes the alerts its matchers match from `starts_at` until `ends_at`: what they would send is held and
sent when the window ends, if they still fire (relay.stages.mute). Windows live in the store, so every replica
mutes the same alerts (each reads them at most a second late).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Collection
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from relay.config.matchers import parse_matchers
from relay.services import Services, services
from relay.store.records import MaintenanceWindow
from relay.times import parse_time, rfc3339_millis

log = logging.getLogger(__name__)

MAX_COMMENT = 1000
MAX_MATCHERS = 50


def shown(window: MaintenanceWindow, now: float) -> dict[str, Any]:
    """A window as the API answers it: times in RFC 3339, and its state at `now`."""
    state = ("ended" if window.ended_at is not None else "expired" if window.ends_at <= now
             else "active" if window.active(now) else "pending")
    return {"id": window.id, "matchers": list(window.matchers), "starts_at": rfc3339_millis(window.starts_at),
            "ends_at": rfc3339_millis(window.ends_at), "comment": window.comment, "created_by": window.created_by,
            "created_at": rfc3339_millis(window.created_at),
            "ended_at": rfc3339_millis(window.ended_at) if window.ended_at is not None else None, "state": state,
            "time_interval": window.time_interval or None}


def _error(message: str, status: int) -> JSONResponse:
    return JSONResponse({"status": "error", "error": message}, status_code=status)


async def list_windows(request: Request) -> Response:
    state = services(request)
    now = state.runtime.clock()
    everything = request.query_params.get("all", "") in ("1", "true")
    windows = await state.store.maintenance(now, everything)
    return JSONResponse({"windows": [shown(w, now) for w in windows]})


def _instant(body: dict[str, Any], key: str, default: float | None) -> float:
    value = body.get(key)
    if value is None:
        if default is None:
            raise ValueError(f"{key} is required (RFC 3339, e.g. 2026-03-06T22:00:00+09:00)")
        return default
    if not isinstance(value, str):
        raise ValueError(f"{key} must be an RFC 3339 time, e.g. 2026-03-06T22:00:00+09:00")
    text = value.strip()
    if not (text.endswith(("Z", "z")) or "+" in text[10:] or "-" in text[10:]):
        raise ValueError(f"{key} {value[:40]!r} has no offset: add Z or one like +09:00 (RFC 3339)")
    try:
        parsed = parse_time(text.replace("z", "Z"))
    except ValueError:
        raise ValueError(f"{key} {value[:40]!r} is not an RFC 3339 time, e.g. 2026-03-06T22:00:00+09:00") from None
    if parsed is None:
        raise ValueError(f"{key} {value[:40]!r} is Go's zero time")
    return parsed.timestamp()


def _recurrence(body: dict[str, Any], known: Collection[str]) -> str:
    """A recurring window's time interval: one the loaded routes.yaml defines."""
    name = body.get("time_interval") or ""
    if not isinstance(name, str):
        raise ValueError("time_interval must be the name of a time interval in routes.yaml")
    if name and name not in known:
        raise ValueError(f"time_interval {name[:100]!r} is not defined in routes.yaml; defined: {sorted(known)}")
    return name


def _window(body: Any, now: float) -> tuple[list[str], float, float, str, str]:
    """A request to add a window, checked: matchers (Alertmanager's syntax), from, until, comment, by whom."""
    if not isinstance(body, dict):
        raise ValueError("expected a JSON object with matchers, ends_at and comment")
    matchers = body.get("matchers")
    if isinstance(matchers, str):
        matchers = [matchers]
    if not isinstance(matchers, list) or not matchers or not all(isinstance(m, str) for m in matchers) \
            or len(matchers) > MAX_MATCHERS:
        raise ValueError('matchers must be a list of 1 to 50 matchers like \'service="api"\' (a window that '
                         'matches every alert is refused, as Alertmanager refuses a silence without matchers)')
    parsed = parse_matchers(matchers)
    if not parsed:
        raise ValueError("matchers hold no matcher")
    starts_at = _instant(body, "starts_at", now)
    ends_at = _instant(body, "ends_at", None)
    if ends_at <= max(starts_at, now):
        raise ValueError("ends_at must be later than starts_at and than now")
    comment = body.get("comment")
    if not isinstance(comment, str) or not comment.strip() or len(comment) > MAX_COMMENT:
        raise ValueError(f"comment is required: why, in 1 to {MAX_COMMENT} characters")
    created_by = body.get("created_by", "")
    if not isinstance(created_by, str) or len(created_by) > 200:
        raise ValueError("created_by must be text of at most 200 characters")
    return matchers, starts_at, ends_at, comment, created_by


async def add(state: Services, body: Any, now: float) -> MaintenanceWindow:
    """Check a request to add a window (ValueError with the reason in plain words) and store it: the admin API's and
    the console's one way in, so both refuse the same windows with the same words."""
    matchers, starts_at, ends_at, comment, created_by = _window(body, now)
    routes = state.runtime.routes
    interval = _recurrence(body, routes.intervals if routes is not None else ())
    window = await state.store.add_maintenance(matchers, starts_at, ends_at, comment, created_by, now, interval)
    state.windows.changed()
    log.info("maintenance window %d added: %s from %s until %s", window.id, ", ".join(matchers),
             rfc3339_millis(starts_at), rfc3339_millis(ends_at))
    return window


async def end(state: Services, window_id: int, now: float) -> MaintenanceWindow | None:
    """End a window now (None: no such window that is not over); what it held is due at once."""
    window = await state.store.end_maintenance(window_id, now)
    if window is None:
        return None
    state.windows.changed()
    state.escalator.nudge()
    log.info("maintenance window %d ended", window.id)
    return window


async def add_window(request: Request) -> Response:
    state = services(request)
    now = state.runtime.clock()
    try:
        window = await add(state, json.loads(await request.body()), now)
    except ValueError as exc:  # json.JSONDecodeError and MatcherError are ValueErrors
        return _error(str(exc).removeprefix("Value error, "), 400)
    return JSONResponse(shown(window, now), status_code=201)


async def end_window(request: Request) -> Response:
    state = services(request)
    now = state.runtime.clock()
    text = request.path_params["id"]
    if not text.isdigit() or not 0 < int(text) < 2**62:
        return _error("id must be a positive integer", 400)
    window = await end(state, int(text), now)
    if window is None:
        return _error(f"no maintenance window {text} that is not over", 404)
    return JSONResponse(shown(window, now))
