"""The console's pages with a large history: each page's answer time with 100,000 notifications stored.

The history is written straight into a migrated store (SQLite, then PostgreSQL): six days of notifications across
six receivers, one alert each (2,000 distinct alerts re-firing), almost all delivered with one attempt, some dead
letters after three, a few pending (not due, so nothing is sent), storms whose summaries folded 1,000 of them, and
a dedup mark per notification as enqueue writes it. Then `relay serve` runs on that store and each page is asked
for in turn by a signed-in client over HTTP, warm, `--rounds` times: the receivers view, the first page of history,
history filtered by receiver, alertname, state and a label, a page deep in the keyset, one notification, the dead
letters, the storms, a storm summary and Explain of an alert with 50 notifications.

    python -m bench.console                       # 100,000 notifications, 20 rounds, SQLite and PostgreSQL
    python -m bench.console --stores sqlite --notifications 300000
    python -m bench.console --smoke
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import re
import sqlite3
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import httpx

from bench.common import (
    Machine,
    Stack,
    cancel_on_sigterm,
    pct,
    postgres_database,
    sqlite_url,
    start_relay,
    table,
    usable_stores,
)
from relay.alerts.fingerprint import fingerprint
from relay.store import open_store
from relay.storms.fold import STORM_SEPARATOR, SUMMARY_GROUP_KEY

RECEIVERS = ("slack-alerts", "ops-email", "pagerduty-oncall", "team-a", "team-b", "discord-ops")
ALERTS = 2000
ADMIN = "bench-console-admin-token"
DAYS = 6
COLUMNS = ("id", "receiver", "integration", "lane", "status", "alertnames", "payload", "received_at", "give_up_at",
           "state", "attempts", "next_attempt_at", "last_error", "finished_at", "summary_id")


@dataclass(frozen=True)
class Result:
    store: str
    page: str
    p50_ms: float
    p95_ms: float
    max_ms: float
    size_kb: float


def labels_of(n: int) -> dict[str, str]:
    return {"alertname": f"Bench{n % 40:02d}", "severity": "critical" if n % 10 == 0 else "warning",
            "namespace": "ojeomneo", "pod": f"pod-{n:04d}", "service": "bench"}


def payload(labels: dict[str, str], starts_at: str, group_key: str) -> str:
    alert = {"status": "firing", "labels": labels, "annotations": {"summary": f"{labels['pod']} is slow",
                                                                   "description": "bench " * 20},
             "startsAt": starts_at, "endsAt": "0001-01-01T00:00:00Z", "generatorURL": "http://prometheus:9090/graph",
             "fingerprint": fingerprint(labels)}
    return json.dumps({"receiver": "relay", "status": "firing", "alerts": [alert], "groupLabels": {},
                       "commonLabels": labels, "commonAnnotations": {}, "externalURL": "http://alertmanager.bench",
                       "version": "4", "groupKey": group_key, "truncatedAlerts": 0}, separators=(",", ":"))


def history(count: int, now: float, seed: int = 7) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]],
                                                            list[tuple[Any, ...]], list[tuple[Any, ...]]]:
    """Notifications, attempts, dedup marks and storms, ids ascending with time."""
    rng = random.Random(seed)
    start = now - DAYS * 86400
    rows, attempts, marks = [], [], []
    storms: list[tuple[Any, ...]] = []
    summaries: list[int] = []
    for i in range(1, count + 1):
        received = start + (i / count) * (DAYS * 86400 - 600)
        receiver = RECEIVERS[i % len(RECEIVERS)]
        labels = labels_of(rng.randrange(ALERTS) if i % (count // 50) else 42)  # alert 42: Explain's, 50 of them
        starts_at = time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime(received - 30))
        group_key = f'{{}}:{{alertname="{labels["alertname"]}"}}'
        lane = f"{receiver}\x1f{group_key}"
        roll = rng.random()
        latency = 0.05 + rng.expovariate(8)
        state, tries, error, finished, summary = "delivered", 1, None, received + latency, None
        if roll < 0.003:
            state, tries, error = "dead", 3, "http_400: HTTP 400 invalid event"
        elif roll < 0.004:
            state, tries, error, finished = "pending", 0, None, None
        elif roll < 0.014 and summaries:
            summary = summaries[-1]
        if i % 10_000 == 5_000:  # a storm: its summary, then what the next rows fold into it
            storm_id = len(storms) + 1
            storms.append((storm_id, receiver, received, received + 60, received + 600, 100, None))
            lane = f"{receiver}{STORM_SEPARATOR}{storm_id}"
            group_key = f"{SUMMARY_GROUP_KEY}{storm_id}"
            summaries.append(i)
        due = now + 86400 if state == "pending" else received
        rows.append((i, receiver, "slack", lane, "firing", labels["alertname"],
                     payload(labels, starts_at, group_key), received, received + 86400, state, tries, due, error,
                     finished if state != "pending" else None, summary))
        for t in range(tries):
            last = t == tries - 1
            outcome = "delivered" if state == "delivered" else ("dead" if last else "retry")
            failed = outcome != "delivered"
            attempts.append((i, received + t, latency, "folded" if summary and last else outcome,
                             "http_400" if failed else "", "HTTP 400" if failed else ""))
        marks.append((receiver, fingerprint(labels), starts_at.replace(".000Z", "+00:00"), "firing", received, 14400.0))
    return rows, attempts, marks, storms


def fill_sqlite(path: str, data: tuple[list[Any], list[Any], list[Any], list[Any]]) -> None:
    rows, attempts, marks, storms = data
    conn = sqlite3.connect(path)
    with conn:
        conn.executemany(f"INSERT INTO notifications ({', '.join(COLUMNS)}) VALUES "
                         f"({', '.join('?' * len(COLUMNS))})", rows)
        conn.executemany("INSERT INTO attempts (notification_id, started_at, duration, outcome, reason, detail) "
                         "VALUES (?, ?, ?, ?, ?, ?)", attempts)
        conn.executemany("INSERT OR REPLACE INTO dedup (receiver, fingerprint, starts_at, status, notified_at) "
                         "VALUES (?, ?, ?, ?, ?)", [m[:5] for m in marks])
        conn.executemany("INSERT INTO storms (id, receiver, started_at, folded_at, ended_at, folded, ref) "
                         "VALUES (?, ?, ?, ?, ?, ?, ?)", storms)
    conn.execute("ANALYZE")
    conn.close()


async def fill_postgres(url: str, data: tuple[list[Any], list[Any], list[Any], list[Any]]) -> None:
    import asyncpg

    rows, attempts, marks, storms = data
    conn = await asyncpg.connect(url)
    try:
        await conn.copy_records_to_table("notifications", records=rows, columns=list(COLUMNS))
        await conn.copy_records_to_table("attempts", records=attempts, columns=[
            "notification_id", "started_at", "duration", "outcome", "reason", "detail"])
        unique = {m[:4]: m for m in marks}
        await conn.copy_records_to_table("dedup", records=list(unique.values()), columns=[
            "receiver", "fingerprint", "starts_at", "status", "notified_at", "interval_seconds"])
        await conn.copy_records_to_table("storms", records=storms, columns=[
            "id", "receiver", "started_at", "folded_at", "ended_at", "folded", "ref"])
        await conn.execute("SELECT setval(pg_get_serial_sequence('notifications', 'id'), $1)", len(rows))
        await conn.execute("ANALYZE")
    finally:
        await conn.close()


def routes_yaml() -> str:
    lines = ["receivers:"]
    for name in RECEIVERS:  # nothing is due, so nothing is sent; a sink would only be idle
        lines += [f"  - name: {name}", "    slack:", "      webhook_url: http://127.0.0.1:9/unused"]
    lines.append(f"default_receivers: [{', '.join(RECEIVERS)}]")
    return "\n".join(lines) + "\n"


def csrf_of(text: str) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', text)
    assert found, "no CSRF token on the page"
    return found.group(1)


async def pages(client: httpx.AsyncClient, count: int) -> list[tuple[str, str, str, dict[str, str] | None]]:
    """(name, method, path, form) of every page measured."""
    csrf = csrf_of((await client.get("/receivers")).text)
    fp = fingerprint(labels_of(42))
    middle = count // 2
    form = {"csrf": csrf}
    return [
        ("receivers", "GET", "/receivers", None),
        ("notifications", "GET", "/notifications", None),
        ("… by receiver", "POST", "/notifications", {**form, "receiver": "team-a"}),
        ("… by alertname", "POST", "/notifications", {**form, "alertname": "Bench07"}),
        ("… dead", "POST", "/notifications", {**form, "state": "dead"}),
        ("… by label (pod=pod-0042)", "POST", "/notifications", {**form, "label": "pod=pod-0042"}),
        ("… keyset, page at the middle", "POST", "/notifications", {**form, "before": str(middle)}),
        ("one notification", "GET", f"/notifications/{middle}", None),
        ("dead letters", "GET", "/dead-letters", None),
        ("storms", "GET", "/storms", None),
        ("storm summary", "GET", "/summaries/5000", None),
        ("Explain (50 notifications)", "POST", "/explain", {**form, "query": fp}),
    ]


async def measure(url: str, store: str, count: int, rounds: int) -> list[Result]:
    results = []
    async with httpx.AsyncClient(base_url=url, timeout=60) as client:
        signed = await client.post("/sign-in", data={"token": ADMIN})
        assert signed.status_code == 303, signed.text
        for name, method, path, form in await pages(client, count):
            times, size = [], 0
            for i in range(rounds + 2):
                started = time.perf_counter()
                answer = await client.request(method, path, data=form)
                elapsed = time.perf_counter() - started
                assert answer.status_code == 200, f"{name}: {answer.status_code} {answer.text[:300]}"
                size = len(answer.content)
                if i >= 2:  # two warm-up rounds
                    times.append(elapsed)
            results.append(Result(store, name, pct(times, 50) * 1000, pct(times, 95) * 1000, max(times) * 1000,
                                  size / 1024))
            print(f"  {store:9s} {name:32s} p50 {results[-1].p50_ms:7.1f}  p95 {results[-1].p95_ms:7.1f}  "
                  f"max {results[-1].max_ms:7.1f} ms", flush=True)
    return results


async def main(opts: argparse.Namespace) -> int:
    machine = Machine()
    stores = usable_stores(list(opts.stores), opts.require_postgres)
    if not stores:
        return 1
    results: list[Result] = []
    data = history(opts.notifications, time.time())
    async with cancel_on_sigterm(), Stack(keep=opts.keep) as stack:
        for name in stores:
            url = sqlite_url(stack, "console") if name == "sqlite" else await postgres_database(stack, "console")
            store = open_store(url)
            await store.open()  # migrations
            await store.close()
            started = time.monotonic()
            if name == "sqlite":
                await asyncio.to_thread(fill_sqlite, url.removeprefix("sqlite:///"), data)
            else:
                await fill_postgres(url, data)
            print(f"  {name}: {opts.notifications} notifications written in {time.monotonic() - started:.0f} s",
                  flush=True)
            proc, base, _ = await start_relay(stack, f"console-{name}", routes_yaml(), url,
                                              env={"RELAY_ADMIN_TOKEN": ADMIN})
            try:
                results += await measure(base, name, opts.notifications, opts.rounds)
            finally:
                await stack.stop(proc)
    machine.done()
    print(f"\nThe console's pages with {opts.notifications} notifications in history; {opts.rounds} rounds each after "
          f"two warm-up rounds, over HTTP from a signed-in client.")
    print(machine.describe() + "\n")
    print(table(["store", "page", "p50 ms", "p95 ms", "max ms", "KiB"],
                [[r.store, r.page, f"{r.p50_ms:.1f}", f"{r.p95_ms:.1f}", f"{r.max_ms:.1f}", f"{r.size_kb:.0f}"]
                 for r in results]))
    slow = [r for r in results if r.p95_ms >= 200]
    print("\nevery page under 200 ms at p95" if not slow else
          "\nover 200 ms at p95: " + ", ".join(f"{r.store} {r.page}" for r in slow))
    return 0


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--notifications", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--stores", nargs="+", choices=["sqlite", "postgres"], default=["sqlite", "postgres"])
    parser.add_argument("--require-postgres", action="store_true", help="fail instead of skipping PostgreSQL")
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder (databases)")
    parser.add_argument("--smoke", action="store_true", help="a few seconds: checks the bench works")
    opts = parser.parse_args(argv)
    if opts.smoke:
        opts.notifications, opts.rounds = 12_000, 2
    return opts


if __name__ == "__main__":
    raise SystemExit(asyncio.run(main(parse_args())))
