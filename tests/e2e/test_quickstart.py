"""The README's quick start, run as written: its fenced blocks are the commands, against the suite's Slack server
and Debian's real Alertmanager, so the quick start cannot rot.

A newcomer runs it in a checkout with `.venv` beside it; here the working directory is a fresh one holding a copy of
routes.yaml and `.venv` linked to the suite's own environment (the install line itself is checked, not run: it would
fetch relay's dependencies again). Port 8080 and 9093 become free ports, the Slack URL the suite's Slack server;
everything else is the README's text.
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import Providers
from tests.e2e.process import free_port
from tests.helpers import REPO, poll_until
from tests.requirements import ALERTMANAGER

README = REPO / "README.md"


def quick_start() -> str:
    text = README.read_text()
    start = text.index("## Quick start\n")
    return text[start:text.index("\n## ", start + 1)]


def blocks(section: str, lang: str) -> list[str]:
    return re.findall(rf"```{lang}\n(.*?)```", section, re.S)


def commands(block: str) -> list[str]:
    """A shell block's commands, continuation lines joined."""
    return [line.strip() for line in block.replace("\\\n", " ").splitlines() if line.strip()]


def claims(section: str) -> list[str]:
    """What the prose says Slack shows (`Slack shows `…``), whitespace as a renderer joins it."""
    return [" ".join(c.split()) for c in re.findall(r"Slack shows `([^`]*)`", section)]


class Shell:
    """The newcomer's terminals: a working directory, the environment, and what runs in the background."""

    def __init__(self, cwd: Path, env: dict[str, str], ports: dict[str, str]) -> None:
        self.cwd, self.env, self.ports = cwd, env, ports
        self.background: list[asyncio.subprocess.Process] = []

    def local(self, text: str) -> str:
        for written, port in self.ports.items():
            text = text.replace(written, port)
        return text

    async def run(self, command: str, timeout: float = 60) -> tuple[int, str]:
        proc = await asyncio.create_subprocess_exec(
            "bash", "-c", self.local(command), cwd=self.cwd, env=self.env,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
        out, _ = await asyncio.wait_for(proc.communicate(), timeout)
        assert proc.returncode is not None
        return proc.returncode, out.decode()

    async def start(self, command: str, log: Path) -> asyncio.subprocess.Process:
        """A command the README leaves running in its own terminal."""
        with log.open("ab") as out:
            proc = await asyncio.create_subprocess_exec(
                "bash", "-c", f"exec {self.local(command)}", cwd=self.cwd, env=self.env, stdout=out, stderr=out)
        self.background.append(proc)
        return proc

    async def stop(self) -> None:
        for proc in self.background:
            if proc.returncode is None:
                proc.terminate()
                try:
                    await asyncio.wait_for(proc.wait(), 15)
                except TimeoutError:
                    proc.kill()
                    await proc.wait()


@pytest.fixture
async def shell(tmp_path: Path, providers: Providers) -> AsyncIterator[Shell]:
    venv = Path(sys.prefix)
    if not (venv / "bin" / "relay").exists():
        pytest.skip(f"the suite's environment {venv} has no bin/relay (pip install -e . in a venv)")
    (tmp_path / ".venv").symlink_to(venv)
    shutil.copy(REPO / "routes.yaml", tmp_path / "routes.yaml")
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("RELAY_") and k not in ("SLACK_WEBHOOK_URL", "PAGERDUTY_ROUTING_KEY")}
    relay_port, am_port = str(free_port()), str(free_port())
    env["RELAY_PORT"] = relay_port  # the README's default 8080, moved where this machine has room
    ports = {"127.0.0.1:8080": f"127.0.0.1:{relay_port}", "127.0.0.1:9093": f"127.0.0.1:{am_port}"}
    terminals = Shell(tmp_path, env, ports)
    try:
        yield terminals
    finally:
        await terminals.stop()


