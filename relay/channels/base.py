"""The Channel seam: what the dispatcher needs from an integration.

A channel renders a notification with its receiver's templates, makes the
provider calls, and classifies any failure by raising
`TransientDeliveryError` or `PermanentDeliveryError`. It never retries on its
own: the dispatcher owns retries, so the schedule survives restarts.
"""

from __future__ import annotations

import asyncio
import base64
import concurrent.futures
import functools
import hashlib
import json
import re
from collections.abc import Awaitable, Callable, Iterable
from typing import Any, Protocol, TypeVar, runtime_checkable
from urllib.parse import parse_qsl, quote, quote_plus, urlsplit

from relay.alerts import Notification
from relay.channels.threads import Threads
from relay.errors import Reason, StoreUnavailable, TransientDeliveryError


class Channel(Protocol):
    integration: str

    @property
    def destination(self) -> str:
        """A stable, secret-free name of where messages go, for rate limiting (e.g. `slack:3f2a…`)."""
        ...

    async def send(self, notification: Notification, threads: Threads | None = None) -> None:
        """Deliver, or raise a DeliveryError saying whether to try again."""
        ...

    async def close(self) -> None: ...


@runtime_checkable
class Prepares(Protocol):
    """A channel that can do a send's work ahead, while the notification's commit is on its way to disk (issue 24):
    `prepare` gets the notification as enqueued (id 0, every alert of the candidate); its `send` uses what was
    prepared only when the notification it is given is that one (dedup kept every alert), else works as before."""

    def prepare(self, notification: Notification) -> None: ...


T = TypeVar("T")


async def guard_store(call: Awaitable[T]) -> T:
    """Await a thread-store call; a store that is down makes the delivery transient (it is tried again)."""
    try:
        return await call
    except StoreUnavailable as exc:
        raise TransientDeliveryError(Reason.STORE_UNAVAILABLE, str(exc)[:200]) from None


# How much of a provider's answer a failure's detail keeps (history, logs, the CLI).
DETAIL_LIMIT = 300
_REDACTED = "***"
_WHITESPACE = re.compile(r"\s+")


def scrub(text: str, secrets: Iterable[str | None], limit: int = DETAIL_LIMIT) -> str:
    """Text quoted from a provider or a library, safe to keep: every secret removed, then cut to `limit`.

    Cutting first would keep the start of a secret that straddles the limit. A provider echoing a request may
    quote a secret URL-encoded (`%2F`, `+`), JSON-escaped (`\\/`, `\\u00xx`) or base64-encoded (SMTP AUTH),
    so those forms go too, in either case of hex digit.
    """
    # Redacted before whitespace is collapsed, which would change a secret holding some.
    return _WHITESPACE.sub(" ", redact(text, secrets)).strip()[:limit]


def redact(text: str, secrets: Iterable[str | None]) -> str:
    """`text` with every form of every secret replaced, and nothing else changed (a traceback stays readable)."""
    forms = sorted({form for secret in secrets if secret for form in secret_forms(secret)}, key=len, reverse=True)
    if forms:
        text = re.sub("|".join(re.escape(form) for form in forms), _REDACTED, text, flags=re.IGNORECASE)
    return text


TOKEN_PIECE = 16  # a URL's path segment or query value this long may be its token


def secret_forms(secret: str) -> set[str]:
    """A secret as it may be quoted back: as is, URL-encoded, JSON-escaped, base64; a URL's path on its own too."""
    secret = secret.strip()
    if not secret:
        return set()
    forms = {secret, quote(secret, safe=""), quote(secret, safe="/"), quote_plus(secret), quote_plus(secret, safe="/"),
             json.dumps(secret)[1:-1], json.dumps(secret, ensure_ascii=False)[1:-1],
             json.dumps(secret).replace("/", "\\/")[1:-1], base64.b64encode(secret.encode()).decode()}
    parts = urlsplit(secret) if "://" in secret else None
    if parts is not None and len(parts.path) >= 8:  # a Slack webhook URL's secret is its path, which a proxy may
        forms |= secret_forms(parts.path)           # quote without the host
    if parts is not None:  # a token in one path segment (Discord's, Telegram's bot<token>) or query value (Teams'
        pieces = [*parts.path.split("/"), *(v for _, v in parse_qsl(parts.query))]  # `sig`) quoted on its own
        forms |= {form for piece in pieces if len(piece) >= TOKEN_PIECE for form in secret_forms(piece)}
    return {form for form in forms if form}


# Not the loop's default executor, where aiohttp resolves host names: a large group's render must not delay those.
_RENDER = concurrent.futures.ThreadPoolExecutor(max_workers=2, thread_name_prefix="relay-render")


async def rendered(build: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """Run a message builder in a thread: rendering a large group takes seconds of CPU (20,000 PagerDuty summaries:
    ~6 s), which on the event loop would hold every webhook and every other delivery."""
    return await asyncio.get_running_loop().run_in_executor(_RENDER, functools.partial(build, *args, **kwargs))


def secret_digest(value: str) -> str:
    """A short, one-way name for a secret value (a webhook URL, a routing key)."""
    return hashlib.sha256(value.encode()).hexdigest()[:12]


def parse_retry_after(value: str | None) -> float | None:
    """Seconds from a Retry-After header (delta-seconds form); None when absent or unreadable."""
    if value is None:
        return None
    try:
        seconds = float(value.strip())
    except ValueError:
        from datetime import UTC, datetime
        from email.utils import parsedate_to_datetime

        try:
            when = parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        return max(0.0, (when - datetime.now(UTC)).total_seconds())
    return max(0.0, seconds)
