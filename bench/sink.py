"""The provider test server for the benchmarks, in its own process so the load generator cannot delay its clock.

It is the suite's Slack fake (tests/fakes/slack.py: Slack's real answers to
incoming webhooks) plus an `/alertmanager` route for Alertmanager's own webhook
receiver. It keeps only (arrival time, bench id) per accepted message, never
whole bodies, so 100,000 messages cost a few MiB. Arrival times are
time.monotonic(), one clock for every process on the machine.

    python -m bench.sink --port 9000     # prints "ready" when listening
    GET /-/count                         # {"count": n}
    GET /-/arrivals                      # {"arrivals": [[id, t], ...]} and forgets them
"""

from __future__ import annotations

import argparse
import asyncio
import re
import signal
import time
from typing import Any

from aiohttp import web

from tests.fakes.slack import SlackWebhookServer

# Every alert the benches send carries a label value like this one; it names the alert in every message about it.
BENCH_ID = re.compile(r"bench-[a-z0-9]+-\d+")


class BenchSink(SlackWebhookServer):
    def __init__(self, port: int) -> None:
        super().__init__(port=port)
        self.count = 0
        self.arrivals: list[tuple[str, float]] = []

    def routes(self, app: web.Application) -> None:
        super().routes(app)
        app.router.add_post("/alertmanager", self._alertmanager)
        app.router.add_get("/-/count", self._count)
        app.router.add_get("/-/arrivals", self._arrivals)

    async def _accept(self, request: web.Request, body: Any, status: int, delivered: bool) -> None:
        """Record the arrival of an accepted Slack message (what the fake's own record keeps, minus bodies)."""
        if delivered:
            self._arrived(str(body))

    def _arrived(self, text: str) -> None:
        at = time.monotonic()
        self.count += 1
        for bench_id in dict.fromkeys(BENCH_ID.findall(text)):  # an id may appear in title and body
            self.arrivals.append((bench_id, at))

    async def _alertmanager(self, request: web.Request) -> web.Response:
        self._arrived(await request.text())
        return web.Response(text="ok")

    async def _count(self, request: web.Request) -> web.Response:
        return web.json_response({"count": self.count})

    async def _arrivals(self, request: web.Request) -> web.Response:
        out, self.arrivals = self.arrivals, []
        return web.json_response({"count": self.count, "arrivals": out})


async def serve(port: int) -> None:
    sink = BenchSink(port)
    await sink.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    print("ready", flush=True)
    try:
        await stop.wait()
    finally:
        await sink.stop()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--port", type=int, required=True)
    asyncio.run(serve(parser.parse_args().port))
