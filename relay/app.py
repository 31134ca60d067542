"""The Starlette application; its lifespan wires store, configuration and dispatcher together."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import timedelta

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.routing import Route

from relay import api, webhook
from relay.auth import LoopbackOnly
from relay.deadman import DeadMan
from relay.dispatcher import Dispatcher, DispatcherOptions
from relay.retention import prune_forever
from relay.retry import RetryPolicy
from relay.runtime import Runtime
from relay.settings import Settings
from relay.store import open_store
from relay.store.base import Store

log = logging.getLogger(__name__)

WATCH_SECONDS = 2.0


def dispatcher_options(settings: Settings) -> DispatcherOptions:
    return DispatcherOptions(workers=settings.workers, workers_per_receiver=settings.workers_per_receiver,
                             lease=settings.lease_seconds,
                             send_timeout=settings.send_timeout_seconds,
                             default_rate_limits=settings.rate_limits,
                             policy=RetryPolicy(initial=settings.retry_initial_seconds,
                                                maximum=settings.retry_max_seconds))


async def _watch(runtime: Runtime) -> None:
    """Reload routes.yaml when the file changes (a pull request merged and deployed)."""
    while True:
        await asyncio.sleep(WATCH_SECONDS)
        await runtime.reload_if_changed()


def _on_sighup(runtime: Runtime) -> None:
    async def reload() -> None:
        try:
            await runtime.reload()
        except Exception as exc:
            log.error("reload on SIGHUP refused, keeping the last good routes: %s", exc)

    asyncio.get_running_loop().create_task(reload())


@dataclass(frozen=True)
class Services:
    """The store and configuration a relay serves with; the app's lifespan closes them."""

    store: Store
    runtime: Runtime


async def open_services(settings: Settings) -> Services:
    """Open the store (migrating it), free the leases of this database's previous relay, load the configuration.

    `relay serve` calls this before uvicorn starts, so a failure is its one-line error, not a lifespan traceback.
    """
    store = open_store(settings.database_url)
    runtime = Runtime(settings.routes, settings.templates)
    await store.open()
    try:
        await store.release_leases()
        await runtime.start()
    except BaseException:
        await runtime.close()
        await store.close()
        raise
    return Services(store, runtime)


def create_app(settings: Settings, services: Services | None = None) -> Starlette:
    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        opened = services or await open_services(settings)
        store, runtime = opened.store, opened.runtime
        dispatcher = Dispatcher(store, runtime, dispatcher_options(settings))
        app.state.settings, app.state.store, app.state.runtime, app.state.dispatcher = (
            settings, store, runtime, dispatcher)
        app.state.deadman = deadman = DeadMan(store, runtime, dispatcher)
        loop = asyncio.get_running_loop()
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            loop.add_signal_handler(signal.SIGHUP, _on_sighup, runtime)
        tasks = [asyncio.create_task(dispatcher.run(), name="dispatcher"),
                 asyncio.create_task(_watch(runtime), name="routes-watch"),
                 asyncio.create_task(prune_forever(store, runtime, timedelta(hours=settings.retention_hours)),
                                     name="retention"),
                 asyncio.create_task(deadman.run(), name="heartbeats")]
        try:
            yield
        finally:
            log.info("shutting down: finishing in-flight deliveries (up to %.0fs)", settings.shutdown_grace_seconds)
            await dispatcher.stop(settings.shutdown_grace_seconds)
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await runtime.close()
            await store.close()

    return Starlette(
        routes=[
            Route("/webhook", webhook.handle, methods=["POST"]),
            Route("/metrics", api.metrics_endpoint, methods=["GET"]),
            Route("/healthz", api.healthz, methods=["GET"]),
            Route("/readyz", api.readyz, methods=["GET"]),
            Route("/-/reload", api.authorized(api.reload), methods=["POST"]),
            Route("/api/v1/notifications", api.authorized(api.notifications), methods=["GET"]),
            Route("/api/v1/notifications/{id}", api.authorized(api.notification), methods=["GET"]),
            Route("/api/v1/notifications/{id}/cancel", api.authorized(api.cancel_notification), methods=["POST"]),
            Route("/api/v1/dead-letters/{id}/retry", api.authorized(api.retry_dead_letter), methods=["POST"]),
            Route("/api/v1/dead-letters/{id}", api.authorized(api.purge_dead_letter), methods=["DELETE"]),
        ],
        middleware=[Middleware(LoopbackOnly, settings=settings)],
        lifespan=lifespan,
    )
