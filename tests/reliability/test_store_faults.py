"""The SQLite outbox cannot write: relay answers 503 (Alertmanager retries), keeps no partial state, and
recovers by itself once writes succeed again. Nothing it answered 200 for is lost.

We run as root in CI, where permission bits do not stop writes, so the faults are made honestly:
- `disk-full`: the relay's database lives on a small tmpfs that the test fills up (real ENOSPC, SQLITE_FULL);
  needs mount(2), so it is skipped where the test may not mount.
- `write-error`: the relay process's RLIMIT_FSIZE is lowered to 0 with prlimit(2), so every write to a regular
  file fails (EFBIG, an I/O error to SQLite) until it is raised again; works unprivileged.
- `unwritable at start`: the relay runs as an unprivileged user (setpriv when we are root) against a read-only
  database: it must refuse to start rather than accept webhooks it cannot keep.
"""

from __future__ import annotations

import contextlib
import os
import resource
import shutil
import sqlite3
import subprocess
import tempfile
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.e2e.process import RelayProcess
from tests.helpers import poll_until
from tests.reliability.conftest import ADMIN_HEADERS, Stack, expose, record
from tests.reliability.load import webhook

TMPFS_BYTES = 4 * 1024 * 1024


@dataclass
class Fault:
    """Makes the relay's database unwritable (`start`) and writable again (`end`)."""

    name: str
    database: Path
    start: Callable[[RelayProcess], Awaitable[None]]
    end: Callable[[RelayProcess], Awaitable[None]]


@contextlib.asynccontextmanager
async def disk_full(tmp_path: Path) -> AsyncIterator[Fault]:
    mountpoint = tmp_path / "tmpfs"
    mountpoint.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={TMPFS_BYTES}", "tmpfs", str(mountpoint)],
                             capture_output=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.decode().strip()}")
    filler = mountpoint / "filler"

    async def fill(_: RelayProcess) -> None:
        with contextlib.suppress(OSError), filler.open("wb", buffering=0) as out:
            while True:  # until the file system is full
                out.write(b"\0" * 65536)

    async def free(_: RelayProcess) -> None:
        filler.unlink()

    try:
        yield Fault("disk-full", mountpoint / "relay.db", fill, free)
    finally:
        subprocess.run(["umount", "-l", str(mountpoint)], check=False)


@contextlib.asynccontextmanager
async def write_error(tmp_path: Path) -> AsyncIterator[Fault]:
    async def forbid(relay: RelayProcess) -> None:
        assert relay.proc is not None
        resource.prlimit(relay.proc.pid, resource.RLIMIT_FSIZE, (0, resource.RLIM_INFINITY))

    async def allow(relay: RelayProcess) -> None:
        assert relay.proc is not None
        resource.prlimit(relay.proc.pid, resource.RLIMIT_FSIZE, (resource.RLIM_INFINITY, resource.RLIM_INFINITY))

    yield Fault("write-error", tmp_path / "relay.db", forbid, allow)


FAULTS = {"disk-full": disk_full, "write-error": write_error}


@pytest.mark.parametrize("kind", list(FAULTS))
async def test_store_that_cannot_write_answers_503_keeps_nothing_and_recovers(tmp_path: Path, stack: Stack,
                                                                               kind: str) -> None:
    async with FAULTS[kind](tmp_path) as fault:
        relay = RelayProcess(tmp_path, stack.routes, {**stack.env, "RELAY_SEND_TIMEOUT_SECONDS": "2",
                                                      "RELAY_LEASE_SECONDS": "3"},
                             database_url=f"sqlite:///{fault.database}", pipe_log=True)
        await relay.start()
        try:
            async with httpx.AsyncClient(base_url=relay.url, timeout=30,
                                         headers={"Authorization": f"Bearer {stack.token}"}) as client:
                before = [f"Relbx{i:05d}" for i in range(5)]
                for name in before:
                    assert (await client.post("/webhook", json=webhook(name, ["slack"]))).status_code == 200
                await poll_until(lambda: _settled(client), timeout=30)  # delivered and recorded

                await fault.start(relay)
                refused = []
                for i in range(5):
                    answer = await client.post("/webhook", json=webhook(f"Reldx{i:05d}", ["slack", "email"]))
                    refused.append(answer.status_code)
                    stack.exposure.add("error body", answer.text)
                during = await client.get("/api/v1/notifications", params={"alertname": "Reldx00000"},
                                          headers=ADMIN_HEADERS)
                ready_during = (await client.get("/readyz")).status_code  # it cannot take a webhook: not ready
                await fault.end(relay)
                # Ready again once a write succeeds (its probe), before any webhook comes back to prove it.
                await poll_until(lambda: _ready(client), timeout=10)

                # Alertmanager retries the refused webhooks: each is taken in full, not seen as a duplicate.
                retried = [await client.post("/webhook", json=webhook(f"Reldx{i:05d}", ["slack", "email"]))
                           for i in range(5)]
                await stack.slack.wait_for(10, timeout=30)
                await stack.smtp.wait_for(5, timeout=30)
                await poll_until(lambda: _settled(client), timeout=30)
                await expose(stack, relay.url)
        finally:
            await relay.terminate()
        stack.exposure.add("log", relay.log.read_text(errors="replace"))
        with sqlite3.connect(fault.database) as db:
            integrity = db.execute("PRAGMA integrity_check").fetchone()[0]

    names = sorted(n for m in stack.slack.messages for n in _names(m))
    log = relay.log.read_text(errors="replace")
    said = [line.split("webhook not accepted ", 1)[1] for line in log.splitlines() if "webhook not accepted" in line]
    record(f"store {kind}", relay_said=said[0] if said else None, webhooks_refused_503=refused.count(503),
           readyz_during=ready_during, accepted_before=len(before),
           retried_accepted=sum(a.status_code == 200 for a in retried),
           slack_messages=len(stack.slack.messages), emails=len(stack.smtp.messages), integrity=integrity)
    assert refused == [503] * 5
    assert ready_during == 503
    assert during.status_code == 200 and during.json()["notifications"] == []  # nothing of them was kept
    assert [a.json()["notifications_enqueued"] for a in retried] == [2] * 5  # no dedup mark was left behind
    assert names == sorted(before + [f"Reldx{i:05d}" for i in range(5)])  # everything, once
    assert len(stack.smtp.messages) == 5
    assert len(said) == 5 and "store cannot commit" in said[0]  # the operator is told why
    assert integrity == "ok"


