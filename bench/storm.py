"""Alert storms: the critical ahead of a backlog of warnings, every storm alert named, ingest during a storm.

Against one sink process (bench/sink.py) with Slack's own limit on (the
suite's Slack fake, tests/fakes/slack.py: about 1 message/s per incoming
webhook with a burst of 3, 429 + Retry-After past it) and PagerDuty's Events
API beside it; relay on SQLite and on PostgreSQL (a fresh database, dropped
afterwards), each run with relay and the sink started afresh, relay's
settings as a new user has them (default rate limits and storm settings;
`--no-fold` turns folding off, so the whole backlog waits its turn; `--window`
sets the receiver's storm window).

1. Storm: N warnings, each its own Alertmanager group (its own webhook, its
   own lane), posted as fast as relay answers them (8 at a time), then one
   critical (routed to Slack and PagerDuty). Measured: from the critical's
   webhook to its message on Slack and its event at PagerDuty; relay's CPU
   while the backlog waits, as % of one core, over a quiet window after the
   critical arrived (no request to relay in it; relay runs in its own
   process, read from /proc); Slack messages accepted and 429s answered; and
   from the first warning's webhook until every storm alert is named, in a
   Slack message or in the relay history a message links to (a summary's
   `/api/v1/notifications?…` link; its alerts count as named when that
   message arrived). Bounded by `--deadline`: what is not named by then is
   reported as such.
2. Ingest during the storm: with that backlog still waiting and relay
   sending, 10,000 alerts in 100-alert webhooks (each its own group), 4
   senders: webhook answer times p50/p99 and alerts/s accepted.

Targets (issue 14): critical on Slack <= 5 s behind 1,000 waiting warnings;
every storm alert named within 60 s; <= 5 Slack 429s; CPU while waiting
<= 5% of one core.

    python -m bench.storm                          # 1,000 warnings, both stores, 1 run
    python -m bench.storm --warnings 200 --stores sqlite --runs 2
    python -m bench.storm --smoke                  # seconds: checks the bench itself works
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field

import aiohttp

from bench.common import (
    Machine,
    Sink,
    Stack,
    cancel_on_sigterm,
    cpu_seconds,
    free_port,
    median,
    pct,
    postgres_database,
    save_json,
    sqlite_url,
    start_relay,
    start_sink,
    table,
    usable_stores,
    webhook,
)
from bench.sink import BENCH_ID

STORES = ("sqlite", "postgres")
SLACK_LIMIT = (1.0, 3)  # tests/fakes/slack.SlackLimit's defaults: Slack's ~1 message/s per channel, a short burst
STORM_SENDERS = 8
POLL = 0.2  # how often the bench asks the sink what arrived (the sink is its own process: relay is not disturbed)
HISTORY_POLL = 1.0  # how often relay's history is read for new summary links, after the CPU window
HISTORY_LIMIT = 1000  # the most notifications relay's history API answers at once
ROUTES = """receivers:
  - name: slack
    slack:
      webhook_url: {slack}
{storm}  - name: pagerduty
    pagerduty:
      routing_key: benchstormroutingkey0000000000000
      url: {pagerduty}
routes:
  - matchers: ['severity="critical"']
    receivers: [slack, pagerduty]
