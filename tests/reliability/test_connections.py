"""Clients that hold connections (idle, slowloris, slow bodies) or send huge or malformed requests are refused or
bounded, and never keep a normal Alertmanager webhook out: it still gets through, and is delivered.

The relay runs as a real process (uvicorn, real sockets) with the open-file limit a service commonly gets
(1024, set with prlimit), so holding connections costs it what it would cost in production.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import resource
import time
from collections.abc import AsyncIterator
from pathlib import Path

import httpx

from tests.e2e.process import RelayProcess
from tests.reliability.conftest import Profile, Stack, expose, record
from tests.reliability.load import NAME, alert, webhook

OPEN_FILES = 1024  # systemd's default soft limit for a service
READ_TIMEOUT = 2  # RELAY_REQUEST_READ_TIMEOUT_SECONDS for these tests
SLOW_CLIENTS = 20
MAX_BODY = 8 * 1024 * 1024  # relay's default RELAY_MAX_BODY_BYTES


@contextlib.asynccontextmanager
async def relay_process(tmp_path: Path, stack: Stack, **env: str) -> AsyncIterator[RelayProcess]:
    relay = RelayProcess(tmp_path, stack.routes, {**stack.env, "RELAY_REQUEST_READ_TIMEOUT_SECONDS": str(READ_TIMEOUT),
                                                  **env})
    await relay.start()
    assert relay.proc is not None
    resource.prlimit(relay.proc.pid, resource.RLIMIT_NOFILE, (OPEN_FILES, OPEN_FILES))
    try:
        yield relay
    finally:
        await relay.terminate()
        stack.exposure.add("log", relay.log.read_text(errors="replace"))


async def _hold(port: int, first: bytes, trickle: bytes | None, stop: asyncio.Event) -> bool:
    """Open a connection, send `first`, then one byte of `trickle` a second; True if relay closed it."""
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
    except OSError:
        return False
    try:
        writer.write(first)
        await writer.drain()
        while not stop.is_set():
            if trickle:
                writer.write(trickle[:1])
                trickle = trickle[1:] or trickle
                await writer.drain()
            with contextlib.suppress(TimeoutError):
                if await asyncio.wait_for(reader.read(65536), 1.0) == b"":
                    return True  # relay hung up
    except OSError:
        return True
    finally:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()
    return False


async def _post_like_alertmanager(client: httpx.AsyncClient, body: object,
                                  deadline: float) -> tuple[httpx.Response, int]:
    """Retry on connection errors and 5xx until the deadline, as Alertmanager's notifier does."""
    tries = 0
    while True:
        tries += 1
        try:
            answer = await client.post("/webhook", json=body)
            if answer.status_code < 500:
                return answer, tries
        except httpx.TransportError:
            if time.monotonic() > deadline:
                raise
        await asyncio.sleep(0.5)


async def test_idle_and_slow_clients_cannot_keep_a_webhook_out(tmp_path: Path, stack: Stack,
                                                               profile: Profile) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < profile.idle_connections + 500:  # this process holds the other ends
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, profile.idle_connections + 500), hard))
    async with relay_process(tmp_path, stack) as relay:
        stop = asyncio.Event()
        head = f"POST /webhook HTTP/1.1\r\nHost: relay\r\nAuthorization: Bearer {stack.token}\r\n"
        holders = [asyncio.create_task(_hold(relay.port, b"", None, stop)) for _ in range(profile.idle_connections)]
        holders += [asyncio.create_task(_hold(relay.port, head.encode(), b"X-Slow: " + b"a" * 100, stop))
                    for _ in range(SLOW_CLIENTS)]  # slowloris: headers that never end
        holders += [asyncio.create_task(_hold(
            relay.port, (head + "Content-Type: application/json\r\nContent-Length: 100000\r\n\r\n").encode(),
            json.dumps(webhook("Relcx00002", ["slack"])).encode(), stop)) for _ in range(SLOW_CLIENTS)]  # slow body
        await asyncio.sleep(1)  # let them all connect and start holding
        started = time.monotonic()
        try:
            async with httpx.AsyncClient(base_url=relay.url, timeout=10 * READ_TIMEOUT,
                                         headers={"Authorization": f"Bearer {stack.token}"}) as client:
                answer, tries = await _post_like_alertmanager(client, webhook("Relcx00001", ["slack"]),
                                                              deadline=started + 10 * READ_TIMEOUT + 30)
                waited = time.monotonic() - started
                [message] = await stack.slack.wait_for(1, timeout=30)
        finally:
            stop.set()
            closed = await asyncio.gather(*holders)
        await expose(stack, relay.url)
    record("idle and slow clients", open_file_limit=OPEN_FILES, idle=profile.idle_connections,
           slowloris=SLOW_CLIENTS, slow_bodies=SLOW_CLIENTS, held_connections_closed_by_relay=sum(closed),
           webhook_answered=answer.status_code, webhook_tries=tries, webhook_waited_seconds=round(waited, 1))
    assert answer.status_code == 200 and set(NAME.findall(str(message))) == {"Relcx00001"}
    assert sum(closed[profile.idle_connections:]) == 2 * SLOW_CLIENTS  # slowloris and slow bodies were cut off


