"""relay's container image, built from the Dockerfile with Debian's podman on a Debian base made with debootstrap
(no image registry is reachable), then run as deployed: its own USER, CMD, environment and HEALTHCHECK.

Two ways to run it: `podman run`, and `relay serve` inside the image's filesystem (`podman create` + `podman
mount` + `chroot --userspec` as the image's USER, with the image's environment), for machines whose podman cannot
start containers. Both post an Alertmanager webhook and wait for it in the suite's Slack server.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import resource
import shutil
import ssl
import subprocess
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import Providers
from tests.e2e.process import free_port
from tests.helpers import REPO, fixture, poll_until, slack_text
from tests.requirements import CONTAINER

BASE_IMAGE = os.environ.get("RELAY_TEST_BASE_IMAGE", "localhost/relay-base:bookworm")
IMAGE = "localhost/relay:test"
TOKEN = "container-webhook-token-SECRET"
CHROOT = shutil.which("chroot") or "chroot"
MISSING = [tool for tool in ("podman", "debootstrap", "chroot") if shutil.which(tool) is None]

pytestmark = CONTAINER.unless(
    f"needs root and Debian's {', '.join(MISSING or ['podman'])} (apt-get install podman runc debootstrap)"
    if MISSING or os.geteuid() != 0 else None)


def run(*command: str, timeout: float = 60, env: dict[str, str] | None = None) -> str:
    """A podman (or other) command; its output on success, its output in the error on failure."""
    done = subprocess.run(command, capture_output=True, text=True, timeout=timeout, check=False,
                          env=None if env is None else {**os.environ, **env})
    if done.returncode != 0:
        output = (done.stdout + done.stderr)[-3000:]
        raise RuntimeError(f"{' '.join(command[:3])} ... exited {done.returncode}: {output}")
    return done.stdout


@dataclass(frozen=True)
class Image:
    name: str
    config: dict[str, Any]  # the image's Config: User, Env, Cmd, WorkingDir
    healthcheck: list[str]  # HEALTHCHECK's command, as ["CMD", argv...]

    @property
    def env(self) -> dict[str, str]:
        return dict(item.split("=", 1) for item in self.config["Env"])


@pytest.fixture(scope="session")
def image(tmp_path_factory: pytest.TempPathFactory) -> Image:
    """The base image (made once: the script skips it when it exists) and relay's image from the Dockerfile.

    pip in the build trusts what this machine's Python trusts (its CA bundle, mounted for the build only), as
    PyPI may be reached through a TLS proxy here; nothing of it stays in the image."""
    run(str(REPO / "deploy" / "container" / "make-base-image.sh"), BASE_IMAGE, timeout=900)
    iidfile = tmp_path_factory.mktemp("image") / "image-id"
    ca_bundle = ssl.get_default_verify_paths().cafile or "/etc/ssl/certs/ca-certificates.crt"
    run("podman", "build", "--isolation=chroot", "--format=docker", "--build-arg", f"BASE_IMAGE={BASE_IMAGE}",
        "--volume", f"{ca_bundle}:/run/build-ca.crt:ro", "--build-arg", "PIP_CERT=/run/build-ca.crt",
        "--iidfile", str(iidfile), "--tag", IMAGE, str(REPO), timeout=900)
    # By ID: another checkout's test run may retag IMAGE meanwhile.
    image_id = iidfile.read_text().strip()
    inspected = json.loads(run("podman", "image", "inspect", image_id))[0]
    return Image(image_id, inspected["Config"], inspected["Healthcheck"]["Test"])


@dataclass
class Running:
    url: str
    pid: int  # relay's process, as the host sees it
    healthcheck: Callable[..., int]  # (**env overrides) -> exit code of the image's HEALTHCHECK run inside
    log: Callable[[], str]  # relay's output so far
    exited: Callable[[], bool]


def relay_env(providers: Providers, port: int) -> dict[str, str]:
    """What a deployment adds to the image's environment: provider secrets, the webhook token, the port."""
    return {**providers.env, "RELAY_WEBHOOK_TOKEN": TOKEN, "RELAY_PORT": str(port)}


def logs(container: str) -> str:
    return subprocess.run(["podman", "logs", container], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                          timeout=30, check=False).stdout


@contextlib.contextmanager
def podman_run(image: Image, providers: Providers, port: int) -> Iterator[Running]:
    """`podman run` on the host's network; the values of the environment go through podman's own environment
    (`--env NAME`), not its command line. This machine has hybrid cgroups, which crun refuses, and its root lacks
    CAP_SYS_RESOURCE, so podman's default rlimits are refused too: runc, our open-files limit, 4096 processes."""
    name = f"relay-test-{uuid.uuid4().hex[:8]}"
    nofile = resource.getrlimit(resource.RLIMIT_NOFILE)
    env = relay_env(providers, port)
    run("podman", "--runtime", "runc", "run", "--detach", "--name", name, "--network", "host",
        "--ulimit", f"nofile={nofile[0]}:{nofile[1]}", "--ulimit", "nproc=4096:4096",
        "--volume", f"{providers.routes}:/app/routes.yaml:ro", *(arg for key in env for arg in ("--env", key)),
        image.name, env=env)
    try:
        pid = int(run("podman", "inspect", "--format", "{{.State.Pid}}", name))

        def healthcheck(**overrides: str) -> int:
            """podman's own run of the HEALTHCHECK; with overrides, its command through `podman exec`."""
            if not overrides:
                command = ["podman", "healthcheck", "run", name]
            else:
                extra = [arg for key, value in overrides.items() for arg in ("--env", f"{key}={value}")]
                command = ["podman", "--runtime", "runc", "exec", *extra, name, *image.healthcheck[1:]]
            return subprocess.run(command, capture_output=True, timeout=30, check=False).returncode

        yield Running(f"http://127.0.0.1:{port}", pid, healthcheck, lambda: logs(name),
                      lambda: not Path(f"/proc/{pid}").exists())
    finally:
        subprocess.run(["podman", "rm", "--force", "--volumes", "--time", "10", name], capture_output=True,
                       timeout=60, check=False)


