"""What `relay serve` checks and opens before it answers anyone; every mistake a user can make is one line.

Settings, the database URL, the SQLite lock, the listening socket and PostgreSQL are dealt with here, in that
order and before uvicorn starts: a second relay on one SQLite file is refused before it touches a lease, and a
port in use or a database that never came up is a StartupError with one clear sentence instead of a traceback
from inside uvicorn's lifespan. Nothing here ever prints a database URL: it may hold a password.
"""

from __future__ import annotations

import asyncio
import errno
import gc
import logging
import socket
import time
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import parse_qs, urlsplit

from pydantic import ValidationError

from relay.config.durations import format_duration
from relay.errors import StartupError

if TYPE_CHECKING:
    from relay.config.routes import Routes

log = logging.getLogger(__name__)

RETRY_SECONDS = 2.0
# Settings whose value is never repeated back: it may be, or hold, a secret.
_SECRET_PARTS = ("token", "secret", "password", "database_url")
_EXPECTED = {
    "int_parsing": "an integer", "int_type": "an integer", "int_from_float": "an integer",
    "float_parsing": "a number", "float_type": "a number", "bool_parsing": "true or false",
    "bool_type": "true or false",
}


def settings_problems(exc: ValidationError) -> list[str]:
    """One line per bad RELAY_ variable, naming it and what it should be."""
    lines = []
    for error in exc.errors():
        if not error["loc"]:  # a check across several settings: its message names them
            lines.append(str(error["msg"]).removeprefix("Value error, "))
            continue
        name = "RELAY_" + "_".join(str(part) for part in error["loc"]).upper()
        secret = any(part in name.lower() for part in _SECRET_PARTS)
        value = "" if secret or isinstance(error["input"], dict) else f"={error['input']!r}"
        expected = _EXPECTED.get(error["type"])
        if expected is None and error["type"] == "literal_error":
            expected = str(error.get("ctx", {}).get("expected", ""))
        if expected is None:
            expected = str(error["msg"]).removeprefix("Input should be ").removeprefix("Value error, ")
        lines.append(f"{name}{value} is not valid: expected {expected}")
    return lines


def check_database_url(url: str) -> None:
    """The URL names a store relay has; else say which forms it takes."""
    from relay.store import open_store

    try:
        open_store(url)
    except ValueError as exc:
        raise StartupError(str(exc)) from exc
    if url.startswith(("postgresql://", "postgres://")):
        try:
            postgres_address(url)
        except ValueError as exc:
            raise StartupError("RELAY_DATABASE_URL is not a valid PostgreSQL URL: "
                               "use postgresql://user:password@host:port/database") from exc


def postgres_address(url: str) -> str:
    """`host:port` of a PostgreSQL URL, for messages: never the user, the password or the database."""
    parts = urlsplit(url)
    host = parts.hostname or parse_qs(parts.query).get("host", ["localhost"])[0]
    port = parts.port or int(parse_qs(parts.query).get("port", ["5432"])[0])
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def listen(host: str, port: int) -> socket.socket:
    """Bind the listening socket before anything else starts, so a port in use is one line, not uvicorn's."""
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            why = "the address is already in use (another process listens there; choose RELAY_PORT)"
        elif isinstance(exc, socket.gaierror):
            why = f"unknown host ({exc.strerror})"
        else:
            why = (exc.strerror or str(exc)).lower()
        raise StartupError(f"cannot listen on {host}:{port}: {why}") from exc
    return sock


def _unreachable(exc: BaseException) -> str:
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused"
    if isinstance(exc, TimeoutError):
        return "timed out"
    if isinstance(exc, socket.gaierror):
        return f"unknown host ({exc.strerror})"
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return str(exc) or type(exc).__name__


