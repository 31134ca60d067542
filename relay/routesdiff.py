"""`relay routes diff OLD NEW`: which alerts would reach other receivers after a routes.yaml change.

A pull request that edits routes.yaml changes who is woken up. relay probes
both versions with the same label sets — the alerts of Prometheus rule files
when given, plus label sets built from every matcher in either file — and
lists each label set whose receivers differ, reduced to the labels that matter.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import yaml

from relay.errors import ConfigError
from relay.routes import Routes

MAX_PROBES = 20_000
OTHER = "__relay_other__"  # a value no matcher names: "anything else"
_LITERAL = re.compile(r"[\w.:/@ -]*")

Labels = dict[str, str]


@dataclass(frozen=True)
class Change:
    labels: tuple[tuple[str, str], ...]
    before: tuple[str, ...]
    after: tuple[str, ...]

    def __str__(self) -> str:
        shown = ", ".join(f'{k}="{v}"' if v != OTHER else f"{k}=<any other>" for k, v in self.labels)
        return f"{{{shown}}}: {', '.join(self.before) or '(none)'} -> {', '.join(self.after) or '(none)'}"


def _regex_literals(pattern: str) -> list[str]:
    """The plain alternatives of a regex like `critical|page` (others are probed only through OTHER)."""
    text = pattern[1:-1] if pattern.startswith("(") and pattern.endswith(")") else pattern
    parts = text.split("|")
    return [p for p in parts if _LITERAL.fullmatch(p)]


def matcher_values(routes: Iterable[Routes]) -> dict[str, list[str]]:
    """Every label a matcher names, with the values worth trying: each named value, absent, and anything else."""
    values: dict[str, set[str]] = {}
    for loaded in routes:
        for route in loaded.spec.routes:
            for matcher in route.matchers:
                seen = values.setdefault(matcher.name, set())
                if matcher.op in ("=", "!="):
                    seen.add(matcher.value)
                else:
                    seen.update(_regex_literals(matcher.value))
    return {name: sorted(found | {"", OTHER}) for name, found in sorted(values.items())}


def _combinations(values: dict[str, list[str]]) -> Iterator[Labels]:
    names = list(values)
    total = 1
    for options in values.values():
        total *= len(options)
    if total <= MAX_PROBES:
        for combo in itertools.product(*(values[n] for n in names)):
            yield dict(zip(names, combo, strict=True))
        return
    for a, b in itertools.combinations(names, 2):  # too many: every pair of labels, the rest absent
        for va, vb in itertools.product(values[a], values[b]):
            yield {a: va, b: vb}


def rule_alerts(files: Iterable[Path]) -> list[Labels]:
    """The label sets of alerting rules in Prometheus rule files (`groups[].rules[].alert` and `labels`)."""
    out = []
    for file in files:
        try:
            data = yaml.safe_load(file.read_text())
        except (OSError, yaml.YAMLError) as exc:
            raise ConfigError(f"cannot read rule file: {exc}", file=str(file)) from None
        for group in (data or {}).get("groups", []) or []:
            for rule in group.get("rules", []) or []:
                if "alert" in rule:
                    out.append({"alertname": str(rule["alert"]),
                                **{str(k): str(v) for k, v in (rule.get("labels") or {}).items()}})
    return out


def _receivers(routes: Routes, labels: Labels) -> tuple[str, ...]:
    present = {k: v for k, v in labels.items() if v != ""}
    return tuple(t.receiver for t in routes.targets(present))


def _reduce(old: Routes, new: Routes, labels: Labels) -> Labels:
    """Drop each label whose absence changes neither side's answer: what is left is what the change is about."""
    want = (_receivers(old, labels), _receivers(new, labels))
    kept = dict(labels)
    for name in list(kept):
        if name == "alertname" and kept[name] != OTHER:
            continue  # keep the alert's name: people read changes by alert
        trial = {**kept, name: ""}
        if (_receivers(old, trial), _receivers(new, trial)) == want:
            kept[name] = ""
    return {k: v for k, v in kept.items() if v != ""}


def diff(old: Routes, new: Routes, alerts: Iterable[Labels] = ()) -> list[Change]:
    changes: dict[tuple[tuple[str, str], ...], Change] = {}
    probes = itertools.chain(alerts, _combinations(matcher_values((old, new))))
    for labels in probes:
        before, after = _receivers(old, labels), _receivers(new, labels)
        if before == after:
            continue
        reduced = _reduce(old, new, labels)
        key = tuple(sorted(reduced.items()))
        changes.setdefault(key, Change(key, _receivers(old, reduced), _receivers(new, reduced)))
    return sorted(changes.values(), key=lambda c: c.labels)
