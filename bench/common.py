"""What the benches share: processes that are always stopped, the sink, relay's setup, PostgreSQL, the machine.

Every process a bench starts is registered with a `Stack`, which stops it on
the way out however the bench ends (error, Ctrl-C, SIGTERM); children also get
SIGTERM from the kernel if the bench itself dies (PR_SET_PDEATHSIG).
Everything listens on 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import json
import os
import shutil
import signal
import socket
import statistics
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

from relay.alerts.fingerprint import fingerprint

REPO = Path(__file__).resolve().parent.parent
ALERTMANAGER = shutil.which("prometheus-alertmanager") or shutil.which("alertmanager")
PG_ADMIN_URL = os.environ.get("BENCH_PG_ADMIN_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
STOP_TIMEOUT = 15.0
READY_TIMEOUT = 30.0
PR_SET_PDEATHSIG = 1


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _die_with_parent() -> None:
    """In the child before exec: if the bench is killed outright, the kernel sends this process SIGTERM."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


@dataclass
class Proc:
    name: str
    proc: asyncio.subprocess.Process
    log: Path
    started: float  # time.monotonic() just before the exec

    @property
    def pid(self) -> int:
        return self.proc.pid

    def tail(self, chars: int = 2000) -> str:
        try:
            return self.log.read_text(errors="replace")[-chars:]
        except OSError:
            return ""

    async def stop(self) -> None:
        if self.proc.returncode is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            self.proc.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(self.proc.wait(), STOP_TIMEOUT)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                self.proc.kill()
            await self.proc.wait()


class Stack:
    """A temporary folder and the processes started in it; `async with` stops them all and removes the folder."""

    def __init__(self, keep: bool = False) -> None:
        self.tmp = Path(tempfile.mkdtemp(prefix="relay-bench-"))
        self.keep = keep
        self.procs: list[Proc] = []
        self.cleanups: list[Callable[[], Awaitable[None]]] = []
        self.profilers: list[asyncio.subprocess.Process] = []

    async def __aenter__(self) -> Stack:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        await asyncio.gather(*(p.stop() for p in reversed(self.procs)), return_exceptions=True)
        self.procs.clear()
        for profiler in self.profilers:  # py-spy writes its profile when the process it watches has exited
            try:
                await asyncio.wait_for(profiler.wait(), STOP_TIMEOUT)
            except TimeoutError:
                profiler.kill()
                await profiler.wait()
        self.profilers.clear()
        for cleanup in reversed(self.cleanups):
            with contextlib.suppress(Exception):
                await asyncio.wait_for(cleanup(), STOP_TIMEOUT)
        self.cleanups.clear()
        if not self.keep:
            shutil.rmtree(self.tmp, ignore_errors=True)

    async def spawn(self, name: str, args: Sequence[str], env: dict[str, str] | None = None) -> Proc:
        log = self.tmp / f"{name}.log"
        with log.open("ab") as out:
            started = time.monotonic()
            proc = await asyncio.create_subprocess_exec(
                *args, cwd=REPO, env={**os.environ, **(env or {})}, stdin=asyncio.subprocess.DEVNULL,
                stdout=out, stderr=out, preexec_fn=_die_with_parent)
        running = Proc(name, proc, log, started)
        self.procs.append(running)
        return running

    async def profile(self, proc: Proc) -> None:
        """With BENCH_PYSPY=DIR, record `proc` with py-spy (collapsed stacks, all threads) into DIR/NAME.txt."""
        folder = os.environ.get("BENCH_PYSPY")
        if not folder:
            return
        Path(folder).mkdir(parents=True, exist_ok=True)
        spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
        self.profilers.append(await asyncio.create_subprocess_exec(
            spy, "record", "--pid", str(proc.pid), "--rate", "100", "--format", "raw", "--threads", "--nonblocking",
            "--output", str(Path(folder) / f"{proc.name}.txt"), stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL))

    async def stop(self, proc: Proc) -> None:
        await proc.stop()
        if proc in self.procs:
            self.procs.remove(proc)


