"""Run relay the way a rendered Deployment says, without a cluster: its env, its volumes, its security context.

The pod's container gets: the manifest's env (Secret references resolved from the Secrets a test creates, as
`kubectl create secret` would; a missing required key fails as the kubelet's CreateContainerConfigError
does), each volume at a directory of its own (a ConfigMap in the kubelet's layout, `..data` symlink and all,
so an update is the kubelet's atomic swap; an emptyDir; a PersistentVolumeClaim group-owned by `fsGroup`),
and a sandbox: a private mount namespace with the root filesystem remounted read-only and only the
writable volumes bound writable, then `setpriv` to `runAsUser`/`runAsGroup`/`fsGroup` with no capabilities
and no privilege escalation. Mount paths are mapped to those directories in the env (`/data` -> .../data),
and RELAY_PORT to a free port, since nothing here may own /data or a fixed port on a shared machine.
"""

from __future__ import annotations

import asyncio
import os
import shlex
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from tests.deploy.kube import Resource, container
from tests.e2e.process import free_port
from tests.helpers import poll_until

SQLITE = "sqlite:///"
POD_IP = "10.244.1.17"  # what a probe or a scrape names as Host; nothing listens there


def sandbox_problem() -> str | None:
    """Why this machine cannot give relay a read-only root filesystem, or None when it can."""
    if os.geteuid() != 0:
        return "needs root (a mount namespace and setpriv)"
    for tool in ("unshare", "setpriv", "mount"):
        if shutil.which(tool) is None:
            return f"needs {tool} (util-linux)"
    done = subprocess.run(["unshare", "--mount", "--propagation", "private", "--", "sh", "-c",
                           "mount -o remount,bind,ro / && ! test -w /"],
                          capture_output=True, text=True, timeout=30, check=False)
    return None if done.returncode == 0 else f"cannot remount / read-only in a mount namespace: {done.stderr}"


class ConfigMapVolume:
    """A ConfigMap volume as the kubelet writes it: keys in a timestamped folder behind the `..data` symlink."""

    def __init__(self, directory: Path, volume: Resource, data: dict[str, str]) -> None:
        self.directory, self.items = directory, volume.get("items")
        directory.mkdir(parents=True)
        directory.chmod(0o755)
        self.update(data)

    def update(self, data: dict[str, str]) -> None:
        items = self.items or [{"key": key, "path": key} for key in data]
        stamp = self.directory / f"..{time.strftime('%Y_%m_%d_%H_%M_%S')}.{time.monotonic_ns()}"
        for item in items:
            target = stamp / item["path"]
            target.parent.mkdir(parents=True, exist_ok=True, mode=0o755)
            target.write_text(data[item["key"]])
            target.chmod(0o644)
        stamp.chmod(0o755)
        old = os.readlink(self.directory / "..data") if (self.directory / "..data").is_symlink() else None
        (self.directory / "..data_tmp").symlink_to(stamp.name)
        os.replace(self.directory / "..data_tmp", self.directory / "..data")  # the atomic swap
        for item in items:
            top = item["path"].split("/")[0]
            link = self.directory / top
            if not link.is_symlink():
                link.symlink_to(f"..data/{top}")
        if old:
            shutil.rmtree(self.directory / old)


