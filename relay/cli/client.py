"""The command line's HTTP client for a running relay, on aiohttp: the one HTTP client library relay uses, for the
providers and for its own commands. The admin commands are synchronous, so each of their requests runs on a short
event loop of its own (a command makes a handful); `relay test-alert` is async and uses `request` directly.
"""

from __future__ import annotations

import asyncio
import json as jsonlib
from collections.abc import Mapping
from dataclasses import dataclass
from types import TracebackType
from typing import Any

import aiohttp

TIMEOUT = 10.0


@dataclass(frozen=True)
class Answer:
    status: int
    content_type: str
    body: bytes

    @property
    def is_json(self) -> bool:
        return self.content_type == "application/json"

    def json(self) -> Any:
        return jsonlib.loads(self.body)

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", "replace")


class Unreachable(Exception):
    """The running relay did not answer: `what` says how, in words (no address or token in it)."""

    def __init__(self, what: str) -> None:
        super().__init__(what)
        self.what = what


def _what(exc: BaseException) -> str:
    if isinstance(exc, aiohttp.ClientConnectorError):
        return "cannot connect"
    if isinstance(exc, TimeoutError):
        return f"no answer in {TIMEOUT:g} s"
    if isinstance(exc, aiohttp.InvalidURL):
        return "not a URL"
    return type(exc).__name__


async def request(base_url: str, method: str, path: str, *, headers: Mapping[str, str] | None = None,
                  params: Mapping[str, str] | None = None, json: Any = None) -> Answer:
    """One request to the running relay; Unreachable when it does not answer."""
    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=TIMEOUT)) as session, \
                session.request(method, base_url.rstrip("/") + path, headers=dict(headers or {}),
                                params=dict(params or {}), json=json, allow_redirects=False) as answer:
            return Answer(answer.status, answer.content_type, await answer.read())
    except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
        raise Unreachable(_what(exc)) from None


class RelayClient:
    """The admin commands' client: a base URL and the headers every request carries."""

    def __init__(self, base_url: str, headers: Mapping[str, str]) -> None:
        self.base_url = base_url
        self.headers = dict(headers)

    def __enter__(self) -> RelayClient:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        return None

    def request(self, method: str, path: str, *, params: Mapping[str, str] | None = None, json: Any = None) -> Answer:
        return asyncio.run(request(self.base_url, method, path, headers=self.headers, params=params, json=json))
