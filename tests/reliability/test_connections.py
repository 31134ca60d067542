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
from tests.helpers import poll_until
from tests.reliability.conftest import Profile, Stack, expose, record
from tests.reliability.load import NAME, alert, webhook

OPEN_FILES = 1024  # systemd's default soft limit for a service
READ_TIMEOUT = 2  # RELAY_REQUEST_READ_TIMEOUT_SECONDS for these tests
SLOW_CLIENTS = 20
MAX_BODY = 8 * 1024 * 1024  # relay's default RELAY_MAX_BODY_BYTES


@contextlib.asynccontextmanager
async def relay_process(tmp_path: Path, stack: Stack, open_files: int = OPEN_FILES, read_timeout: float = READ_TIMEOUT,
                        **env: str) -> AsyncIterator[RelayProcess]:
    relay = RelayProcess(tmp_path, stack.routes, {**stack.env, "RELAY_REQUEST_READ_TIMEOUT_SECONDS": str(read_timeout),
                                                  **env})
    await relay.start()
    assert relay.proc is not None
    resource.prlimit(relay.proc.pid, resource.RLIMIT_NOFILE, (open_files, open_files))
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
            # The webhook got in at once (the oldest held connections make room): give the slow ones their deadline.
            await asyncio.sleep(max(0.0, started + READ_TIMEOUT + 1.5 - time.monotonic()))
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


# -- slow bodies, before and whatever the authentication (issue 11, item 1) -------------------------------------

SMALL_OPEN_FILES = 256  # the relay's limit in this test: more slow clients than it has descriptors
SLOW_BODIES = 300
BODY_READ_TIMEOUT = 4.0
DECLARED = 2**30  # a 1 GB body, trickled a byte a second


def _slow_body_heads(token: str) -> list[bytes]:
    """Requests that declare a huge body, on every kind of path: unauthenticated, wrong token, no token, GET."""
    heads = [f"GET /healthz HTTP/1.1\r\nHost: relay\r\nContent-Length: {DECLARED}\r\n\r\n",
             f"GET /metrics HTTP/1.1\r\nHost: relay\r\nContent-Length: {DECLARED}\r\n\r\n",
             f"POST /webhook HTTP/1.1\r\nHost: relay\r\nAuthorization: Bearer wrong-{token[:4]}\r\n"
             f"Content-Type: application/json\r\nContent-Length: {DECLARED}\r\n\r\n{{",
             f"POST /webhook HTTP/1.1\r\nHost: relay\r\nContent-Type: application/json\r\n"
             f"Content-Length: {DECLARED}\r\n\r\n{{"]
    return [head.encode() for head in heads]


async def _attack(port: int, head: bytes, stop: asyncio.Event, lifetimes: list[float], held: list[int]) -> None:
    """Send `head`, trickle the body a byte a second; when relay hangs up, note how long it took and come back."""
    while not stop.is_set():
        opened = time.monotonic()
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
        except OSError:
            await asyncio.sleep(1)
            continue
        held[0] += 1  # held now
        held[1] += 1  # connections made
        try:
            writer.write(head)
            await writer.drain()
            while not stop.is_set():
                with contextlib.suppress(TimeoutError):
                    while await asyncio.wait_for(reader.read(65536), 1.0):
                        pass  # an answer (/healthz answers at once): the body is still owed
                    lifetimes.append(time.monotonic() - opened)  # relay hung up
                    break
                writer.write(b" ")
                await writer.drain()
        except OSError:
            lifetimes.append(time.monotonic() - opened)
        finally:
            held[0] -= 1
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()
        await asyncio.sleep(1)  # then come back, as an attacker would