async def _ready(client: httpx.AsyncClient) -> bool:
    return (await client.get("/readyz")).status_code == 200


async def _settled(client: httpx.AsyncClient) -> bool:
    rows = (await client.get("/api/v1/notifications", params={"limit": "1000"},
                             headers=ADMIN_HEADERS)).json()["notifications"]
    return all(row["state"] == "delivered" for row in rows)


def _names(message: dict[str, object]) -> list[str]:
    from tests.reliability.load import NAME

    return sorted(set(NAME.findall(str(message))))


# -- unwritable at start -----------------------------------------------------------------------------------------

def _unprivileged() -> list[str]:
    """A command prefix that drops root, so permission bits apply; nothing when we are not root."""
    if os.geteuid() != 0:
        return []
    if shutil.which("setpriv") is None:
        pytest.skip("running as root without setpriv: cannot drop privileges to test permissions")
    return ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups", "--"]


async def test_unwritable_database_at_start_refuses_to_serve_then_starts_when_fixed(stack: Stack) -> None:
    prefix = _unprivileged()
    with tempfile.TemporaryDirectory(prefix="relay-unwritable-") as tmp:
        folder = Path(tmp)
        folder.chmod(0o755)
        routes = folder / "routes.yaml"  # readable by the unprivileged user
        shutil.copy(stack.routes, routes)
        routes.chmod(0o644)
        if prefix:
            shutil.chown(folder, "nobody", "nogroup")
        # A database with one webhook waiting in it, written by a relay that could write.
        relay = RelayProcess(folder, routes, stack.env, prefix=prefix, pipe_log=True)
        stack.slack.fail_all(503)
        await relay.start()
        async with httpx.AsyncClient(base_url=relay.url, timeout=10,
                                     headers={"Authorization": f"Bearer {stack.token}"}) as client:
            assert (await client.post("/webhook", json=webhook("Reluxb00001", ["slack"]))).status_code == 200
        await stack.slack.wait_for_requests(1)
        await relay.terminate()
        stack.slack.recover()

        for path in folder.glob("relay.db*"):
            path.chmod(0o444)
        folder.chmod(0o555)  # nor may it create a journal next to it
        with pytest.raises(RuntimeError, match="relay exited") as refused:
            await relay.start()
        log = relay.log.read_text(errors="replace")

        folder.chmod(0o755)
        for path in folder.glob("relay.db*"):
            path.chmod(0o644)
        await relay.start()
        try:
            [message] = await stack.slack.wait_for(1, timeout=20)
            await expose(stack, relay.url)
        finally:
            await relay.terminate()
        stack.exposure.add("log", relay.log.read_text(errors="replace"))
    reason = next((line for line in log.splitlines() if "readonly" in line or "unable to open" in line), None)
    record("store unwritable at start", user="nobody" if prefix else "current", refused_to_start=True,
           relay_said=reason, delivered_after_fix=len(stack.slack.messages))
    assert "readonly database" in log or "unable to open database" in log, log[-2000:]  # says why
    assert "Reluxb00001" in str(message) and len(stack.slack.messages) == 1
    assert str(refused.value)


@pytest.fixture(autouse=True)
def _no_leftover_limits() -> None:
    """prlimit applies to the relay process only; this test process must never be limited."""
    assert resource.getrlimit(resource.RLIMIT_FSIZE)[0] == resource.RLIM_INFINITY

