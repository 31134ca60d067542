"""Throughput: alerts/s ingested with durable commits while delivering, and notifications/s delivered.

1. Ingest: closed-loop senders post webhooks of 10 alerts (`--alerts-per-webhook`; each webhook its own
   group), routed to two Slack receivers, for a fixed time, while relay delivers
   to the sink. Every 200 answer means the alerts and both notifications are
   committed durably (SQLite `synchronous=FULL`, PostgreSQL's commit). Reported:
   alerts/s answered 200, and notifications/s the sink received meanwhile.
2. Delivery: the outbox is filled through relay's own Store API while relay is
   not running (single-alert notifications, every one its own lane, two
   receivers), then `relay serve` starts with rate limits off
   (RELAY_RATE_LIMITS=false) and the sink counts arrivals; the rate is taken
   between 10% and 90% delivered (steady state, not start-up or the tail).

    python -m bench.throughput                    # 30 s ingest, 20,000 notifications, 3 runs
    python -m bench.throughput --smoke            # seconds: checks the bench itself works
"""

from __future__ import annotations

import argparse
import asyncio
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import aiohttp

from bench.common import (
    Machine,
    Sink,
    Stack,
    cancel_on_sigterm,
    cpu_seconds,
    median,
    postgres_database,
    routes_yaml,
    save_json,
    sqlite_url,
    start_relay,
    start_sink,
    table,
    usable_stores,
    webhook,
)

RECEIVERS = ("slack-a", "slack-b")
ALERTS_PER_WEBHOOK = 10
NO_RATE_LIMITS = {"RELAY_RATE_LIMITS": "false"}
STORES = ("sqlite", "postgres")


@dataclass
class Result:
    store: str
    run: int
    ingest_alerts_per_s: float
    ingest_webhooks: int
    delivered_during_ingest_per_s: float
    backlog_after_ingest: int  # notifications accepted but not yet delivered when the load stopped
    ingest_cpu_ms_per_alert: float  # relay's CPU time (all threads) per alert, ingest and its deliveries included
    delivery_per_s: float
    delivery_total: int
    delivery_cpu_ms: float  # relay's CPU time per notification delivered (start-up excluded)


async def database(stack: Stack, store: str, name: str) -> str:
    return sqlite_url(stack, name) if store == "sqlite" else await postgres_database(stack, name)


async def ingest(stack: Stack, sink: Sink, store: str, run: int, seconds: float, concurrency: int,
                 per_webhook: int = ALERTS_PER_WEBHOOK) -> tuple[float, int, float, int, float]:
    proc, url, _ = await start_relay(stack, f"ingest-{store}-{run}", routes_yaml(sink, RECEIVERS),
                                  await database(stack, store, f"ingest{run}"), NO_RATE_LIMITS)
    cpu_before = cpu_seconds(proc.pid)
    accepted = 0
    failures: list[str] = []
    counter = iter(range(10**9))
    headers = {"Content-Type": "application/json"}

    async def sender(session: aiohttp.ClientSession, until: float) -> None:
        nonlocal accepted
        while time.monotonic() < until:
            n = next(counter)
            ids = [f"bench-i{run}-{n * per_webhook + k}" for k in range(per_webhook)]
            async with session.post(f"{url}/webhook", data=webhook(ids, f"i{run}-{n}"), headers=headers) as answer:
                await answer.read()
                if answer.status == 200:
                    accepted += 1
                else:
                    failures.append(str(answer.status))

    before = await sink.count()
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=concurrency),
                                     timeout=aiohttp.ClientTimeout(total=60)) as session:
        started = time.monotonic()
        await asyncio.gather(*(sender(session, started + seconds) for _ in range(concurrency)))
        elapsed = time.monotonic() - started
    delivered = await sink.count() - before
    if failures:
        raise RuntimeError(f"ingest: {len(failures)} webhooks refused: {sorted(set(failures))}")
    notifications = accepted * len(RECEIVERS)
    # Let relay finish delivering before the next phase, so phases do not overlap on the CPU.
    await sink.wait_count(before + notifications, timeout=max(60.0, notifications / 100))
    cpu_ms = (cpu_seconds(proc.pid) - cpu_before) * 1000 / max(1, accepted * per_webhook)
    await stack.stop(proc)
    return (accepted * per_webhook / elapsed, accepted, delivered / elapsed, notifications - delivered, cpu_ms)


