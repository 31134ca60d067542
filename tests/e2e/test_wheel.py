"""The wheel users install: built from this checkout, installed into a fresh venv, run from an empty directory."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import subprocess
import sys
import tomllib
import zipfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest

from tests.e2e.process import free_port
from tests.fakes.slack import SlackWebhookServer
from tests.helpers import REPO, poll_until

VERSION = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["version"]


def _run(*command: str | Path, timeout: float = 180) -> None:
    done = subprocess.run([str(c) for c in command], timeout=timeout, capture_output=True, text=True)
    assert done.returncode == 0, f"{command} exited {done.returncode}: {done.stderr[-3000:]}"


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """`pip wheel .` as the image build does: no editable install, only what package-data ships.

    Built from a copy without build/ or *.egg-info, which setuptools reuses: files it no longer ships would pass.
    """
    source, out = tmp_path_factory.mktemp("source") / "relay", tmp_path_factory.mktemp("wheel")
    shutil.copytree(REPO, source, ignore=shutil.ignore_patterns(
        ".git", ".venv", "build", "dist", "*.egg-info", "__pycache__", ".*_cache", ".hypothesis", "*.db*"))
    _run(sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", out, source)
    [built] = out.glob("relay-*.whl")
    return built


@pytest.fixture(scope="module")
def installed(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh venv outside the repository, installed as the image installs: the lock file, then the wheel alone."""
    venv = tmp_path_factory.mktemp("venv")
    _run(sys.executable, "-m", "venv", venv)
    _run(venv / "bin/pip", "install", "-q", "--require-hashes", "-r", REPO / "requirements.lock")
    _run(venv / "bin/pip", "install", "-q", "--no-deps", wheel)
    return venv


def test_the_wheel_holds_migrations_templates_and_type_marker(wheel: Path) -> None:
    names = set(zipfile.ZipFile(wheel).namelist())
    for kind in ("sqlite", "postgres"):
        shipped = {n for n in names if n.startswith(f"relay/store/migrations/{kind}/") and n.endswith(".sql")}
        on_disk = {p.relative_to(REPO).as_posix() for p in (REPO / "relay/store/migrations" / kind).glob("*.sql")}
        assert shipped == on_disk and on_disk
    templates = {p.relative_to(REPO).as_posix() for p in (REPO / "relay/templates").rglob("*.j2")}
    assert templates and templates <= names
    assert "relay/py.typed" in names


@pytest.fixture
def clean_env(tmp_path: Path) -> Iterator[dict[str, str]]:
    """The environment of a user's shell: no RELAY_ setting, nothing that puts this checkout on sys.path."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RELAY_", "PYTHON", "VIRTUAL_ENV"))}
    env["HOME"] = str(tmp_path / "home")
    yield env


@pytest.fixture
async def slack() -> AsyncIterator[SlackWebhookServer]:
    async with SlackWebhookServer() as server:
        yield server


@pytest.mark.timeout(300)  # the first run on a clean machine downloads the locked dependencies
async def test_installed_relay_serves_from_an_empty_directory_and_delivers_a_test_alert(
        installed: Path, tmp_path: Path, clean_env: dict[str, str], slack: SlackWebhookServer) -> None:
    empty = tmp_path / "run"
    empty.mkdir()
    routes = tmp_path / "routes.yaml"
    routes.write_text("receivers:\n  - name: team-slack\n    slack:\n      webhook_url: ${SLACK_WEBHOOK_URL}\n"
                      "default_receivers: [team-slack]\n")
    port = free_port()
    env = {**clean_env, "RELAY_ROUTES": str(routes), "RELAY_PORT": str(port), "SLACK_WEBHOOK_URL": slack.url()}
    relay = installed / "bin" / "relay"

    where = subprocess.run([installed / "bin/python", "-c", "import relay; print(relay.__file__)"], cwd=empty,
                           env=env, capture_output=True, text=True, check=True).stdout
    assert Path(where).resolve().is_relative_to(installed.resolve()), where  # not this checkout
    version = subprocess.run([relay, "--version"], env=env, capture_output=True, text=True, check=True).stdout
    assert version.strip() == f"relay {VERSION}"

    log = tmp_path / "serve.log"
    with log.open("wb") as out:
        serve = await asyncio.create_subprocess_exec(relay, "serve", cwd=empty, env=env, stdout=out, stderr=out)
    try:
        async def ready() -> bool:
            assert serve.returncode is None, log.read_text()
            try:
                async with httpx.AsyncClient() as client:
                    return (await client.get(f"http://127.0.0.1:{port}/readyz", timeout=1)).status_code == 200
            except httpx.HTTPError:
                return False

        await poll_until(ready, timeout=30, interval=0.1)
        test_alert = await asyncio.create_subprocess_exec(
            relay, "test-alert", "--alertname", "WheelCheck", cwd=empty, env=env,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
        said = (await asyncio.wait_for(test_alert.communicate(), 60))[0].decode()
        assert test_alert.returncode == 0, said
        assert "team-slack" in said and "delivered in" in said
        [message] = await slack.wait_for(1)
        assert "WheelCheck" in str(message)
        async with httpx.AsyncClient() as client:
            metrics = (await client.get(f"http://127.0.0.1:{port}/metrics")).text
        assert f'relay_build_info{{version="{VERSION}"}} 1.0' in metrics
        assert (empty / "relay.db").exists()  # the default database, beside the user, not in the package
    finally:
        if serve.returncode is None:
            serve.terminate()
        code = await asyncio.wait_for(serve.wait(), 30)
        # uvicorn re-raises the SIGTERM it caught once shutdown is complete, so a supervisor sees the signal
        assert code in (0, -signal.SIGTERM) and "Application shutdown complete" in log.read_text(), log.read_text()
