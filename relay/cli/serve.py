"""`relay serve`: everything a start needs is prepared first (relay.cli.startup), then uvicorn gets the socket and the
opened services. A mistake found on the way is a StartupError, which the CLI prints as one line."""

from __future__ import annotations

import argparse
import asyncio
import logging
import socket
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from relay.auth import is_loopback
from relay.cli import startup
from relay.cli.common import command
from relay.config.settings import Settings
from relay.errors import ConfigError, StartupError, StoreUnavailable, UsageError
from relay.store.filelock import lock_database

if TYPE_CHECKING:
    from relay.services import Services

log = logging.getLogger("relay")


def cmd_serve(args: argparse.Namespace, settings: Settings) -> int:
    from relay.config.routes import load_routes
    from relay.templating import Templates

    if args.host:
        settings = settings.model_copy(update={"host": args.host})
    if args.port:
        settings = settings.model_copy(update={"port": args.port})
    if settings.token is None and not is_loopback(settings.host):
        raise UsageError(f"refusing to listen on {settings.host} without RELAY_WEBHOOK_TOKEN; set a token or "
                         "listen on 127.0.0.1")
    try:
        load_routes(settings.routes, Templates(settings.templates))
    except ConfigError as exc:
        if settings.routes.exists():
            raise
        # An installed relay run outside a checkout has no ./routes.yaml: say which setting names the file.
        where = "" if settings.routes.is_absolute() else f", relative to {Path.cwd()}"
        raise StartupError(f"{exc} (RELAY_ROUTES names the routes file{where})") from exc
    return run(settings)


def add_commands(sub: Any) -> None:
    serve = command(
        sub, "serve", "run the service",
        "Receive Alertmanager's webhooks on POST /webhook, route them with the routes file and deliver from the "
        "durable outbox until SIGTERM or Ctrl-C. Without RELAY_WEBHOOK_TOKEN relay listens on loopback only. Every "
        "setting is a RELAY_* environment variable (docs/configuration.md lists them); the start log ends with one "
        "line saying where relay listens, its store, routes, receivers and heartbeat.",
        examples=["relay serve", "RELAY_WEBHOOK_TOKEN=$(cat token) relay serve --host 0.0.0.0 --port 9095",
                  "RELAY_DATABASE_URL=postgresql://relay@db/relay relay serve"],
        environment=["RELAY_HOST, RELAY_PORT   where to listen (default: 127.0.0.1, 8080)",
                     "RELAY_ROUTES            the routes file (default: routes.yaml)",
                     "RELAY_DATABASE_URL      the outbox (default: sqlite:///relay.db)",
                     "RELAY_WEBHOOK_TOKEN     the bearer token Alertmanager sends (default: none, loopback only)",
                     "RELAY_ADMIN_TOKEN       the admin API's bearer token (default: none)",
                     "RELAY_LOG_LEVEL, RELAY_LOG_FORMAT   (default: info, console)"])
    serve.add_argument("--host", metavar="ADDRESS",
                       help="the address to listen on, instead of RELAY_HOST (default: 127.0.0.1); another than "
                       "loopback needs RELAY_WEBHOOK_TOKEN, e.g. --host 0.0.0.0")
    serve.add_argument("--port", type=int, metavar="PORT",
                       help="the port to listen on, instead of RELAY_PORT (default: 8080), e.g. --port 9095")
    serve.set_defaults(func=cmd_serve)


def run(settings: Settings) -> int:
    """Serve until SIGTERM/SIGINT; the SQLite lock is taken before any lease is touched and held to the end. The port
    is bound first: a port in use is refused before anything is written beside the database (no stray .db.lock)."""
    startup.check_database_url(settings.database_url)
    sock = startup.listen(settings.host, settings.port)
    try:
        lock = lock_database(settings.database_url)
        try:
            with asyncio.Runner(loop_factory=_loop_factory()) as runner:
                return runner.run(_serve(settings, sock))
        except KeyboardInterrupt:  # Ctrl-C while waiting for PostgreSQL, or re-raised by uvicorn after shutdown
            return 130
        finally:
            if lock is not None:
                lock.release()
    finally:
        sock.close()


def _loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    """uvloop where it is installed, as uvicorn's own `loop="auto"` would choose."""
    try:
        import uvloop
    except ImportError:
        return None
    return uvloop.new_event_loop


async def _serve(settings: Settings, sock: socket.socket) -> int:
    import uvicorn

    from relay.app import create_app, open_services
    from relay.cli.client_timeouts import http_protocol

    if settings.database_url.startswith(("postgresql://", "postgres://")):
        await startup.wait_for_postgres(settings.database_url, settings.database_wait_seconds)
    try:
        services = await open_services(settings)
    except (StoreUnavailable, ConfigError) as exc:
        raise StartupError(str(exc)) from exc
    if settings.token is None:
        log.warning("RELAY_WEBHOOK_TOKEN is not set: accepting webhooks without authentication, on loopback only")
    config = uvicorn.Config(create_app(settings, services), host=settings.host, port=settings.port, log_config=None,
                            http=http_protocol(settings.request_read_timeout_seconds),
                            access_log=False, lifespan="on", timeout_graceful_shutdown=int(
                                settings.shutdown_grace_seconds) + 5)
    server = uvicorn.Server(config)
    line = startup.started(_url(sock), settings.database_url, settings.routes, services.runtime.routes,
                           await _last_seen(services))
    startup.collect_for_serving()
    announce = asyncio.create_task(_announce(server, line))
    try:
        await server.serve(sockets=[sock])
    finally:
        announce.cancel()
    return 0 if server.started else 1


def _url(sock: socket.socket) -> str:
    host, port = sock.getsockname()[:2]
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


async def _last_seen(services: Services) -> dict[str, float | None]:
    """When each heartbeat last arrived, from the store (an empty watch only reads); unknown if it cannot answer."""
    if services.runtime.routes is None or not services.runtime.routes.spec.heartbeats:
        return {}
    try:
        return {state.name: state.last_seen for state in await services.store.heartbeats({}, time.time())}
    except StoreUnavailable:
        return {}


async def _announce(server: Any, line: str) -> None:
    """Say where relay listens once uvicorn has started (its own last line is 'Application startup complete')."""
    while not server.started:
        await asyncio.sleep(0.05)
    log.info("%s", line)
