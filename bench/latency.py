"""Added latency: a webhook leaves the load generator → the provider test server receives the message.

Side by side in one run, against one sink process (bench/sink.py, the suite's
Slack fake plus a route for Alertmanager's webhook receiver):

- relay on SQLite and, when relay has a PostgreSQL store and a server is on
  127.0.0.1:5432, relay on PostgreSQL (a fresh database, dropped afterwards);
- the bare forwarder (bench/forwarder.py: forwards without storing, the floor);
- Alertmanager itself (Debian's prometheus-alertmanager, `group_wait: 0s`,
  every alert its own group), alerts posted to /api/v2/alerts and delivered by
  its webhook receiver to the sink.

Single-alert webhooks at fixed rates (open loop: sends do not wait for answers).
Each alert is named by a unique id (its alertname), so its arrival is matched to
its send exactly. Each run starts every system afresh; systems take turns in a
rotating order; the table shows the median over runs of each percentile.

    python -m bench.latency                       # 50, 200, 500/s, 30 s each, 3 runs
    python -m bench.latency --rates 200 --seconds 10 --runs 1
    python -m bench.latency --smoke               # seconds: checks the bench itself works
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import aiohttp

from bench.common import (
    ALERTMANAGER,
    Machine,
    Proc,
    Sink,
    Stack,
    api_alert,
    cancel_on_sigterm,
    cpu_seconds,
    free_port,
    median,
    pct,
    postgres_available,
    postgres_database,
    routes_yaml,
    save_json,
    sqlite_url,
    start_relay,
    start_sink,
    table,
    wait_ready,
    webhook,
)

RELAY_SQLITE, RELAY_POSTGRES, FORWARDER, AM = "relay (sqlite)", "relay (postgres)", "bare forwarder", "alertmanager"
SYSTEMS = {"sqlite": RELAY_SQLITE, "postgres": RELAY_POSTGRES, "forwarder": FORWARDER, "alertmanager": AM}
WARMUP = 20
MIN_DRAIN = 30.0  # after a load, how long a system may take to deliver the rest before it counts as not keeping up

AM_CONFIG = """route:
  receiver: sink
  group_by: ['...']
  group_wait: 0s
  group_interval: 1h
  repeat_interval: 24h
receivers:
  - name: sink
    webhook_configs:
      - url: {url}
        send_resolved: false
"""


@dataclass
class Target:
    """Where a system takes alerts, and how one alert is written for it."""

    name: str
    url: str
    body: Callable[[str], bytes]
    proc: Proc | None = None


@dataclass
class Sample:
    system: str
    rate: int
    run: int
    sent: int
    received: int
    p50: float  # milliseconds
    p95: float
    p99: float
    mean: float
    max_lag: float  # how far the load generator fell behind its schedule (ms)
    failed: int = 0  # sends refused or timed out (the client waits 30 s)
    kept_up: bool = True  # everything arrived within the drain time after the load
    cpu_ms: float = float("nan")  # the system's CPU time (all threads) per alert sent, its backlog included


def relay_body(bench_id: str) -> bytes:
    return webhook([bench_id], group=bench_id)


async def start_alertmanager(stack: Stack, sink: Sink) -> Target:
    if ALERTMANAGER is None:
        raise RuntimeError("prometheus-alertmanager is not installed (apt-get install prometheus-alertmanager)")
    config = stack.tmp / "alertmanager.yml"
    config.write_text(AM_CONFIG.format(url=sink.alertmanager_url))
    port = free_port()
    proc = await stack.spawn("alertmanager", [
        ALERTMANAGER, f"--config.file={config}", f"--storage.path={stack.tmp / 'am-data'}",
        f"--web.listen-address=127.0.0.1:{port}", "--cluster.listen-address=", "--log.level=warn"])
    url = f"http://127.0.0.1:{port}"
    await wait_ready(proc, f"{url}/-/ready")
    return Target(AM, f"{url}/api/v2/alerts", api_alert, proc)


async def start_forwarder(stack: Stack, sink: Sink) -> Target:
    port = free_port()
    proc = await stack.spawn("forwarder", [sys.executable, "-m", "uvicorn", "bench.forwarder:app", "--port",
                                           str(port), "--log-level", "warning"], {"FORWARD_TO": sink.slack_url()})
    url = f"http://127.0.0.1:{port}"
    await wait_ready(proc, f"{url}/")
    return Target(FORWARDER, f"{url}/webhook", relay_body, proc)


async def start_target(stack: Stack, sink: Sink, system: str) -> Target:
    routes = routes_yaml(sink, rate_limit=True)
    if system == FORWARDER:
        return await start_forwarder(stack, sink)
    if system == AM:
        return await start_alertmanager(stack, sink)
    if system == RELAY_SQLITE:
        database = sqlite_url(stack, "relay")
    else:
        database = await postgres_database(stack, "latency")
    proc, url, _ = await start_relay(stack, f"relay-{system.split('(')[1].rstrip(')')}", routes, database)
    return Target(system, f"{url}/webhook", relay_body, proc)


async def start_targets(stack: Stack, sink: Sink, systems: Sequence[str]) -> list[Target]:
    """Start every system at once (they are idle until their turn); in the order given."""
    return list(await asyncio.gather(*(start_target(stack, sink, system) for system in systems)))


async def drive(session: aiohttp.ClientSession, target: Target, ids: Sequence[str], rate: float
                ) -> tuple[dict[str, float], float, int]:
    """Send one alert per id at `rate`/s, open loop; return each id's send time, the worst lag (s), failures."""
    bodies = [(i, target.body(i)) for i in ids]  # built before the clock starts
    sent: dict[str, float] = {}
    failures: list[str] = []
    headers = {"Content-Type": "application/json"}

    async def post(bench_id: str, body: bytes) -> None:
        sent[bench_id] = time.monotonic()
        try:
            async with session.post(target.url, data=body, headers=headers) as answer:
                await answer.read()
                if answer.status != 200:
                    failures.append(f"{answer.status}")
        except (aiohttp.ClientError, TimeoutError) as exc:
            failures.append(type(exc).__name__)

    tasks = []
    lag = 0.0
    start = time.monotonic() + 0.01
    for n, (bench_id, body) in enumerate(bodies):
        due = start + n / rate
        now = time.monotonic()
        if due > now:
            await asyncio.sleep(due - now)
        else:
            lag = max(lag, now - due)
        tasks.append(asyncio.create_task(post(bench_id, body)))
    await asyncio.gather(*tasks)
    if failures:
        print(f"  {target.name}: {len(failures)} of {len(ids)} sends failed: {sorted(set(failures))}", flush=True)
    return sent, lag, len(failures)


