"""What relay serves with, opened in one place: `relay serve`, the app's lifespan and `test-alert --direct` alike.

Handlers reach it through `services(request)`, typed, instead of reading untyped attributes of `app.state`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from dataclasses import dataclass

from starlette.requests import Request

from relay.actions.perform import perform
from relay.config.settings import Settings
from relay.dispatcher import Dispatcher, DispatcherOptions
from relay.heartbeat.switch import DeadMan
from relay.pacing.retry import RetryPolicy
from relay.runtime import Runtime
from relay.stages.escalation import Escalator
from relay.stages.mute import Windows
from relay.store import open_store
from relay.store.base import Store
from relay.storms.stage import Storms


@dataclass(frozen=True)
class Services:
    """The settings, store, configuration, dispatcher, heartbeat switch, escalation checker and storm stage of one
    running relay."""

    settings: Settings
    store: Store
    runtime: Runtime
    dispatcher: Dispatcher
    deadman: DeadMan
    escalator: Escalator
    storms: Storms

    @property
    def windows(self) -> Windows:
        """The maintenance windows the webhook and the escalation checker share (relay.stages.mute)."""
        return self.escalator.windows

    async def close(self, tasks: Iterable[asyncio.Task[object]] = ()) -> None:
        """Let in-flight sends finish (up to the shutdown grace), end `tasks`, then close configuration and store."""
        await self.dispatcher.stop(self.settings.shutdown_grace_seconds)
        ending = list(tasks)
        for task in ending:
            task.cancel()
        await asyncio.gather(*ending, return_exceptions=True)
        await self.runtime.close()
        await self.store.close()


def dispatcher_options(settings: Settings) -> DispatcherOptions:
    return DispatcherOptions(workers=settings.workers, workers_per_receiver=settings.workers_per_receiver,
                             lease=settings.lease_seconds,
                             send_timeout=settings.send_timeout_seconds,
                             default_rate_limits=settings.rate_limits,
                             policy=RetryPolicy(initial=settings.retry_initial_seconds,
                                                maximum=settings.retry_max_seconds))


async def open_services(settings: Settings) -> Services:
    """Open the store (migrating it), free the leases of this database's previous relay, load the configuration.

    `relay serve` calls this before uvicorn starts, so a failure is its one-line error, not a lifespan traceback.
    """
    store = open_store(settings.database_url)
    runtime = Runtime(settings.routes, settings.templates, perform=perform)
    await store.open()
    try:
        await store.release_leases()
        await runtime.start()
    except BaseException:
        await runtime.close()
        await store.close()
        raise
    dispatcher = Dispatcher(store, runtime, dispatcher_options(settings))
    return Services(settings, store, runtime, dispatcher, DeadMan(store, runtime, dispatcher),
                    Escalator(store, runtime, dispatcher),
                    Storms(store, runtime, dispatcher, settings.rate_limits, settings.external_url))


def services(request: Request) -> Services:
    """The services of the app serving `request` (set by its lifespan)."""
    found = request.app.state.services
    assert isinstance(found, Services)
    return found
