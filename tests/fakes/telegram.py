"""A local Telegram Bot API: `POST /bot<token>/sendMessage` and `/editMessageText` with HTML parse mode.

It parses the HTML as Telegram does (only the documented tags; anything else is 400 `can't parse entities`),
counts the text after parsing against 4096 characters (UTF-16 code units), and finds the entities Telegram adds
on its own: a `mention` for `@username` and a `url` for a bare link, except inside `code` and `pre`. Answers are
the Bot API's: `{"ok": true, "result": Message}`, or `{"ok": false, "error_code": N, "description": ...}`, with
`parameters.retry_after` on 429 past `limit(n, per)`.
"""

from __future__ import annotations

import itertools
import re
import time
from dataclasses import dataclass, field
from html.parser import HTMLParser
from typing import Any

from aiohttp import web

from tests.fakes import DEFAULT_TIMEOUT, Answer, FakeHttpServer, answer_response, read_body, wait_until

BOT_TOKEN = "9876543210:AAH-tgSECRETtoken_abcdefghijklmnop"
CHAT_ID = -1001234567890
TOPIC = 42
TAGS = {"b", "strong", "i", "em", "u", "ins", "s", "strike", "del", "span", "tg-spoiler", "a", "code", "pre",
        "blockquote", "tg-emoji"}
_MENTION = re.compile(r"(?<![\w@])@[A-Za-z][A-Za-z0-9_]{3,31}\b")
_URL = re.compile(r"https?://[^\s<>\"]+")


class EntityError(ValueError):
    pass


@dataclass
class Parsed(HTMLParser):
    """The text and entities of a message in HTML parse mode."""

    text: str = ""
    entities: list[dict[str, str]] = field(default_factory=list)
    stack: list[tuple[str, dict[str, str | None]]] = field(default_factory=list)

    def __post_init__(self) -> None:
        HTMLParser.__init__(self, convert_charrefs=True)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag not in TAGS:
            raise EntityError(f'Unsupported start tag "{tag}"')
        self.stack.append((tag, dict(attrs)))

    def handle_endtag(self, tag: str) -> None:
        if not self.stack or self.stack[-1][0] != tag:
            raise EntityError(f'Unmatched end tag "{tag}"')
        self.stack.pop()

    def handle_data(self, data: str) -> None:
        self.text += data
        tags = [t for t, _ in self.stack]
        for tag, attrs in self.stack:
            if tag == "a":
                self.entities.append({"type": "text_link", "url": attrs.get("href") or "", "text": data})
            elif tag in ("b", "strong", "i", "em", "code", "pre"):
                self.entities.append({"type": {"strong": "bold", "em": "italic"}.get(tag, tag), "text": data})
        if "code" in tags or "pre" in tags:
            return
        self.entities += [{"type": "mention", "text": m.group()} for m in _MENTION.finditer(data)]
        self.entities += [{"type": "url", "text": m.group()} for m in _URL.finditer(data) if "a" not in tags]


def parse(text: str) -> Parsed:
    parsed = Parsed()
    parsed.feed(text)
    parsed.close()
    if parsed.stack:
        raise EntityError(f'Can\'t find end tag corresponding to start tag "{parsed.stack[-1][0]}"')
    return parsed


def length(text: str) -> int:
    return len(text.encode("utf-16-le")) // 2


def error(code: int, description: str, **parameters: Any) -> Answer:
    body: dict[str, Any] = {"ok": False, "error_code": code, "description": description}
    if parameters:
        body["parameters"] = parameters
    return Answer(code, body)


class TelegramServer(FakeHttpServer):
    """`messages` by message_id (text and entities as Telegram parsed them), `sent` their ids in order."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        super().__init__(host, port)
        self.messages: dict[int, dict[str, Any]] = {}
        self.sent: list[int] = []
        self.edits: list[int] = []
        self._ids = itertools.count(101)
        self._limit: tuple[int, float] | None = None
        self._window: list[float] = []

    async def __aenter__(self) -> TelegramServer:
        await self.start()
        return self

    def routes(self, app: web.Application) -> None:
        app.router.add_post("/bot{token}/{method}", self._method)

    def limit(self, requests: int, per: float) -> None:
        self._limit = (requests, per)

    def delete(self, message_id: int) -> None:
        self.messages.pop(message_id, None)

    async def wait_for_messages(self, count: int, timeout: float = DEFAULT_TIMEOUT) -> list[dict[str, Any]]:
        assert self._changed is not None, "server not started"
        await wait_until(self._changed, lambda: len(self.sent) >= count, timeout,
                         lambda: f"{len(self.sent)} message(s); answers: {[r.status for r in self.requests]}")
        return [self.messages.get(i, {}) for i in self.sent[:count]]

    def _limited(self) -> Answer | None:
        if self._limit is None:
            return None
        count, per = self._limit
        now = time.monotonic()
        self._window = [t for t in self._window if now - t < per]
        if len(self._window) >= count:
            wait = max(1, round(per - (now - self._window[0])))
            return error(429, f"Too Many Requests: retry after {wait}", retry_after=wait)
        self._window.append(now)
        return None

    async def _method(self, request: web.Request) -> web.Response:
        body, is_json = await read_body(request)
        answer = await self.next_answer()
        if answer is None or (200 <= answer.status < 300 and answer.body is None):
            answer = self._process(request, body if is_json and isinstance(body, dict) else {})
        await self.record(request, body, answer.status)
        return answer_response(answer)

    def _process(self, request: web.Request, body: dict[str, Any]) -> Answer:
        if request.match_info["token"] != BOT_TOKEN:
            return error(401, "Unauthorized")
        method = request.match_info["method"]
        if method not in ("sendMessage", "editMessageText"):
            return error(404, "Not Found")
        if body.get("chat_id") != CHAT_ID:
            return error(400, "Bad Request: chat not found")
        limited = self._limited()
        if limited is not None:
            return limited
        try:
            parsed = parse(str(body.get("text", ""))) if body.get("parse_mode") == "HTML" else None
        except EntityError as exc:
            return error(400, f"Bad Request: can't parse entities: {exc}")
        text = parsed.text if parsed is not None else str(body.get("text", ""))
        if not text.strip():
            return error(400, "Bad Request: message text is empty")
        if length(text) > 4096:
            return error(400, "Bad Request: message is too long")
        entities = parsed.entities if parsed is not None else []
        if method == "sendMessage":
            return self._send(body, text, entities)
        return self._edit(body, text, entities)

    def _send(self, body: dict[str, Any], text: str, entities: list[dict[str, str]]) -> Answer:
        topic = body.get("message_thread_id")
        if topic is not None and topic != TOPIC:
            return error(400, "Bad Request: message thread not found")
        message_id = next(self._ids)
        self.messages[message_id] = {"message_id": message_id, "chat": {"id": CHAT_ID}, "text": text,
                                     "entities": entities, "message_thread_id": topic, "date": int(time.time())}
        self.sent.append(message_id)
        return Answer(200, {"ok": True, "result": self.messages[message_id]})

    def _edit(self, body: dict[str, Any], text: str, entities: list[dict[str, str]]) -> Answer:
        message = self.messages.get(body.get("message_id"))  # type: ignore[arg-type]
        if message is None:
            return error(400, "Bad Request: message to edit not found")
        if message["text"] == text and message["entities"] == entities:
            return error(400, "Bad Request: message is not modified: specified new message content and reply "
                              "markup are exactly the same as a current content and reply markup of the message")
        message.update(text=text, entities=entities, edit_date=int(time.time()))
        self.edits.append(message["message_id"])
        return Answer(200, {"ok": True, "result": message})
