"""The alerts of Prometheus rule files: the real alerts a routes change is reviewed and checked with.

A reviewer knows alerts by name (HighErrorRate, DBConnectionExhausted), not by
label sets, so `routes diff` and `routes check --strict` read the repository's
own rule files: `deploy/prometheus/*.yml` by default (promtool's `*.test.yml`
unit tests left out), plus any given with `--rules`.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from relay.config import yamlconfig
from relay.errors import ConfigError

DEFAULT_DIR = "deploy/prometheus"


@dataclass(frozen=True)
class RuleAlert:
    """One alerting rule: the labels its alerts carry (besides those of the series) and its annotations."""

    labels: dict[str, str]
    annotations: dict[str, str] = field(default_factory=dict)
    file: str = ""
    line: int | None = None

    @property
    def name(self) -> str:
        return self.labels["alertname"]


def is_rule_file(name: str) -> bool:
    return name.endswith((".yml", ".yaml")) and not name.endswith((".test.yml", ".test.yaml"))


def discover(root: Path) -> list[Path]:
    """The repository's rule files under deploy/prometheus, in name order; none when the folder is absent."""
    folder = root / DEFAULT_DIR
    return sorted(p for p in folder.glob("*") if p.is_file() and is_rule_file(p.name)) if folder.is_dir() else []


def _groups(data: Any) -> list[Any]:
    """`groups:` of a rule file, or `spec.groups` of a PrometheusRule object."""
    if not isinstance(data, dict):
        return []
    spec = data.get("spec")
    groups = data.get("groups", spec.get("groups") if isinstance(spec, dict) else None)
    return groups if isinstance(groups, list) else []


def _text(values: Any) -> dict[str, str]:
    return {str(k): str(v) for k, v in values.items()} if isinstance(values, dict) else {}


def read(file: Path, shown_as: str | None = None) -> list[RuleAlert]:
    """The alerting rules of one file (`groups[].rules[].alert` with its `labels` and `annotations`)."""
    name = shown_as or str(file)
    try:
        data, lines = yamlconfig.load(file, environ={})
    except ConfigError as exc:
        raise ConfigError(f"rule file: {exc.reason}", file=name, line=exc.line) from None
    out = []
    top: tuple[str, ...] = ("groups",) if isinstance(data, dict) and "groups" in data else ("spec", "groups")
    for g, group in enumerate(_groups(data)):
        rules = group.get("rules") if isinstance(group, dict) else None
        for r, rule in enumerate(rules if isinstance(rules, list) else []):
            if not isinstance(rule, dict) or "alert" not in rule:
                continue  # recording rules
            line = yamlconfig.line_of(lines, (*top, g, "rules", r, "alert"))
            out.append(RuleAlert({"alertname": str(rule["alert"]), **_text(rule.get("labels"))},
                                 _text(rule.get("annotations")), name, line))
    return out


def read_all(files: Iterable[tuple[Path, str]]) -> list[RuleAlert]:
    """Every alerting rule of the files, each given with the name to show for it."""
    return [alert for path, shown in files for alert in read(path, shown)]
