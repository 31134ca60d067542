"""`relay routes diff OLD NEW`: which alerts would reach other receivers after a routes.yaml change.

A pull request that edits routes.yaml changes who is woken up. relay probes
both versions with the same label sets — the alerts of the repository's rule
files (relay.cli.review.rulefiles), plus label sets built from every matcher in either
file — and lists each label set whose receivers differ, reduced to the labels
that matter and named by alert. relay.cli.review.sides adds templates and revisions.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

from relay.config.receivers import GlobalConfig
from relay.config.routes import Routes, RoutesFile
from relay.config.timeintervals import describe

MAX_PROBES = 20_000
OTHER = "__relay_other__"  # a value no matcher names: "anything else"
_LITERAL = re.compile(r"[\w.:/@ -]*")

Labels = dict[str, str]


@dataclass(frozen=True)
class Change:
    """A kind of alert (the labels that decide its route) and its receivers before and after."""

    labels: tuple[tuple[str, str], ...]
    before: tuple[str, ...]
    after: tuple[str, ...]

    @property
    def alertname(self) -> str | None:
        name = dict(self.labels).get("alertname")
        return name if name and name != OTHER else None

    @property
    def alert(self) -> str:
        """As a reviewer names it: `HighErrorRate (severity=critical)`, or `any alert with severity=page`."""
        others = ", ".join(f"{k}={'<other>' if v == OTHER else v}" for k, v in self.labels
                           if k != "alertname" or self.alertname is None)
        if self.alertname is not None:
            return f"{self.alertname} ({others})" if others else self.alertname
        return f"any alert with {others}" if others else "any alert"

    def __str__(self) -> str:
        return f"{self.alert}: {', '.join(self.before) or '(none)'} -> {', '.join(self.after) or '(none)'}"


def _regex_literals(pattern: str) -> list[str]:
    """The plain alternatives of a regex like `critical|page` (others are probed only through OTHER)."""
    text = pattern[1:-1] if pattern.startswith("(") and pattern.endswith(")") else pattern
    parts = text.split("|")
    return [p for p in parts if _LITERAL.fullmatch(p)]


def matcher_values(routes: Iterable[Routes]) -> dict[str, list[str]]:
    """Every label a matcher names, with the values worth trying: each named value, absent, and anything else."""
    values: dict[str, set[str]] = {}
    for loaded in routes:
        for matchers in [*(r.matchers for r in loaded.spec.routes), *(h.matchers for h in loaded.spec.heartbeats)]:
            for matcher in matchers:
                seen = values.setdefault(matcher.name, set())
                if matcher.op in ("=", "!="):
                    seen.add(matcher.value)
                else:
                    seen.update(_regex_literals(matcher.value))
    return {name: sorted(found | {"", OTHER}) for name, found in sorted(values.items())}


def _pair_count(values: dict[str, list[str]]) -> int:
    return sum(len(values[a]) * len(values[b]) for a, b in itertools.combinations(values, 2))


def _combinations(values: dict[str, list[str]]) -> Iterator[Labels]:
    """Every combination of the values when there are at most MAX_PROBES; else label pairs (the rest absent), cut
    at MAX_PROBES: the pairs of n labels with k values each grow as n²k², and a review must end."""
    names = list(values)
    total = 1
    for options in values.values():
        total *= len(options)
    if total <= MAX_PROBES:
        for combo in itertools.product(*(values[n] for n in names)):
            yield dict(zip(names, combo, strict=True))
        return
    pairs = (({a: va, b: vb} for va, vb in itertools.product(values[a], values[b]))
             for a, b in itertools.combinations(names, 2))
    yield from itertools.islice(itertools.chain.from_iterable(pairs), MAX_PROBES)


def untried(old: Routes, new: Routes) -> int:
    """How many label combinations diff() did not try (its pairs were cut at MAX_PROBES): 0 when it tried them all."""
    values = matcher_values((old, new))
    total = 1
    for options in values.values():
        total *= len(options)
    return 0 if total <= MAX_PROBES else max(0, _pair_count(values) - MAX_PROBES)


def route_probes(routes: Iterable[Routes]) -> Iterator[Labels]:
    """For each route and heartbeat of the files, an alert its matchers take (when their values say one): whatever
    the combinations are cut to, every route is tried with an alert of its own."""
    for loaded in routes:
        for matchers in [*(r.matchers for r in loaded.spec.routes), *(h.matchers for h in loaded.spec.heartbeats)]:
            labels: Labels = {}
            for matcher in matchers:
                options = [matcher.value] if matcher.op == "=" else (
                    _regex_literals(matcher.value) if matcher.op == "=~" else [OTHER, ""])
                labels[matcher.name] = next((v for v in options if matcher.matches({matcher.name: v})), OTHER)
            if all(m.matches(labels) for m in matchers):
                yield labels


def heartbeat_marker(name: str) -> str:
    """What a heartbeat's alerts go to instead of receivers: relay consumes them (relay.heartbeat)."""
    return f"(heartbeat {name})"


