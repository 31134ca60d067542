"""A local Teams Workflows webhook ("When a Teams webhook request is received"): `POST
/workflows/{id}/triggers/manual/paths/invoke?api-version=1&sp=…&sv=1.0&sig=<secret>`.

Like the flow's trigger it answers 202 Accepted with an empty body, 401 when `sig` is wrong, 404 for an unknown
workflow, 413 past about 28 KB, and whatever a test scripts (429 with Retry-After, 5xx). It also does what the
flow's "Post card in a chat or channel" would refuse later: a body that is not a message with one Adaptive Card
attachment valid against the vendored Adaptive Cards 1.5 schema is answered 400 here, so a test sees it at once.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema
from aiohttp import web

from tests.fakes import DEFAULT_TIMEOUT, Answer, FakeHttpServer, answer_response, read_body, wait_until

WORKFLOW = "0a1b2c3d4e5f60718293a4b5c6d7e8f9"
SIG = "teamsSIGsecret-Zx9Yw8Vu7Ts6Rq5Po4Nm3Lk2Jh1Gf0"
SIZE_LIMIT = 28 * 1024
SCHEMA = json.loads((Path(__file__).parent.parent / "schemas" / "adaptive-card-1.5.json").read_text())
CARD = "application/vnd.microsoft.card.adaptive"


def card_problems(card: Any) -> list[str]:
    """What the Adaptive Cards 1.5 schema finds wrong in a card."""
    validator = jsonschema.Draft6Validator(SCHEMA)
    return [f"{'/'.join(map(str, e.absolute_path))}: {e.message[:200]}" for e in validator.iter_errors(card)]


def problems(body: Any) -> list[str]:
    if not isinstance(body, dict) or body.get("type") != "message":
        return ["the body is not a message (type: message)"]
    attachments = body.get("attachments")
    if not isinstance(attachments, list) or len(attachments) != 1:
        return ["a message holds one attachment"]
    if attachments[0].get("contentType") != CARD:
        return [f"the attachment's contentType is not {CARD}"]
    return card_problems(attachments[0].get("content"))


class TeamsServer(FakeHttpServer):
    """`cards` holds the Adaptive Cards the flow would post, in order."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        super().__init__(host, port)
        self.cards: list[dict[str, Any]] = []

    async def __aenter__(self) -> TeamsServer:
        await self.start()
        return self

    def url_at(self, base_url: str) -> str:
        return (f"{base_url}/workflows/{WORKFLOW}/triggers/manual/paths/invoke?api-version=1"
                f"&sp=%2Ftriggers%2Fmanual%2Frun&sv=1.0&sig={SIG}")

    @property
    def url(self) -> str:
        return self.url_at(self.base_url)

    def routes(self, app: web.Application) -> None:
        app.router.add_post("/workflows/{id}/triggers/manual/paths/invoke", self._invoke)

    async def wait_for_cards(self, count: int, timeout: float = DEFAULT_TIMEOUT) -> list[dict[str, Any]]:
        assert self._changed is not None, "server not started"
        await wait_until(self._changed, lambda: len(self.cards) >= count, timeout,
                         lambda: f"{len(self.cards)} card(s); answers: {[r.status for r in self.requests]}")
        return self.cards[:count]

    async def _invoke(self, request: web.Request) -> web.Response:
        body, _ = await read_body(request)
        answer = await self.next_answer()
        if answer is None or (200 <= answer.status < 300 and answer.body is None):
            answer = self._process(request, body, len(await request.read()))
        await self.record(request, body, answer.status)
        return answer_response(answer)

    def _process(self, request: web.Request, body: Any, size: int) -> Answer:
        if request.match_info["id"] != WORKFLOW:
            return Answer(404, {"error": {"code": "WorkflowNotFound", "message": "The workflow was not found."}})
        if request.query.get("sig") != SIG:
            return Answer(401, {"error": {"code": "DirectApiInvalidAuthorizationSignature",
                                          "message": "The provided authorization signature is not valid."}})
        if size > SIZE_LIMIT:
            return Answer(413, {"error": {"code": "RequestEntityTooLarge", "message": "The request is too large."}})
        errors = problems(body)
        if errors:
            return Answer(400, {"error": {"code": "InvalidRequestContent", "message": "; ".join(errors)[:1000]}})
        self.cards.append(body["attachments"][0]["content"])
        return Answer(202)
