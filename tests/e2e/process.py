"""relay as a real process (`python -m relay serve`), for tests that kill it."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import sys
from collections.abc import Sequence
from pathlib import Path

import httpx

from tests.helpers import REPO, poll_until


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class RelayProcess:
    """`prefix` runs relay under another command (e.g. `setpriv` to drop root); `pipe_log` has this process write
    relay's log file, so relay keeps its log even when it cannot write files itself (a disk-full test)."""

    def __init__(self, tmp_path: Path, routes: Path, env: dict[str, str], port: int | None = None,
                 database_url: str | None = None, *, prefix: Sequence[str] = (), pipe_log: bool = False) -> None:
        self.prefix = list(prefix)
        self.pipe_log = pipe_log
        self._copier: asyncio.Task[None] | None = None
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = tmp_path / "relay.log"
        self.env = {
            **os.environ,
            **env,
            "RELAY_ROUTES": str(routes),
            "RELAY_DATABASE_URL": database_url or f"sqlite:///{tmp_path / 'relay.db'}",
            "RELAY_PORT": str(self.port),
            "RELAY_RETRY_INITIAL_SECONDS": "0.05",
            "RELAY_RETRY_MAX_SECONDS": "0.5",
            "RELAY_RATE_LIMITS": "false",
        }
        self.proc: asyncio.subprocess.Process | None = None

    async def start(self) -> None:
        command = [*self.prefix, sys.executable, "-m", "relay", "serve"]
        if self.pipe_log:
            self.proc = await asyncio.create_subprocess_exec(*command, cwd=REPO, env=self.env,
                                                             stdout=asyncio.subprocess.PIPE,
                                                             stderr=asyncio.subprocess.STDOUT)
            self._copier = asyncio.create_task(self._copy_log(self.proc))
        else:
            with self.log.open("ab") as out:
                self.proc = await asyncio.create_subprocess_exec(*command, cwd=REPO, env=self.env, stdout=out,
                                                                 stderr=out)

        async def ready() -> bool:
            assert self.proc is not None
            if self.proc.returncode is not None:
                raise RuntimeError(f"relay exited with {self.proc.returncode}: {self.log.read_text()[-2000:]}")
            try:
                async with httpx.AsyncClient() as client:
                    return (await client.get(f"{self.url}/readyz", timeout=1)).status_code == 200
            except httpx.HTTPError:
                return False

        await poll_until(ready, timeout=20, interval=0.05)

    async def _copy_log(self, proc: asyncio.subprocess.Process) -> None:
        assert proc.stdout is not None
        with self.log.open("ab") as out:
            while line := await proc.stdout.readline():
                out.write(line)
                out.flush()

    async def _log_copied(self) -> None:
        if self._copier is not None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._copier, 10)
            self._copier = None

    async def kill(self) -> None:
        """SIGKILL: no shutdown code runs, as in a crash or an OOM kill."""
        assert self.proc is not None
        if self.proc.returncode is None:
            self.proc.send_signal(signal.SIGKILL)
        await self.proc.wait()
        await self._log_copied()

    async def terminate(self) -> int:
        assert self.proc is not None
        if self.proc.returncode is None:
            self.proc.send_signal(signal.SIGTERM)
        code = await asyncio.wait_for(self.proc.wait(), 30)
        await self._log_copied()
        return code