async def wait_for_postgres(url: str, wait_seconds: float) -> None:
    """Connect once, retrying while the server is not up (yet) for up to `wait_seconds`, logging each retry.

    A server that answers and refuses (a wrong password, no such database) is not waited for: time cannot fix it.
    """
    import asyncpg

    where = postgres_address(url)
    deadline = time.monotonic() + wait_seconds
    while True:
        try:
            conn = await asyncpg.connect(url, timeout=max(1.0, min(10.0, deadline - time.monotonic())))
        except (OSError, TimeoutError, asyncpg.CannotConnectNowError) as exc:
            left = deadline - time.monotonic()
            if left <= 0:
                waited = f" after waiting {wait_seconds:.0f}s" if wait_seconds else ""
                raise StartupError(f"PostgreSQL at {where} is unreachable{waited}: {_unreachable(exc)} "
                                   "(RELAY_DATABASE_WAIT_SECONDS sets how long to wait)") from exc
            log.warning("PostgreSQL at %s is not reachable yet (%s); trying again for up to %.0fs",
                        where, _unreachable(exc), left)
            await asyncio.sleep(min(RETRY_SECONDS, left))
        except (asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            raise StartupError(f"PostgreSQL at {where} refused the connection: {exc}") from exc
        except ValueError as exc:  # asyncpg's DSN parser
            raise StartupError(f"RELAY_DATABASE_URL is not a valid PostgreSQL URL ({where})") from exc
        else:
            await conn.close()
            return


# One webhook and its delivery allocate a few thousand objects, nearly all freed by reference counting; at
# Python's default young-generation threshold (700) the cycle collector still ran about every 10 alerts, and each
# full pass walked everything start-up had loaded (~36 ms). Measured at 200 alerts/s: ~50 us of CPU per alert.
YOUNG_GENERATION_THRESHOLD = 10_000


def collect_for_serving() -> None:
    """Just before serving: what start-up loaded (modules, config, templates) lives to the end, so it leaves the
    collector's generations (gc.freeze), and the young generation may grow further between collections.
    Unreachable cycles are still collected, only less often."""
    gc.collect()
    gc.freeze()
    _, older, oldest = gc.get_threshold()
    gc.set_threshold(YOUNG_GENERATION_THRESHOLD, older, oldest)


def store_name(url: str) -> str:
    """The store as the start line names it: the SQLite file, or PostgreSQL's host:port (never user or password)."""
    if url.startswith(("postgresql://", "postgres://")):
        return f"PostgreSQL at {postgres_address(url)}"
    path = url.removeprefix("sqlite:///")
    return "SQLite in memory" if path in ("", ":memory:") else f"SQLite {Path(path).absolute()}"


def started(url: str, database_url: str, routes_file: Path, routes: Routes | None,
            last_seen: Mapping[str, float | None]) -> str:
    """The one line `relay serve` logs once it answers: where it listens, its store, its routes file with each
    receiver (and which are unconfigured or send to routes.yaml defaults), and each heartbeat, armed or not."""
    parts = [f"relay listens on {url} (webhook {url}/webhook)", f"store {store_name(database_url)}"]
    if routes is None:
        return "; ".join(parts)
    unconfigured = routes.unconfigured()
    receivers = []
    for name in routes.receivers:
        if name in unconfigured:
            receivers.append(f"{name} (unconfigured: {unconfigured[name]} unset)")
        elif name in routes.defaults:
            receivers.append(f"{name} (routes.yaml defaults)")
        else:
            receivers.append(name)
    parts.append(f"routes {routes_file.absolute()}: receivers {', '.join(receivers) or 'none'}")
    beats = []
    for beat in routes.spec.heartbeats:
        if beat.armed(last_seen.get(beat.name)):
            beats.append(f"heartbeat {beat.name} armed (pages if none arrives for {format_duration(beat.max_silence)})")
        else:
            beats.append(f"heartbeat {beat.name} not armed until the first {beat.alert_label} arrives")
    parts.append(", ".join(beats) if beats else "no heartbeat")
    return "; ".join(parts)
