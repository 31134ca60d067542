"""The Starlette application; its lifespan runs the services (relay.services) it is given or opens."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import AsyncIterator
from datetime import timedelta

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.routing import Route

from relay import console, webhook
from relay.actions import endpoint as interactions
from relay.actions.silences import SilenceWatch
from relay.api import admin, maintenance
from relay.auth import LoopbackOnly
from relay.config.settings import Settings
from relay.runtime import Runtime
from relay.services import Services, open_services
from relay.stages.retention import prune_forever

__all__ = ["Services", "create_app", "open_services"]

log = logging.getLogger(__name__)

WATCH_SECONDS = 2.0


async def _watch(runtime: Runtime) -> None:
    """Reload routes.yaml when the file changes (a pull request merged and deployed)."""
    while True:
        await asyncio.sleep(WATCH_SECONDS)
        try:
            await runtime.reload_if_changed()
        except Exception:  # reload refuses what it cannot load; this is for a bug, which must not end the watch
            log.exception("checking %s for changes failed; still watching", runtime.routes_file)


def _on_sighup(runtime: Runtime) -> None:
    async def reload() -> None:
        try:
            await runtime.reload()
        except Exception as exc:
            log.error("reload on SIGHUP refused, keeping the last good routes: %s", exc)

    asyncio.get_running_loop().create_task(reload())


def create_app(settings: Settings, services: Services | None = None) -> Starlette:
    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        opened = services or await open_services(settings)
        app.state.services = opened
        runtime = opened.runtime
        loop = asyncio.get_running_loop()
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            loop.add_signal_handler(signal.SIGHUP, _on_sighup, runtime)
        tasks: list[asyncio.Task[object]] = [
            asyncio.create_task(opened.dispatcher.run(), name="dispatcher"),
            asyncio.create_task(_watch(runtime), name="routes-watch"),
            asyncio.create_task(prune_forever(opened.store, runtime, timedelta(hours=settings.retention_hours)),
                                name="retention"),
            asyncio.create_task(opened.deadman.run(), name="heartbeats"),
            asyncio.create_task(opened.escalator.run(), name="escalations"),
            asyncio.create_task(SilenceWatch(opened.store, runtime, opened.dispatcher, settings.silence_watch_seconds,
                                             settings.absence_grace_seconds).run(), name="silence-watch"),
            asyncio.create_task(opened.storms.run(), name="storms")]
        try:
            yield
        finally:
            log.info("shutting down: finishing in-flight deliveries (up to %.0fs)", settings.shutdown_grace_seconds)
            await opened.close(tasks)

    return Starlette(
        routes=[
            Route("/webhook", webhook.handle, methods=["POST"]),
            Route("/slack/interactions", interactions.handle, methods=["POST"]),
            Route("/metrics", admin.metrics_endpoint, methods=["GET"]),
            Route("/healthz", admin.healthz, methods=["GET"]),
            Route("/readyz", admin.readyz, methods=["GET"]),
            Route("/-/reload", admin.authorized(admin.reload), methods=["POST"]),
            console.summary_link(Route("/api/v1/notifications", admin.authorized(admin.notifications),
                                       methods=["GET"])),
            Route("/api/v1/notifications/{id}", admin.authorized(admin.notification), methods=["GET"]),
            Route("/api/v1/notifications/{id}/cancel", admin.authorized(admin.cancel_notification), methods=["POST"]),
            Route("/api/v1/dead-letters/{id}/retry", admin.authorized(admin.retry_dead_letter), methods=["POST"]),
            Route("/api/v1/dead-letters/{id}", admin.authorized(admin.purge_dead_letter), methods=["DELETE"]),
            Route("/api/v1/maintenance", admin.authorized(maintenance.list_windows), methods=["GET"]),
            Route("/api/v1/maintenance", admin.authorized(maintenance.add_window), methods=["POST"]),
            Route("/api/v1/maintenance/{id}/end", admin.authorized(maintenance.end_window), methods=["POST"]),
            *console.routes(),
        ],
        middleware=[Middleware(LoopbackOnly, settings=settings)],
        lifespan=lifespan,
    )