async def test_slow_bodies_on_any_path_are_cut_and_cannot_keep_a_webhook_out(tmp_path: Path, stack: Stack) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < SLOW_BODIES + 500:  # this process holds the other ends
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, SLOW_BODIES + 500), hard))
    async with relay_process(tmp_path, stack, open_files=SMALL_OPEN_FILES, read_timeout=BODY_READ_TIMEOUT) as relay:
        stop, lifetimes, held = asyncio.Event(), [], [0, 0]  # type: asyncio.Event, list[float], list[int]
        heads = _slow_body_heads(stack.token)
        attackers = [asyncio.create_task(_attack(relay.port, heads[i % len(heads)], stop, lifetimes, held))
                     for i in range(SLOW_BODIES)]
        try:
            await poll_until(lambda: held[1] >= SLOW_BODIES, timeout=20)  # every one of them connected and sent
            started = time.monotonic()
            async with httpx.AsyncClient(base_url=relay.url, timeout=30,
                                         headers={"Authorization": f"Bearer {stack.token}"}) as client:
                answer, tries = await _post_like_alertmanager(client, webhook("Relsx00001", ["slack"]),
                                                              deadline=started + 30)
                waited = time.monotonic() - started
                [message] = await stack.slack.wait_for(1, timeout=30)
            # Every connection of the first round has had its deadline by now.
            await asyncio.sleep(max(0.0, started + BODY_READ_TIMEOUT + 2 - time.monotonic()))
        finally:
            stop.set()
            await asyncio.gather(*attackers)
        # A few, far under the bound: nothing evicts them, the deadline alone cuts them off.
        alone: list[float] = []
        stop = asyncio.Event()
        few = [asyncio.create_task(_attack(relay.port, head, stop, alone, held)) for head in heads * 3]
        await poll_until(lambda: len(alone) >= len(few), timeout=3 * BODY_READ_TIMEOUT)
        stop.set()
        await asyncio.gather(*few)
        log = relay.log.read_text(errors="replace")
    record("slow bodies on every path", open_file_limit=SMALL_OPEN_FILES, slow_clients=SLOW_BODIES,
           read_timeout_seconds=BODY_READ_TIMEOUT, closed_by_relay=len(lifetimes),
           longest_held_seconds=round(max(lifetimes, default=0.0), 1), webhook_answered=answer.status_code,
           webhook_tries=tries, webhook_waited_seconds=round(waited, 2),
           alone_cut_after_seconds=[round(min(alone), 1), round(max(alone), 1)])
    assert answer.status_code == 200 and set(NAME.findall(str(message))) == {"Relsx00001"}
    assert waited < BODY_READ_TIMEOUT  # it got in while they all held on, not once a deadline freed a descriptor
    assert len(lifetimes) >= SLOW_BODIES  # every slow body was cut off by relay...
    assert max(lifetimes) < BODY_READ_TIMEOUT + 1.5  # ...within the deadline
    assert "closing the oldest" in log
    assert BODY_READ_TIMEOUT - 0.5 < min(alone) and max(alone) < BODY_READ_TIMEOUT + 1.5


async def _trickle_after_a_request(port: int, head: bytes, trickle: bytes) -> float | None:
    """Send a complete request on a kept-alive connection, read its answer, then send `head` of the next one and
    trickle `trickle` a byte every 0.2 s; seconds until relay hung up, None if it did not within three deadlines."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n")
        await writer.drain()
        assert (await asyncio.wait_for(reader.readuntil(b"ok\n"), 10)).startswith(b"HTTP/1.1 200")
        started = time.monotonic()
        writer.write(head)
        while time.monotonic() - started < 3 * READ_TIMEOUT:
            writer.write(trickle[:1])
            trickle = trickle[1:] or trickle
            await writer.drain()
            with contextlib.suppress(TimeoutError):
                if await asyncio.wait_for(reader.read(65536), 0.2) == b"":
                    return time.monotonic() - started
        return None
    except OSError:
        return time.monotonic() - started
    finally:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()


async def test_a_second_request_on_a_kept_alive_connection_has_its_own_deadline(tmp_path: Path, stack: Stack) -> None:
    """The deadline is armed per request, not only when the connection opens: a client that behaves once, then
    trickles the next request's headers or a huge body, is cut off like any other (issue 11 item 1)."""
    body_head = b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nContent-Length: 1000000000\r\n\r\n{"  # answered at once
    async with relay_process(tmp_path, stack) as relay:
        cut = await asyncio.gather(
            _trickle_after_a_request(relay.port, b"", b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nX: " + b"x" * 99),
            _trickle_after_a_request(relay.port, body_head, b" "))
    assert all(c is not None and READ_TIMEOUT - 0.5 < c < READ_TIMEOUT + 1.5 for c in cut), cut
