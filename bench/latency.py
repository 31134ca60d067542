"""Added latency: webhook leaves the load generator → the Slack test server receives the message.

Runs relay (SQLite, durable commits) and the bare forwarder side by side against
the same local Slack server, single-alert webhooks at fixed rates, and prints
p50/p95/p99 per system and rate. Everything is on loopback and bounded in time.

    python -m bench.latency                 # 50 and 200 webhooks/s, 10 s each
    python -m bench.latency --smoke         # a few seconds: checks the bench itself works
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx

from relay.fingerprint import fingerprint
from tests.e2e.process import free_port
from tests.fakes.slack import SlackWebhookServer
from tests.helpers import REPO, poll_until

ROUTES = """receivers:
  - name: slack
    slack:
      webhook_url: {url}
    rate_limit: {{rate: 100000, burst: 100000}}
default_receivers: [slack]
"""


def payload(name: str) -> dict[str, object]:
    labels = {"alertname": name, "severity": "warning"}
    alert = {"status": "firing", "labels": labels, "annotations": {"summary": "bench"},
             "startsAt": "2026-11-26T07:40:12.5Z", "endsAt": "0001-01-01T00:00:00Z", "generatorURL": "",
             "fingerprint": fingerprint(labels)}
    return {"version": "4", "groupKey": f"{{}}:{{alertname=\"{name}\"}}", "status": "firing", "receiver": "r",
            "alerts": [alert], "groupLabels": {"alertname": name}, "commonLabels": labels,
            "commonAnnotations": {}, "externalURL": "", "truncatedAlerts": 0}


async def start(args: list[str], env: dict[str, str], port: int, path: str) -> asyncio.subprocess.Process:
    proc = await asyncio.create_subprocess_exec(*args, cwd=REPO, env={**os.environ, **env},
                                                stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL)

    async def up() -> bool:
        try:
            async with httpx.AsyncClient() as client:
                return (await client.get(f"http://127.0.0.1:{port}{path}", timeout=1)).status_code < 500
        except httpx.HTTPError:
            return False

    await poll_until(up, timeout=20, interval=0.05)
    return proc


async def load(url: str, slack: SlackWebhookServer, rate: int, seconds: float, tag: str) -> list[float]:
    """Send `rate` webhooks a second for `seconds`; return latencies (s) of those the Slack server received."""
    sent: dict[str, float] = {}
    total = int(rate * seconds)
    before = len(slack.received)
    async with httpx.AsyncClient(base_url=url, timeout=30,
                                 limits=httpx.Limits(max_connections=64)) as client:
        tasks = []
        start_at = time.time()
        for i in range(total):
            delay = start_at + i / rate - time.time()
            if delay > 0:
                await asyncio.sleep(delay)
            name = f"{tag}-{i}"
            sent[name] = time.time()
            tasks.append(asyncio.create_task(client.post("/webhook", json=payload(name))))
        answers = await asyncio.gather(*tasks)
        assert all(a.status_code == 200 for a in answers), {a.status_code for a in answers}
    await poll_until(lambda: len(slack.received) - before >= total, timeout=60)
    out = []
    pattern = re.compile(rf"{tag}-(\d+)")
    for at, _, body in slack.received[before:]:
        match = pattern.search(json.dumps(body))
        if match and match.group(0) in sent:
            out.append(at - sent[match.group(0)])
    return out


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))] * 1000


async def main(rates: list[int], seconds: float) -> int:
    tmp = Path(tempfile.mkdtemp(prefix="relay-bench-"))
    async with SlackWebhookServer() as slack:
        routes = tmp / "routes.yaml"
        routes.write_text(ROUTES.format(url=slack.url()))
        relay_port, fwd_port = free_port(), free_port()
        relay = await start([sys.executable, "-m", "relay", "serve"], {
            "RELAY_ROUTES": str(routes), "RELAY_DATABASE_URL": f"sqlite:///{tmp / 'relay.db'}",
            "RELAY_PORT": str(relay_port), "RELAY_LOG_LEVEL": "WARNING"}, relay_port, "/readyz")
        forwarder = await start([sys.executable, "-m", "uvicorn", "bench.forwarder:app", "--port", str(fwd_port),
                                 "--log-level", "warning"], {"FORWARD_TO": slack.url()}, fwd_port, "/")
        rows = []
        try:
            for rate in rates:
                for system, tag, port in (("bare forwarder", "fwd", fwd_port), ("relay (sqlite)", "relay", relay_port)):
                    lat = await load(f"http://127.0.0.1:{port}", slack, rate, seconds, f"{tag}{rate}x")
                    rows.append((system, rate, len(lat), pct(lat, 50), pct(lat, 95), pct(lat, 99),
                                 statistics.mean(lat) * 1000))
        finally:
            for proc in (relay, forwarder):
                proc.terminate()
                await proc.wait()
    print(f"cores: {os.cpu_count()}, {seconds:.0f} s per run, single-alert webhooks")
    print(f"{'system':<16} {'rate/s':>6} {'n':>6} {'p50 ms':>8} {'p95 ms':>8} {'p99 ms':>8} {'mean ms':>8}")
    for system, rate, n, p50, p95, p99, mean in rows:
        print(f"{system:<16} {rate:>6} {n:>6} {p50:>8.1f} {p95:>8.1f} {p99:>8.1f} {mean:>8.1f}")
    return 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rates", type=int, nargs="+", default=[50, 200])
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--smoke", action="store_true")
    opts = parser.parse_args()
    if opts.smoke:
        opts.rates, opts.seconds = [20], 2.0
    raise SystemExit(asyncio.run(main(opts.rates, opts.seconds)))
