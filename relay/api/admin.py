"""The small HTTP API beside the webhook: health, metrics, reload, history and dead-letter replay."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response

from relay.auth import check_admin
from relay.errors import ConfigError, Rejected, StoreUnavailable
from relay.services import Services, services
from relay.store.base import Attempt
from relay.store.records import HistoryFilter
from relay.telemetry import metrics
from relay.times import rfc3339_millis

log = logging.getLogger(__name__)

Handler = Callable[[Request], Awaitable[Response]]


async def healthz(request: Request) -> Response:
    return PlainTextResponse("ok\n")


async def readyz(request: Request) -> Response:
    state = services(request)
    if state.runtime.routes is None:
        return PlainTextResponse("routes not loaded\n", status_code=503)
    try:
        await state.store.ready()
    except StoreUnavailable as exc:
        return PlainTextResponse(f"store unavailable: {exc}\n", status_code=503)
    return PlainTextResponse("ready\n")


async def metrics_endpoint(request: Request) -> Response:
    state = services(request)
    now = time.time()
    try:
        stats = await state.store.stats(now)
    except StoreUnavailable:
        stats = None
    if stats is not None:
        oldest = now - stats.oldest_pending_received_at if stats.oldest_pending_received_at else 0.0
        receivers = list(state.runtime.routes.receivers) if state.runtime.routes else []
        metrics.set_outbox(stats.pending, oldest, stats.dead, receivers)
    await _heartbeat_metrics(state, now)
    return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)


async def _heartbeat_metrics(state: Services, now: float) -> None:
    """Read from the store, so every replica exports the same values (not what reached this one)."""
    beats = state.runtime.routes.spec.heartbeats if state.runtime.routes else []
    try:
        stored = {s.name: s for s in await state.store.heartbeats({}, now)} if beats else {}
    except StoreUnavailable:
        return
    out: dict[str, tuple[float | None, bool, bool]] = {}
    for beat in beats:
        found = stored.get(beat.name)
        last_seen = found.last_seen if found else None
        out[beat.name] = (last_seen, found is not None and found.missing_since is not None, beat.armed(last_seen))
    metrics.set_heartbeats(out)


async def reload(request: Request) -> Response:
    try:
        routes = await services(request).runtime.reload()
    except ConfigError as exc:
        return _error(str(exc), 400)
    return JSONResponse({"status": "reloaded", "config_hash": routes.digest})


MAX_ID = 2**63 - 1


def _id(text: str) -> int:
    value = int(text)
    if not 0 < value <= MAX_ID:
        raise ValueError(text)
    return value


def _ids(text: str | None) -> tuple[int, ...]:
    if not text:
        return ()
    return tuple(_id(part) for part in text.split(",")[:1000] if part.strip())


# The store keeps times as Unix seconds; the API shows them as RFC 3339 (UTC), as Alertmanager's API does.
TIMES = frozenset({"received_at", "finished_at", "next_attempt_at", "started_at", "due_at", "ended_at",
                   "clicked_at", "until"})


def present(value: Any, key: str = "") -> Any:
    """A history row (or part of one) as the API answers it: every time in TIMES as RFC 3339, and the stored
    webhook `payload` as the JSON object it is, not a string holding JSON. Durations stay seconds."""
    if isinstance(value, dict):
        return {k: present(v, k) for k, v in value.items()}
    if isinstance(value, list):
        return [present(v) for v in value]
    if key in TIMES and isinstance(value, int | float) and not isinstance(value, bool):
        return rfc3339_millis(float(value))
    if key == "payload" and isinstance(value, str):
        try:
            return json.loads(value)
        except ValueError:
            return value  # a payload set aside as unreadable is shown as it was stored
    return value


def _error(message: str, status: int, reason: str | None = None) -> JSONResponse:
    body = {"status": "error", "error": message, **({"reason": reason} if reason else {})}
    return JSONResponse(body, status_code=status)


def authorized(handler: Handler) -> Handler:
    """The admin API answers only as relay.auth.check_admin allows; a store that cannot answer is a 503 saying so."""

    async def guarded(request: Request) -> Response:
        try:
            check_admin(request, services(request).settings)
        except Rejected as exc:
            return _error(exc.message, exc.status)
        try:
            return await handler(request)
        except StoreUnavailable as exc:
            return _error(str(exc), 503)

    return guarded


def by_id(handler: Callable[[Request, int], Awaitable[Response]]) -> Handler:
    """Handlers of /…/{id}: the id is checked once, here."""

    async def parsed(request: Request) -> Response:
        try:
            notification_id = _id(request.path_params["id"])
        except ValueError:
            return _error("id must be a positive integer", 400)
        return await handler(request, notification_id)

    return parsed


async def notifications(request: Request) -> Response:
    params = request.query_params
    try:
        summary = params.get("summary")
        query = HistoryFilter(receiver=params.get("receiver"), alertname=params.get("alertname"),
                              state=params.get("state"), ids=_ids(params.get("ids")),
                              summary=_id(summary) if summary is not None else None,
                              limit=int(params.get("limit", "100")))
        if not 1 <= query.limit <= 1000:
            raise ValueError(query.limit)
    except ValueError:
        return _error("ids and summary must be positive integers and limit 1 to 1000", 400)
    return JSONResponse({"notifications": present(await services(request).store.history(query))})


@by_id
async def notification(request: Request, notification_id: int) -> Response:
    found = await services(request).store.detail(notification_id)
    if found is None:
        return _error(f"no notification {notification_id}", 404)
    return JSONResponse(present(found))


@by_id
async def purge_dead_letter(request: Request, notification_id: int) -> Response:
    if not await services(request).store.purge(notification_id):
        return _error(f"no dead letter {notification_id}", 404)
    return JSONResponse({"status": "purged", "id": notification_id})


CANCEL_REFUSED = {
    "missing": (404, "no pending notification {id} (it was delivered, dead-lettered or cancelled already)"),
    "in_flight": (409, "notification {id} is being sent right now and cannot be cancelled; try again in a moment"),
}


@by_id
async def cancel_notification(request: Request, notification_id: int) -> Response:
    """An operator takes a pending notification out of its lane (it will not be sent); history keeps it."""
    state = services(request)
    now = time.time()
    attempt = Attempt(now, 0.0, "cancelled", "cancelled", "cancelled by an operator through the admin API")
    outcome = await state.store.cancel(notification_id, now, attempt)
    if outcome != "cancelled":
        status, error = CANCEL_REFUSED[outcome]
        return _error(error.format(id=notification_id), status)
    log.info("notification %d cancelled by an operator", notification_id)
    state.dispatcher.wake()  # the lane's next notification may go now
    return JSONResponse({"status": "cancelled", "id": notification_id})


REPLAY_REFUSED = {
    "missing": (404, "no dead letter {id}"),
    "resolved": (409, "dead letter {id} was not replayed: its alerts have resolved since (and the resolve was "
                      "sent), so replaying would re-open them; purge it instead"),
    "too_old": (409, "dead letter {id} was not replayed: it is older than RELAY_RETENTION_HOURS, so relay no "
                     "longer knows whether its alerts resolved and replaying could re-open them; purge it instead"),
}


@by_id
async def retry_dead_letter(request: Request, notification_id: int) -> Response:
    state = services(request)
    now = time.time()
    outcome = await state.store.replay(notification_id, now, now - state.settings.retention_hours * 3600)
    if outcome != "replayed":
        status, error = REPLAY_REFUSED[outcome]
        return _error(error.format(id=notification_id), status, reason=outcome)
    state.dispatcher.wake()
    return JSONResponse({"status": "replayed", "id": notification_id})