def receivers_of(routes: Routes, labels: Labels) -> tuple[str, ...]:
    """The receivers an alert with these labels reaches (empty values are absent labels), as `relay serve` routes."""
    present = {k: v for k, v in labels.items() if v != ""}
    beats = [heartbeat_marker(h.name) for h in routes.spec.heartbeats if h.matches(present)]
    return tuple(beats) if beats else tuple(t.receiver for t in routes.targets(present))


def escalation_of(routes: Routes, labels: Labels) -> tuple[str, ...]:
    """The escalation steps an alert with these labels gets (`after 10m: pagerduty-oncall`), as `relay serve` arms
    them: none for a heartbeat's alerts or an alert no escalating route takes."""
    present = {k: v for k, v in labels.items() if v != ""}
    if any(h.matches(present) for h in routes.spec.heartbeats):
        return ()
    chosen = routes.escalation(present)
    return tuple(str(step) for step in chosen.steps) if chosen is not None else ()


def mutes_of(routes: Routes, labels: Labels) -> tuple[str, ...]:
    """When the receivers of an alert with these labels are muted, in words (`slack-alerts muted 18:00\u201324:00
    Asia/Seoul on weekdays`, `ops-email only 09:00\u201317:00 UTC`): each receiver a route with time intervals
    reaches, as the walk of `relay serve` reaches it. None for receivers never muted, or a heartbeat's alerts."""
    present = {k: v for k, v in labels.items() if v != ""}
    if any(h.matches(present) for h in routes.spec.heartbeats):
        return ()
    out: dict[str, str] = {}
    for route in routes.spec.routes:
        if not route.matches(present):
            continue
        said = [*(f"muted {describe(routes.intervals[n])}" for n in route.mute_time_intervals),
                *(f"only {describe(routes.intervals[n])}" for n in route.active_time_intervals)]
        for name in route.receivers:
            out.setdefault(name, f"{name} {' and '.join(said)}" if said else "")
        if not route.continue_:
            break
    return tuple(text for text in out.values() if text)


def empty_routes(source: str) -> Routes:
    """The routes of a file that does not exist (at the base of a change that adds it): no alert reaches anyone."""
    spec = RoutesFile.model_construct(global_=GlobalConfig(), receivers=[], routes=[], default_receivers=[],
                                      heartbeats=[])
    return Routes(spec, source, "")


Answer = Callable[[Routes, Labels], tuple[str, ...]]


def _reduce(old: Routes, new: Routes, labels: Labels, answer: Answer,
            want: tuple[tuple[str, ...], tuple[str, ...]]) -> Labels:
    """Drop each label whose absence changes neither side's answer (`want`): what is left is what the change is
    about."""
    kept = dict(labels)
    for name in list(kept):
        if name == "alertname" and kept[name] != OTHER:
            continue  # keep the alert's name: people read changes by alert
        trial = {**kept, name: ""}
        if (answer(old, trial), answer(new, trial)) == want:
            kept[name] = ""
    return {k: v for k, v in kept.items() if v != ""}


def _order(change: Change) -> tuple[int, str, tuple[tuple[str, str], ...]]:
    return (change.alertname is None, change.alertname or "", change.labels)


def diff(old: Routes, new: Routes, alerts: Iterable[Labels] = (), answer: Answer = receivers_of) -> list[Change]:
    """Every kind of alert whose receivers differ (with `answer=escalation_of`: whose escalation steps differ): the
    given alerts, an alert per route, then label sets from both files' matchers (at most MAX_PROBES: `untried`)."""
    changes: dict[tuple[tuple[str, str], ...], Change] = {}
    probes = itertools.chain(alerts, route_probes((old, new)), _combinations(matcher_values((old, new))))
    for labels in probes:
        before, after = answer(old, labels), answer(new, labels)
        if before == after:
            continue
        reduced = _reduce(old, new, labels, answer, (before, after))
        key = tuple(sorted(reduced.items()))
        if key not in changes:
            changes[key] = Change(key, answer(old, reduced), answer(new, reduced))
    return sorted(changes.values(), key=_order)
