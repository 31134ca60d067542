"""A local Slack: incoming webhooks (`/services/...`) and the Web API's `chat.postMessage` and `chat.update`.

It answers with Slack's real status codes and bodies (`ok`, `invalid_payload`,
`no_text`, `invalid_blocks`, `channel_not_found`, `message_not_found`, 429
`rate_limited` with Retry-After, ...), so the real slack_sdk clients and relay's
error mapping are exercised end to end. Like Slack, the Web API answers a post
with the channel's ID and the message `ts`, and chat.update wants that ID and ts.

Slack's own limit is opt-in (`SlackWebhookServer(limit=SlackLimit())`): about one message per second per channel
(per incoming webhook, or per channel for the Web API's posts and updates) with a short burst; past it, 429 with
a Retry-After header in whole seconds, as Slack documents. `rate_limited` counts the 429s the limit answered.
"""

from __future__ import annotations

import hashlib
import hmac
import itertools
import json
import math
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

import httpx
from aiohttp import web

from tests.fakes import DEFAULT_TIMEOUT, Answer, FakeHttpServer, answer_response, read_body, wait_until

DEFAULT_WEBHOOK_PATH = "/services/T000/B000/XXXXSECRET"
DEFAULT_TOKEN = "xoxb-000-000-XXXXSECRETTOKEN"

# The body Slack sends with each status, used when a test scripts a status without a body.
WEBHOOK_BODIES = {
    200: "ok",
    400: "invalid_payload",
    403: "invalid_token",
    404: "channel_not_found",
    410: "channel_is_archived",
    429: "rate_limited",
    500: "internal_error",
    503: "service_unavailable",
}
SECTION_LIMIT = 3000
HEADER_LIMIT = 150
BLOCK_LIMIT = 50


@dataclass(frozen=True)
class SlackLimit:
    """Slack's "1 message per second per channel, short bursts allowed" as a token bucket per channel."""

    rate: float = 1.0
    burst: int = 3


@dataclass
class _Bucket:
    tokens: float
    updated: float


SIGNING_SECRET = "8f742231b10e8888abcd99yyyzzz85a5-SECRET"
TEAM_ID = "T0OJEOMNEO"


def signature(secret: str, timestamp: int, body: bytes) -> str:
    """Slack's request signature: v0= and the hex HMAC-SHA256 of `v0:{timestamp}:{body}` under the signing secret."""
    base = f"v0:{timestamp}:".encode() + body
    return "v0=" + hmac.new(secret.encode(), base, hashlib.sha256).hexdigest()


@dataclass(frozen=True)
class Interaction:
    """An interaction request as Slack sends it to an app's request URL."""

    body: bytes
    headers: dict[str, str]

    async def send(self, relay_url: str) -> httpx.Response:
        async with httpx.AsyncClient(timeout=10) as client:
            return await client.post(relay_url + "/slack/interactions", content=self.body, headers=self.headers)


@dataclass
class Posted:
    """A message as it stands in a channel: where, its ts, the thread it is in, and its body (after updates)."""

    channel: str
    ts: str
    thread_ts: str | None
    body: dict[str, Any]
    updates: list[dict[str, Any]] = field(default_factory=list)


def channel_id(name: str) -> str:
    """The ID Slack gives a channel (names like `#alerts` map to a stable `C…`; IDs map to themselves)."""
    if name.startswith(("C", "G", "D")) and name.isupper():
        return name
    return "C" + hashlib.sha256(name.lstrip("#").encode()).hexdigest()[:8].upper()


def block_problems(body: dict[str, Any]) -> list[str]:
    """What Slack's `invalid_blocks` would complain about."""
    blocks = list(body.get("blocks") or [])
    for attachment in body.get("attachments") or []:
        blocks.extend(attachment.get("blocks") or [])
    problems = [f"more than {BLOCK_LIMIT} blocks"] if len(blocks) > BLOCK_LIMIT else []
    for block in blocks:
        kind = block.get("type")
        if kind in ("section", "header"):
            text = block.get("text") or {}
            limit = HEADER_LIMIT if kind == "header" else SECTION_LIMIT
            if not text.get("text") or len(text["text"]) > limit:
                problems.append(f"{kind} text empty or longer than {limit}")
            if kind == "header" and text.get("type") != "plain_text":
                problems.append("header text must be plain_text")
        elif kind == "context":
            elements = block.get("elements") or []
            if not elements or len(elements) > 10 or any(not e.get("text") for e in elements):
                problems.append("context needs 1 to 10 elements with text")
        elif kind not in ("divider", "actions"):
            problems.append(f"unknown block type {kind!r}")
    return problems