async def wait_ready(proc: Proc, url: str, timeout: float = READY_TIMEOUT, interval: float = 0.01) -> float:
    """Poll `url` until it answers 200; return the seconds since the process was started. Fails if it exits."""
    deadline = time.monotonic() + timeout
    async with aiohttp.ClientSession() as session:
        while True:
            if proc.proc.returncode is not None:
                raise RuntimeError(f"{proc.name} exited with {proc.proc.returncode}:\n{proc.tail()}")
            with contextlib.suppress(aiohttp.ClientError, TimeoutError):
                async with session.get(url, timeout=aiohttp.ClientTimeout(total=1)) as answer:
                    if answer.status == 200:
                        return time.monotonic() - proc.started
            if time.monotonic() > deadline:
                raise TimeoutError(f"{proc.name} not ready at {url} within {timeout}s:\n{proc.tail()}")
            await asyncio.sleep(interval)


# -- the sink (provider test server) --------------------------------------------------------------------------

@dataclass
class Sink:
    proc: Proc
    url: str
    session: aiohttp.ClientSession

    def slack_url(self, receiver: str = "bench") -> str:
        return f"{self.url}/services/T000/{receiver}/XXXXSECRET"

    @property
    def alertmanager_url(self) -> str:
        return f"{self.url}/alertmanager"

    @property
    def pagerduty_url(self) -> str:
        return f"{self.url}/v2/enqueue"

    async def count(self) -> int:
        async with self.session.get(f"{self.url}/-/count") as answer:
            return int((await answer.json())["count"])

    async def arrivals(self) -> dict[str, float]:
        """Arrival time (monotonic) of each bench id since the last call; the first message naming it counts."""
        async with self.session.get(f"{self.url}/-/arrivals") as answer:
            data = await answer.json()
        out: dict[str, float] = {}
        for bench_id, at in data["arrivals"]:
            out.setdefault(bench_id, at)
        return out

    async def wait_count(self, target: int, timeout: float) -> int:
        """Wait until the sink accepted `target` messages in all, or the timeout; return the count."""
        deadline = time.monotonic() + timeout
        while True:
            count = await self.count()
            if count >= target or time.monotonic() > deadline:
                return count
            await asyncio.sleep(0.05)


async def start_sink(stack: Stack, slack_limit: tuple[float, int] | None = None) -> Sink:
    """The sink; `slack_limit` (messages/s, burst) turns on Slack's own limit per incoming webhook."""
    port = free_port()
    limit = ["--slack-limit", str(slack_limit[0]), str(slack_limit[1])] if slack_limit else []
    proc = await stack.spawn("sink", [sys.executable, "-m", "bench.sink", "--port", str(port), *limit])
    url = f"http://127.0.0.1:{port}"
    await wait_ready(proc, f"{url}/-/count")
    session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30))
    stack.cleanups.append(session.close)
    return Sink(proc, url, session)


# -- relay ------------------------------------------------------------------------------------------------------

def routes_yaml(sink: Sink, receivers: Sequence[str] = ("bench",), rate_limit: bool = False) -> str:
    """Slack receivers pointing at the sink, every alert sent to all of them."""
    lines = ["receivers:"]
    for name in receivers:
        lines += [f"  - name: {name}", "    slack:", f"      webhook_url: {sink.slack_url(name)}"]
        if rate_limit:
            lines.append("    rate_limit: {rate: 100000, burst: 100000}")
    lines.append(f"default_receivers: [{', '.join(receivers)}]")
    return "\n".join(lines) + "\n"


