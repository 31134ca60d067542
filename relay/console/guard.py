"""Who may see and do what in the console (relay.console.session holds the cookie's cryptography).

With RELAY_ADMIN_TOKEN set, every page needs a session; without one the answer is the sign-in form and nothing
else. A relay without any token serves loopback only (relay.auth.LoopbackOnly) and signs a loopback browser in
as admin at once. With only a webhook token the console is closed, as the admin API is. Every POST must carry the
session's CSRF token and no foreign Origin; Retry, Purge and other changes need the admin role.
"""

from __future__ import annotations

import time

from starlette.requests import Request
from starlette.responses import Response

from relay.auth import check_origin
from relay.config.settings import Settings
from relay.console import session
from relay.errors import Rejected


def key(settings: Settings) -> bytes:
    return session.session_key(settings.admin)


def current(request: Request, settings: Settings) -> session.Session | None:
    """The request's session, or None."""
    return session.read(key(settings), request.cookies.get(session.COOKIE), time.time())


def closed(settings: Settings) -> str | None:
    """Why the console is closed, if it is."""
    if settings.admin is None and settings.token is not None:
        return ("the console needs RELAY_ADMIN_TOKEN (the webhook token only posts webhooks): set RELAY_ADMIN_TOKEN "
                "on relay and sign in with it")
    return None


def open_without_token(settings: Settings) -> bool:
    """No token at all: loopback only, where the admin API is open too."""
    return settings.admin is None and settings.token is None


def secure(request: Request) -> bool:
    """Behind TLS: the scheme, or what the proxy in front says it was."""
    forwarded = request.headers.get("x-forwarded-proto", "").split(",")[0].strip().lower()
    return request.url.scheme == "https" or forwarded == "https"


def set_cookie(response: Response, request: Request, value: str) -> None:
    response.set_cookie(session.COOKIE, value, max_age=session.LIFETIME_SECONDS, path="/", httponly=True,
                        samesite="strict", secure=secure(request))


def check_post(request: Request, settings: Settings, found: session.Session, sent: str | None,
               admin: bool = True) -> None:
    """A state-changing request: no foreign Origin, this session's CSRF token, and (when `admin`) the admin role."""
    check_origin(request)
    if not session.csrf_ok(key(settings), found, sent):
        raise Rejected(403, "this form has expired or did not come from this console: reload the page and try again")
    if admin and not found.admin:
        raise Rejected(403, "signed in read-only (RELAY_VIEWER_TOKEN): sign in with RELAY_ADMIN_TOKEN to change things")