async def test_the_install_line_installs_only_what_running_needs() -> None:
    install, serve = commands(blocks(quick_start(), "sh")[0])
    assert install == "python3 -m venv .venv && .venv/bin/pip install -e ."  # no [test] extra
    assert serve == ".venv/bin/relay serve"
    ci = (REPO / ".ci" / "run").read_text()
    test = commands(blocks(README.read_text().split("## Test\n", 1)[1], "sh")[0])
    assert test[-1] == ".venv/bin/pytest" and "\n.venv/bin/pytest\n" in ci  # CI runs the README's test command


async def test_the_quick_start_works_as_written(tmp_path: Path, providers: Providers, shell: Shell) -> None:
    section = quick_start()
    sh = blocks(section, "sh")
    [output] = blocks(section, "text")
    [config] = blocks(section, "yaml")
    assert len(sh) == 6, "the quick start's shell blocks changed: update this test with them"
    slack_claim, am_claim = claims(section)

    # Terminal 1: relay with an incoming webhook (the suite's Slack server stands in for hooks.slack.com).
    export, serve = commands(sh[1])
    assert export.startswith("export SLACK_WEBHOOK_URL=https://hooks.slack.com/")
    shell.env["SLACK_WEBHOOK_URL"] = providers.slack.url()
    relay_log = tmp_path / "relay.log"
    await shell.start(serve, relay_log)
    relay_url = f"http://{shell.local('127.0.0.1:8080')}"

    async def answers(url: str) -> bool:
        try:
            async with httpx.AsyncClient() as client:
                return (await client.get(url, timeout=1)).status_code == 200
        except httpx.HTTPError:
            return False

    await poll_until(lambda: answers(f"{relay_url}/readyz"), timeout=30, interval=0.1)

    # Terminal 2: the test alert, and what it prints.
    [test_alert] = commands(sh[2])
    code, out = await shell.run(test_alert)
    assert code == 0, out
    first, second = output.splitlines()
    assert out.splitlines()[0].startswith(first.split(" fingerprint ")[0]), out
    assert re.fullmatch(re.escape(second.split(" delivered in ")[0]) + r" delivered in \d+ ms \(attempt 1\)",
                        out.splitlines()[1]), out
    [message] = await providers.slack.wait_for(1)
    assert slack_claim in message["text"], (slack_claim, message["text"])

    # Alertmanager, from the README's alertmanager.yml, and an alert added with amtool.
    ALERTMANAGER.which("prometheus-alertmanager", install="apt-get install prometheus-alertmanager")
    ALERTMANAGER.which("amtool", install="apt-get install prometheus-alertmanager")
    (tmp_path / "alertmanager.yml").write_text(shell.local(config))
    [alertmanager] = commands(sh[3])
    am_log = tmp_path / "alertmanager.log"
    await shell.start(alertmanager, am_log)
    await poll_until(lambda: "Listening" in am_log.read_text(), timeout=30, interval=0.1)
    await poll_until(lambda: answers(f"http://{shell.local('127.0.0.1:9093')}/-/ready"), timeout=30, interval=0.1)
    [amtool] = commands(sh[4])
    code, out = await shell.run(amtool)
    assert code == 0, out
    [_, disk] = await providers.slack.wait_for(2, timeout=60)  # group_wait 5s
    text = str(disk)
    assert am_claim in disk["text"], (am_claim, disk["text"])
    assert "Disk 95% full" in text and "db-1" in text and "Silence" in text

    # relay's history lists both deliveries.
    [history] = commands(sh[5])
    code, out = await shell.run(history)
    assert code == 0, out
    rows = [line.split() for line in out.splitlines()[1:]]
    assert [(row[3], row[4], row[6]) for row in rows] == [("slack-alerts", "delivered", "DiskFull"),
                                                          ("slack-alerts", "delivered", "RelayTestAlert")], out
    assert "Traceback" not in relay_log.read_text()


def test_the_readme_fits_a_page() -> None:
    assert len(README.read_text().splitlines()) <= 250
