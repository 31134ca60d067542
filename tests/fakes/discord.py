"""A local Discord channel webhook: execute (`POST /api/webhooks/{id}/{token}`, `?wait=true` answers the message) and
edit (`PATCH .../messages/{message_id}`), validating embeds against Discord's documented limits.

Answers as Discord documents them: 200 with the message object on `?wait=true` (204 without), 400
`{"code": 50035, "message": "Invalid Form Body", "errors": ...}` for a body past a limit, 401 `Invalid Webhook
Token` (50027), 404 `Unknown Webhook` (10015) or `Unknown Message` (10008), and, past `limit(n, per)` requests,
429 `{"message": "You are being rate limited.", "retry_after": <seconds, float>, "global": false}` with
`Retry-After` (whole seconds) and the X-RateLimit headers.
"""

from __future__ import annotations

import itertools
import math
import time
from typing import Any

from aiohttp import web

from tests.fakes import DEFAULT_TIMEOUT, Answer, FakeHttpServer, answer_response, read_body, wait_until

WEBHOOK_ID = "1234567890123456789"
WEBHOOK_TOKEN = "discordSECRETtoken-AbCdEfGhIjKlMnOpQrStUvWxYz0123456789"
LIMITS = {"title": 256, "description": 4096, "fields": 25, "field_name": 256, "field_value": 1024, "total": 6000,
          "embeds": 10, "content": 2000}


def problems(message: Any) -> list[str]:
    """What Discord's API would refuse in an execute or edit body."""
    if not isinstance(message, dict):
        return ["body is not a JSON object"]
    errors = []
    embeds = message.get("embeds") or []
    if not message.get("content") and not embeds:
        errors.append("Cannot send an empty message")
    if len(message.get("content") or "") > LIMITS["content"]:
        errors.append("content: Must be 2000 or fewer in length.")
    if len(embeds) > LIMITS["embeds"]:
        errors.append("embeds: Must be 10 or fewer in length.")
    for i, embed in enumerate(embeds):
        errors += _embed_problems(i, embed)
    total = sum(len(e.get("title", "")) + len(e.get("description", "")) + sum(
        len(f.get("name", "")) + len(f.get("value", "")) for f in e.get("fields", [])) for e in embeds)
    if total > LIMITS["total"]:
        errors.append("embeds: Embed size exceeds maximum size of 6000")
    return errors


def _embed_problems(i: int, embed: dict[str, Any]) -> list[str]:
    errors = []
    fields = embed.get("fields", [])
    if len(embed.get("title", "")) > LIMITS["title"]:
        errors.append(f"embeds.{i}.title: Must be 256 or fewer in length.")
    if len(embed.get("description", "")) > LIMITS["description"]:
        errors.append(f"embeds.{i}.description: Must be 4096 or fewer in length.")
    if len(fields) > LIMITS["fields"]:
        errors.append(f"embeds.{i}.fields: Must be 25 or fewer in length.")
    for j, field in enumerate(fields):
        if not field.get("name") or len(field["name"]) > LIMITS["field_name"]:
            errors.append(f"embeds.{i}.fields.{j}.name: Must be between 1 and 256 in length.")
        if not field.get("value") or len(field["value"]) > LIMITS["field_value"]:
            errors.append(f"embeds.{i}.fields.{j}.value: Must be between 1 and 1024 in length.")
    if not isinstance(embed.get("color", 0), int):
        errors.append(f"embeds.{i}.color: Value is not int.")
    return errors


class DiscordServer(FakeHttpServer):
    """`messages` holds the channel's messages by id (as last posted or edited), `posts` and `edits` count calls."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        super().__init__(host, port)
        self.messages: dict[str, dict[str, Any]] = {}
        self.order: list[str] = []  # message ids in the order they were posted
        self.edits: list[str] = []  # ids of edited messages, in order
        self._ids = itertools.count(1_100_000_000_000_000_000)
        self._limit: tuple[int, float] | None = None
        self._window: list[float] = []

    async def __aenter__(self) -> DiscordServer:
        await self.start()
        return self

    @property
    def url(self) -> str:
        return f"{self.base_url}/api/webhooks/{WEBHOOK_ID}/{WEBHOOK_TOKEN}"

    def limit(self, requests: int, per: float) -> None:
        """Answer 429 past `requests` calls in `per` seconds, as Discord's per-webhook bucket does."""
        self._limit = (requests, per)

    def delete(self, message_id: str) -> None:
        """Someone deleted the message in Discord."""
        self.messages.pop(message_id, None)

    def routes(self, app: web.Application) -> None:
        app.router.add_post("/api/webhooks/{id}/{token}", self._execute)
        app.router.add_patch("/api/webhooks/{id}/{token}/messages/{message}", self._edit)

    async def wait_for_messages(self, count: int, timeout: float = DEFAULT_TIMEOUT) -> list[dict[str, Any]]:
        assert self._changed is not None, "server not started"
        await wait_until(self._changed, lambda: len(self.order) >= count, timeout,
                         lambda: f"{len(self.order)} message(s); answers: {[r.status for r in self.requests]}")
        return [self.messages.get(i, {}) for i in self.order[:count]]

    def _limited(self) -> Answer | None:
        if self._limit is None:
            return None
        count, per = self._limit
        now = time.monotonic()
        self._window = [t for t in self._window if now - t < per]
        if len(self._window) >= count:
            wait = per - (now - self._window[0])
            return Answer(429, {"message": "You are being rate limited.", "retry_after": round(wait, 3),
                                "global": False},
                          {"Retry-After": str(math.ceil(wait)), "X-RateLimit-Limit": str(count),
                           "X-RateLimit-Remaining": "0", "X-RateLimit-Scope": "shared"})
        self._window.append(now)
        return None

    def _check(self, request: web.Request) -> Answer | None:
        if request.match_info["id"] != WEBHOOK_ID:
            return Answer(404, {"message": "Unknown Webhook", "code": 10015})
        if request.match_info["token"] != WEBHOOK_TOKEN:
            return Answer(401, {"message": "Invalid Webhook Token", "code": 50027})
        return self._limited()

    async def _answer(self, request: web.Request) -> tuple[Any, Answer | None]:
        body, _ = await read_body(request)
        answer = await self.next_answer()
        if answer is not None and not (200 <= answer.status < 300 and answer.body is None):
            return body, answer
        refused = self._check(request)
        if refused is not None:
            return body, refused
        errors = problems(body)
        if errors:
            return body, Answer(400, {"code": 50035, "message": "Invalid Form Body", "errors": errors})
        return body, None

    async def _execute(self, request: web.Request) -> web.Response:
        body, answer = await self._answer(request)
        if answer is None:
            message_id = str(next(self._ids))
            self.messages[message_id] = {**body, "id": message_id, "channel_id": "99"}
            self.order.append(message_id)
            answer = (Answer(200, self.messages[message_id]) if request.query.get("wait") == "true"
                      else Answer(204))
        await self.record(request, body, answer.status)
        return answer_response(answer)

    async def _edit(self, request: web.Request) -> web.Response:
        body, answer = await self._answer(request)
        message_id = request.match_info["message"]
        if answer is None and message_id not in self.messages:
            answer = Answer(404, {"message": "Unknown Message", "code": 10008})
        if answer is None:
            self.messages[message_id] = {**self.messages[message_id], **body, "edited_timestamp": time.time()}
            self.edits.append(message_id)
            answer = Answer(200, self.messages[message_id])
        await self.record(request, body, answer.status)
        return answer_response(answer)
