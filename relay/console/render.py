"""Pages as HTML: one Jinja2 environment over the package's templates, autoescaping everything.

Alert text (labels, annotations, reasons) only ever goes into a page through `{{ }}`, so it is escaped text in
element content and in attributes alike; no template builds a URL from it, and no template marks it safe. The
headers keep a page from running anything but relay's own script and from being framed. The referrer policy is
same-origin, not no-referrer: with none, Chromium sends `Origin: null` on a form POST, which relay.auth refuses.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape
from markupsafe import Markup
from starlette.responses import HTMLResponse

HEADERS = {
    "Content-Security-Policy": "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
                               "form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "X-Frame-Options": "DENY",
    "Cache-Control": "no-store",
}


def utc(epoch: float | None) -> str:
    if epoch is None:
        return ""
    return datetime.fromtimestamp(epoch, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def when(epoch: float | None) -> Markup:
    """A time the browser shows in its own zone (static/console.js), UTC on hover and without JavaScript."""
    if epoch is None:
        return Markup("-")
    text = utc(epoch)
    return Markup('<time datetime="{0}" title="{1} UTC">{1} UTC</time>').format(text, text.replace("T", " ")[:-1])


def seconds(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value * 1000:.0f} ms" if value < 1 else f"{value:.1f} s" if value < 120 else f"{value / 60:.0f} min"


_env = Environment(loader=PackageLoader("relay.console", "templates"), autoescape=select_autoescape(default=True),
                   undefined=StrictUndefined, trim_blocks=True, lstrip_blocks=True)
_env.filters["when"] = when
_env.filters["seconds"] = seconds


def page(name: str, status: int = 200, **context: Any) -> HTMLResponse:
    return HTMLResponse(_env.get_template(name).render(**context), status_code=status, headers=HEADERS)