@contextlib.contextmanager
def chroot_run(image: Image, providers: Providers, port: int, tmp_path: Path) -> Iterator[Running]:
    """`relay serve` in the image's filesystem, as the image's USER, with its environment, working directory
    and CMD, on the host's network (what `podman run` would do, without a container runtime)."""
    container = run("podman", "create", image.name).strip()
    try:
        root = Path(run("podman", "mount", container).strip())
        shutil.copy(providers.routes, root / "app" / "routes.yaml")
        env = {**image.env, **relay_env(providers, port)}
        # chroot(1) finds the command on the PATH given to it: the image's, which names its venv.
        inside = [CHROOT, f"--userspec={image.config.get('User') or '0:0'}", str(root),
                  "env", f"--chdir={image.config['WorkingDir']}"]
        log = tmp_path / "relay.log"
        with log.open("wb") as out:
            proc = subprocess.Popen([*inside, *image.config["Cmd"]], env=env, stdout=out, stderr=out)

        def healthcheck(**overrides: str) -> int:
            return subprocess.run([*inside, *image.healthcheck[1:]], env={**env, **overrides}, capture_output=True,
                                  timeout=30, check=False).returncode

        try:
            yield Running(f"http://127.0.0.1:{port}", proc.pid, healthcheck, log.read_text,
                          lambda: proc.poll() is not None)
        finally:
            proc.terminate()
            proc.wait(timeout=30)
    finally:
        subprocess.run(["podman", "rm", "--force", "--volumes", container], capture_output=True, timeout=60,
                       check=False)


@pytest.fixture(params=["podman-run", "chroot"])
async def relay_in_image(request: pytest.FixtureRequest, image: Image, providers: Providers,
                         tmp_path: Path) -> AsyncIterator[Running]:
    port = free_port()
    if request.param == "podman-run":
        starter = podman_run(image, providers, port)
    else:
        starter = chroot_run(image, providers, port, tmp_path)
    with starter as running:
        async def ready() -> bool:
            if running.exited():
                raise AssertionError(f"relay in the image exited; its log: {running.log()[-3000:]}")
            try:
                async with httpx.AsyncClient() as client:
                    return (await client.get(f"{running.url}/readyz", timeout=1)).status_code == 200
            except httpx.HTTPError:
                return False

        try:
            await poll_until(ready, timeout=60, interval=0.1)
        except TimeoutError:
            log = running.log()[-3000:]
            raise AssertionError(f"relay in the image never answered /readyz; its log: {log}") from None
        yield running


def uids(pid: int) -> list[int]:
    """Real, effective, saved and filesystem uid of a process (the `Uid:` line of /proc/PID/status)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("Uid:"):
            return [int(field) for field in line.split()[1:]]
    raise AssertionError(f"no Uid line for process {pid}")


@pytest.mark.timeout(1200)  # the first test builds the base (~1 min) and the image (~20 s to a few minutes)
async def test_image_serves_delivers_and_runs_as_its_user(relay_in_image: Running, image: Image,
                                                          providers: Providers) -> None:
    running = relay_in_image
    async with httpx.AsyncClient(base_url=running.url, timeout=10) as client:
        assert (await client.get("/readyz")).status_code == 200
        answer = await client.post("/webhook", json=fixture("firing-higherrorrate.json"),
                                   headers={"Authorization": f"Bearer {TOKEN}"})
        assert answer.status_code == 200, answer.text
        unauthorised = await client.post("/webhook", json=fixture("firing-higherrorrate.json"))
        assert unauthorised.status_code == 401  # the image listens on 0.0.0.0: the token is enforced
    [message] = await providers.slack.wait_for(1, timeout=30)
    assert "HighErrorRate" in slack_text(message)

    assert uids(running.pid) == [10001] * 4, "relay does not run as uid 10001"
    assert image.config.get("User") == "10001:10001"  # numeric, so Kubernetes' runAsNonRoot can check it
    assert "relay" in Path(f"/proc/{running.pid}/cmdline").read_text()

    assert await asyncio.to_thread(running.healthcheck) == 0
    assert await asyncio.to_thread(running.healthcheck, RELAY_PORT=str(free_port())) != 0  # nothing there


def test_image_venv_holds_no_installers(image: Image) -> None:
    """The runtime venv has relay and its locked dependencies only: pip and venv's bundled setuptools (an old one
    that image scanners report) are build tools, removed before the venv is copied into the image."""
    container = run("podman", "create", image.name).strip()
    try:
        root = Path(run("podman", "mount", container).strip())
        [site] = (root / "opt" / "venv" / "lib").glob("python3.*/site-packages")
        installed = {dist.name.split("-")[0].lower() for dist in site.glob("*.dist-info")}
        assert "relay" in installed
        assert not installed & {"pip", "setuptools", "wheel"}, sorted(installed)
    finally:
        subprocess.run(["podman", "rm", "--force", "--volumes", container], capture_output=True, timeout=60,
                       check=False)
