"""The console: what relay did and why, in a browser tab (issue 23).

Server-rendered pages (Starlette routes, Jinja2 templates in this package), readable without JavaScript; a small
script of its own (static/console.js) localises times and keeps filters on refresh. It is an entry point beside
the webhook and the admin API: it imports services, the store's reads, config and templating, and nothing below
imports it.
"""

from __future__ import annotations

from importlib import resources

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import BaseRoute, Route
from starlette.staticfiles import StaticFiles

from relay.api import admin
from relay.console import maintenance, pages
from relay.console.views import home, sign_in, sign_out, signed_in

__all__ = ["routes", "summary_link"]


def routes() -> list[BaseRoute]:
    from starlette.routing import Mount

    static = StaticFiles(directory=str(resources.files("relay.console").joinpath("static")))
    read = signed_in
    return [
        Route("/", home, methods=["GET"]),
        Route("/sign-in", sign_in, methods=["POST"]),
        Route("/sign-out", signed_in(sign_out), methods=["POST"]),
        Route("/receivers", read(pages.receivers), methods=["GET", "POST"]),
        Route("/notifications", read(pages.notifications), methods=["GET", "POST"]),
        Route("/notifications/{id}", read(pages.notification), methods=["GET"]),
        Route("/dead-letters", read(pages.dead_letters), methods=["GET", "POST"]),
        Route("/dead-letters/confirm", signed_in(pages.dead_letter_confirm, admin=True), methods=["POST"]),
        Route("/dead-letters/act", signed_in(pages.dead_letter_act, admin=True), methods=["POST"]),
        Route("/storms", read(pages.storms), methods=["GET"]),
        Route("/summaries/{id}", read(pages.summary), methods=["GET"]),
        Route("/maintenance", read(maintenance.windows), methods=["GET", "POST"]),
        Route("/maintenance/add", signed_in(maintenance.add, admin=True), methods=["POST"]),
        Route("/maintenance/confirm", signed_in(maintenance.confirm, admin=True), methods=["POST"]),
        Route("/maintenance/end", signed_in(maintenance.end, admin=True), methods=["POST"]),
        Route("/explain", read(pages.explain), methods=["GET", "POST"]),
        Mount("/static", static, name="static"),
        Route("/api/v1/explain", admin.authorized(pages.explain_api), methods=["POST"]),
    ]


def summary_link(api: Route) -> Route:
    """A storm summary's "full list" link (relay.storms.summary.history_url: the admin API's history of a summary)
    opened in a browser lands on the console's page of that summary, not on JSON; the relay command and scripts
    (no text/html in Accept, or a bearer token) get the API as before."""
    endpoint = api.endpoint

    async def either(request: Request) -> Response:
        summary = request.query_params.get("summary", "")
        browser = "text/html" in request.headers.get("accept", "") and "authorization" not in request.headers
        if browser and summary.isdigit():
            return RedirectResponse(f"/summaries/{int(summary)}", 303)
        response: Response = await endpoint(request)
        return response

    return Route(api.path, either, methods=list(api.methods or ()))