async def measure(session: aiohttp.ClientSession, sink: Sink, target: Target, rate: int, seconds: float,
                  tag: str) -> tuple[list[float], int, float, int, bool]:
    """Latencies (ms) of one timed load after a short warm-up; sent, worst lag, failed sends, whether it kept up."""
    expected = await sink.count()
    for ids in ([f"bench-w{tag}-{n}" for n in range(WARMUP)], [f"bench-{tag}-{n}" for n in range(int(rate * seconds))]):
        await sink.arrivals()  # forget earlier arrivals
        sent, lag, failed = await drive(session, target, ids, rate)
        expected += len(ids) - failed
        kept_up = await sink.wait_count(expected, max(MIN_DRAIN, seconds)) >= expected
        arrived = await sink.arrivals()
        if not kept_up:
            break
    latencies = [(arrived[i] - t) * 1000 for i, t in sent.items() if i in arrived]
    return latencies, len(sent), lag * 1000, failed, kept_up


async def one_run(run: int, rates: Sequence[int], seconds: float, systems: Sequence[str], keep: bool
                  ) -> list[Sample]:
    samples = []
    async with Stack(keep) as stack:
        sink = await start_sink(stack)
        targets = await start_targets(stack, sink, systems)
        connector = aiohttp.TCPConnector(limit=256)
        async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=30)) as session:
            for rate in rates:
                turn = run % len(targets)
                for target in targets[turn:] + targets[:turn]:
                    tag = f"r{run}s{systems.index(target.name)}x{rate}"
                    cpu_before = cpu_seconds(target.proc.pid) if target.proc else float("nan")
                    lat, sent, lag, failed, kept_up = await measure(session, sink, target, rate, seconds, tag)
                    cpu_ms = ((cpu_seconds(target.proc.pid) - cpu_before) * 1000 / max(1, sent + WARMUP)
                              if target.proc else float("nan"))
                    mean = sum(lat) / len(lat) if lat else float("nan")
                    samples.append(Sample(target.name, rate, run, sent, len(lat), pct(lat, 50), pct(lat, 95),
                                          pct(lat, 99), mean, lag, failed, kept_up, cpu_ms))
                    print(f"  run {run + 1} {target.name:<17} {rate:>4}/s  n={len(lat):<6} p50 {pct(lat, 50):6.1f} "
                          f"p99 {pct(lat, 99):7.1f} ms  late {sent - failed - len(lat)}  failed {failed}  "
                          f"CPU {cpu_ms:.2f} ms/alert  "
                          f"lag {lag:.0f} ms{'' if kept_up else '  DID NOT KEEP UP: stopped for this run'}",
                          flush=True)
                    if not kept_up and target.proc is not None:  # its backlog must not load the others' turns
                        await stack.stop(target.proc)
                        targets.remove(target)
    return samples