async def fill_outbox(database_url: str, routes_text: str, stack: Stack, count: int, run: int) -> None:
    """Write `count` notifications with relay's Store API (dedup, durable commit), as webhooks would."""
    from relay.alerts import WebhookMessage
    from relay.config.routes import load_routes
    from relay.store import open_store
    from relay.templating import Templates
    from relay.webhook import candidates

    routes_file = stack.tmp / "fill-routes.yaml"
    routes_file.write_text(routes_text)
    routes = load_routes(routes_file, Templates(Path(__file__).resolve().parent.parent / "templates"))
    store = open_store(database_url)
    await store.open()
    try:
        per_webhook = len(RECEIVERS)
        batch: list[asyncio.Future[object]] = []
        for n in range(count // per_webhook):
            message = WebhookMessage.model_validate_json(webhook([f"bench-d{run}-{n}"], f"d{run}-{n}"))
            batch.append(asyncio.ensure_future(store.enqueue(candidates(message, routes), time.time())))
            if len(batch) >= 256:
                await asyncio.gather(*batch)
                batch = []
        await asyncio.gather(*batch)
    finally:
        await store.close()


async def deliver(stack: Stack, sink: Sink, store: str, run: int, count: int) -> tuple[float, int, float]:
    routes = routes_yaml(sink, RECEIVERS)
    url = await database(stack, store, f"deliver{run}")
    await fill_outbox(url, routes, stack, count, run)
    total = count // len(RECEIVERS) * len(RECEIVERS)
    before = await sink.count()
    proc, _, _ = await start_relay(stack, f"deliver-{store}-{run}", routes, url, NO_RATE_LIMITS, wait=False)
    marks: dict[float, float] = {}
    cpu: dict[float, float] = {}
    sink_cpu: dict[float, float] = {}
    deadline = time.monotonic() + max(120.0, total / 50)
    while time.monotonic() < deadline:
        done = await sink.count() - before
        now = time.monotonic()
        for share in (0.1, 0.9):
            if done >= share * total and share not in marks:
                marks[share], cpu[share] = now, cpu_seconds(proc.pid)
                sink_cpu[share] = cpu_seconds(sink.proc.pid)
        if done >= total:
            break
        await asyncio.sleep(0.05)
    else:
        raise RuntimeError(f"delivery: only {await sink.count() - before} of {total} delivered in time")
    delivered = 0.8 * total
    await stack.stop(proc)
    print(f"    sink CPU {(sink_cpu[0.9] - sink_cpu[0.1]) * 1000 / delivered:.2f} ms/message")
    return delivered / max(1e-9, marks[0.9] - marks[0.1]), total, (cpu[0.9] - cpu[0.1]) * 1000 / delivered


async def one_run(stack: Stack, sink: Sink, store: str, run: int, opts: argparse.Namespace) -> Result:
    rate, webhooks, delivered, backlog, ingest_cpu = await ingest(stack, sink, store, run, opts.seconds,
                                                                  opts.concurrency, opts.alerts_per_webhook)
    print(f"  run {run + 1} {store:<8} ingest {rate:7.0f} alerts/s ({webhooks} webhooks), "
          f"delivered meanwhile {delivered:6.0f}/s, backlog {backlog}, relay CPU {ingest_cpu:.2f} ms/alert", flush=True)
    per_s, total, delivery_cpu = await deliver(stack, sink, store, run, opts.notifications)
    print(f"  run {run + 1} {store:<8} delivery {per_s:7.0f} notifications/s ({total}), "
          f"relay CPU {delivery_cpu:.2f} ms/notification", flush=True)
    return Result(store, run, rate, webhooks, delivered, backlog, ingest_cpu, per_s, total, delivery_cpu)


def report(results: Sequence[Result], stores: Sequence[str], opts: argparse.Namespace, machine: Machine) -> str:
    lines = [f"Throughput: ingest {opts.seconds:g} s of {opts.alerts_per_webhook}-alert webhooks x {len(RECEIVERS)} "
             f"receivers with {opts.concurrency} concurrent senders; delivery of {opts.notifications} notifications, "
             f"rate limits off; {opts.runs} run(s), medians.", machine.describe(), ""]
    rows = []
    for store in stores:
        mine = [r for r in results if r.store == store]
        rows.append((f"relay ({store})", median([r.ingest_alerts_per_s for r in mine]),
                     f"{min(r.ingest_alerts_per_s for r in mine):.0f}-{max(r.ingest_alerts_per_s for r in mine):.0f}",
                     median([r.delivered_during_ingest_per_s for r in mine]),
                     f"{median([r.ingest_cpu_ms_per_alert for r in mine]):.2f}",
                     median([r.delivery_per_s for r in mine]),
                     f"{min(r.delivery_per_s for r in mine):.0f}-{max(r.delivery_per_s for r in mine):.0f}",
                     f"{median([r.delivery_cpu_ms for r in mine]):.2f}"))
    lines.append(table(["system", "ingest alerts/s", "range", "delivered during ingest/s", "CPU ms/alert",
                        "delivery notif/s", "range", "CPU ms/notif"], rows))
    return "\n".join(lines)


async def main(opts: argparse.Namespace) -> int:
    stores = usable_stores(opts.stores, opts.require_postgres)
    machine = Machine()
    results = []
    async with cancel_on_sigterm(), Stack(opts.keep) as stack:
        sink = await start_sink(stack)
        for run in range(opts.runs):
            for store in stores if run % 2 == 0 else reversed(stores):
                results.append(await one_run(stack, sink, store, run, opts))
    machine.done()
    print("\n" + report(results, stores, opts, machine))
    save_json(opts.json, machine, "results", results)
    return 0


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=30.0, help="duration of the ingest load")
    parser.add_argument("--concurrency", type=int, default=16, help="concurrent senders during ingest")
    parser.add_argument("--notifications", type=int, default=20_000, help="outbox size for the delivery phase")
    parser.add_argument("--alerts-per-webhook", type=int, default=ALERTS_PER_WEBHOOK,
                        help="alerts in each ingest webhook (issue 24's goal is for 100)")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--stores", nargs="+", choices=STORES, default=list(STORES))
    parser.add_argument("--require-postgres", action="store_true", help="fail instead of skipping PostgreSQL")
    parser.add_argument("--json", help="also write every result to this file")
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder (logs, databases)")
    parser.add_argument("--smoke", action="store_true", help="a few seconds: checks the bench works")
    opts = parser.parse_args(argv)
    if opts.smoke:
        opts.seconds, opts.notifications, opts.runs = 1.0, 200, 1
    return opts


if __name__ == "__main__":
    raise SystemExit(asyncio.run(main(parse_args())))
