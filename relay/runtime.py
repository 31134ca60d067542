"""The loaded configuration: routes, templates and one channel per receiver, swapped atomically on reload.

A reload that fails leaves the previous configuration serving and says why
(file, line, reason); notifications already in the outbox are delivered with
whatever receiver of that name the current configuration has.
"""

from __future__ import annotations

import logging
import os
import time
import urllib.request
from collections.abc import Callable, Collection
from pathlib import Path
from typing import NamedTuple, Protocol

import aiohttp

from relay.channels.base import Channel
from relay.channels.factory import build_channel
from relay.channels.slack.channel import PerformAction
from relay.config.receivers import ReceiverConfig
from relay.config.routes import Routes, load_routes
from relay.errors import ConfigError
from relay.telemetry import metrics
from relay.templating import Templates

log = logging.getLogger(__name__)


class Receiver(NamedTuple):
    config: ReceiverConfig
    channel: Channel


class Receivers(Protocol):
    """What delivery needs of the configuration: a receiver's settings and channel by name, and the names.

    The dispatcher and its attempts take this, not the Runtime, so a test can hand them receivers of its own
    (as httpx's MockTransport stands in for a transport); the Runtime is the one that reloads.
    """

    def receiver(self, name: str) -> Receiver | None:
        """The receiver of this name in the configuration serving now, or None if a reload removed it."""
        ...

    def receiver_names(self) -> Collection[str]: ...


class Runtime:
    def __init__(self, routes_file: Path, templates_dir: Path | None, *, perform: PerformAction | None = None) -> None:
        self.routes_file = routes_file
        self.perform = perform  # what carries out Slack action rows (relay.actions.perform), given by relay.services
        self.templates_dir = templates_dir
        self.routes: Routes | None = None
        self.templates = Templates(templates_dir)
        self.channels: dict[str, Channel] = {}
        self.session: aiohttp.ClientSession | None = None
        self.loaded_mtime = 0.0
        # Now, for what depends on the hour (time intervals): the webhook's arrival time and every periodic check's
        # beat (escalations, heartbeats, storms, silence watches) read it, so a test moves time forward instead of
        # waiting for it.
        self.clock: Callable[[], float] = time.time

    def receiver(self, name: str) -> Receiver | None:
        config = self.routes.receivers.get(name) if self.routes is not None else None
        return Receiver(config, self.channels[name]) if config is not None else None

    def receiver_names(self) -> Collection[str]:
        return self.routes.receivers.keys() if self.routes is not None else ()

    async def start(self) -> None:
        """Load the configuration; a broken one raises ConfigError (relay does not start)."""
        # trust_env makes aiohttp read ~/.netrc and the proxy variables on every request, in a worker thread:
        # pay for that only when a proxy is configured.
        self.session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30),
                                             trust_env=bool(urllib.request.getproxies()))
        await self.reload()

    async def reload(self) -> Routes:
        """Load routes.yaml and its templates and swap them in; anything that goes wrong before the swap is a
        ConfigError naming the file and the reason, counted, and the configuration serving now stays."""
        mtime = _mtime(self.routes_file)
        assert self.session is not None
        try:
            templates = Templates(self.templates_dir)
            routes = load_routes(self.routes_file, templates)
            channels = {name: build_channel(r, templates, self.session, perform=self.perform)
                        for name, r in routes.receivers.items()}
        except ConfigError:
            _failed()
            raise
        except Exception as exc:  # a bug, RecursionError, MemoryError: refused like any broken file, never fatal
            _failed()
            log.exception("loading %s failed unexpectedly", self.routes_file)
            raise ConfigError(f"cannot load: {type(exc).__name__}: {exc}"[:300], file=str(self.routes_file)) from None
        old = self.channels
        self.channels = channels
        self.routes, self.templates, self.loaded_mtime = routes, templates, mtime
        for channel in old.values():
            await channel.close()
        metrics.config_hash.set(int(routes.digest[:12], 16))
        metrics.config_last_reload_successful.set(1)
        metrics.config_last_reload_success_timestamp.set(time.time())
        for name, missing in routes.unconfigured().items():
            log.warning("receiver %s is unconfigured (%s is unset): its notifications become dead letters "
                        "with reason 'unconfigured' until it is set and they are replayed", name, missing)
        for name, notes in routes.defaults.items():
            log.warning("receiver %s sends to routes.yaml defaults: %s; set the variables if that is not where its "
                        "messages should go", name, "; ".join(notes))
        log.info("loaded %s: %d receivers, %d routes", self.routes_file, len(routes.receivers),
                 len(routes.spec.routes))
        return routes

    async def reload_if_changed(self) -> None:
        mtime = _mtime(self.routes_file)
        if mtime and mtime != self.loaded_mtime:
            try:
                await self.reload()
            except ConfigError as exc:
                self.loaded_mtime = mtime  # say it once per change, keep serving the last good routes
                log.error("routes.yaml changed but was refused, keeping the last good one: %s", exc)

    async def close(self) -> None:
        for channel in self.channels.values():
            await channel.close()
        self.channels = {}
        if self.session is not None:
            await self.session.close()
            self.session = None


def _failed() -> None:
    metrics.config_last_reload_successful.set(0)
    metrics.config_reload_failures.inc()


def _mtime(path: Path) -> float:
    try:
        return os.stat(path).st_mtime
    except OSError:
        return 0.0