def report(samples: Sequence[Sample], systems: Sequence[str], rates: Sequence[int], seconds: float, runs: int,
           machine: Machine) -> str:
    lines = [f"Added latency, webhook sent -> message at the provider server; single-alert webhooks, {seconds:g} s "
             f"per load, {runs} run(s); medians over runs.",
             "Late: not at the sink within max(30 s, load time) after the load; a system that did not keep up is "
             "stopped for the rest of that run.", machine.describe(), ""]
    rows = []
    for rate in rates:
        for system in systems:
            mine = [s for s in samples if s.system == system and s.rate == rate]
            if not mine:
                rows.append((system, rate, f"0/{runs}", *["-"] * 10))  # stopped after missing a lower rate
                continue
            rows.append((system, rate, f"{sum(s.kept_up for s in mine)}/{runs}", sum(s.received for s in mine),
                         sum(s.sent - s.failed - s.received for s in mine), sum(s.failed for s in mine),
                         median([s.p50 for s in mine]), median([s.p95 for s in mine]), median([s.p99 for s in mine]),
                         f"{min(s.p99 for s in mine):.1f}-{max(s.p99 for s in mine):.1f}",
                         median([s.mean for s in mine]), max(s.max_lag for s in mine),
                         f"{median([s.cpu_ms for s in mine]):.2f}"))
    lines.append(table(["system", "rate/s", "kept up", "n", "late", "failed", "p50 ms", "p95 ms", "p99 ms",
                        "p99 range", "mean ms", "gen lag ms", "CPU ms/alert"], rows))
    ratios = []
    for rate in rates:
        for num, den in ((RELAY_SQLITE, AM), (RELAY_SQLITE, FORWARDER), (RELAY_POSTGRES, RELAY_SQLITE),
                         (RELAY_POSTGRES, AM)):
            per_run = []
            for run in range(runs):
                a = [s.p99 for s in samples if s.system == num and s.rate == rate and s.run == run]
                b = [s.p99 for s in samples if s.system == den and s.rate == rate and s.run == run]
                if a and b and b[0] > 0:
                    per_run.append(a[0] / b[0])
            if per_run:
                ratios.append((f"{num} / {den}", rate, median(per_run), f"{min(per_run):.2f}-{max(per_run):.2f}"))
    if ratios:
        lines += ["", "p99 ratios (median of the per-run ratios):",
                  table(["ratio", "rate/s", "p99 ratio", "range"], [(a, b, f"{c:.2f}", d) for a, b, c, d in ratios])]
    return "\n".join(lines)


async def main(opts: argparse.Namespace) -> int:
    systems = [SYSTEMS[s] for s in opts.systems]
    if RELAY_POSTGRES in systems and (why := postgres_available()):
        if opts.require_postgres:
            raise SystemExit(f"bench: {why}")
        print(f"skipping relay (postgres): {why}")
        systems.remove(RELAY_POSTGRES)
    machine = Machine()
    samples: list[Sample] = []
    async with cancel_on_sigterm():
        for run in range(opts.runs):
            samples += await one_run(run, opts.rates, opts.seconds, systems, opts.keep)
    machine.done()
    text = report(samples, systems, opts.rates, opts.seconds, opts.runs, machine)
    print("\n" + text)
    save_json(opts.json, machine, "samples", samples)
    return 0


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rates", type=int, nargs="+", default=[50, 200, 500], help="webhooks per second")
    parser.add_argument("--seconds", type=float, default=30.0, help="duration of each load")
    parser.add_argument("--runs", type=int, default=3, help="runs, each with every system started afresh")
    parser.add_argument("--systems", nargs="+", choices=list(SYSTEMS), default=list(SYSTEMS))
    parser.add_argument("--require-postgres", action="store_true", help="fail instead of skipping PostgreSQL")
    parser.add_argument("--json", help="also write every sample to this file")
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder (logs, databases)")
    parser.add_argument("--smoke", action="store_true", help="one short run at 20/s: checks the bench works")
    opts = parser.parse_args(argv)
    if opts.smoke:
        opts.rates, opts.seconds, opts.runs = [20], 1.0, 1
    return opts


if __name__ == "__main__":
    raise SystemExit(asyncio.run(main(parse_args())))