class SlackWebhookServer(FakeHttpServer):
    """Slack on loopback. `messages` holds the bodies Slack accepted; `requests` every attempt.

    `received` pairs each accepted message with its arrival: (time.time(), path, body).
    """

    def __init__(self, host: str = "127.0.0.1", port: int = 0, tokens: tuple[str, ...] = (DEFAULT_TOKEN,),
                 limit: SlackLimit | None = None) -> None:
        super().__init__(host, port)
        self.tokens = set(tokens)
        self.limit = limit
        self.rate_limited = 0  # 429s answered because a channel was past `limit`
        self._buckets: dict[str, _Bucket] = {}
        self.messages: list[dict[str, Any]] = []
        self.received: list[tuple[float, str, dict[str, Any]]] = []
        self.posted: list[Posted] = []  # Web API posts, in order, with their current content
        self.updates: list[dict[str, Any]] = []  # chat.update bodies Slack accepted
        self._ts = itertools.count(1)
        self.usergroups: dict[str, list[str]] = {}  # usergroups.users.list: group ID -> member IDs
        self.usergroups_down = False  # usergroups.users.list answers 503 (an outage of that API)

    async def __aenter__(self) -> SlackWebhookServer:
        await self.start()
        return self

    def routes(self, app: web.Application) -> None:
        app.router.add_post("/services/{path:.*}", self._webhook)
        app.router.add_post("/api/chat.postMessage", self._post_message)
        app.router.add_post("/api/chat.update", self._update)
        app.router.add_route("*", "/api/usergroups.users.list", self._usergroup_users)

    async def _usergroup_users(self, request: web.Request) -> web.Response:
        """usergroups.users.list: the members of `usergroups[usergroup]` (no_such_subteam for others)."""
        fields = dict(request.query)
        if request.method == "POST":
            fields.update({k: str(v) for k, v in (await request.post()).items()})
        token = request.headers.get("Authorization", "").removeprefix("Bearer ")
        if self.usergroups_down:
            await self.record(request, fields, 503)
            return web.json_response({"ok": False, "error": "service_unavailable"}, status=503)
        if token not in self.tokens:
            answer = {"ok": False, "error": "invalid_auth"}
        elif fields.get("usergroup") not in self.usergroups:
            answer = {"ok": False, "error": "no_such_subteam"}
        else:
            answer = {"ok": True, "users": self.usergroups[fields["usergroup"]]}
        await self.record(request, fields, 200)
        return web.json_response(answer)

    def click(self, posted: Posted, action_id: str, *, user: str = "U0KIM", team: str = TEAM_ID,
              secret: str = SIGNING_SECRET, timestamp: int | None = None,
              selected_date_time: int | None = None, user_team: str | None = None) -> Interaction:
        """The request Slack sends when `user` of workspace `team` clicks the element `action_id` of the message as it
        stands now (a button, or the date-time picker with `selected_date_time`), signed with `secret`. `user_team`:
        the user's own workspace when it is another one (a Slack Connect guest from another organisation)."""
        found = None
        for block in posted.body.get("blocks") or []:
            for element in block.get("elements") or [] if block.get("type") == "actions" else []:
                if element.get("action_id") == action_id:
                    found = (block, element)
        assert found is not None, f"no element {action_id!r} in the message as it stands"
        block, element = found
        action: dict[str, Any] = {"type": element["type"], "action_id": action_id, "block_id": block["block_id"],
                                  "action_ts": f"{time.time():.6f}"}
        if element["type"] == "button":
            action |= {"text": element["text"], "value": element.get("value", "")}
        else:
            action["selected_date_time"] = selected_date_time
        payload = {
            "type": "block_actions", "api_app_id": "A0RELAY", "token": "deprecated-verification-token",
            "trigger_id": "1.2.3", "response_url": self.base_url + "/actions/T0/1/x",
            "team": {"id": team, "domain": "ojeomneo"},
            "user": {"id": user, "username": user.lower(), "name": user.lower(), "team_id": user_team or team},
            "container": {"type": "message", "message_ts": posted.ts, "channel_id": posted.channel,
                          "is_ephemeral": False},
            "channel": {"id": posted.channel, "name": "ojeomneo-alerts"},
            "message": {"type": "message", "ts": posted.ts, "text": posted.body.get("text", ""),
                        "blocks": posted.body.get("blocks", [])},
            "actions": [action],
        }
        body = urlencode({"payload": json.dumps(payload)}).encode()
        sent = int(time.time()) if timestamp is None else timestamp
        return Interaction(body, {"Content-Type": "application/x-www-form-urlencoded",
                                  "X-Slack-Request-Timestamp": str(sent),
                                  "X-Slack-Signature": signature(secret, sent, body)})

    def url(self, path: str = DEFAULT_WEBHOOK_PATH) -> str:
        """An incoming-webhook URL on this server (the path is the secret part)."""
        return self.base_url + path

    @property
    def api_url(self) -> str:
        """The Web API base URL, for `slack.api_url` in bot-token mode."""
        return self.base_url + "/api/"

    async def wait_for(self, count: int, timeout: float = DEFAULT_TIMEOUT) -> list[dict[str, Any]]:
        """Wait until Slack accepted `count` messages; return them."""
        assert self._changed is not None, "server not started"
        await wait_until(self._changed, lambda: len(self.messages) >= count, timeout,
                         lambda: f"{len(self.messages)} message(s) accepted, "
                                 f"answers so far: {[r.status for r in self.requests]}")
        return self.messages[:count]

    async def wait_for_updates(self, count: int, timeout: float = DEFAULT_TIMEOUT) -> list[dict[str, Any]]:
        """Wait until Slack accepted `count` chat.update calls; return their bodies."""
        assert self._changed is not None, "server not started"
        await wait_until(self._changed, lambda: len(self.updates) >= count, timeout,
                         lambda: f"{len(self.updates)} update(s), paths so far: {[r.path for r in self.requests]}")
        return self.updates[:count]

    def top_level(self) -> list[Posted]:
        """Messages posted into the channel itself (not thread replies)."""
        return [p for p in self.posted if p.thread_ts is None]

    def replies(self, ts: str) -> list[Posted]:
        return [p for p in self.posted if p.thread_ts == ts]

    def find(self, channel: str, ts: str) -> Posted | None:
        return next((p for p in self.posted if p.channel == channel and p.ts == ts), None)

    async def _webhook(self, request: web.Request) -> web.Response:
        body, is_json = await read_body(request)
        answer = await self.next_answer()
        if answer is None and (wait := self._over_limit(request.path)) is not None:
            answer = Answer(429, "rate_limited", {"Retry-After": wait})
        elif answer is None or (answer.body is None and 200 <= answer.status < 300):
            answer = self._judge(body, is_json)
        elif answer.body is None:
            answer = Answer(answer.status, WEBHOOK_BODIES.get(answer.status, ""), answer.headers)
        await self._accept(request, body, answer.status, 200 <= answer.status < 300)
        return answer_response(answer)

    async def _post_message(self, request: web.Request) -> web.Response:
        body, is_json = await read_body(request)
        answer = await self.next_answer()
        if answer is None or (answer.body is None and 200 <= answer.status < 300):  # a scripted 200: the usual
            token = request.headers.get("Authorization", "").removeprefix("Bearer ")
            if token not in self.tokens:
                answer = Answer(200, {"ok": False, "error": "invalid_auth"})
            elif is_json and not body.get("channel"):
                answer = Answer(200, {"ok": False, "error": "channel_not_found"})
            elif (wait := self._over_limit(channel_id(str(body["channel"])) if is_json else "")) is not None:
                answer = Answer(429, {"ok": False, "error": "ratelimited"}, {"Retry-After": wait})
            else:
                judged = self._judge(body, is_json)
                answer = (Answer(200, {"ok": True, "channel": channel_id(body["channel"]), "ts": self._next_ts(),
                                       "message": body})
                          if judged.status == 200 else Answer(200, {"ok": False, "error": judged.body}))
        elif not isinstance(answer.body, dict):
            error = answer.body or ("ratelimited" if answer.status == 429 else WEBHOOK_BODIES.get(answer.status, ""))
            answer = Answer(answer.status, {"ok": False, "error": error}, answer.headers)
        ok = isinstance(answer.body, dict) and answer.body.get("ok") is True
        if ok and isinstance(answer.body, dict) and "ts" in answer.body:
            self.posted.append(Posted(answer.body["channel"], answer.body["ts"], body.get("thread_ts"), body))
        await self._accept(request, body, answer.status, ok and 200 <= answer.status < 300)
        return answer_response(answer)

    async def _update(self, request: web.Request) -> web.Response:
        body, is_json = await read_body(request)
        answer = await self.next_answer()
        if answer is None or (answer.body is None and 200 <= answer.status < 300):
            answer = self._judge_update(request, body, is_json)
        elif not isinstance(answer.body, dict):
            error = answer.body or ("ratelimited" if answer.status == 429 else WEBHOOK_BODIES.get(answer.status, ""))
            answer = Answer(answer.status, {"ok": False, "error": error}, answer.headers)
        ok = isinstance(answer.body, dict) and answer.body.get("ok") is True and 200 <= answer.status < 300
        if ok:
            self.updates.append(body)
            posted = self.find(body["channel"], body["ts"])
            assert posted is not None
            posted.body = body
            posted.updates.append(body)
        await self.record(request, body, answer.status)
        return answer_response(answer)

    def _judge_update(self, request: web.Request, body: Any, is_json: bool) -> Answer:
        token = request.headers.get("Authorization", "").removeprefix("Bearer ")
        if token not in self.tokens:
            return Answer(200, {"ok": False, "error": "invalid_auth"})
        if not is_json or not isinstance(body, dict):
            return Answer(200, {"ok": False, "error": "invalid_arguments"})
        channel = str(body.get("channel") or "")
        if channel != channel_id(channel) or not any(p.channel == channel for p in self.posted):
            return Answer(200, {"ok": False, "error": "channel_not_found"})  # chat.update takes IDs, not names
        if self.find(channel, str(body.get("ts") or "")) is None:
            return Answer(200, {"ok": False, "error": "message_not_found"})
        if (wait := self._over_limit(channel)) is not None:
            return Answer(429, {"ok": False, "error": "ratelimited"}, {"Retry-After": wait})
        judged = self._judge(body, True)
        if judged.status != 200:
            return Answer(200, {"ok": False, "error": judged.body})
        return Answer(200, {"ok": True, "channel": channel, "ts": body["ts"], "text": body.get("text", "")})

    def _over_limit(self, channel: str) -> str | None:
        """Take one message of `channel`'s budget; past it, count a 429 and return its Retry-After (seconds)."""
        if self.limit is None:
            return None
        now = time.monotonic()
        bucket = self._buckets.setdefault(channel, _Bucket(float(self.limit.burst), now))
        bucket.tokens = min(self.limit.burst, bucket.tokens + (now - bucket.updated) * self.limit.rate)
        bucket.updated = now
        if bucket.tokens >= 1:
            bucket.tokens -= 1
            return None
        self.rate_limited += 1
        return str(max(1, math.ceil((1 - bucket.tokens) / self.limit.rate)))

    def _judge(self, body: Any, is_json: bool) -> Answer:
        """What real Slack says about a message body when nothing is scripted."""
        if not is_json or not isinstance(body, dict):
            return Answer(400, "invalid_payload")
        if not (body.get("text") or body.get("blocks") or body.get("attachments")):
            return Answer(400, "no_text")
        if block_problems(body):
            return Answer(400, "invalid_blocks")
        return Answer(200, "ok")

    async def _accept(self, request: web.Request, body: Any, status: int, delivered: bool) -> None:
        """Record the attempt, and the message when Slack took it."""
        if delivered and isinstance(body, dict):
            self.messages.append(body)
            self.received.append((time.time(), request.path, body))
        await self.record(request, body, status)

    def _next_ts(self) -> str:
        return f"{int(time.time())}.{next(self._ts):06d}"
