"""Alertmanager's API v2, as far as Slack actions need it: create and expire silences, read an alert's state.

It is the receiver's `actions.alertmanager.url`, or the Alertmanager that sent the alert (the webhook's
`externalURL`) only when that is one of its `external_urls`, with that setting's optional auth: a credential goes
only where routes.yaml sends it, and only a configured Alertmanager's answers are believed. Calls go through relay's
shared aiohttp session like the channels' do; a network failure is classified by the channels' one table
(relay.channels.http), an answer as deliveries are (relay.errors), so an action is retried with the dispatcher's
persisted schedule, and no answer text keeps a secret.
"""

from __future__ import annotations

import asyncio
import base64
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import quote, unquote, urlsplit

import aiohttp

from relay.channels.base import scrub
from relay.channels.http import NETWORK_ERRORS, network_error
from relay.config.receivers import AlertmanagerApi
from relay.errors import DeliveryError, PermanentDeliveryError, Reason, TransientDeliveryError, http_reason
from relay.times import parse_time

TIMEOUT = 10.0
CLASSIC_NAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")  # Prometheus' label names before UTF-8
ANSWER_LIMIT = 4 * 1024 * 1024  # a list of silences or alerts; Alertmanager's own answers are far smaller


@dataclass(frozen=True)
class Silence:
    """A silence as GET /api/v2/silences lists it (state: active, pending or expired)."""

    id: str
    state: str
    comment: str
    created_by: str
    ends_at: str
    matchers: tuple[tuple[str, str, bool, bool], ...]  # name, value, isRegex, isEqual


def equal_matchers(labels: Mapping[str, str]) -> list[dict[str, Any]]:
    """The matchers that select exactly this alert: every label, by equality (the fingerprint is their hash)."""
    return [{"name": name, "value": value, "isRegex": False, "isEqual": True} for name, value in sorted(labels.items())]


def filter_param(labels: Mapping[str, str]) -> list[tuple[str, str]]:
    """`filter` query parameters selecting this alert's labels (values quoted as Alertmanager parses them). A name that
    is not a classic identifier (Alertmanager 0.27+ takes UTF-8 names such as `service.name` or `team name`) is quoted
    too: its UTF-8 parser reads `"team name"="x"`, while unquoted a space, `=`, `,` or a quote would make the matcher
    unparseable (a silence that cannot be made) or another matcher. Classic names stay bare, as Alertmanager 0.25's
    parser requires (it has no other label names)."""
    return [("filter", f'{_name(name)}="{_quoted(value)}"') for name, value in sorted(labels.items())]


def _name(name: str) -> str:
    return name if CLASSIC_NAME.fullmatch(name) else f'"{_quoted(name)}"'


