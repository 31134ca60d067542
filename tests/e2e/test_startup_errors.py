"""Start-up mistakes a user can make: `relay serve` says each in one line on stderr and exits non-zero, no
traceback (unless RELAY_LOG_LEVEL=debug); a PostgreSQL that is not up yet is waited for."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import socket
import sys
import tempfile
from collections.abc import AsyncIterator, Iterator, Sequence
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import httpx
import pytest

from tests.e2e.process import free_port
from tests.helpers import REPO, ROUTES, poll_until, postgres_database

PASSWORD = "hunter2-NOT-TO-BE-SHOWN"


def relay_env(**settings: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RELAY_")}
    return {**env, "RELAY_ROUTES": str(ROUTES), "RELAY_PORT": str(free_port()), **settings}


async def serve(env: dict[str, str], prefix: Sequence[str] = (), cwd: Path = REPO) -> tuple[int, str]:
    proc = await asyncio.create_subprocess_exec(*prefix, sys.executable, "-m", "relay", "serve", cwd=cwd, env=env,
                                                stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE)
    try:
        _, err = await asyncio.wait_for(proc.communicate(), 30)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert proc.returncode is not None
    return proc.returncode, err.decode()


def one_line(err: str) -> str:
    assert "Traceback" not in err, err
    lines = err.splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("relay: ")
    return lines[0]


@pytest.fixture
def unwritable_dir() -> Iterator[tuple[Path, list[str]]]:
    """A directory relay may not write in, and the prefix that runs relay as a user to whom that applies."""
    with tempfile.TemporaryDirectory(prefix="relay-startup-") as tmp:
        folder = Path(tmp) / "data"
        folder.mkdir()
        Path(tmp).chmod(0o755)
        folder.chmod(0o555)
        if os.geteuid() != 0:
            yield folder, []
        elif shutil.which("setpriv") is None:
            pytest.skip("running as root without setpriv: cannot drop privileges to test permissions")
        else:
            yield folder, ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups", "--"]


async def test_a_database_directory_relay_cannot_write(unwritable_dir: tuple[Path, list[str]]) -> None:
    folder, prefix = unwritable_dir
    code, err = await serve(relay_env(RELAY_DATABASE_URL=f"sqlite:///{folder}/relay.db"), prefix)
    assert code != 0
    assert one_line(err) == (f"relay: cannot use the database {folder}/relay.db: directory {folder} is not "
                             "writable (Permission denied)")


async def test_a_database_directory_that_does_not_exist(tmp_path: Path) -> None:
    code, err = await serve(relay_env(RELAY_DATABASE_URL=f"sqlite:///{tmp_path}/nowhere/relay.db"))
    assert code != 0
    assert one_line(err) == (f"relay: cannot use the database {tmp_path}/nowhere/relay.db: directory "
                             f"{tmp_path}/nowhere does not exist")


async def test_no_routes_file_where_relay_runs_names_relay_routes(tmp_path: Path) -> None:
    """An installed relay started outside a checkout: ./routes.yaml is not there, and the line says what to set."""
    env = relay_env()
    del env["RELAY_ROUTES"]
    code, err = await serve(env, cwd=tmp_path)
    assert code != 0
    assert one_line(err) == ("relay: routes.yaml: cannot read: No such file or directory (RELAY_ROUTES names the "
                             f"routes file, relative to {tmp_path})")


async def test_an_unknown_url_scheme_lists_the_accepted_forms() -> None:
    code, err = await serve(relay_env(RELAY_DATABASE_URL=f"mysql://relay:{PASSWORD}@db/relay"))
    assert code != 0
    assert one_line(err) == ("relay: unsupported RELAY_DATABASE_URL scheme 'mysql': use sqlite:///path or "
                             "postgresql://user@host/db")


async def test_postgresql_that_refuses_names_host_and_port_never_the_password() -> None:
    url = f"postgresql://postgres:{PASSWORD}@127.0.0.1:5432/relay_no_such_database"
    code, err = await serve(relay_env(RELAY_DATABASE_URL=url, RELAY_DATABASE_WAIT_SECONDS="30"))
    assert code != 0  # at once: waiting cannot create a database
    assert one_line(err) == ('relay: PostgreSQL at 127.0.0.1:5432 refused the connection: database '
                             '"relay_no_such_database" does not exist')
    assert PASSWORD not in err


async def test_postgresql_unreachable_is_waited_for_then_one_line() -> None:
    port = free_port()  # nothing listens there
    url = f"postgresql://postgres:{PASSWORD}@127.0.0.1:{port}/test"
    code, err = await serve(relay_env(RELAY_DATABASE_URL=url, RELAY_DATABASE_WAIT_SECONDS="0"))
    assert code != 0
    assert one_line(err) == (f"relay: PostgreSQL at 127.0.0.1:{port} is unreachable: connection refused "
                             "(RELAY_DATABASE_WAIT_SECONDS sets how long to wait)")

    code, err = await serve(relay_env(RELAY_DATABASE_URL=url, RELAY_DATABASE_WAIT_SECONDS="1"))
    *retries, last = err.splitlines()
    assert code != 0 and "Traceback" not in err and PASSWORD not in err
    assert retries and all(f"PostgreSQL at 127.0.0.1:{port} is not reachable yet (connection refused)" in line
                           for line in retries)
    assert last.startswith(f"relay: PostgreSQL at 127.0.0.1:{port} is unreachable after waiting 1s")


@contextlib.asynccontextmanager
async def tcp_forwarder(port: int, target: tuple[str, int]) -> AsyncIterator[None]:
    """A PostgreSQL that comes up late: this port forwards to the real server only from now on."""
    async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(OSError):
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        writer.close()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection(*target)
        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))

    server = await asyncio.start_server(handle, "127.0.0.1", port)
    try:
        yield
    finally:
        server.close()


async def test_postgresql_that_comes_up_late_is_waited_for(tmp_path: Path) -> None:
    async with postgres_database() as real:
        port = free_port()
        parts = urlsplit(real)
        url = urlunsplit(parts._replace(netloc=f"{parts.username or 'postgres'}@127.0.0.1:{port}"))
        env = relay_env(RELAY_DATABASE_URL=url, RELAY_DATABASE_WAIT_SECONDS="60")
        log = tmp_path / "relay.log"
        with log.open("wb") as out:
            proc = await asyncio.create_subprocess_exec(sys.executable, "-m", "relay", "serve", cwd=REPO, env=env,
                                                        stdout=out, stderr=out)
        try:
            await poll_until(lambda: "is not reachable yet" in log.read_text(), timeout=20)
            async with tcp_forwarder(port, (parts.hostname or "127.0.0.1", parts.port or 5432)):
                async def ready() -> bool:
                    assert proc.returncode is None, log.read_text()
                    try:
                        async with httpx.AsyncClient() as client:
                            answer = await client.get(f"http://127.0.0.1:{env['RELAY_PORT']}/readyz", timeout=1)
                            return answer.status_code == 200
                    except httpx.HTTPError:
                        return False

                await poll_until(ready, timeout=30, interval=0.1)
                proc.terminate()
                await asyncio.wait_for(proc.wait(), 30)
        finally:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
    assert f"PostgreSQL at 127.0.0.1:{port} is not reachable yet" in log.read_text()


async def test_a_setting_of_the_wrong_type_names_the_variable_and_the_type() -> None:
    code, err = await serve(relay_env(RELAY_PORT="abc"))
    assert code != 0
    assert one_line(err) == "relay: RELAY_PORT='abc' is not valid: expected an integer"

    code, err = await serve(relay_env(RELAY_RATE_LIMITS="maybe", RELAY_LOG_FORMAT="xml"))
    assert code != 0 and "Traceback" not in err
    assert sorted(err.splitlines()) == ["relay: RELAY_LOG_FORMAT='xml' is not valid: expected 'json' or 'console'",
                                        "relay: RELAY_RATE_LIMITS='maybe' is not valid: expected true or false"]


async def test_a_port_in_use(tmp_path: Path) -> None:
    """Refused in one line, and nothing left behind: no database, no stray relay.db.lock beside it."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        code, err = await serve(relay_env(RELAY_PORT=str(port), RELAY_DATABASE_URL=f"sqlite:///{tmp_path}/relay.db"))
    assert code != 0
    assert one_line(err) == (f"relay: cannot listen on 127.0.0.1:{port}: the address is already in use "
                             "(another process listens there; choose RELAY_PORT)")
    assert sorted(p.name for p in tmp_path.iterdir()) == []


async def test_debug_logging_shows_the_traceback_too(tmp_path: Path) -> None:
    code, err = await serve(relay_env(RELAY_DATABASE_URL=f"sqlite:///{tmp_path}/nowhere/relay.db",
                                      RELAY_LOG_LEVEL="debug"))
    assert code != 0
    assert "Traceback" in err and err.splitlines()[-1].startswith("relay: cannot use the database")
