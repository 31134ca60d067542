"""One relay per SQLite file: a second `relay serve` (or `test-alert --direct`) on a file in use refuses to start,
before it frees the first one's leases, so a notification in flight is not sent again."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from pathlib import Path

import httpx

from tests.conftest import Providers
from tests.e2e.process import RelayProcess, free_port
from tests.e2e.test_routing_table import webhook
from tests.helpers import REPO


async def run(*args: str, env: dict[str, str], providers: Providers) -> tuple[int, str, str]:
    """Run relay to its end; one that is still running after 15 s has started on the file it must not share."""
    proc = await asyncio.create_subprocess_exec(sys.executable, "-m", "relay", *args, cwd=REPO, env=env,
                                                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    try:
        out, err = await asyncio.wait_for(proc.communicate(), 15)
    except TimeoutError as still_running:
        proc.send_signal(signal.SIGTERM)
        await proc.wait()
        said = (f"relay {' '.join(args)} ran on a file in use; Slack accepted {len(providers.slack.messages)} "
                "message(s) while the first relay's was in flight")
        raise AssertionError(said) from still_running
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def test_a_second_relay_on_the_same_file_refuses_and_nothing_is_sent_twice(tmp_path: Path,
                                                                                   providers: Providers) -> None:
    first = RelayProcess(tmp_path, providers.routes, providers.env)
    await first.start()
    assert first.proc is not None
    try:
        providers.slack.stall()  # the first relay's delivery is in flight, its lease held, for as long as we like
        async with httpx.AsyncClient(base_url=first.url) as client:
            assert (await client.post("/webhook", json=webhook("Warn01", "warning"))).status_code == 200
        await providers.slack.wait_for_held(1)

        code, _, err = await run("serve", env={**first.env, "RELAY_PORT": str(free_port())}, providers=providers)
        assert code != 0
        database = tmp_path / "relay.db"
        assert err.splitlines() == [f"relay: {database} is in use by another relay (pid {first.proc.pid} on "
                                    f"{os.uname().nodename}; lock {database}.lock): one relay per SQLite file, "
                                    "use PostgreSQL for several"], err

        code, _, err = await run("test-alert", "--direct", "--alertname", "Warn02", env=first.env,
                                 providers=providers)
        assert code != 0 and len(err.splitlines()) == 1, err
        assert f"pid {first.proc.pid}" in err and "without --direct" in err and "Traceback" not in err

        providers.slack.recover()
        await providers.slack.wait_for(1)
        async with httpx.AsyncClient(base_url=first.url) as client:
            history = (await client.get("/api/v1/notifications")).json()["notifications"]
    finally:
        await first.terminate()
    assert [n["state"] for n in history] == ["delivered"]  # the refused test-alert enqueued nothing
    assert len(providers.slack.requests) == len(providers.slack.messages) == 1  # the held post, answered once


async def test_the_file_is_free_again_once_its_relay_is_gone_even_killed(tmp_path: Path, providers: Providers) -> None:
    relay = RelayProcess(tmp_path, providers.routes, providers.env)
    await relay.start()
    await relay.kill()  # no shutdown code runs: the kernel drops the lock with the process
    await relay.start()
    await relay.terminate()
    await relay.start()
    await relay.terminate()
