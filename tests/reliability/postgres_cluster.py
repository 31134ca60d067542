"""A PostgreSQL cluster owned by one test (initdb in a temporary directory, its own loopback port), so the test
can restart or crash it without touching the machine's shared server.

initdb and the server refuse to run as root, so as root they run as the `postgres` user (runuser).
"""

from __future__ import annotations

import asyncio
import contextlib
import glob
import os
import shutil
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.e2e.process import free_port


def _bin(name: str) -> str:
    found = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}")) or [shutil.which(name) or ""]
    if not found[-1]:
        pytest.skip(f"PostgreSQL server binaries ({name}) are not installed")
    return found[-1]


class Cluster:
    def __init__(self, root: Path, port: int) -> None:
        self.data = root / "data"
        self.log = root / "postgres.log"
        self.port = port
        self.url = f"postgresql://postgres@127.0.0.1:{port}/postgres"
        self._as = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []

    async def _run(self, *command: str) -> None:
        proc = await asyncio.create_subprocess_exec(*self._as, *command, stdout=asyncio.subprocess.PIPE,
                                                    stderr=asyncio.subprocess.STDOUT)
        out, _ = await asyncio.wait_for(proc.communicate(), 60)
        if proc.returncode != 0:
            raise RuntimeError(f"{command[0]} failed ({proc.returncode}): {out.decode(errors='replace')[-2000:]}")

    async def init(self) -> None:
        await self._run(_bin("initdb"), "-D", str(self.data), "-U", "postgres", "--auth=trust", "--no-sync",
                        "-E", "UTF8")

    async def start(self) -> None:
        options = f"-p {self.port} -c listen_addresses=127.0.0.1 -k {self.data} -c max_connections=100"
        await self._run(_bin("pg_ctl"), "-D", str(self.data), "-l", str(self.log), "-o", options, "-w", "start")

    async def stop(self, mode: str = "fast") -> None:
        """`fast`: disconnect everyone and shut down cleanly; `immediate`: a crash (recovery at next start)."""
        await self._run(_bin("pg_ctl"), "-D", str(self.data), "-m", mode, "-w", "stop")

    async def restart(self, mode: str = "fast") -> None:
        await self.stop(mode)
        await self.start()


@contextlib.asynccontextmanager
async def postgres_cluster() -> AsyncIterator[Cluster]:
    _bin("initdb")
    with tempfile.TemporaryDirectory(prefix="relay-pg-") as tmp:
        root = Path(tmp)
        if os.geteuid() == 0:
            shutil.chown(root, "postgres", "postgres")
        cluster = Cluster(root, free_port())
        await cluster.init()
        await cluster.start()
        try:
            yield cluster
        finally:
            with contextlib.suppress(RuntimeError):
                await cluster.stop("immediate")
