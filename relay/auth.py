"""Who may call what: the webhook token posts webhooks, the admin token opens the admin API.

Alertmanager holds the webhook token, so it must not read stored payloads,
replay pages or purge dead letters: the admin API answers only to
`RELAY_ADMIN_TOKEN`, and is closed when only a webhook token is set. Without
any token relay serves loopback clients only, which a browser can still reach:
a page from another site can send simple cross-site requests, and DNS
rebinding makes a foreign name resolve to 127.0.0.1. So a relay without tokens
answers only requests naming a loopback Host, and a state-changing admin
request needs what a browser cannot send cross-site without asking first: a
bearer token, a JSON body or the `X-Relay-Request` header (the CLI sends it),
and no foreign `Origin`.
"""

from __future__ import annotations

import hmac
import ipaddress
from urllib.parse import urlsplit

from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from relay.config.settings import Settings
from relay.errors import Rejected

# Sent by relay's CLI; a browser cannot add a custom header to a cross-site request without a CORS preflight,
# which relay never grants.
REQUEST_HEADER = "x-relay-request"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def is_loopback(host: str) -> bool:
    """`localhost` or a loopback address (127.0.0.0/8, ::1), brackets allowed."""
    name = host.strip().strip("[]").lower().rstrip(".")
    if name == "localhost" or name.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def _host_name(authority: str) -> str:
    """The host of a Host header (`name:port`, `[v6]:port`)."""
    if authority.startswith("["):
        return authority[1:].partition("]")[0]
    if authority.count(":") > 1:  # a bare IPv6 address
        return authority
    return authority.partition(":")[0]


def check_bearer(request: Request, token: str, name: str) -> None:
    """The request carries `Authorization: Bearer <token>`; compared in constant time."""
    scheme, _, credentials = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not credentials.strip():
        raise Rejected(401, f"missing bearer token: send 'Authorization: Bearer <{name}>'")
    if not hmac.compare_digest(credentials.strip().encode(), token.encode()):
        raise Rejected(401, "invalid bearer token")


def check_loopback_host(request: Request) -> None:
    """Without a token, relay serves loopback clients only: a foreign Host is DNS rebinding (a page whose name
    now resolves to 127.0.0.1), or a proxy that exposes an unauthenticated relay."""
    authority = request.headers.get("host", "")
    if not is_loopback(_host_name(authority)):
        raise Rejected(421, f"Host {authority[:100]!r} is not a loopback name: without RELAY_WEBHOOK_TOKEN relay "
                            "answers only requests to localhost, 127.0.0.1 or [::1]")


def check_webhook(request: Request, settings: Settings) -> None:
    """Only the webhook token, when one is set (without one, LoopbackOnly has checked the Host)."""
    if settings.token is not None:
        check_bearer(request, settings.token, "RELAY_WEBHOOK_TOKEN")


class LoopbackOnly:
    """ASGI middleware: a relay without RELAY_WEBHOOK_TOKEN (serving loopback only) answers every path only to a
    loopback Host. Health checks and metrics included: one rule, and a local scraper names localhost anyway."""

    def __init__(self, app: ASGIApp, settings: Settings) -> None:
        self.app = app
        self.settings = settings

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and self.settings.token is None:
            try:
                check_loopback_host(Request(scope))
            except Rejected as exc:
                response = JSONResponse({"status": "error", "error": exc.message}, status_code=exc.status)
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)


def check_admin(request: Request, settings: Settings) -> None:
    """The admin API's rule: the admin token when set; closed when only a webhook token is set; open to
    loopback without tokens, where state-changing requests must be ones a browser cannot forge."""
    if settings.admin is not None:
        check_bearer(request, settings.admin, "RELAY_ADMIN_TOKEN")
        check_origin(request)
        return
    if settings.token is not None:
        raise Rejected(403, "the admin API needs RELAY_ADMIN_TOKEN (the webhook token only posts webhooks): "
                            "set RELAY_ADMIN_TOKEN on relay and where you run the relay command")
    check_loopback_host(request)  # LoopbackOnly has checked it already; this rule must not depend on it
    check_origin(request)
    if request.method not in SAFE_METHODS and not _unforgeable(request):
        raise Rejected(403, "a state-changing admin request needs the 'X-Relay-Request: 1' header or a JSON body "
                            "(a browser cannot send either cross-site); the relay command sends the header")


def check_origin(request: Request) -> None:
    """A browser names the page that sent a request in `Origin`; one from another site is refused."""
    origin = request.headers.get("origin")
    if origin is None:
        return
    parts = urlsplit(origin)
    if origin == "null" or parts.netloc.lower() != request.headers.get("host", "").lower():
        raise Rejected(403, f"cross-origin request from {origin[:100]!r} refused")


def _unforgeable(request: Request) -> bool:
    if request.headers.get(REQUEST_HEADER, "").strip():
        return True
    media = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    return media == "application/json"
