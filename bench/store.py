"""The outbox alone: what one enqueue costs relay, without HTTP, rendering or delivery in the way.

Each enqueue is what a single-alert webhook asks of the store on relay's hot
path: dedup, the notification, and the handoff lease, durably committed. For
each store, in this process (no relay server, no sink):

- one at a time: latency per enqueue (p50, p99, max) and this process's CPU time per
  enqueue (the SQLite writer thread included; PostgreSQL's own server not);
- concurrent: enqueues/s with `--concurrency` enqueues in flight at once.

Use it to compare store changes (alternate runs of two checkouts); the
end-to-end effect is bench.latency's and bench.throughput's to show.

    python -m bench.store                        # 3,000 enqueues each way, 3 runs, SQLite and PostgreSQL
    python -m bench.store --stores postgres --runs 5
    python -m bench.store --smoke
"""

from __future__ import annotations

import argparse
import asyncio
import resource
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta

from bench.common import (
    Machine,
    Stack,
    cancel_on_sigterm,
    median,
    pct,
    postgres_available,
    postgres_database,
    sqlite_url,
    table,
    webhook_alert,
)
from relay.alerts import WebhookMessage
from relay.store import open_store
from relay.store.base import Candidate, Handoff, Store

STORES = {"sqlite": "sqlite", "postgres": "postgresql"}
RECEIVER = "bench"


@dataclass(frozen=True)
class Result:
    store: str
    p50_ms: float
    p99_ms: float
    max_ms: float
    cpu_ms: float
    concurrent_per_s: float


def candidate(i: int, run: int) -> Candidate:
    alert = webhook_alert(f"store-{run}-{i}")
    group = WebhookMessage.model_validate({
        "version": "4", "groupKey": f'{{}}:{{alertname="{alert["labels"]["alertname"]}"}}', "status": "firing",
        "receiver": "relay", "groupLabels": {"alertname": alert["labels"]["alertname"]},
        "commonLabels": alert["labels"], "commonAnnotations": alert["annotations"], "externalURL": "",
        "truncatedAlerts": 0, "alerts": [alert]})
    return Candidate(RECEIVER, "slack", group, (timedelta(hours=4),), timedelta(hours=24))


def offer() -> Handoff:
    """What the dispatcher offers with each webhook: one slot for its receiver."""
    return Handoff("bench-dispatcher", 60.0, 1, {RECEIVER: 1})


def cpu_now() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def measure(store: Store, name: str, run: int, count: int, concurrency: int) -> Result:
    batch = [candidate(i, run) for i in range(2 * count + 100)]
    for cand in batch[:100]:  # warm: connections, statement caches, the first pages
        await store.enqueue([cand], time.time(), offer())
    latencies = []
    cpu_before = cpu_now()
    for cand in batch[100:100 + count]:
        started = time.perf_counter()
        await store.enqueue([cand], time.time(), offer())
        latencies.append(time.perf_counter() - started)
    cpu = (cpu_now() - cpu_before) / count
    rest = iter(batch[100 + count:])

    async def enqueuer() -> None:
        for cand in rest:
            await store.enqueue([cand], time.time(), offer())

    started = time.perf_counter()
    await asyncio.gather(*(enqueuer() for _ in range(concurrency)))
    rate = count / (time.perf_counter() - started)
    return Result(name, pct(latencies, 50) * 1000, pct(latencies, 99) * 1000, max(latencies) * 1000,
                  cpu * 1000, rate)


async def main(opts: argparse.Namespace) -> int:
    machine = Machine()
    stores = list(opts.stores)
    if "postgres" in stores and (why := postgres_available()):
        if opts.require_postgres:
            print(f"PostgreSQL required: {why}", file=sys.stderr)
            return 1
        print(f"skipping PostgreSQL: {why}", file=sys.stderr)
        stores.remove("postgres")
    results: list[Result] = []
    async with cancel_on_sigterm(), Stack(keep=opts.keep) as stack:
        for run in range(1, opts.runs + 1):
            for name in stores:
                url = (sqlite_url(stack, f"store-{run}") if name == "sqlite"
                       else await postgres_database(stack, f"store_{run}"))
                store = open_store(url)
                await store.open()
                try:
                    result = await measure(store, name, run, opts.enqueues, opts.concurrency)
                finally:
                    await store.close()
                results.append(result)
                print(f"  run {run} {name:9s} p50 {result.p50_ms:6.3f} p99 {result.p99_ms:6.3f} "
                      f"max {result.max_ms:6.1f} ms  "
                      f"CPU {result.cpu_ms:.3f} ms/enqueue  {result.concurrent_per_s:.0f} enqueues/s", flush=True)
    machine.done()
    rows = []
    for name in stores:
        mine = [r for r in results if r.store == name]
        rates = [r.concurrent_per_s for r in mine]
        rows.append([name, len(mine), f"{median([r.p50_ms for r in mine]):.3f}",
                     f"{median([r.p99_ms for r in mine]):.3f}", f"{median([r.max_ms for r in mine]):.1f}",
                     f"{median([r.cpu_ms for r in mine]):.3f}",
                     f"{median(rates):.0f}", f"{min(rates):.0f}-{max(rates):.0f}"])
    print(f"\nThe outbox alone: single-alert enqueues with a handoff, {opts.enqueues} one at a time, then "
          f"{opts.enqueues} with {opts.concurrency} in flight; {opts.runs} run(s), medians.")
    print(machine.describe() + "\n")
    print(table(["store", "runs", "p50 ms", "p99 ms", "max ms", "CPU ms/enqueue", "concurrent enqueues/s", "range"],
                rows))
    return 0


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--enqueues", type=int, default=3000, help="enqueues one at a time, and again concurrently")
    parser.add_argument("--concurrency", type=int, default=16, help="enqueues in flight in the concurrent part")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--stores", nargs="+", choices=list(STORES), default=list(STORES))
    parser.add_argument("--require-postgres", action="store_true", help="fail instead of skipping PostgreSQL")
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder (databases)")
    parser.add_argument("--smoke", action="store_true", help="a few seconds: checks the bench works")
    opts = parser.parse_args(argv)
    if opts.smoke:
        opts.enqueues, opts.runs = 200, 1
    return opts


if __name__ == "__main__":
    raise SystemExit(asyncio.run(main(parse_args())))