async def _raw_status(port: int, request: bytes) -> int:
    """Send raw bytes; the status code of the answer."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(request)
        await writer.drain()
        return int((await asyncio.wait_for(reader.readline(), 30)).split()[1])
    finally:
        writer.close()


async def test_huge_and_malformed_requests_are_refused_while_others_pass(tmp_path: Path, stack: Stack) -> None:
    async with relay_process(tmp_path, stack, RELAY_MAX_BODY_BYTES=str(MAX_BODY)) as relay:
        headers = {"Authorization": f"Bearer {stack.token}", "Content-Type": "application/json"}
        async with httpx.AsyncClient(base_url=relay.url, timeout=60, headers=headers) as client:

            pushed = [0]

            async def endless() -> AsyncIterator[bytes]:  # chunked, no length: relay must stop reading
                yield b'{"version": "4", "pad": "'
                for _ in range(1_000):  # 65 MB, 8 times the limit
                    pushed[0] += 65536
                    yield b"x" * 65536

            many = webhook("Relmx00000", ["slack", "email"])
            many["alerts"] = [alert(f"Relmx{i:05d}", ["slack", "email"], "firing") for i in range(10_000)]
            cases = {
                "declared 1 GB": _raw_status(relay.port, (  # httpx will not send a length it does not mean
                    f"POST /webhook HTTP/1.1\r\nHost: relay\r\nAuthorization: Bearer {stack.token}\r\n"
                    f"Content-Type: application/json\r\nContent-Length: {2**30}\r\n\r\n{{").encode()),
                "endless chunked body": client.post("/webhook", content=endless()),
                "nesting 100,000 deep": client.post("/webhook", content=b"[" * 100_000 + b"]" * 100_000),
                "invalid UTF-8": client.post("/webhook", content=b'{"version": "4", "groupKey": "\xc3\x28"}'),
                "10,000 alerts": client.post("/webhook", json=many),
                "a normal webhook": client.post("/webhook", json=webhook("Relnx00001", ["slack"])),
            }
            answers = dict(zip(cases, await asyncio.gather(*cases.values(), return_exceptions=True), strict=True))
            messages = await stack.slack.wait_for(2, timeout=60)
            mails = await stack.smtp.wait_for(1, timeout=60)
            await expose(stack, relay.url)
    codes = {name: a.status_code if isinstance(a, httpx.Response) else a if isinstance(a, int) else type(a).__name__
             for name, a in answers.items()}
    record("huge and malformed requests", **{name.replace(" ", "_"): code for name, code in codes.items()},
           endless_body_bytes_sent=pushed[0], slack_message_chars=max(len(json.dumps(m)) for m in messages),
           email_bytes=len(mails[0].raw))
    for answer in answers.values():
        if isinstance(answer, httpx.Response):
            stack.exposure.add("error body", answer.text)
    # The endless body is refused once over the limit; uvicorn then reads and drops the rest (memory stays flat),
    # so the client can read its 413 and Alertmanager does not retry it.
    assert codes == {"declared 1 GB": 413, "endless chunked body": 413, "nesting 100,000 deep": 400,
                     "invalid UTF-8": 400, "10,000 alerts": 200, "a normal webhook": 200}
    assert any("Relnx00001" in str(m) for m in messages)
    [big] = [m for m in messages if "Relmx00000" in str(m)]
    assert "more" in str(big)  # cut to Slack's limits, saying so