async def start_relay(stack: Stack, name: str, routes: str, database_url: str,
                      env: dict[str, str] | None = None, wait: bool = True, port: int | None = None
                      ) -> tuple[Proc, str, float]:
    """`relay serve` on `port` (default: a free one); returns the process, its base URL and the seconds it took
    to be ready."""
    routes_file = stack.tmp / f"{name}-routes.yaml"
    routes_file.write_text(routes)
    port = port or free_port()
    proc = await stack.spawn(name, [sys.executable, *_relay_command(name), "serve"], {
        "RELAY_ROUTES": str(routes_file),
        "RELAY_DATABASE_URL": database_url, "RELAY_PORT": str(port), "RELAY_LOG_LEVEL": "INFO",
        **(env or {})})
    url = f"http://127.0.0.1:{port}"
    await stack.profile(proc)
    ready = await wait_ready(proc, f"{url}/readyz") if wait else 0.0
    return proc, url, ready


def _relay_command(name: str) -> list[str]:
    """`-m relay`, or with BENCH_CPROFILE=DIR relay under cProfile (its event-loop thread) into DIR/NAME.prof."""
    folder = os.environ.get("BENCH_CPROFILE")
    if not folder:
        return ["-m", "relay"]
    Path(folder).mkdir(parents=True, exist_ok=True)
    return ["-m", "bench.profiled", str(Path(folder) / f"{name}.prof")]


def sqlite_url(stack: Stack, name: str) -> str:
    return f"sqlite:///{stack.tmp / f'{name}.db'}"


def save_json(path: str | None, machine: Any, key: str, items: Iterable[Any]) -> None:
    """With --json PATH: the machine and every result (dataclasses) as JSON, for comparing runs later."""
    if path:
        Path(path).write_text(json.dumps({"machine": asdict(machine), key: [asdict(i) for i in items]}, indent=1))


def usable_stores(stores: list[str], require_postgres: bool) -> list[str]:
    """The stores asked for that can run here: PostgreSQL is dropped, said why, when it cannot (or the bench stops,
    with --require-postgres)."""
    stores = list(stores)
    if "postgres" in stores and (why := postgres_available()):
        if require_postgres:
            raise SystemExit(f"bench: {why}")
        print(f"skipping postgres: {why}")
        stores.remove("postgres")
    return stores


def postgres_available() -> str | None:
    """None when relay can use PostgreSQL here, else why not (the store not built yet, or no server)."""
    try:
        from relay.store import open_store

        open_store("postgresql://postgres@127.0.0.1:5432/postgres")
    except ValueError as exc:
        return f"relay has no PostgreSQL store yet ({exc})"
    except Exception as exc:
        return f"PostgreSQL store cannot be built: {exc}"
    try:
        with socket.create_connection(("127.0.0.1", 5432), timeout=1):
            pass
    except OSError as exc:
        return f"no PostgreSQL server on 127.0.0.1:5432 ({exc})"
    return None


async def postgres_database(stack: Stack, name: str) -> str:
    """A fresh database for one relay, dropped when the stack closes (after relay has stopped)."""
    import asyncpg

    db = f"relay_bench_{os.getpid()}_{name}".replace("-", "_")
    admin = await asyncpg.connect(PG_ADMIN_URL, timeout=10)
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{db}"')
        await admin.execute(f'CREATE DATABASE "{db}"')
    finally:
        await admin.close()

    async def drop() -> None:
        conn = await asyncpg.connect(PG_ADMIN_URL, timeout=10)
        try:
            await conn.execute(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)')
        finally:
            await conn.close()

    stack.cleanups.append(drop)
    return PG_ADMIN_URL.rsplit("/", 1)[0] + f"/{db}"


# -- payloads ---------------------------------------------------------------------------------------------------

STARTS_AT = "2026-11-26T07:40:12.5Z"


def webhook_alert(bench_id: str, severity: str = "warning") -> dict[str, Any]:
    """A firing alert named by its bench id (so every message about it names it, whoever renders it)."""
    labels = {"alertname": bench_id, "severity": severity, "service": "bench"}
    return {"status": "firing", "labels": labels, "annotations": {"summary": f"bench alert {bench_id}"},
            "startsAt": STARTS_AT, "endsAt": "0001-01-01T00:00:00Z", "generatorURL": "",
            "fingerprint": fingerprint(labels)}


