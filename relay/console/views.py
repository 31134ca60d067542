"""The console's pages: sign-in, receivers, notifications and one notification, dead letters, storms, Explain.

Pages are server-rendered and complete without JavaScript. Filters and Explain's question travel in POST bodies,
never in a URL (alert text must not reach proxies' logs or the browser's history); a URL holds at most a
notification's id. Every handler reads through relay.store.console.Reader or the Store protocol's reads, so a page
costs the webhook's path nothing.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qs

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from relay.auth import check_origin
from relay.console import guard, session
from relay.console.render import page
from relay.errors import Rejected, StoreUnavailable
from relay.services import Services, services
from relay.store.console import Reader

log = logging.getLogger(__name__)

FORM_LIMIT = 64 * 1024


@dataclass(frozen=True)
class Ctx:
    """What every signed-in page gets: the services, the session and its forms' CSRF token."""

    services: Services
    session: session.Session
    csrf: str
    form: dict[str, str]

    @property
    def reader(self) -> Reader:
        return reader(self.services)

    def render(self, name: str, status: int = 200, **context: Any) -> Response:
        return page(name, status, csrf=self.csrf, role=self.session.role, nav=name.split(".")[0], **context)


Handler = Callable[[Request, Ctx], Awaitable[Response]]

_readers: dict[int, Reader] = {}


def reader(state: Services) -> Reader:
    found = _readers.get(id(state.store))
    if found is None or found.store is not state.store:
        found = _readers[id(state.store)] = Reader(state.store)
    return found


async def form_of(request: Request) -> dict[str, str]:
    """An urlencoded form (the only kind the console sends), first value of each field, bounded in size."""
    if request.method != "POST":
        return {}
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > FORM_LIMIT:
            raise Rejected(413, "form too large")
    parsed = parse_qs(body.decode("utf-8", "replace"), keep_blank_values=True, max_num_fields=100)
    return {k: v[0] for k, v in parsed.items()}


def signed_in(handler: Handler, admin: bool = False) -> Callable[[Request], Awaitable[Response]]:
    """A page that needs a session (and, for a POST, the checks of relay.console.guard.check_post)."""

    async def guarded(request: Request) -> Response:
        state = services(request)
        settings = state.settings
        why = guard.closed(settings)
        if why is not None:
            return page("closed.html", 403, message=why)
        found = guard.current(request, settings)
        fresh = None
        if found is None and guard.open_without_token(settings):
            fresh = session.issue(guard.key(settings), "admin", time.time())
            found = session.read(guard.key(settings), fresh, time.time())
        if found is None:
            if request.method == "POST":
                return page("signin.html", 403, message="not signed in: nothing was changed")
            return page("signin.html", 401, message=None)
        try:
            form = await form_of(request)
            if request.method == "POST":
                guard.check_post(request, settings, found, form.get("csrf"), admin)
            ctx = Ctx(state, found, session.csrf_token(guard.key(settings), found), form)
            response = await handler(request, ctx)
        except Rejected as exc:
            response = page("closed.html", exc.status, message=exc.message)
        except StoreUnavailable as exc:
            response = page("closed.html", 503, message=f"the store does not answer: {exc}")
        if fresh is not None:
            guard.set_cookie(response, request, fresh)
        return response

    return guarded


async def home(request: Request) -> Response:
    state = services(request)
    why = guard.closed(state.settings)
    if why is not None:
        return page("closed.html", 403, message=why)
    if guard.current(request, state.settings) is not None or guard.open_without_token(state.settings):
        return RedirectResponse("/receivers", 303)
    return page("signin.html", 200, message=None)


async def sign_in(request: Request) -> Response:
    settings = services(request).settings
    why = guard.closed(settings)
    if why is not None:
        return page("closed.html", 403, message=why)
    try:
        check_origin(request)
        form = await form_of(request)
    except Rejected as exc:
        return page("signin.html", exc.status, message=exc.message)
    role = session.role_of(form.get("token", ""), settings.admin, settings.viewer)
    if role is None:
        log.warning("console: a sign-in with a wrong token was refused")
        return page("signin.html", 401, message="that token does not sign in (RELAY_ADMIN_TOKEN, or "
                                                "RELAY_VIEWER_TOKEN for read-only)")
    response = RedirectResponse("/receivers", 303)
    guard.set_cookie(response, request, session.issue(guard.key(settings), role, time.time()))
    return response


async def sign_out(request: Request, ctx: Ctx) -> Response:
    response = RedirectResponse("/", 303)
    response.delete_cookie(session.COOKIE, path="/", httponly=True, samesite="strict", secure=guard.secure(request))
    return response


def parse_time(text: str) -> float | None:
    """A filter's time: an ISO 8601 date/time (UTC unless it names a zone), or blank."""
    text = text.strip()
    if not text:
        return None
    try:
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise Rejected(400, f"not a time: {text[:40]!r} (use 2026-12-08T03:00 or 2026-12-08T03:00+01:00)") from None
    return (parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)).timestamp()


def positive(text: str | None) -> int | None:
    if not text:
        return None
    try:
        value = int(text)
    except ValueError:
        raise Rejected(400, "an id must be a positive integer") from None
    if not 0 < value < 2**63:
        raise Rejected(400, "an id must be a positive integer")
    return value
