"""What several commands read from their command line: `k=v` pairs and the configured routes."""

from __future__ import annotations

from typing import TYPE_CHECKING

from relay.errors import UsageError
from relay.settings import Settings

if TYPE_CHECKING:
    from relay.config.routes import Routes
    from relay.templating import Templates


def labels(pairs: list[str]) -> dict[str, str]:
    """`k=v` arguments as a dict; a pair without `=` or without a name is a usage error."""
    out = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise UsageError(f"expected k=v, got {pair!r}")
        out[key] = value
    return out


def load(settings: Settings) -> tuple[Routes, Templates]:
    """RELAY_ROUTES with RELAY_TEMPLATES; a ConfigError says file, line and reason."""
    from relay.config.routes import load_routes
    from relay.templating import Templates

    templates = Templates(settings.templates)
    return load_routes(settings.routes, templates), templates
