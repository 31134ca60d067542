"""`relay routes check --strict`: what loads but is almost certainly a mistake, each with file and line.

- a `${VAR}` without default that is unset: its receiver loads with no secret and dead-letters everything;
- a receiver nothing sends to (no route, escalation, default_receivers, fallback or heartbeat names it);
- a route that can never match: an earlier route without `continue`, or a heartbeat, takes every alert it
  would (checked soundly: only when the earlier matchers provably hold for all of its alerts), or its own
  matchers exclude each other;
- an escalation that never runs: an earlier escalating route with `continue: true` takes every alert of its
  route first (an alert gets the escalation of the first escalating route it matches);
- a severity no route handles (critical, warning, info and every severity of the rule files): such alerts
  reach only default_receivers, the catch-all that a misspelt severity also falls into;
- a time interval no route or escalation step names, and a route muted at every minute of the coming year
  (it still ends the walk, so what it matches is never sent).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from relay.cli.review.rulefiles import RuleAlert
from relay.config import yamlconfig
from relay.config.diff import OTHER
from relay.config.matchers import Matcher
from relay.config.routes import Routes

SEVERITIES = ("critical", "warning", "info")
_LITERALS = re.compile(r"[\w:@/ -]*(?:\|[\w:@/ -]*)*")  # `a|b c|d-e`: no character with a meaning in a regex


ALWAYS_HORIZON = timedelta(days=366)  # `--strict` calls a route always muted when it is so for a year


@dataclass(frozen=True)
class Finding:
    file: str
    line: int | None
    text: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: {self.text}" if self.line is not None else f"{self.file}: {self.text}"


def unset_variables(file: Path, environ: Mapping[str, str], allowed: set[str]) -> list[Finding]:
    out = []
    for name, default, line in yamlconfig.references(file):
        if default is None and not environ.get(name) and name not in allowed:
            out.append(Finding(str(file), line, f"${{{name}}} is unset and has no default (set it, write "
                                                f"${{{name}:-default}}, or name it with --allow-unset {name} when "
                                                "only the deployment has it)"))
    return out


def unused_receivers(file: Path, routes: Routes, lines: Mapping[yamlconfig.Path_, int]) -> list[Finding]:
    spec = routes.spec
    used = {n for r in spec.routes for n in r.receivers} | set(spec.default_receivers)
    used |= {n for h in spec.heartbeats for n in h.receivers} | {r.fallback for r in spec.receivers if r.fallback}
    used |= {n for r in spec.routes for step in r.escalate for n in step.receivers}
    return [Finding(str(file), yamlconfig.line_of(lines, ("receivers", i, "name")),
                    f"receiver {r.name} is used by no route, escalation, default_receivers, fallback or heartbeat")
            for i, r in enumerate(spec.receivers) if r.name not in used]


def _literal_values(matcher: Matcher) -> set[str] | None:
    """The only values a label can have when `matcher` holds, if they are finitely many and known for sure."""
    if matcher.op == "=":
        return {matcher.value}
    if matcher.op == "=~":
        text = matcher.value
        inner = text[1:-1] if text.startswith("(") and text.endswith(")") else text
        if _LITERALS.fullmatch(inner):
            return set(inner.split("|"))
    return None


def possible_values(name: str, matchers: Iterable[Matcher]) -> set[str] | None:
    """Every value label `name` can have in an alert that all `matchers` match; None when not finitely known."""
    on_name = [m for m in matchers if m.name == name]
    finite = [v for v in (_literal_values(m) for m in on_name) if v is not None]
    if not finite:
        return None
    values = set.intersection(*finite)
    return {v for v in values if all(m.matches({name: v}) for m in on_name)}


def implied(matcher: Matcher, by: list[Matcher]) -> bool:
    """Whether every alert that all of `by` match also matches `matcher` (False when it cannot be shown)."""
    if matcher in by:
        return True
    values = possible_values(matcher.name, by)
    return values is not None and all(matcher.matches({matcher.name: v}) for v in values)


def covers(earlier: list[Matcher], later: list[Matcher]) -> bool:
    return all(implied(m, later) for m in earlier)


def _describe(matchers: list[Matcher]) -> str:
    return ", ".join(str(m) for m in matchers) or "no matchers: every alert"


def unreachable_routes(file: Path, routes: Routes, lines: Mapping[yamlconfig.Path_, int]) -> list[Finding]:
    out = []
    spec = routes.spec
    for j, route in enumerate(spec.routes):
        where = yamlconfig.line_of(lines, ("routes", j))
        what = f"route {j + 1} ({_describe(route.matchers)}) can never match"
        empty = next((m.name for m in route.matchers if possible_values(m.name, route.matchers) == set()), None)
        if empty is not None:
            out.append(Finding(str(file), where, f"{what}: no value of {empty} satisfies all its matchers"))
            continue
        beat = next((h for h in spec.heartbeats if covers(h.matchers, route.matchers)), None)
        if beat is not None:
            out.append(Finding(str(file), where, f"{what}: heartbeat {beat.name} consumes every alert it would"))
            continue
        for i, earlier in enumerate(spec.routes[:j]):
            if not earlier.continue_ and covers(earlier.matchers, route.matchers):
                line = yamlconfig.line_of(lines, ("routes", i))
                out.append(Finding(str(file), where, f"{what}: route {i + 1} (line {line}, "
                                                     f"{_describe(earlier.matchers)}) takes every alert it would "
                                                     "and has no `continue: true`"))
                break
    return out


def shadowed_escalations(file: Path, routes: Routes, lines: Mapping[yamlconfig.Path_, int]) -> list[Finding]:
    out = []
    spec = routes.spec
    for j, route in enumerate(spec.routes):
        if not route.escalate:
            continue
        for i, earlier in enumerate(spec.routes[:j]):
            if earlier.escalate and earlier.continue_ and covers(earlier.matchers, route.matchers):
                out.append(Finding(str(file), yamlconfig.line_of(lines, ("routes", j, "escalate")),
                                   f"route {j + 1}'s escalation never runs: route {i + 1} (line "
                                   f"{yamlconfig.line_of(lines, ('routes', i))}, {_describe(earlier.matchers)}) "
                                   "escalates every alert it would first (an alert gets one escalation)"))
                break
    return out


def unrouted_severities(file: Path, routes: Routes, alerts: Iterable[RuleAlert]) -> list[Finding]:
    spec = routes.spec
    by_severity: dict[str, list[RuleAlert]] = {s: [] for s in SEVERITIES}
    for alert in alerts:
        if "severity" in alert.labels:
            by_severity.setdefault(alert.labels["severity"], []).append(alert)
    fallback = ", ".join(spec.default_receivers)
    reach = f"only default_receivers ({fallback})" if fallback else "no receiver (default_receivers is empty)"
    out = []
    for severity, rules in by_severity.items():
        # the three usual severities are probed as such too; others only through the rules that use them
        bare = [{"alertname": OTHER, "severity": severity}] if severity in SEVERITIES else []
        probes = [*bare, *(a.labels for a in rules)]
        probes = [p for p in probes if not any(h.matches(p) for h in spec.heartbeats)]  # consumed, never routed
        if not probes or any(r.matches(p) for r in spec.routes for p in probes):
            continue
        used = "; ".join(f"{a.name} at {a.file}:{a.line}" for a in rules[:3]) + (" ..." if len(rules) > 3 else "")
        out.append(Finding(str(file), None, f'severity="{severity}" matches no route: alerts with it reach {reach}'
                                            + (f" (rules with it: {used})" if used else "")))
    return out


def unused_intervals(file: Path, routes: Routes, lines: Mapping[yamlconfig.Path_, int]) -> list[Finding]:
    """Time intervals no route or escalation step names: a mute someone meant to apply and did not."""
    used = {name for route in routes.spec.routes
            for names in (route.mute_time_intervals, route.active_time_intervals,
                          *(step.mute_time_intervals for step in route.escalate),
                          *(step.active_time_intervals for step in route.escalate))
            for name in names}
    return [Finding(str(file), yamlconfig.line_of(lines, ("time_intervals", i, "name")),
                    f"time interval {t.name} is used by no route or escalation step")
            for i, t in enumerate(routes.spec.time_intervals) if t.name not in used]


def always_muted_routes(file: Path, routes: Routes, lines: Mapping[yamlconfig.Path_, int],
                        start: datetime | None = None) -> list[Finding]:
    """Routes muted at every minute of the year from `start` (now): they still end the walk, so what they match
    is never sent anywhere (a mute_time_intervals that holds always, or active_time_intervals that never hold)."""
    at = start or datetime.now(UTC)
    out = []
    for i, route in enumerate(routes.spec.routes):
        if not (route.mute_time_intervals or route.active_time_intervals):
            continue
        if routes.muted_throughout(i, at, ALWAYS_HORIZON):
            out.append(Finding(str(file), yamlconfig.line_of(lines, ("routes", i)),
                               f"route {i + 1} is muted at every minute of the next {ALWAYS_HORIZON.days} days "
                               f"({routes.muted_by(route.mute_time_intervals, route.active_time_intervals, at)}): "
                               "the alerts it matches are never sent"))
    return out


def findings(file: Path, routes: Routes, alerts: Iterable[RuleAlert], environ: Mapping[str, str],
             allowed_unset: set[str]) -> list[Finding]:
    """Everything `--strict` reports for a routes file that has already loaded."""
    _, lines = yamlconfig.load(file, yamlconfig.AS_WRITTEN)
    return [*unset_variables(file, environ, allowed_unset), *unused_receivers(file, routes, lines),
            *unreachable_routes(file, routes, lines), *shadowed_escalations(file, routes, lines),
            *unrouted_severities(file, routes, alerts), *unused_intervals(file, routes, lines),
            *always_muted_routes(file, routes, lines)]
