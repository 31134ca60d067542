"""What several commands read from their command line: `k=v` pairs and the configured routes."""

from __future__ import annotations

import argparse
import textwrap
from typing import TYPE_CHECKING, Any

from relay.config.settings import Settings
from relay.errors import UsageError

if TYPE_CHECKING:
    from relay.config.routes import Routes
    from relay.templating import Templates


URL_HELP = ("the running relay's base URL (default: http://RELAY_HOST:RELAY_PORT, i.e. http://127.0.0.1:8080), "
            "e.g. --url http://relay.example:8080")
# What the commands that talk to a running relay read from the environment, for their --help.
ADMIN_ENVIRONMENT = ["RELAY_HOST, RELAY_PORT   where relay listens (default: 127.0.0.1, 8080)",
                     "RELAY_ADMIN_TOKEN   sent as the admin API's bearer token when set"]


def command(sub: Any, name: str, summary: str, description: str, examples: list[str],
            environment: list[str] | None = None) -> argparse.ArgumentParser:
    """A subcommand whose --help has a description, examples and the environment variables it reads, laid out as
    written (amtool's help is the model: what it does, an example, every flag with its default)."""
    description = "\n\n".join(textwrap.fill(part, 100) for part in description.split("\n\n"))
    epilog = "examples:\n" + "\n".join(f"  {line}" for line in examples)
    if environment:
        epilog += "\n\nenvironment:\n" + "\n".join(f"  {line}" for line in environment)
    parser: argparse.ArgumentParser = sub.add_parser(name, help=summary, description=description, epilog=epilog,
                                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    return parser


def counted(n: int, noun: str) -> str:
    """`1 attempt`, `2 attempts`: a count with its noun, singular for one."""
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


def unreachable(url: object, what: str) -> str:
    """What to do when the running relay does not answer (`what`: how, relay.cli.client): most often it is not
    running, or listens elsewhere."""
    return (f"cannot reach relay at {url} ({what}): is `relay serve` running? it listens on "
            "RELAY_HOST:RELAY_PORT (default 127.0.0.1:8080); --url names another address")


def refused(status: int, error: str, token: str) -> str:
    """A refusal from the running relay, with what to do when it is about the token this command sends."""
    if status == 401:
        return f"{error}: set {token} to the running relay's {token} (it is sent when set)"
    return error


def labels(pairs: list[str]) -> dict[str, str]:
    """`k=v` arguments as a dict; a pair without `=` or without a name, or with a byte that is not UTF-8 (Python
    keeps it as a lone surrogate, which no label can hold and the RE2 matchers cannot read), is a usage error."""
    out = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise UsageError(f"expected k=v, got {pair!r}")
        try:
            pair.encode("utf-8")
        except UnicodeEncodeError:
            raise UsageError(f"labels are UTF-8 text, got {pair.encode('utf-8', 'surrogateescape')!r}") from None
        out[key] = value
    return out


def load(settings: Settings) -> tuple[Routes, Templates]:
    """RELAY_ROUTES with RELAY_TEMPLATES; a ConfigError says file, line and reason."""
    from relay.config.routes import load_routes
    from relay.templating import Templates

    templates = Templates(settings.templates)
    return load_routes(settings.routes, templates), templates