def _quoted(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def base_url(external_url: str, api: AlertmanagerApi) -> str:
    """The API base: the receiver's `url`, else the webhook's externalURL when it is one of `external_urls`.
    PermanentDeliveryError otherwise (retrying cannot help): a host only the webhook named would get the credentials,
    and relay would believe its answers."""
    configured = (api.url or "").strip().rstrip("/")
    if configured:
        return configured
    given = _origin_and_path(external_url)
    if given is not None and any(_within(given, allowed) for allowed in map(_origin_and_path, api.external_urls)):
        return external_url.strip().rstrip("/")
    raise PermanentDeliveryError(Reason.CONFIG, "no configured Alertmanager for this webhook: actions.alertmanager.url "
                                                "is not set and the webhook's externalURL is not one of "
                                                "actions.alertmanager.external_urls")


def _origin_and_path(url: str) -> tuple[str, str, int, str] | None:
    """scheme, host, port and path of an http(s) URL without user, query or fragment; None for anything else, and
    for a path with a dot segment or a backslash, plain or percent-encoded: the HTTP client (and a proxy after it)
    resolves `/am/../other` to `/other`, outside the allowed path, so it is never compared as text."""
    try:
        parts = urlsplit(url.strip())
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        return None
    if parts.scheme not in ("http", "https") or not parts.hostname or "@" in parts.netloc or parts.query \
            or parts.fragment:
        return None
    decoded = unquote(parts.path)
    if "\\" in decoded or any(segment in (".", "..") for segment in decoded.split("/")):
        return None
    return parts.scheme, parts.hostname.lower(), port, parts.path.rstrip("/")


def _within(given: tuple[str, str, int, str], allowed: tuple[str, str, int, str] | None) -> bool:
    """Same scheme, host and port, and the path is the allowed one or below it."""
    return allowed is not None and given[:3] == allowed[:3] and (
        given[3] == allowed[3] or given[3].startswith(allowed[3] + "/"))


class AlertmanagerClient:
    """One Alertmanager's API v2 through `session`."""

    def __init__(self, session: aiohttp.ClientSession, url: str, api: AlertmanagerApi,
                 timeout: float = TIMEOUT) -> None:
        self.session = session
        self.url = url
        self.api = api
        self.timeout = timeout

    def _headers(self) -> dict[str, str]:
        headers = {"Accept": "application/json", "User-Agent": "relay"}
        if self.api.bearer_token is not None and self.api.bearer_token.get_secret_value().strip():
            headers["Authorization"] = f"Bearer {self.api.bearer_token.get_secret_value().strip()}"
        elif self.api.username:
            password = self.api.password.get_secret_value() if self.api.password else ""
            pair = base64.b64encode(f"{self.api.username}:{password}".encode()).decode()
            headers["Authorization"] = f"Basic {pair}"
        return headers

    def _secrets(self) -> list[str]:
        return [s.get_secret_value() for s in (self.api.bearer_token, self.api.password) if s is not None]

    async def create_silence(self, matchers: Sequence[dict[str, Any]], starts_at: datetime, ends_at: datetime,
                             created_by: str, comment: str) -> str:
        """POST /api/v2/silences; the new silence's ID."""
        body = {"matchers": list(matchers), "startsAt": starts_at.isoformat(), "endsAt": ends_at.isoformat(),
                "createdBy": created_by, "comment": comment}
        answer = await self._call("POST", "/api/v2/silences", json_body=body)
        if not isinstance(answer, dict) or not isinstance(answer.get("silenceID"), str):
            raise TransientDeliveryError(Reason.INVALID_RESPONSE, "Alertmanager answered without a silenceID")
        return str(answer["silenceID"])

    async def expire_silence(self, silence_id: str) -> bool:
        """DELETE /api/v2/silence/{id} (an expired one answers 200 again); False when Alertmanager does not know it
        (expired and forgotten): 0.25 says so with a 500 "silence not found", later versions with a 404."""
        try:
            await self._call("DELETE", f"/api/v2/silence/{quote(silence_id, safe='')}")
        except DeliveryError as exc:
            if exc.reason is Reason.NOT_FOUND or "silence not found" in exc.detail:
                return False
            raise
        return True

    async def silences(self, labels: Mapping[str, str] | None = None) -> list[Silence]:
        """GET /api/v2/silences, those matching `labels` when given."""
        answer = await self._call("GET", "/api/v2/silences", params=filter_param(labels or {}))
        found: list[Silence] = []
        for item in answer if isinstance(answer, list) else []:
            try:
                matchers = tuple((str(m["name"]), str(m["value"]), bool(m.get("isRegex")), bool(m.get("isEqual", True)))
                                 for m in item["matchers"])
                found.append(Silence(str(item["id"]), str(item["status"]["state"]), str(item.get("comment", "")),
                                     str(item.get("createdBy", "")), str(item.get("endsAt", "")), matchers))
            except (KeyError, TypeError):
                continue
        return found

    async def alert_state(self, labels: Mapping[str, str], fingerprint: str) -> str | None:
        """The alert's state (active, suppressed, unprocessed) from GET /api/v2/alerts; None when Alertmanager no
        longer has it firing (resolved, or gone)."""
        params = [*filter_param(labels), ("active", "true"), ("silenced", "true"), ("inhibited", "true"),
                  ("unprocessed", "true")]
        answer = await self._call("GET", "/api/v2/alerts", params=params)
        for item in answer if isinstance(answer, list) else []:
            if isinstance(item, dict) and item.get("fingerprint") == fingerprint:
                status = item.get("status")
                return str(status.get("state")) if isinstance(status, dict) else "active"
        return None

    async def up_for(self) -> float:
        """How long Alertmanager has been up (GET /api/v2/status: `uptime` is when it started), by its own clock (its
        answer's Date) so a skewed clock cannot make a just-restarted Alertmanager look old."""
        answer, date = await self._call_dated("GET", "/api/v2/status")
        try:
            started = parse_time(str(answer["uptime"])) if isinstance(answer, dict) and "uptime" in answer else None
        except ValueError:
            started = None
        if started is None:
            raise TransientDeliveryError(Reason.INVALID_RESPONSE, "Alertmanager's status has no uptime")
        return max(0.0, (date or datetime.now(UTC)).timestamp() - started.timestamp())

    async def _call(self, method: str, path: str, *, json_body: Any = None,
                    params: Sequence[tuple[str, str]] = ()) -> Any:
        answer, _date = await self._call_dated(method, path, json_body=json_body, params=params)
        return answer

    async def _call_dated(self, method: str, path: str, *, json_body: Any = None,
                          params: Sequence[tuple[str, str]] = ()) -> tuple[Any, datetime | None]:
        """The answer, and when Alertmanager says it answered (its Date header; None without one)."""
        data = json.dumps(json_body).encode() if json_body is not None else None
        headers = self._headers() | ({"Content-Type": "application/json"} if data is not None else {})
        try:
            async with asyncio.timeout(self.timeout), self.session.request(
                    method, self.url + path, data=data, params=list(params), headers=headers, allow_redirects=False,
                    timeout=aiohttp.ClientTimeout(total=self.timeout)) as response:
                raw = await response.content.read(ANSWER_LIMIT)
                status = response.status
                date = _date(response.headers.get("Date", ""))
        except NETWORK_ERRORS as exc:  # classified by the channels' one table (relay.channels.http)
            failed = network_error(exc, "Alertmanager URL", self.timeout)
            failed.detail = f"Alertmanager: {failed.detail}"
            raise failed from None
        if 200 <= status < 300:
            try:
                return (json.loads(raw) if raw.strip() else None), date
            except ValueError:
                raise TransientDeliveryError(Reason.INVALID_RESPONSE, "Alertmanager's answer is not JSON") from None
        raise self._refusal(method, path, status, raw)

    def _refusal(self, method: str, path: str, status: int, raw: bytes) -> DeliveryError:
        said = raw.decode("utf-8", "replace")
        detail = scrub(f"Alertmanager {method} {path.split('?')[0]}: HTTP {status} {said}", self._secrets())
        reason = http_reason(status)
        if status == 429 or status >= 500 or status == 408:
            return TransientDeliveryError(reason, detail)
        return PermanentDeliveryError(reason, detail)


def _date(header: str) -> datetime | None:
    try:
        found = parsedate_to_datetime(header) if header else None
    except (TypeError, ValueError):
        return None
    return found if found is not None and found.tzinfo is not None else None
