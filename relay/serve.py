"""`relay serve`: everything a start needs is prepared first (relay.startup), then uvicorn gets the socket and the
opened services. A mistake found on the way is a StartupError, which the CLI prints as one line."""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import Callable

from relay import startup
from relay.errors import ConfigError, StartupError, StoreUnavailable
from relay.settings import Settings
from relay.store.filelock import lock_database

log = logging.getLogger("relay")


def run(settings: Settings) -> int:
    """Serve until SIGTERM/SIGINT; the SQLite lock is taken before any lease is touched and held to the end."""
    startup.check_database_url(settings.database_url)
    lock = lock_database(settings.database_url)
    try:
        sock = startup.listen(settings.host, settings.port)
        try:
            with asyncio.Runner(loop_factory=_loop_factory()) as runner:
                return runner.run(_serve(settings, sock))
        except KeyboardInterrupt:  # Ctrl-C while waiting for PostgreSQL, or re-raised by uvicorn after shutdown
            return 130
        finally:
            sock.close()
    finally:
        if lock is not None:
            lock.release()


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
    from relay.client_timeouts import http_protocol

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
    await server.serve(sockets=[sock])
    return 0 if server.started else 1
