"""The PrometheusRule resources made from deploy/prometheus's rule files (kustomize cannot embed a file in one).

`RELAY_UPDATE_GOLDEN=1 pytest tests/deploy/test_kubernetes.py` rewrites them; the test fails when a rule
file changed and its PrometheusRule did not.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from tests.deploy.kube import KUSTOMIZE
from tests.helpers import REPO

PROMETHEUS = REPO / "deploy" / "prometheus"
# PrometheusRule file -> (rule file, resource name).
GENERATED = {
    KUSTOMIZE / "base" / "prometheusrule.yaml": (PROMETHEUS / "relay-rules.yml", "relay"),
    KUSTOMIZE / "components" / "plan-rules" / "prometheusrule.yaml": (PROMETHEUS / "rules.yml", "ojeomneo-alerts"),
}
HEADER = """\
# Generated from deploy/{source} by tests/deploy/prometheusrule.py: edit that file, then run
#   RELAY_UPDATE_GOLDEN=1 pytest tests/deploy/test_kubernetes.py
# Picked up by a Prometheus whose ruleSelector matches these labels (kube-prometheus-stack: `release: <its
# Helm release name>` unless prometheus.prometheusSpec.ruleSelectorNilUsesHelmValues is false).
"""


class _Dumper(yaml.SafeDumper):
    """Multi-line strings (PromQL, descriptions) as `|` blocks, as they are written in the rule files."""


def _str(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _str)


def resource(source: Path, name: str) -> dict[str, Any]:
    return {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "PrometheusRule",
        "metadata": {"name": name, "labels": {"app.kubernetes.io/name": "relay", "release": "kube-prometheus-stack"}},
        "spec": {"groups": yaml.safe_load(source.read_text())["groups"]},
    }


def text(source: Path, name: str) -> str:
    body = yaml.dump(resource(source, name), Dumper=_Dumper, sort_keys=False, width=120, allow_unicode=True)
    return HEADER.format(source=source.relative_to(REPO / "deploy")) + body
