"""`relay routes diff`: both sides of a routes change and everything that differs between them.

A side is routes.yaml with its templates and the repository's rule files,
either in the working tree or at a git revision (relay.cli.review.revisions). The review
is what a pull request changes for people: which alerts reach other receivers
(relay.config.diff), which receivers appear, vanish or are renamed, and which
messages read differently (relay.cli.review.templates). relay.cli.review.report prints it.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from relay.cli.review import revisions, rulefiles
from relay.cli.review import templates as templatediff
from relay.cli.review.rulefiles import RuleAlert
from relay.cli.review.templates import TemplateChange
from relay.config import yamlconfig
from relay.config.diff import Change, diff, empty_routes, escalation_of, mutes_of, untried
from relay.config.routes import Routes, load_routes
from relay.errors import ConfigError
from relay.templating import Templates


@dataclass(frozen=True)
class Request:
    """What the command line asked for: two specs (a file or REV:PATH), or a base revision and a file."""

    old: str | None
    new: str | None
    base: str | None
    routes: Path  # RELAY_ROUTES: the head file when none is given
    templates: Path | None  # RELAY_TEMPLATES or --templates, in the working tree
    rules: tuple[Path, ...] = ()  # --rules: read for both sides
    fixtures: Path | None = None
    cwd: Path = Path()


@dataclass(frozen=True)
class Side:
    label: str  # `origin/main:routes.yaml` or `routes.yaml`
    routes: Routes
    missing: bool  # the file does not exist at this revision: no routes, no receivers
    templates: Templates
    written: dict[str, Any]  # each receiver's entry as written (before ${VAR} expansion), by name
    rule_files: tuple[str, ...]
    alerts: tuple[RuleAlert, ...]


@dataclass(frozen=True)
class Impact:
    lost: tuple[str, ...]  # receivers that no longer get the alert (a rename is not a loss)
    gained: tuple[str, ...]
    pages_lost: tuple[str, ...]  # ... of those, PagerDuty receivers
    pages_gained: tuple[str, ...]


@dataclass(frozen=True)
class Review:
    base: Side
    head: Side
    changes: tuple[Change, ...]
    added: tuple[str, ...]  # receivers
    removed: tuple[str, ...]
    renamed: tuple[tuple[str, str], ...]  # (old name, new name) of receivers whose settings are the same
    templates: tuple[TemplateChange, ...]
    samples: str  # what the messages were rendered for: "fixtures", "rules" or "example"
    fixtures: str | None = None  # the fixtures folder, as given
    escalations: tuple[Change, ...] = ()  # alerts whose escalation steps change (before/after: step descriptions)
    untried: int = 0  # label combinations the probes were cut before (relay.config.diff.MAX_PROBES)
    mutes: tuple[Change, ...] = ()  # alerts whose receivers' time intervals change (before/after: in words)

    def impact(self, change: Change) -> Impact:
        return self._impact(change.before, change.after)

    def escalation_impact(self, change: Change) -> Impact:
        """Who an unacknowledged alert of this kind no longer (or newly) escalates to: a lost PagerDuty receiver is
        a page nobody gets when nobody acknowledges."""
        labels = dict(change.labels)
        return self._impact(_escalated_to(self.base.routes, labels), _escalated_to(self.head.routes, labels))

    def _impact(self, before: tuple[str, ...], after: tuple[str, ...]) -> Impact:
        renamed = dict(self.renamed)
        lost = tuple(r for r in before if r not in after and renamed.get(r) not in after)
        gained = tuple(r for r in after if r not in before and not any(renamed.get(b) == r for b in before))
        return Impact(lost, gained, tuple(r for r in lost if _pages(self.base.routes, r)),
                      tuple(r for r in gained if _pages(self.head.routes, r)))

    @property
    def empty(self) -> bool:
        return not (self.changes or self.added or self.removed or self.templates or self.escalations or self.mutes)


def _escalated_to(routes: Routes, labels: dict[str, str]) -> tuple[str, ...]:
    """Every receiver some escalation step of such an alert reaches, in step order."""
    chosen = routes.escalation({k: v for k, v in labels.items() if v != ""}) if escalation_of(routes, labels) else None
    return tuple(dict.fromkeys(r for step in chosen.steps for r in step.receivers)) if chosen else ()


def _pages(routes: Routes, receiver: str) -> bool:
    found = routes.receivers.get(receiver)
    return found is not None and found.pagerduty is not None


def _written(file: Path) -> dict[str, Any]:
    data, _ = yamlconfig.load(file, yamlconfig.AS_WRITTEN)  # bounded like every load; `${VAR}` as written
    entries = data.get("receivers") if isinstance(data, dict) else None
    return {str(e.get("name")): {k: v for k, v in e.items() if k != "name"}
            for e in entries or [] if isinstance(e, dict)}


def _side(request: Request, spec: str, stack: contextlib.ExitStack) -> Side:
    rev, path = revisions.split_spec(spec, request.cwd)
    repo = revisions.toplevel(request.cwd)
    extra = [(p, str(p)) for p in request.rules]
    if rev is None:
        file = request.cwd / path
        if not file.is_file():
            raise ConfigError("no such file (a revision is given as REV:PATH, e.g. origin/main:routes.yaml)",
                              file=spec)
        found = rulefiles.discover(repo or request.cwd)
        revisions.refuse_links(repo, [file, *found, *([request.cwd / request.templates] if request.templates else [])])
        rules = [(p, revisions.relative_to_repo(repo, p) or str(p)) if repo else (p, str(p)) for p in found]
        templates = Templates(request.templates)
        return _loaded(spec, file, templates, rules + extra, lambda exc: exc)
    if repo is None:
        raise ConfigError(f"{spec}: not in a git repository, and no such file")
    relpath = revisions.relative_to_repo(repo, request.cwd / path) if path.startswith(("./", "../")) else path
    if relpath is None:
        raise ConfigError(f"{spec}: {path} is outside the repository")
    templates_rel = revisions.relative_to_repo(repo, request.cwd / request.templates) if request.templates else None
    into = Path(stack.enter_context(revisions.temporary_root()))
    tree = revisions.checkout(repo, rev, [relpath, templates_rel or "", rulefiles.DEFAULT_DIR], into)
    templates = Templates(into / templates_rel if templates_rel is not None else request.templates)
    rules = [(p, tree.label(p.relative_to(into).as_posix())) for p in rulefiles.discover(into)]
    file = into / relpath
    if not file.is_file():
        return Side(tree.label(relpath), empty_routes(tree.label(relpath)), True, templates, {},
                    tuple(s for _, s in rules + extra), tuple(rulefiles.read_all(rules + extra)))
    return _loaded(tree.label(relpath), file, templates, rules + extra, tree.relabel)


def _loaded(label: str, file: Path, templates: Templates, rules: list[tuple[Path, str]],
            relabel: Callable[[ConfigError], ConfigError]) -> Side:
    try:
        routes = load_routes(file, templates, yamlconfig.AS_WRITTEN)  # never the CI job's secrets (yamlconfig)
        alerts = rulefiles.read_all(rules)
    except ConfigError as exc:
        raise relabel(exc) from None
    return Side(label, routes, False, templates, _written(file), tuple(s for _, s in rules), tuple(alerts))


def _specs(request: Request) -> tuple[str, str]:
    if request.base is None:
        if request.old is None:
            raise ConfigError("give OLD [NEW] (files or REV:PATH) or --base REV [FILE]")
        return request.old, request.new or str(request.routes)
    if request.new is not None:
        raise ConfigError("with --base REV give at most one FILE: the routes.yaml to compare with REV's")
    head = request.old or str(request.routes)
    if revisions.split_spec(head, request.cwd)[0] is not None:
        raise ConfigError(f"with --base REV, {head} must be a file in the working tree")
    repo = revisions.toplevel(request.cwd)
    if repo is None:
        raise ConfigError("--base needs a git repository")
    revisions.refuse_links(repo, [request.cwd / head])  # before resolving it: a link would lead out of the repository
    relpath = revisions.relative_to_repo(repo, request.cwd / head)
    if relpath is None:
        raise ConfigError(f"{head} is outside the repository")
    return f"{request.base}:{relpath}", head


def _renames(base: Side, head: Side) -> tuple[tuple[str, ...], tuple[str, ...], tuple[tuple[str, str], ...]]:
    added = [n for n in head.routes.receivers if n not in base.routes.receivers]
    removed = [n for n in base.routes.receivers if n not in head.routes.receivers]
    renamed = []
    for old in list(removed):
        same = next((new for new in added if base.written.get(old) == head.written.get(new)), None)
        if same is not None:
            renamed.append((old, same))
            removed.remove(old)
            added.remove(same)
    return tuple(sorted(added)), tuple(sorted(removed)), tuple(renamed)


def _samples(request: Request, base: Side, head: Side) -> tuple[list[templatediff.Sample], str]:
    if request.fixtures is not None:
        revisions.refuse_links(revisions.toplevel(request.cwd), [request.cwd / request.fixtures])
        return templatediff.fixture_samples(request.cwd / request.fixtures), "fixtures"
    from_rules = templatediff.rule_samples([*head.alerts, *base.alerts])
    if from_rules:
        return from_rules, "rules"
    return templatediff.default_samples(), "example"


def build(request: Request) -> Review:
    """Load both sides and compare them; a side that does not load is a ConfigError naming it."""
    old_spec, new_spec = _specs(request)
    revisions.refuse_links(revisions.toplevel(request.cwd), [request.cwd / p for p in request.rules])
    with contextlib.ExitStack() as stack:
        base, head = _side(request, old_spec, stack), _side(request, new_spec, stack)
        probes = {tuple(sorted(a.labels.items())): a.labels for a in [*base.alerts, *head.alerts]}
        changes = diff(base.routes, head.routes, probes.values())
        escalations = diff(base.routes, head.routes, probes.values(), escalation_of)
        # Quiet hours are probed only when a side has time intervals (a third pass over every probe otherwise).
        mutes = diff(base.routes, head.routes, probes.values(), mutes_of) \
            if base.routes.intervals or head.routes.intervals else []
        added, removed, renamed = _renames(base, head)
        samples, described = _samples(request, base, head)
        messages = templatediff.changes(base.routes, base.templates, head.routes, head.templates, samples, renamed)
    return Review(base, head, tuple(changes), added, removed, renamed, tuple(messages), described,
                  str(request.fixtures) if request.fixtures is not None else None, tuple(escalations),
                  untried(base.routes, head.routes), tuple(mutes))
