"""The provider test server for the benchmarks, in its own process so the load generator cannot delay its clock.

It is the suite's Slack fake (tests/fakes/slack.py: Slack's real answers to
incoming webhooks, with Slack's own rate limit when `--slack-limit` is given)
plus an `/alertmanager` route for Alertmanager's own webhook receiver and
PagerDuty's Events API (`/v2/enqueue`, validated like tests/fakes/pagerduty.py).
It keeps only (arrival time, bench id) per accepted message, never whole
bodies, so 100,000 messages cost a few MiB; and the links to relay's history
that summaries carry. Arrival times are time.monotonic(), one clock for every
process on the machine.

    python -m bench.sink --port 9000 [--slack-limit 1 3]   # prints "ready" when listening
    GET /-/count                         # {"count": n, "rate_limited": 429s, "pagerduty": events}
    GET /-/arrivals                      # {"arrivals": [[id, t], ...], "pagerduty": [...], "links": [[url, t]]}
                                         # and forgets them
"""

from __future__ import annotations

import argparse
import asyncio
import html
import json
import re
import signal
import time
from typing import Any

from aiohttp import web

from tests.fakes.pagerduty import problems
from tests.fakes.slack import SlackLimit, SlackWebhookServer

# Every alert the benches send carries a label value like this one; it names the alert in every message about it.
BENCH_ID = re.compile(r"bench-[a-z0-9]+-\d+")
# A Slack link to relay's notification history (a storm summary's "every alert is there").
HISTORY_LINK = re.compile(r"<(https?://[^|>\s]*/api/v1/notifications\?[^|>\s]*)[|>]")


class BenchSink(SlackWebhookServer):
    def __init__(self, port: int, limit: SlackLimit | None = None) -> None:
        super().__init__(port=port, limit=limit)
        self.count = 0
        self.arrivals: list[tuple[str, float]] = []
        self.pagerduty: list[tuple[str, float]] = []
        self.pagerduty_count = 0
        self.links: list[tuple[str, float]] = []

    def routes(self, app: web.Application) -> None:
        super().routes(app)
        app.router.add_post("/alertmanager", self._alertmanager)
        app.router.add_post("/v2/enqueue", self._pagerduty)
        app.router.add_get("/-/count", self._count)
        app.router.add_get("/-/arrivals", self._arrivals)

    async def _accept(self, request: web.Request, body: Any, status: int, delivered: bool) -> None:
        """Record the arrival of an accepted Slack message (what the fake's own record keeps, minus bodies)."""
        if delivered:
            self._arrived(str(body))
            at = time.monotonic()
            self.links += [(html.unescape(link), at) for link in dict.fromkeys(HISTORY_LINK.findall(_texts(body)))]

    def _arrived(self, text: str) -> None:
        at = time.monotonic()
        self.count += 1
        for bench_id in dict.fromkeys(BENCH_ID.findall(text)):  # an id may appear in title and body
            self.arrivals.append((bench_id, at))

    async def _pagerduty(self, request: web.Request) -> web.Response:
        """PagerDuty's answers to a valid or an invalid event (no incidents kept: the bench only times arrivals)."""
        try:
            event = await request.json()
        except ValueError:
            event = None
        errors = problems(event, None) if event is not None else ["Event object is not valid JSON"]
        if errors:
            return web.json_response({"status": "invalid event", "message": "Event object is invalid",
                                      "errors": errors}, status=400)
        at = time.monotonic()
        self.pagerduty_count += 1
        for bench_id in dict.fromkeys(BENCH_ID.findall(json.dumps(event))):
            self.pagerduty.append((bench_id, at))
        return web.json_response({"status": "success", "message": "Event processed",
                                  "dedup_key": event.get("dedup_key") or "bench"}, status=202)

    async def _alertmanager(self, request: web.Request) -> web.Response:
        self._arrived(await request.text())
        return web.Response(text="ok")

    async def _count(self, request: web.Request) -> web.Response:
        return web.json_response({"count": self.count, "rate_limited": self.rate_limited,
                                  "pagerduty": self.pagerduty_count})

    async def _arrivals(self, request: web.Request) -> web.Response:
        out, self.arrivals = self.arrivals, []
        pagerduty, self.pagerduty = self.pagerduty, []
        links, self.links = self.links, []
        return web.json_response({"count": self.count, "arrivals": out, "pagerduty": pagerduty, "links": links})


def _texts(body: Any) -> str:
    """Every string of a message body, joined: a link is matched in the text Slack shows, not in its JSON escaping."""
    if isinstance(body, str):
        return body
    if isinstance(body, dict):
        return "\n".join(_texts(v) for v in body.values())
    if isinstance(body, list):
        return "\n".join(_texts(v) for v in body)
    return ""


async def serve(port: int, limit: SlackLimit | None) -> None:
    sink = BenchSink(port, limit)
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
    parser.add_argument("--slack-limit", type=float, nargs=2, metavar=("RATE", "BURST"),
                        help="Slack's own limit per incoming webhook: messages/s and burst (default: none)")
    opts = parser.parse_args()
    limit = SlackLimit(opts.slack_limit[0], int(opts.slack_limit[1])) if opts.slack_limit else None
    asyncio.run(serve(opts.port, limit))
