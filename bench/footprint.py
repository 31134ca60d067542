"""Footprint: time from `relay serve` to ready, RSS after 100,000 notifications, RSS and open fds across a soak.

For each store:
1. Ready: `relay serve` is started on a fresh database several times; the
   time from the exec to the first 200 from /readyz (polled every 10 ms).
2. 100k: single-alert webhooks, each routed to two Slack receivers (two
   notifications each), sent by closed-loop senders until 100,000 notifications
   were delivered to the sink; then relay's RSS (VmRSS), peak (VmHWM) and
   open file descriptors.
3. Soak: the same relay then takes a steady open-loop load (firing alerts,
   and the resolve of each a few seconds later) for 10 minutes; RSS and fds are
   sampled throughout. Growth = last sample over the first, in percent.
4. Ready again, now with the 100k-notification history in the database.

    python -m bench.footprint                         # 100k notifications, 10 min soak
    python -m bench.footprint --notifications 20000 --soak-seconds 60
    python -m bench.footprint --smoke                 # seconds: checks the bench itself works
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import aiohttp

from bench.common import (
    Machine,
    Proc,
    Sink,
    Stack,
    cancel_on_sigterm,
    median,
    open_fds,
    open_files,
    postgres_database,
    routes_yaml,
    rss_bytes,
    save_json,
    sqlite_url,
    start_relay,
    start_sink,
    table,
    usable_stores,
    webhook,
)

RECEIVERS = ("slack-a", "slack-b")
NO_RATE_LIMITS = {"RELAY_RATE_LIMITS": "false"}
STORES = ("sqlite", "postgres")
MIB = 1024 * 1024
RESOLVE_AFTER = 5  # seconds between an alert's firing and its resolve during the soak
HEADERS = {"Content-Type": "application/json"}


@dataclass
class Result:
    store: str
    ready_fresh: list[float] = field(default_factory=list)  # seconds
    ready_after: float = 0.0  # seconds, with the history of the 100k run in the database
    rss_ready: float = 0.0  # MiB
    notifications: int = 0
    fill_seconds: float = 0.0
    rss_after: float = 0.0  # MiB, after `notifications` were delivered
    peak_after: float = 0.0  # MiB (VmHWM)
    fds_after: int = 0
    soak_seconds: float = 0.0
    soak_rate: float = 0.0
    soak_rss: list[tuple[float, float]] = field(default_factory=list)  # (seconds into the soak, MiB)
    soak_fds: list[tuple[float, int]] = field(default_factory=list)  # all descriptors, sockets included
    soak_files: list[tuple[float, int]] = field(default_factory=list)  # descriptors that are not sockets

    @property
    def rss_growth(self) -> float:
        first, last = self.soak_rss[0][1], self.soak_rss[-1][1]
        return (last - first) / first * 100

    @property
    def fds_growth(self) -> int:
        return self.soak_fds[-1][1] - self.soak_fds[0][1]


def rss_mib(pid: int) -> float:
    return rss_bytes(pid) / MIB


def peak_mib(pid: int) -> float:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return float("nan")


async def database(stack: Stack, store: str, name: str) -> str:
    return sqlite_url(stack, name) if store == "sqlite" else await postgres_database(stack, name)


async def ready_times(stack: Stack, sink: Sink, store: str, runs: int) -> list[float]:
    out = []
    for n in range(runs):
        proc, _, ready = await start_relay(stack, f"ready-{store}-{n}", routes_yaml(sink, RECEIVERS),
                                           await database(stack, store, f"ready{n}"), NO_RATE_LIMITS)
        out.append(ready)
        await stack.stop(proc)
    return out


async def fill(url: str, sink: Sink, notifications: int, concurrency: int) -> float:
    """Closed-loop single-alert webhooks until `notifications` were delivered; returns the seconds it took."""
    webhooks = notifications // len(RECEIVERS)
    counter = iter(range(webhooks))
    before = await sink.count()

    async def sender(session: aiohttp.ClientSession) -> None:
        for n in counter:
            async with session.post(f"{url}/webhook", data=webhook([f"bench-f-{n}"], f"f{n}"),
                                    headers=HEADERS) as answer:
                await answer.read()
                if answer.status != 200:
                    raise RuntimeError(f"webhook answered {answer.status}")

    started = time.monotonic()
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=concurrency),
                                     timeout=aiohttp.ClientTimeout(total=60)) as session:
        await asyncio.gather(*(sender(session) for _ in range(concurrency)))
    total = webhooks * len(RECEIVERS)
    count = await sink.wait_count(before + total, timeout=max(120.0, total / 50))
    if count < before + total:
        raise RuntimeError(f"only {count - before} of {total} notifications delivered")
    await sink.arrivals()  # the sink forgets them: its own memory stays small
    return time.monotonic() - started


def alert_body(n: int, status: str) -> bytes:
    body = json.loads(webhook([f"bench-s-{n}"], f"s{n}"))
    if status == "resolved":
        body["status"] = body["alerts"][0]["status"] = "resolved"
        body["alerts"][0]["endsAt"] = "2026-11-26T08:40:12.5Z"
    return json.dumps(body).encode()


async def soak(proc: Proc, url: str, sink: Sink, seconds: float, rate: float, result: Result) -> None:
    """Open-loop load for `seconds`: each second `rate` webhooks, new alerts firing and older ones resolving."""
    samples = 20
    every = max(1.0, seconds / samples)
    errors: list[str] = []
    tasks: set[asyncio.Task[None]] = set()

    async def post(session: aiohttp.ClientSession, body: bytes) -> None:
        try:
            async with session.post(f"{url}/webhook", data=body, headers=HEADERS) as answer:
                await answer.read()
                if answer.status != 200:
                    errors.append(str(answer.status))
        except (aiohttp.ClientError, TimeoutError) as exc:
            errors.append(type(exc).__name__)

    def sample(at: float) -> None:
        result.soak_rss.append((round(at, 1), rss_mib(proc.pid)))
        result.soak_fds.append((round(at, 1), open_fds(proc.pid)))
        result.soak_files.append((round(at, 1), open_files(proc.pid)))

    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=64),
                                     timeout=aiohttp.ClientTimeout(total=30)) as session:
        started = time.monotonic()
        sample(0.0)
        next_sample = every
        sent = 0
        while (elapsed := time.monotonic() - started) < seconds:
            due = int(elapsed * rate)
            while sent < due:  # half the webhooks open an alert, half resolve the one opened RESOLVE_AFTER ago
                n = sent // 2
                status = "firing" if sent % 2 == 0 else "resolved"
                if status == "resolved":
                    n -= int(RESOLVE_AFTER * rate / 2)
                if n >= 0:
                    task = asyncio.create_task(post(session, alert_body(n, status)))
                    tasks.add(task)
                    task.add_done_callback(tasks.discard)
                sent += 1
            if elapsed >= next_sample:
                sample(elapsed)
                next_sample += every
                await sink.arrivals()
            await asyncio.sleep(0.01)
        await asyncio.gather(*tasks)
        sample(time.monotonic() - started)
    if errors:
        raise RuntimeError(f"soak: {len(errors)} webhooks failed: {sorted(set(errors))}")
    result.soak_seconds, result.soak_rate = seconds, rate


async def one_store(stack: Stack, sink: Sink, store: str, opts: argparse.Namespace) -> Result:
    result = Result(store)
    result.ready_fresh = await ready_times(stack, sink, store, opts.ready_runs)
    routes = routes_yaml(sink, RECEIVERS)
    db = await database(stack, store, "main")
    proc, url, ready = await start_relay(stack, f"footprint-{store}", routes, db, NO_RATE_LIMITS)
    result.ready_fresh.append(ready)  # a fresh start too
    result.rss_ready = rss_mib(proc.pid)
    result.fill_seconds = await fill(url, sink, opts.notifications, opts.concurrency)
    result.notifications = opts.notifications // len(RECEIVERS) * len(RECEIVERS)
    result.rss_after, result.peak_after, result.fds_after = (rss_mib(proc.pid), peak_mib(proc.pid),
                                                             open_fds(proc.pid))
    print(f"  {store}: ready in {', '.join(f'{t:.2f}' for t in result.ready_fresh)} s", flush=True)
    print(f"  {store}: {result.notifications} notifications in {result.fill_seconds:.0f} s, RSS "
          f"{result.rss_ready:.1f} -> {result.rss_after:.1f} MiB (peak {result.peak_after:.1f}), "
          f"{result.fds_after} fds", flush=True)
    await soak(proc, url, sink, opts.soak_seconds, opts.soak_rate, result)
    print(f"  {store}: soak {opts.soak_seconds:.0f} s at {opts.soak_rate:g}/s, RSS "
          f"{result.soak_rss[0][1]:.1f} -> {result.soak_rss[-1][1]:.1f} MiB ({result.rss_growth:+.1f}%), fds "
          f"{result.soak_fds[0][1]} -> {result.soak_fds[-1][1]} (not sockets: {result.soak_files[0][1]} -> "
          f"{result.soak_files[-1][1]})", flush=True)
    await stack.stop(proc)
    again, _, result.ready_after = await start_relay(stack, f"restart-{store}", routes, db, NO_RATE_LIMITS)
    await stack.stop(again)
    print(f"  {store}: ready with that history in the database: {result.ready_after:.2f} s", flush=True)
    return result


def report(results: Sequence[Result], opts: argparse.Namespace, machine: Machine) -> str:
    lines = [f"Footprint: ready time (median of {opts.ready_runs + 1} fresh starts; then once with the history); "
             f"RSS after {opts.notifications} notifications; soak {opts.soak_seconds:g} s at {opts.soak_rate:g} "
             "webhooks/s.",
             machine.describe(), ""]
    rows = []
    for r in results:
        rss = [m for _, m in r.soak_rss]
        fds = [n for _, n in r.soak_fds]
        files = [n for _, n in r.soak_files]
        rows.append((f"relay ({r.store})", f"{median(r.ready_fresh):.2f}", f"{r.ready_after:.2f}",
                     f"{r.rss_ready:.1f}", f"{r.rss_after:.1f}", f"{r.peak_after:.1f}", r.fds_after,
                     f"{rss[0]:.1f}-{max(rss):.1f}", f"{r.rss_growth:+.1f}%", f"{min(fds)}-{max(fds)}",
                     f"{r.fds_growth:+d}", f"{min(files)}-{max(files)}"))
    lines.append(table(["system", "ready s", "ready (history) s", "RSS ready MiB", "RSS after MiB", "peak MiB",
                        "fds after", "soak RSS MiB", "RSS growth", "soak fds", "fd growth", "non-socket fds"], rows))
    return "\n".join(lines)


async def main(opts: argparse.Namespace) -> int:
    stores = usable_stores(opts.stores, opts.require_postgres)
    machine = Machine()
    results = []
    async with cancel_on_sigterm(), Stack(opts.keep) as stack:
        sink = await start_sink(stack)
        for store in stores:
            results.append(await one_store(stack, sink, store, opts))
    machine.done()
    print("\n" + report(results, opts, machine))
    save_json(opts.json, machine, "results", results)
    return 0


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--notifications", type=int, default=100_000)
    parser.add_argument("--concurrency", type=int, default=16, help="concurrent senders while filling")
    parser.add_argument("--soak-seconds", type=float, default=600.0)
    parser.add_argument("--soak-rate", type=float, default=50.0, help="webhooks per second during the soak")
    parser.add_argument("--ready-runs", type=int, default=4, help="fresh starts besides the one that is measured")
    parser.add_argument("--stores", nargs="+", choices=STORES, default=list(STORES))
    parser.add_argument("--require-postgres", action="store_true", help="fail instead of skipping PostgreSQL")
    parser.add_argument("--json", help="also write the results to this file")
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder (logs, databases)")
    parser.add_argument("--smoke", action="store_true", help="a few seconds: checks the bench works")
    opts = parser.parse_args(argv)
    if opts.smoke:
        opts.notifications, opts.soak_seconds, opts.soak_rate, opts.ready_runs = 200, 2.0, 20.0, 0
    return opts


if __name__ == "__main__":
    raise SystemExit(asyncio.run(main(parse_args())))