def webhook(bench_ids: Sequence[str], group: str, severity: str = "warning") -> bytes:
    """An Alertmanager v4 webhook body holding one alert per id, as one group named `group`."""
    alerts = [webhook_alert(i, severity) for i in bench_ids]
    common = alerts[0]["labels"] if len(alerts) == 1 else {"severity": severity, "service": "bench"}
    return json.dumps({
        "version": "4", "groupKey": f'{{}}:{{group="{group}"}}', "status": "firing", "receiver": "relay",
        "alerts": alerts, "groupLabels": {"group": group}, "commonLabels": common, "commonAnnotations": {},
        "externalURL": "http://alertmanager.bench", "truncatedAlerts": 0}).encode()


def api_alert(bench_id: str) -> bytes:
    """The same alert as Alertmanager's API takes it (POST /api/v2/alerts); Alertmanager sets startsAt."""
    labels = {"alertname": bench_id, "severity": "warning", "service": "bench"}
    return json.dumps([{"labels": labels, "annotations": {"summary": f"bench alert {bench_id}"}}]).encode()


# -- numbers ----------------------------------------------------------------------------------------------------

def pct(values: Sequence[float], p: float) -> float:
    """Nearest-rank percentile."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    rank = max(1, min(len(ordered), int(-(-p * len(ordered) // 100))))
    return ordered[rank - 1]


def median(values: Sequence[float]) -> float:
    finite = [v for v in values if v == v]
    return statistics.median(finite) if finite else float("nan")


def rss_bytes(pid: int) -> int:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError(f"no VmRSS for {pid}")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time the process has used so far (all its threads)."""
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def open_fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def open_files(pid: int) -> int:
    """Open descriptors that are not sockets (database, WAL, logs, pipes): a leak here is not a connection pool."""
    count = 0
    for fd in os.listdir(f"/proc/{pid}/fd"):
        with contextlib.suppress(OSError):
            if not os.readlink(f"/proc/{pid}/fd/{fd}").startswith("socket:"):
                count += 1
    return count


@dataclass
class Machine:
    """The conditions of a run, printed with every table: the machine is shared, so say how busy it was."""

    cores: int = field(default_factory=lambda: os.cpu_count() or 0)
    load_before: tuple[float, float, float] = field(default_factory=os.getloadavg)
    load_after: tuple[float, float, float] | None = None

    def done(self) -> None:
        self.load_after = os.getloadavg()

    def describe(self) -> str:
        after = self.load_after or os.getloadavg()
        return (f"nproc {self.cores}; load average (1/5/15 min) at start {_load(self.load_before)}, "
                f"at end {_load(after)}")


def _load(load: tuple[float, float, float]) -> str:
    return " ".join(f"{v:.2f}" for v in load)


@contextlib.asynccontextmanager
async def cancel_on_sigterm() -> AsyncIterator[None]:
    """Turn SIGTERM into cancellation of the bench, so every `finally` runs and nothing is left behind."""
    task = asyncio.current_task()
    loop = asyncio.get_running_loop()
    assert task is not None
    loop.add_signal_handler(signal.SIGTERM, task.cancel)
    try:
        yield
    finally:
        loop.remove_signal_handler(signal.SIGTERM)


def table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    cells = [[_cell(c) for c in row] for row in rows]
    widths = [max(len(h), *(len(r[i]) for r in cells)) if cells else len(h) for i, h in enumerate(headers)]
    lines = ["  ".join(h.ljust(w) if i == 0 else h.rjust(w) for i, (h, w) in enumerate(zip(headers, widths,
                                                                                          strict=True)))]
    for row in cells:
        lines.append("  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths,
                                                                                                  strict=True))))
    return "\n".join(lines)


def _cell(value: object) -> str:
    if isinstance(value, float):
        if value != value:
            return "-"
        return f"{value:.1f}" if abs(value) < 1000 else f"{value:.0f}"
    return str(value)
