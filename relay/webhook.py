"""POST /webhook: check, parse, route, dedup and enqueue; answer 200 only once the outbox commit is durable.

Every refusal is a 4xx whose message names what is wrong, and happens before
anything is written, so a rejected request changes no state.
"""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

from pydantic import ValidationError
from pydantic_core import ErrorDetails
from starlette.requests import Request
from starlette.responses import JSONResponse

from relay import outbox
from relay.alerts import INFERRED, Alert, WebhookMessage, group_status
from relay.auth import check_webhook
from relay.config.heartbeat import arrived, is_heartbeat
from relay.config.routes import Routes
from relay.errors import Rejected, StoreRejected, StoreUnavailable
from relay.services import services
from relay.stages import escalation, mute
from relay.store.base import Candidate, Enqueued
from relay.telemetry import metrics

log = logging.getLogger(__name__)

MAX_REPORTED_ERRORS = 5


async def read_body(request: Request, limit: int, timeout: float = 30.0) -> bytes:
    """The body, refused when too large (413) or too slow to arrive (408): a slow client holds no worker long."""
    try:
        async with asyncio.timeout(timeout):
            return await _read_body(request, limit)
    except TimeoutError:
        raise Rejected(408, f"the request body did not arrive within {timeout:.0f}s") from None


async def _read_body(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise Rejected(413, f"body of {declared} bytes is over the limit of {limit} bytes (RELAY_MAX_BODY_BYTES)")
    content_type = request.headers.get("content-type", "")
    media = content_type.split(";", 1)[0].strip().lower()
    if media != "application/json" and not media.endswith("+json"):
        raise Rejected(415, f"expected Content-Type application/json, got {media or 'none'!r}")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise Rejected(413, f"body is over the limit of {limit} bytes (RELAY_MAX_BODY_BYTES)")
        chunks.append(chunk)
    return b"".join(chunks)


def _problem(err: ErrorDetails) -> str:
    where = ".".join(str(p) for p in err["loc"])
    if err["type"] == "json_invalid":
        return "malformed JSON: " + err["msg"].removeprefix("Invalid JSON: ")
    if err["type"] == "model_type" and not where:
        return "expected a JSON object (an Alertmanager webhook body)"
    if where == "version":
        return 'version: expected "4" (Alertmanager webhook v4)'
    return f"{where or 'body'}: {err['msg'].removeprefix('Value error, ')}"


def parse(body: bytes) -> WebhookMessage:
    """Parse with the same parser the outbox uses to read it back, so whatever is accepted can be delivered."""
    try:
        message = WebhookMessage.from_json(body)
    except ValidationError as exc:
        errors = exc.errors(include_url=False, include_input=False)
        problems = [_problem(err) for err in errors[:MAX_REPORTED_ERRORS]]
        if len(errors) > len(problems):
            problems.append(f"... and {len(errors) - len(problems)} more")
        raise Rejected(400, "; ".join(problems)) from None
    if message.model_extra and message.model_extra.get(INFERRED) is not None:  # only relay says why it resolved
        message = message.model_copy(update={INFERRED: None})
    return message


def candidates(message: WebhookMessage, routes: Routes, at: datetime | None = None) -> list[Candidate]:
    """One candidate per receiver holding the alerts routed to it, in the webhook's order (heartbeats are consumed,
    not routed). With `at`, a firing alert skips the receivers only routes muted then reach (relay.stages.mute holds
    it for them); a resolve is never muted."""
    chosen: dict[str, list[tuple[Alert, timedelta]]] = defaultdict(list)
    for alert in message.alerts:
        if is_heartbeat(routes.spec.heartbeats, alert):
            continue
        for target in routes.targets(alert.labels, at if alert.status == "firing" else None):
            chosen[target.receiver].append((alert, target.repeat_interval))
    out = []
    for name, pairs in chosen.items():
        receiver = routes.receivers[name]
        alerts = [a for a, _ in pairs]
        # A receiver given only the resolved alerts of a firing group holds a resolved group, and says so.
        group = message.model_copy(update={"alerts": alerts, "status": group_status(alerts)})
        out.append(Candidate(name, receiver.integration, group, tuple(i for _, i in pairs), receiver.give_up_after,
                             routes.priority))
    return out


def summary(message: WebhookMessage, results: list[Enqueued], heartbeats: tuple[list[str], int] = ([], 0),
            defaults: Mapping[str, list[str]] | None = None) -> dict[str, Any]:
    """The 200 answer; `heartbeats` is what `relay.config.heartbeat.arrived` found (such alerts are not routed);
    `defaults` (Routes.defaults) adds a warning to receivers that send to routes.yaml placeholders."""
    receivers = {
        r.receiver: {"notification_id": r.notification_id, "enqueued": r.alerts_enqueued,
                     "deduplicated": r.alerts_deduplicated,
                     **({"warning": "; ".join((defaults or {})[r.receiver])} if r.receiver in (defaults or {}) else {})}
        for r in results
    }
    return {
        "status": "accepted",
        "alerts": len(message.alerts),
        "notifications_enqueued": sum(1 for r in results if r.notification_id is not None),
        "alerts_deduplicated": sum(r.alerts_deduplicated for r in results),
        "receivers": receivers,
        "heartbeats": heartbeats[0],
        "heartbeat_alerts": heartbeats[1],
    }


async def handle(request: Request) -> JSONResponse:
    state = services(request)
    received_at = state.runtime.clock()
    try:
        check_webhook(request, state.settings)
        message = parse(await read_body(request, state.settings.max_body_bytes,
                                         state.settings.request_read_timeout_seconds))
    except Rejected as exc:
        metrics.webhook_requests.labels(str(exc.status)).inc()
        log.info("webhook refused (%d): %s", exc.status, exc.message)
        # A client too slow to send its body must not keep the connection by trickling the rest of it.
        closing = {"Connection": "close"} if exc.status == 408 else None
        return JSONResponse({"status": "error", "error": exc.message}, status_code=exc.status, headers=closing)
    routes = state.runtime.routes
    assert routes is not None  # loaded before the app serves
    beats = arrived(routes.spec.heartbeats, message.alerts)
    chosen = candidates(message, routes, mute.instant(received_at))
    try:
        windows = await state.windows.current(state.store, received_at)
        held = mute.holds(message, routes, received_at, windows, state.windows)
        chosen = mute.withheld(chosen, held)
        chosen = await escalation.arm(state.store, routes, message, chosen, received_at, held)
        results = await outbox.enqueue(state.dispatcher, state.store, chosen, received_at)
        if beats[0]:  # after the enqueue: a refused webhook records nothing, a 503's resend is deduplicated
            await state.store.heartbeat_seen(beats[0], received_at)
            state.deadman.wake()
    except StoreUnavailable as exc:
        metrics.webhook_requests.labels("503").inc()
        log.error("webhook not accepted (503, Alertmanager will retry): %s", exc)
        return JSONResponse({"status": "error", "error": "store unavailable, retry later"}, status_code=503,
                            headers={"Retry-After": "5"})
    except StoreRejected as exc:  # the data, not an outage: sending it again cannot help
        metrics.webhook_requests.labels("400").inc()
        log.error("webhook refused (400): the store cannot hold its data: %s", exc)
        return JSONResponse({"status": "error", "error": f"nothing was stored: {exc}"}, status_code=400)
    for alert in message.alerts:
        metrics.alerts_received.labels(alert.status).inc()
    for result in results:
        if result.notification_id is not None:
            metrics.notifications.labels(result.receiver, routes.receivers[result.receiver].integration).inc()
        if result.alerts_deduplicated:
            metrics.notifications_deduplicated.labels(result.receiver).inc(result.alerts_deduplicated)
    for hold in held:
        log.info("held %s for %s: %s", hold.alert.name, ", ".join(hold.receivers),
                 (hold.group.model_extra or {}).get(mute.MUTED))
    metrics.webhook_requests.labels("200").inc()
    answer = summary(message, results, beats, routes.defaults)
    if held:
        answer["muted"] = [{"alertname": h.alert.name, "receivers": list(h.receivers),
                            "reason": (h.group.model_extra or {}).get(mute.MUTED)} for h in held]
    return JSONResponse(answer)
