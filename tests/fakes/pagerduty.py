"""A local PagerDuty Events API v2 (`POST /v2/enqueue`) that validates events like the real one.

It answers 202 with a dedup_key for a valid event and 400 "invalid event" with
the list of problems otherwise (also for an event of 512 KB or more, the documented limit; the exact error
text for that case is ours), keeps incidents (a trigger opens one per
dedup_key, a resolve closes it) and can be scripted to answer 429 or 5xx.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from datetime import datetime
from typing import Any

from aiohttp import web

from tests.fakes import DEFAULT_TIMEOUT, Answer, FakeHttpServer, answer_response, read_body, wait_until

ACTIONS = ("trigger", "acknowledge", "resolve")
EVENT_LIMIT = 512 * 1000  # bytes of the JSON body; Alertmanager keeps its PagerDuty events under this too
SEVERITIES = ("critical", "error", "warning", "info")

# The body PagerDuty sends with each status, used when a test scripts a status without a body.
BODIES: dict[int, dict[str, Any]] = {
    400: {"status": "invalid event", "message": "Event object is invalid", "errors": ["scripted"]},
    403: {"status": "forbidden", "message": "Forbidden"},
    429: {"status": "throttle event", "message": "Requests for this service are arriving too quickly. Please retry "
                                                 "later."},
    500: {"status": "error", "message": "Internal server error"},
    502: {"status": "error", "message": "Bad gateway"},
    503: {"status": "error", "message": "Service unavailable"},
}


def problems(event: Any, routing_keys: set[str] | None) -> list[str]:
    """What the Events API would reject in an event; empty when it is valid."""
    if not isinstance(event, dict):
        return ["Event object is not a JSON object"]
    errors: list[str] = []
    key = event.get("routing_key")
    if not isinstance(key, str) or not key.strip():
        errors.append("'routing_key' is missing or blank")
    elif routing_keys is not None and key not in routing_keys:
        errors.append("Invalid routing key")
    action = event.get("event_action")
    if action not in ACTIONS:
        errors.append("'event_action' is missing or invalid (must be one of: trigger, acknowledge, resolve)")
    dedup = event.get("dedup_key")
    if dedup is not None and (not isinstance(dedup, str) or len(dedup) > 255):
        errors.append("'dedup_key' must be a string of at most 255 characters")
    if action in ("acknowledge", "resolve") and not dedup:
        errors.append(f"'dedup_key' is required for event_action {action}")
    if action == "trigger":
        errors.extend(_payload_problems(event.get("payload")))
    return errors


def _payload_problems(payload: Any) -> list[str]:
    if not isinstance(payload, dict):
        return ["'payload' is missing or not an object"]
    errors = []
    for field in ("summary", "source"):
        value = payload.get(field)
        if not isinstance(value, str) or not value.strip():
            errors.append(f"'payload.{field}' is missing or blank")
    if isinstance(payload.get("summary"), str) and len(payload["summary"]) > 1024:
        errors.append("'payload.summary' is longer than 1024 characters")
    if payload.get("severity") not in SEVERITIES:
        errors.append("'payload.severity' is missing or invalid (must be one of: critical, error, warning, info)")
    timestamp = payload.get("timestamp")
    if timestamp is not None:
        try:
            datetime.fromisoformat(str(timestamp).replace("Z", "+00:00"))
        except ValueError:
            errors.append("'payload.timestamp' is not a valid ISO 8601 timestamp")
    return errors


class PagerDutyServer(FakeHttpServer):
    """PagerDuty on loopback. `events` holds accepted events in order; `requests` every attempt.

    `routing_keys`, when given, are the only keys accepted (others get 400 "Invalid routing key").
    """

    def __init__(self, host: str = "127.0.0.1", port: int = 0, routing_keys: set[str] | None = None) -> None:
        super().__init__(host, port)
        self.routing_keys = routing_keys
        self.events: list[dict[str, Any]] = []
        self.incidents: dict[str, dict[str, Any]] = {}  # dedup_key -> {"status", "trigger", "events"}
        self.dripping = 0  # answers being dripped right now (see drip())
        self.dripped: list[float] = []  # how long each dripped answer lasted before the client hung up
        self._drip = 0.0

    async def __aenter__(self) -> PagerDutyServer:
        await self.start()
        return self

    def routes(self, app: web.Application) -> None:
        app.router.add_post("/v2/enqueue", self._enqueue)

    @property
    def url(self) -> str:
        """The full enqueue URL, for a receiver's `pagerduty.url`."""
        return self.base_url + "/v2/enqueue"

    def open_incidents(self) -> dict[str, dict[str, Any]]:
        """Incidents not resolved yet, by dedup_key, each with the trigger event that opened it."""
        return {key: incident["trigger"] for key, incident in self.incidents.items()
                if incident["status"] != "resolved"}

    async def wait_for(self, count: int, timeout: float = DEFAULT_TIMEOUT) -> list[dict[str, Any]]:
        """Wait until PagerDuty accepted `count` events; return them."""
        assert self._changed is not None, "server not started"
        await wait_until(self._changed, lambda: len(self.events) >= count, timeout,
                         lambda: f"{len(self.events)} event(s) accepted, answers so far: "
                                 f"{[r.status for r in self.requests]}")
        return self.events[:count]

    def drip(self, every: float) -> None:
        """A broken endpoint: answer every request 202 and then one byte of body every `every` seconds, for as long
        as the client listens (per-read timeouts never fire). `recover()` does not end it; stopping the server does."""
        self._drip = every

    async def _dripping(self, request: web.Request) -> web.StreamResponse:
        started = time.monotonic()
        await self.record(request, None, 202)
        response = web.StreamResponse(status=202, headers={"Content-Type": "application/json"})
        self.dripping += 1
        await self.notify()
        try:
            await response.prepare(request)
            while True:
                await asyncio.sleep(self._drip)
                await response.write(b" ")
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            self.dripping -= 1
            self.dripped.append(time.monotonic() - started)
            await self.notify()
        return response

    async def _enqueue(self, request: web.Request) -> web.StreamResponse:
        if self._drip:
            return await self._dripping(request)
        event, is_json = await read_body(request)
        answer = await self.next_answer()
        if answer is None or (answer.body is None and 200 <= answer.status < 300):
            size = len(await request.read())
            answer = (Answer(400, {"status": "invalid event", "message": "Event object is invalid",
                                   "errors": [f"Event is {size} bytes; events must be under {EVENT_LIMIT} bytes"]})
                      if size >= EVENT_LIMIT else self._process(event if is_json else None))
        elif answer.body is None:
            answer = Answer(answer.status, BODIES.get(answer.status, {"status": "error"}), answer.headers)
        await self.record(request, event, answer.status)
        return answer_response(answer)

    def _process(self, event: Any) -> Answer:
        errors = problems(event, self.routing_keys) if event is not None else ["Event object is not valid JSON"]
        if errors:
            return Answer(400, {"status": "invalid event", "message": "Event object is invalid", "errors": errors})
        key = event.get("dedup_key") or uuid.uuid4().hex
        action = event["event_action"]
        self.events.append(event)
        incident = self.incidents.get(key)
        if action == "trigger" and (incident is None or incident["status"] == "resolved"):
            self.incidents[key] = {"status": "triggered", "trigger": event, "events": [event]}
        elif incident is not None:
            incident["events"].append(event)
            if incident["status"] != "resolved" and action != "trigger":
                incident["status"] = "resolved" if action == "resolve" else "acknowledged"
        return Answer(202, {"status": "success", "message": "Event processed", "dedup_key": key})