@dataclass
class Pod:
    deployment: Resource
    root: Path
    configmaps: dict[str, dict[str, str]]
    secrets: dict[str, dict[str, str]]
    port: int = field(default_factory=free_port)
    claims: dict[str, Path] = field(default_factory=dict)  # PersistentVolumeClaim name -> an existing volume
    mounts: dict[str, Path] = field(default_factory=dict)
    writable: list[Path] = field(default_factory=list)
    configmap_volumes: dict[str, ConfigMapVolume] = field(default_factory=dict)
    proc: asyncio.subprocess.Process | None = None

    def __post_init__(self) -> None:
        spec = self.deployment["spec"]["template"]["spec"]
        self.security = spec.get("securityContext", {})
        volumes = {v["name"]: v for v in spec.get("volumes", [])}
        for mount in container(self.deployment).get("volumeMounts", []):
            self._mount(mount, volumes[mount["name"]])
        self.workdir = self.root / "app"  # the image's WORKDIR and HOME: nothing relay may write to
        self.workdir.mkdir(mode=0o755)
        self.log = self.root / "relay.log"

    def _mount(self, mount: Resource, volume: Resource) -> None:
        directory = self.root / "volumes" / volume["name"]
        if "configMap" in volume:
            data = self.configmaps[volume["configMap"]["name"]]
            self.configmap_volumes[volume["name"]] = ConfigMapVolume(directory, volume["configMap"], data)
        elif "emptyDir" in volume:
            directory.mkdir(parents=True)
            directory.chmod(0o1777)
            self.writable.append(directory)
        elif "persistentVolumeClaim" in volume and volume["persistentVolumeClaim"]["claimName"] in self.claims:
            directory = self.claims[volume["persistentVolumeClaim"]["claimName"]]  # the same volume, as on one node
            self.writable.append(directory)
        elif "persistentVolumeClaim" in volume:
            directory.mkdir(parents=True)
            os.chown(directory, 0, int(self.security.get("fsGroup", 0)))
            directory.chmod(0o2775)  # what the kubelet makes of a volume for fsGroup
            self.writable.append(directory)
        else:
            raise AssertionError(f"volume kind this test does not know: {volume}")
        self.mounts[mount["mountPath"]] = directory

    def host_path(self, value: str) -> str:
        """The directory standing in for a mount path, in a path or an sqlite URL."""
        prefix = SQLITE if value.startswith(SQLITE) else ""
        path = value[len(prefix):]
        for mount_path in sorted(self.mounts, key=len, reverse=True):
            if path == mount_path or path.startswith(mount_path.rstrip("/") + "/"):
                return prefix + str(self.mounts[mount_path]) + path[len(mount_path):]
        return value

    def environment(self) -> dict[str, str]:
        env = {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": str(self.workdir), "PYTHONUNBUFFERED": "1"}
        if "/tmp" in self.mounts:
            env["TMPDIR"] = str(self.mounts["/tmp"])
        for variable in container(self.deployment).get("env", []):
            if "value" in variable:
                env[variable["name"]] = self.host_path(str(variable["value"]))
                continue
            ref = variable["valueFrom"]["secretKeyRef"]
            value = self.secrets.get(ref["name"], {}).get(ref["key"])
            if value is None:
                if not ref.get("optional"):
                    raise AssertionError(f"CreateContainerConfigError: secret {ref['name']} has no key {ref['key']}")
                continue
            env[variable["name"]] = value
        env["RELAY_PORT"] = str(self.port)
        return env

    def command(self) -> list[str]:
        """`relay serve` (the image's command) in the sandbox the pod's securityContext describes."""
        assert "command" not in container(self.deployment) and "args" not in container(self.deployment)
        uid = int(self.security["runAsUser"])
        gid = int(self.security.get("runAsGroup", uid))
        groups = ",".join(str(g) for g in {gid, int(self.security.get("fsGroup", gid))})
        binds = " && ".join(f"mount --bind {shlex.quote(str(d))} {shlex.quote(str(d))}" for d in self.writable)
        drop = shlex.join(["setpriv", f"--reuid={uid}", f"--regid={gid}", f"--groups={groups}", "--no-new-privs",
                           "--inh-caps=-all", "--bounding-set=-all", "--", sys.executable, "-m", "relay", "serve"])
        script = " && ".join(filter(None, [binds, "mount -o remount,bind,ro /", f"exec {drop}"]))
        return ["unshare", "--mount", "--propagation", "private", "--", "sh", "-c", script]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self, timeout: float) -> None:
        with self.log.open("ab") as out:
            self.proc = await asyncio.create_subprocess_exec(*self.command(), cwd=self.workdir, env=self.environment(),
                                                             stdout=out, stderr=out)

        async def listening() -> bool:
            assert self.proc is not None
            if self.proc.returncode is not None:
                raise AssertionError(f"relay exited with {self.proc.returncode}: {self.log.read_text()[-3000:]}")
            try:
                async with httpx.AsyncClient() as client:
                    await client.get(f"{self.url}/healthz", timeout=1)
                return True
            except httpx.HTTPError:
                return False

        await poll_until(listening, timeout=timeout, interval=0.05)

    async def exits(self, timeout: float) -> tuple[int, str]:
        """Start a relay that must refuse to run: its exit code and what it printed."""
        with self.log.open("ab") as out:
            self.proc = await asyncio.create_subprocess_exec(*self.command(), cwd=self.workdir, env=self.environment(),
                                                             stdout=out, stderr=out)
        code = await asyncio.wait_for(self.proc.wait(), timeout)
        return code, self.log.read_text()

    async def get(self, path: str, port_name: str = "http") -> httpx.Response:
        """GET as the kubelet's probe or Prometheus' scrape would: on the container port the manifest names
        (mapped to ours), with the pod's address as Host."""
        [port] = [p["containerPort"] for p in container(self.deployment)["ports"] if p["name"] == port_name]
        async with httpx.AsyncClient(base_url=self.url, timeout=5) as client:
            return await client.get(path, headers={"Host": f"{POD_IP}:{port}"})

    async def stop(self) -> tuple[int, float]:
        """SIGTERM, as the kubelet sends it: the exit code and how long relay took to exit."""
        assert self.proc is not None
        started = time.monotonic()
        if self.proc.returncode is None:
            self.proc.terminate()
        code = await asyncio.wait_for(self.proc.wait(), 60)
        return code, time.monotonic() - started

    def kill(self) -> None:
        if self.proc is not None and self.proc.returncode is None:
            self.proc.kill()


def configmaps(resources: list[Resource]) -> dict[str, dict[str, Any]]:
    return {r["metadata"]["name"]: dict(r.get("data", {})) for r in resources if r["kind"] == "ConfigMap"}