default_receivers: [slack]
"""


@dataclass
class Seen:
    """What the sink reported so far: first arrival (monotonic) of each id on Slack and at PagerDuty, history links."""

    slack: dict[str, float] = field(default_factory=dict)
    pagerduty: dict[str, float] = field(default_factory=dict)
    links: dict[str, float] = field(default_factory=dict)
    in_history: dict[str, float] = field(default_factory=dict)  # id -> arrival of the message linking its history
    read_links: set[str] = field(default_factory=set)

    async def update(self, sink: Sink) -> None:
        async with sink.session.get(f"{sink.url}/-/arrivals") as answer:
            data = await answer.json()
        for key, pairs in (("slack", data["arrivals"]), ("pagerduty", data["pagerduty"]), ("links", data["links"])):
            mine = getattr(self, key)
            for name, at in pairs:
                mine.setdefault(name, at)

    def named_at(self, bench_id: str) -> float | None:
        times = [t for t in (self.slack.get(bench_id), self.in_history.get(bench_id)) if t is not None]
        return min(times) if times else None


@dataclass
class Result:
    store: str
    run: int
    warnings: int
    storm_post_s: float  # posting the N warnings, every one answered 200
    waiting_at_critical: int  # storm alerts not yet on Slack when the critical's webhook was sent
    critical_slack_s: float  # the critical's webhook sent -> its message on Slack (nan: not by the deadline)
    critical_pagerduty_s: float
    cpu_wait_pct: float  # relay's CPU over the quiet window, % of one core
    cpu_window_s: float
    sent_in_window: int  # Slack messages accepted during that window
    messages: int  # Slack messages accepted in phase 1
    rate_limited: int  # 429s Slack answered in phase 1
    named_60s: int  # storm alerts named within 60 s of the first warning's webhook
    named: int  # ... by the deadline
    all_named_s: float  # first warning's webhook -> the last storm alert named (nan: not by the deadline)
    deadline_s: float
    named_in_messages: int = 0  # ... of them in a Slack message's own text (the rest only in linked history)
    history_links: int = 0  # history links that messages carried
    ingest_alerts_per_s: float = float("nan")
    ingest_p50_ms: float = float("nan")
    ingest_p99_ms: float = float("nan")
    ingest_failed: int = 0
    waiting_at_ingest: int = 0


async def post_all(session: aiohttp.ClientSession, url: str, bodies: Sequence[bytes], senders: int
                   ) -> tuple[list[float], list[str], float]:
    """Post every body, `senders` at a time (closed loop); each answer time (ms), the failures, seconds in all."""
    latencies: list[float] = []
    failures: list[str] = []
    queue = iter(bodies)
    headers = {"Content-Type": "application/json"}

    async def sender() -> None:
        for body in queue:
            started = time.monotonic()
            try:
                async with session.post(url, data=body, headers=headers) as answer:
                    await answer.read()
                    if answer.status != 200:
                        failures.append(str(answer.status))
                        continue
            except (aiohttp.ClientError, TimeoutError) as exc:
                failures.append(type(exc).__name__)
                continue
            latencies.append((time.monotonic() - started) * 1000)

    started = time.monotonic()
    await asyncio.gather(*(sender() for _ in range(senders)))
    return latencies, failures, time.monotonic() - started


async def read_history(session: aiohttp.ClientSession, seen: Seen) -> None:
    """Read each new history link relay's messages carried; its alerts are named from that message's arrival."""
    for link, at in list(seen.links.items()):
        if link in seen.read_links:
            continue
        url = link if "limit=" in link else f"{link}&limit={HISTORY_LIMIT}"
        async with session.get(url) as answer:
            if answer.status != 200:
                continue  # not readable yet (or not relay's): tried again at the next poll
            rows = (await answer.json())["notifications"]
        if len(rows) >= HISTORY_LIMIT:
            print(f"  warning: {link} holds {HISTORY_LIMIT} notifications or more; only the newest "
                  f"{HISTORY_LIMIT} are read (the history API's limit), so 'named' may count too few", flush=True)
        seen.read_links.add(link)
        for bench_id in BENCH_ID.findall(json.dumps(rows)):
            seen.in_history.setdefault(bench_id, at)


async def wait_until(condition: Callable[[], bool], deadline: float, step: Callable[[], Awaitable[None]]) -> None:
    """Poll `step()` until `condition()` holds or the deadline passes."""
    while not condition() and time.monotonic() < deadline:
        await step()
        await asyncio.sleep(POLL)


async def sink_counts(sink: Sink) -> dict[str, int]:
    async with sink.session.get(f"{sink.url}/-/count") as answer:
        return dict(await answer.json())


async def one_run(store: str, run: int, opts: argparse.Namespace, keep: bool) -> Result:
    async with Stack(keep) as stack:
        sink = await start_sink(stack, SLACK_LIMIT)
        database = sqlite_url(stack, "storm") if store == "sqlite" else await postgres_database(stack, f"storm{run}")
        port = free_port()
        storm = ("    storm: {enabled: false}\n" if opts.no_fold else
                 f"    storm: {{window: {opts.window:g}s}}\n" if opts.window else "")
        routes = ROUTES.format(slack=sink.slack_url("storm"), pagerduty=sink.pagerduty_url, storm=storm)
        proc, url, _ = await start_relay(stack, f"storm-{store}-{run}", routes, database,
                                         {"RELAY_EXTERNAL_URL": f"http://127.0.0.1:{port}"}, port=port)
        storm_ids = [f"bench-s{run}-{n}" for n in range(opts.warnings)]
        critical = f"bench-crit{run}-0"
        seen = Seen()
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=64),
                                         timeout=aiohttp.ClientTimeout(total=60)) as session:
            # 1. the storm, then the critical
            bodies = [webhook([i], i) for i in storm_ids]  # each warning its own group
            storm_started = time.monotonic()
            _, failures, post_s = await post_all(session, f"{url}/webhook", bodies, STORM_SENDERS)
            if failures:
                raise RuntimeError(f"storm: {len(failures)} webhooks refused: {sorted(set(failures))}")
            await seen.update(sink)
            waiting = sum(1 for i in storm_ids if i not in seen.slack)
            critical_sent = time.monotonic()
            _, failures, _ = await post_all(session, f"{url}/webhook",
                                            [webhook([critical], critical, severity="critical")], 1)
            if failures:
                raise RuntimeError(f"critical refused: {failures}")
            deadline = storm_started + opts.deadline
            await wait_until(lambda: critical in seen.slack and critical in seen.pagerduty, deadline,
                             lambda: seen.update(sink))
            # the backlog waits: relay's CPU over a window in which nobody asks relay anything
            window_start, cpu_start = time.monotonic(), cpu_seconds(proc.pid)
            count_start = (await sink_counts(sink))["count"]
            window_end = min(deadline, window_start + opts.cpu_window)
            await wait_until(lambda: False, window_end, lambda: seen.update(sink))
            cpu_window = time.monotonic() - window_start
            cpu_pct = (cpu_seconds(proc.pid) - cpu_start) * 100 / max(1e-9, cpu_window)
            sent_in_window = (await sink_counts(sink))["count"] - count_start

            # until every storm alert is named, or the deadline
            history_read = [0.0]

            async def step() -> None:
                await seen.update(sink)
                if time.monotonic() - history_read[0] >= HISTORY_POLL:
                    history_read[0] = time.monotonic()
                    await read_history(session, seen)

            await wait_until(lambda: all(seen.named_at(i) is not None for i in storm_ids), deadline, step)
            await step()
            counts = await sink_counts(sink)
            named = [t for t in (seen.named_at(i) for i in storm_ids) if t is not None]
            in_messages = sum(1 for i in storm_ids if i in seen.slack)
            result = Result(
                store, run, opts.warnings, post_s, waiting,
                seen.slack.get(critical, float("nan")) - critical_sent,
                seen.pagerduty.get(critical, float("nan")) - critical_sent,
                cpu_pct, cpu_window, sent_in_window, counts["count"], counts["rate_limited"],
                sum(1 for t in named if t - storm_started <= 60.0), len(named),
                max(named) - storm_started if len(named) == len(storm_ids) else float("nan"), opts.deadline,
                in_messages, len(seen.links))
            print(f"  run {run + 1} {store:<8} {opts.warnings} warnings posted in {post_s:.2f} s, {waiting} waiting; "
                  f"critical on Slack {result.critical_slack_s:.2f} s, PagerDuty {result.critical_pagerduty_s:.2f} s; "
                  f"CPU waiting {cpu_pct:.1f}% ({sent_in_window} sent in {cpu_window:.0f} s); "
                  f"{counts['count']} messages, {counts['rate_limited']} 429s; named {result.named_60s} in 60 s, "
                  f"{len(named)}/{opts.warnings} by {opts.deadline:g} s ({in_messages} in a message's text, the rest "
                  f"in the history behind {len(seen.links)} link(s))", flush=True)

            # 2. ingest while the backlog is delivered
            await seen.update(sink)
            result.waiting_at_ingest = sum(1 for i in storm_ids if seen.named_at(i) is None)
            per = opts.per_webhook
            batches = [[f"bench-i{run}-{n + k}" for k in range(per)] for n in range(0, opts.ingest_alerts, per)]
            bodies = [webhook(ids, f"i{run}-{n}") for n, ids in enumerate(batches)]
            latencies, failures, ingest_s = await post_all(session, f"{url}/webhook", bodies, opts.ingest_senders)
            result.ingest_alerts_per_s = len(latencies) * per / max(1e-9, ingest_s)
            result.ingest_p50_ms, result.ingest_p99_ms = pct(latencies, 50), pct(latencies, 99)
            result.ingest_failed = len(failures)
            print(f"  run {run + 1} {store:<8} ingest {result.ingest_alerts_per_s:.0f} alerts/s in {per}-alert "
                  f"webhooks, p50 {result.ingest_p50_ms:.1f} ms, p99 {result.ingest_p99_ms:.1f} ms, "
                  f"{len(failures)} refused, {result.waiting_at_ingest} storm alerts still waiting", flush=True)
    return result


def report(results: Sequence[Result], stores: Sequence[str], opts: argparse.Namespace, machine: Machine) -> str:
    lines = [f"Storm: {opts.warnings} warnings (each its own group) then one critical, "
             f"{'folding off, ' if opts.no_fold else f'storm window {opts.window:g} s, ' if opts.window else ''}"
             "Slack limited to "
             f"{SLACK_LIMIT[0]:g}/s burst {SLACK_LIMIT[1]}; ingest {opts.ingest_alerts} alerts in {opts.per_webhook}-"
             f"alert webhooks during it; {opts.runs} run(s), medians; deadline {opts.deadline:g} s.",
             machine.describe(), ""]
    rows = []
    for store in stores:
        mine = [r for r in results if r.store == store]
        rows.append((f"relay ({store})", median([r.waiting_at_critical for r in mine]),
                     median([r.critical_slack_s for r in mine]), median([r.critical_pagerduty_s for r in mine]),
                     f"{median([r.cpu_wait_pct for r in mine]):.1f}", median([r.messages for r in mine]),
                     max(r.rate_limited for r in mine), f"{median([r.named_60s for r in mine]):.0f}/{opts.warnings}",
                     median([r.all_named_s for r in mine]), median([r.ingest_alerts_per_s for r in mine]),
                     median([r.ingest_p50_ms for r in mine]), median([r.ingest_p99_ms for r in mine])))
    lines.append(table(["system", "waiting", "critical->Slack s", "critical->PD s", "CPU waiting %", "messages",
                        "429s (max)", "named in 60 s", "all named s", "ingest alerts/s", "webhook p50 ms",
                        "p99 ms"], rows))
    lines += ["", "Targets: critical on Slack <= 5 s behind 1,000 waiting warnings; every storm alert named within "
              "60 s; <= 5 Slack 429s; CPU while waiting <= 5% of one core ('-': not reached by the deadline)."]
    return "\n".join(lines)


async def main(opts: argparse.Namespace) -> int:
    stores = usable_stores(opts.stores, opts.require_postgres)
    machine = Machine()
    results = []
    async with cancel_on_sigterm():
        for run in range(opts.runs):
            for store in stores if run % 2 == 0 else reversed(stores):
                results.append(await one_run(store, run, opts, opts.keep))
    machine.done()
    print("\n" + report(results, stores, opts, machine))
    save_json(opts.json, machine, "results", results)
    return 0


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--warnings", type=int, default=1000, help="storm size: warnings, each its own group")
    parser.add_argument("--deadline", type=float, default=90.0,
                        help="seconds from the storm's first webhook after which what is not named counts as not")
    parser.add_argument("--cpu-window", type=float, default=15.0, help="seconds of relay CPU read while waiting")
    parser.add_argument("--ingest-alerts", type=int, default=10_000, help="alerts posted during the storm")
    parser.add_argument("--per-webhook", type=int, default=100, help="alerts per ingest webhook (one group each)")
    parser.add_argument("--ingest-senders", type=int, default=4)
    parser.add_argument("--no-fold", action="store_true",
                        help="the Slack receiver with `storm: {enabled: false}`: the backlog waits, one message each")
    parser.add_argument("--window", type=float, help="the Slack receiver's storm.window in seconds (default: relay's)")
    parser.add_argument("--runs", type=int, default=1)
    parser.add_argument("--stores", nargs="+", choices=STORES, default=list(STORES))
    parser.add_argument("--require-postgres", action="store_true", help="fail instead of skipping PostgreSQL")
    parser.add_argument("--json", help="also write every result to this file")
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder (logs, databases)")
    parser.add_argument("--smoke", action="store_true", help="a few seconds per store: checks the bench works")
    opts = parser.parse_args(argv)
    if opts.smoke:
        # a 2 s storm window, so the smoke folds and reads a summary's history link too
        opts.warnings, opts.deadline, opts.cpu_window, opts.ingest_alerts, opts.per_webhook, opts.runs = (
            30, 10.0, 2.0, 500, 50, 1)
        opts.window = opts.window or 2.0
    return opts


if __name__ == "__main__":
    raise SystemExit(asyncio.run(main(parse_args())))
