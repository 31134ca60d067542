"""One HTTP call of a webhook-style channel (webhook, Discord, Telegram, Teams), and the one table that classifies it.

Each of these receivers is a JSON POST (or PATCH) to a URL that usually holds the secret. The call is made with
relay's shared aiohttp session under a total deadline that really ends it, never follows a redirect (a credential
goes only to the host it was configured for), and reads at most ANSWER_LIMIT bytes of the answer. aiohttp's errors
become delivery errors here, once (`network_error`, also for Slack and PagerDuty, which call through their SDK or
their own request, and for the Alertmanager client of Slack actions), holding only the exception's type: their
text quotes the URL.

    timeout                    transient  timeout
    refused, reset, DNS        transient  connection
    certificate not trusted    transient  tls        (a rotated or intercepting certificate is fixed by people;
                                                      the retries deliver once it is, within give_up_after;
                                                      email's smarthost the same, relay.channels.email)
    a URL aiohttp cannot use   permanent  config     (no host, or not http(s): ftp://)
    429                        transient  rate_limited (Retry-After, or the provider's own hint)
    408, 5xx                   transient  timeout / server_error
    401, 403                   permanent  auth
    404, 410                   permanent  not_found
    413                        permanent  payload_too_large
    other 4xx, 3xx             permanent  client_error / invalid_response
"""

from __future__ import annotations

import asyncio
import json
import ssl
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import aiohttp

from relay.channels.base import parse_retry_after, scrub
from relay.errors import DeliveryError, PermanentDeliveryError, Reason, TransientDeliveryError, http_reason

TIMEOUT = 10.0
ANSWER_LIMIT = 64 * 1024  # a provider's answer is a few hundred bytes; an echoing proxy's is cut here
HEADERS = {"Content-Type": "application/json", "User-Agent": "relay"}

# What a caller catches around an HTTP call: everything TABLE translates, nothing else (a bug still surfaces).
NETWORK_ERRORS: tuple[type[BaseException], ...] = (aiohttp.ClientError, OSError)
# The first row an error is an instance of decides: InvalidURL is also a ClientError, TimeoutError (asyncio's and
# aiohttp's ServerTimeoutError) and ssl.SSLError are also OSErrors.
TABLE: tuple[tuple[tuple[type[BaseException], ...], type[DeliveryError], Reason], ...] = (
    # NonHttpUrlClientError: an ftp:// (or any non-http) URL, which no retry makes usable.
    ((aiohttp.InvalidURL, aiohttp.NonHttpUrlClientError), PermanentDeliveryError, Reason.CONFIG),
    ((TimeoutError,), TransientDeliveryError, Reason.TIMEOUT),
    ((aiohttp.ClientConnectorCertificateError, aiohttp.ClientSSLError, ssl.SSLError), TransientDeliveryError,
     Reason.TLS),
    (NETWORK_ERRORS, TransientDeliveryError, Reason.CONNECTION),
)


@dataclass(frozen=True)
class Reply:
    """What the provider answered: status, the Retry-After header, the body (JSON when it parses, else None)."""

    status: int
    retry_after: str | None
    body: Any
    text: str

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300


def usable_url(url: str, what: str) -> str:
    """The URL if aiohttp can call it (http or https with a host); else a permanent `config` error naming `what`,
    never the URL (it is the secret)."""
    try:
        parts = urlsplit(url.strip())
        usable = parts.scheme in ("https", "http") and bool(parts.hostname)
    except (TypeError, ValueError):
        usable = False
    if not usable:
        raise PermanentDeliveryError(Reason.CONFIG, f"the configured {what} is not a usable http(s) URL")
    return url.strip()


async def call(session: aiohttp.ClientSession, method: str, url: str, body: bytes, *, timeout: float = TIMEOUT,
               headers: Mapping[str, str] | None = None,
               ssl_context: ssl.SSLContext | bool | None = None, what: str = "URL") -> Reply:
    """Make one call and read its answer; every failure to get one is a DeliveryError with no URL in it."""
    try:
        async with asyncio.timeout(timeout), session.request(
                method, url, data=body, headers={**HEADERS, **(headers or {})}, allow_redirects=False,
                ssl=True if ssl_context is None else ssl_context,
                timeout=aiohttp.ClientTimeout(total=timeout)) as response:
            raw = await response.content.read(ANSWER_LIMIT)
            status, retry_after = response.status, response.headers.get("Retry-After")
    except NETWORK_ERRORS as exc:
        raise network_error(exc, what, timeout) from None
    text = raw.decode("utf-8", "replace")
    try:
        parsed = json.loads(text) if text.strip() else None
    except ValueError:
        parsed = None
    return Reply(status, retry_after, parsed, text)


def network_error(exc: BaseException, what: str, timeout: float | None = None) -> DeliveryError:
    """The DeliveryError for `exc`, one of NETWORK_ERRORS, raised while calling the configured `what` (e.g.
    "PagerDuty URL"); `timeout` is the call's limit in seconds, for the detail of a timeout."""
    for kinds, error, reason in TABLE:
        if isinstance(exc, kinds):
            return error(reason, _detail(reason, exc, what, timeout))
    raise TypeError(f"{type(exc).__name__} is not a network error")  # a caller caught more than NETWORK_ERRORS


def _detail(reason: Reason, exc: BaseException, what: str, timeout: float | None) -> str:
    if reason is Reason.CONFIG:
        return f"the configured {what} is not usable"
    if reason is Reason.TIMEOUT and timeout is not None:
        return f"no answer in {timeout:.1f}s"
    if reason is Reason.TLS:
        return f"{type(exc).__name__}: the server's certificate is not trusted (or TLS failed)"
    return type(exc).__name__


def failure(reply: Reply, secrets: Iterable[str | None], *, said: str = "", code: str = "",
            retry_after: float | None = None) -> DeliveryError:
    """The DeliveryError for an answer that is not a success. `said` is the provider's own words (scrubbed of
    every secret and cut), `retry_after` a hint from the body that wins over the Retry-After header."""
    detail = scrub(f"HTTP {reply.status}" + (f": {said}" if said else ""), secrets)
    reason = http_reason(reply.status)
    if reply.status == 429:
        hint = retry_after if retry_after is not None else parse_retry_after(reply.retry_after)
        return TransientDeliveryError(reason, detail, hint, code=code)
    if reply.status >= 500 or reply.status == 408:
        return TransientDeliveryError(reason, detail, code=code)
    if reply.ok:  # a success the channel cannot read (no message id where one must be): sending again is harmless
        return TransientDeliveryError(Reason.INVALID_RESPONSE, detail, code=code)
    return PermanentDeliveryError(reason, detail, code=code)


def dumps(value: Any) -> bytes:
    """The JSON relay sends: UTF-8 as is (Korean stays readable in a proxy's log), compact."""
    return json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode()
