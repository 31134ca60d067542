"""`relay routes check|test|diff`: is routes.yaml sound, where does a label set go, what does a change do."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from relay.cli.common import command, labels, load
from relay.config.settings import Settings
from relay.errors import ConfigError

if TYPE_CHECKING:
    from relay.cli.review.check import Finding
    from relay.config.routes import Routes
    from relay.templating import Templates


def _check_one(file: Path, templates: Templates, strict: Callable[[Path, Routes], list[Finding]] | None) -> bool:
    """One file's verdict, printed; a broken file is reported and the next one still checked."""
    from relay.channels.preview import template_problems
    from relay.config import yamlconfig
    from relay.config.routes import load_routes

    try:
        # --strict is CI's check of a pull request: it reads no secret of the job's environment into anything it
        # prints (unset ${VAR}s are found by name, relay.cli.review.check), so variables stay as written.
        routes = load_routes(file, templates, yamlconfig.AS_WRITTEN if strict is not None else None)
    except ConfigError as exc:
        print(f"relay: {exc}", file=sys.stderr)
        return False
    problems = [f"{file}: {p}" for p in template_problems(routes.receivers, templates)]
    if not problems and strict is not None:
        problems = [str(f) for f in strict(file, routes)]
    for problem in problems:
        print(f"relay: {problem}", file=sys.stderr)
    if problems:
        return False
    beats = f", {len(routes.spec.heartbeats)} heartbeat(s)" if routes.spec.heartbeats else ""
    print(f"{file}: ok ({len(routes.receivers)} receivers, {len(routes.spec.routes)} routes{beats}"
          f"{', strict' if strict is not None else ''})")
    for name, missing in routes.unconfigured().items():
        print(f"warning: receiver {name} is unconfigured ({missing} is unset)")
    for name, notes in routes.defaults.items():
        print(f"warning: receiver {name} sends to defaults: {'; '.join(notes)}")
    return True


def cmd_routes_check(args: argparse.Namespace, settings: Settings) -> int:
    from relay.cli.review import check, revisions, rulefiles
    from relay.templating import Templates

    files = [Path(f) for f in args.files] or [settings.routes]
    templates = Templates(Path(args.templates) if args.templates else settings.templates)
    strict: Callable[[Path, Routes], list[Finding]] | None = None
    if args.strict:
        repo = revisions.toplevel(Path.cwd())
        root = repo or Path.cwd()
        try:  # a pull request's check reads no file through a link, as routes diff (relay.cli.review.revisions)
            revisions.refuse_links(repo, [*files, *rulefiles.discover(root),
                                          *([Path(args.templates)] if args.templates else [])])
        except ConfigError as exc:
            print(f"relay: {exc}", file=sys.stderr)
            return 1
        alerts = rulefiles.read_all((p, revisions.relative_to_repo(Path.cwd(), p) or str(p))
                                    for p in [*rulefiles.discover(root), *map(Path, args.rules)])
        allowed = {name.strip() for names in args.allow_unset for name in names.split(",") if name.strip()}

        def findings(file: Path, routes: Routes) -> list[Finding]:
            return check.findings(file, routes, alerts, os.environ, allowed)

        strict = findings

    results = [_check_one(file, templates, strict) for file in files]
    return 0 if all(results) else 1


def tree(routes: Routes, at: datetime | None = None) -> str:
    """The routes as a tree, each with its matchers, receivers and time intervals in words (`relay routes test
    --tree`); with `at`, the routes muted then are marked."""
    from relay.config.timeintervals import describe

    def intervals(mute: list[str], active: list[str]) -> list[str]:
        return [*(f"muted {n}: {describe(routes.intervals[n])}" for n in mute),
                *(f"only {n}: {describe(routes.intervals[n])}" for n in active)]

    lines = [routes.source]
    items = list(enumerate(routes.spec.routes))
    for i, route in items:
        last = i == len(items) - 1 and not routes.spec.default_receivers
        branch, stem = ("└── ", "    ") if last else ("├── ", "│   ")
        matchers = ", ".join(str(m) for m in route.matchers) or "every alert"
        flags = " (continue)" if route.continue_ else ""
        why = routes.muted_by(route.mute_time_intervals, route.active_time_intervals, at) if at else None
        now = f"  [{why} at {at.isoformat()}]" if why and at else ""
        lines.append(f"{branch}{i + 1}. {{{matchers}}} -> {', '.join(route.receivers)}{flags}{now}")
        children = intervals(route.mute_time_intervals, route.active_time_intervals)
        children += [f"escalate {step}" + "".join(f"; {text}" for text in
                                                   intervals(step.mute_time_intervals, step.active_time_intervals))
                     for step in route.escalate]
        for k, child in enumerate(children):
            lines.append(f"{stem}{'└── ' if k == len(children) - 1 else '├── '}{child}")
    if routes.spec.default_receivers:
        lines.append(f"└── default -> {', '.join(routes.spec.default_receivers)}")
    return "\n".join(lines)


def cmd_routes_test(args: argparse.Namespace, settings: Settings) -> int:
    routes, _ = load(settings)
    if args.tree:
        print(tree(routes, args.at))
        return 0
    alert = labels(args.labels)
    beats = [h.name for h in routes.spec.heartbeats if h.matches(alert)]
    walk = routes.walk(alert, args.at)
    names = [] if beats else [t.receiver for t in walk.targets]
    print(",".join(names))
    for muted in [] if beats else walk.muted:
        print(f"muted: {muted.receiver} (route {muted.route + 1} {muted.reason} at {args.at.isoformat()})",
              file=sys.stderr)
    if args.at is None and not beats and routes.intervals:
        print("note: time intervals are not applied without --at TIME", file=sys.stderr)
    chosen = None if beats else routes.escalation(alert)
    if chosen is not None:
        from relay.config.escalation import describe

        print(f"escalation (route {chosen.route + 1}), unless acknowledged, silenced or resolved: "
              f"{describe(chosen.steps)}")
    if beats:
        print(f"heartbeat {', '.join(beats)}: consumed by relay's dead man's switch, not routed", file=sys.stderr)
    if args.verify_receivers is not None and names != [n for n in args.verify_receivers.split(",") if n]:
        print(f"WARNING: expected receivers did not match resolved receivers: {args.verify_receivers}",
              file=sys.stderr)
        return 1
    return 0


def _instant(text: str) -> datetime:
    """An RFC 3339 instant for --at: a date, a time and an offset (`Z` or `+09:00`); a local time is ambiguous."""
    try:
        when = datetime.fromisoformat(text.strip().replace("z", "Z"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an RFC 3339 time, e.g. 2026-03-06T19:30:00+09:00") \
            from None
    if when.tzinfo is None:
        raise argparse.ArgumentTypeError(f"{text!r} has no offset: add Z or one like +09:00 (RFC 3339)")
    return when


def cmd_routes_diff(args: argparse.Namespace, settings: Settings) -> int:
    from relay.cli.review import report, sides

    request = sides.Request(
        old=args.old, new=args.new, base=args.base, routes=settings.routes,
        templates=Path(args.templates) if args.templates else settings.templates,
        rules=tuple(Path(f) for f in args.rules), fixtures=Path(args.fixtures) if args.fixtures else None,
        cwd=Path.cwd())
    result = sides.build(request)
    shown = {"text": report.text, "markdown": report.markdown, "json": report.as_json}[args.format]
    sys.stdout.write(shown(result))
    return 1 if args.exit_code and not result.empty else 0


ROUTES_ENVIRONMENT = ["RELAY_ROUTES      the routes file (default: routes.yaml in the current directory)",
                      "RELAY_TEMPLATES   a directory whose files override the packaged templates (default: none)",
                      "${VAR}s in the routes file are read from the environment, as relay serve reads them"]


def add_commands(sub: Any) -> None:
    routes = command(
        sub, "routes", "check routes.yaml, test where alerts go, diff a change",
        "Work on routes.yaml without a running relay: check that it loads (and, strictly, that it makes sense), "
        "print the receivers of a label set, or show what a change does before it is merged.",
        examples=["relay routes check", "relay routes test severity=critical alertname=PodDown",
                  "relay routes diff --base origin/main"], environment=ROUTES_ENVIRONMENT).add_subparsers(
        dest="routes_command", required=True, metavar="{check,test,diff}")
    check = command(
        routes, "check", "validate routes.yaml and its templates",
        "Load each routes file as relay serve would (YAML, receivers, matchers, templates rendered once) and say "
        "'ok' or the file, line and reason of each problem; receivers that are unconfigured or send to routes.yaml "
        "defaults are warned about. --strict also fails on mistakes that would still load. Exits 1 on a problem.",
        examples=["relay routes check", "relay routes check staging/routes.yaml prod/routes.yaml",
                  "relay routes check --strict --allow-unset SLACK_WEBHOOK_URL,PAGERDUTY_ROUTING_KEY"],
        environment=ROUTES_ENVIRONMENT)
    check.add_argument("files", nargs="*", metavar="FILE",
                       help="routes files to check (default: RELAY_ROUTES), e.g. routes.yaml")
    check.add_argument("--strict", action="store_true", help="also fail on unset ${VAR}s, unused receivers, "
                       "routes that can never match and severities no route handles (default: off)")
    check.add_argument("--allow-unset", action="append", default=[], metavar="VAR[,VAR]",
                       help="with --strict: variables only the deployment sets, such as secrets; repeatable "
                       "(default: none), e.g. --allow-unset SLACK_WEBHOOK_URL")
    check.add_argument("--rules", action="append", default=[], metavar="FILE",
                       help="with --strict: a rule file whose severities need a route, besides "
                       "deploy/prometheus/*.yml; repeatable (default: none), e.g. --rules rules/app.yml")
    check.add_argument("--templates", metavar="DIR",
                       help="the templates directory (default: RELAY_TEMPLATES), e.g. --templates templates/")
    check.set_defaults(func=cmd_routes_check)
    rtest = command(
        routes, "test", "print the receivers for a label set",
        "Print the receivers an alert with these labels goes to (comma-separated, in order), then its escalation if "
        "a route escalates it; a heartbeat alert is named as consumed, not routed. Like amtool config routes test.",
        examples=["relay routes test severity=critical alertname=PodDown",
                  "relay routes test --at 2026-03-06T19:30:00+09:00 severity=warning alertname=HighLatency",
                  "relay routes test --tree",
                  "relay routes test --verify-receivers slack-alerts,ops-email severity=critical"],
        environment=ROUTES_ENVIRONMENT)
    rtest.add_argument("--verify-receivers", metavar="R[,R]",
                       help="exit 1 unless the receivers are exactly these, in order (default: off), "
                       "e.g. --verify-receivers slack-alerts,ops-email")
    rtest.add_argument("--at", type=_instant, metavar="TIME",
                       help="route as at this instant, RFC 3339 with any offset, so mute_time_intervals and "
                       "active_time_intervals apply; muted routes are noted on stderr (default: off, no interval "
                       "applies), e.g. --at 2026-03-06T19:30:00+09:00")
    rtest.add_argument("--tree", action="store_true",
                       help="draw the routes instead, with their matchers, receivers, escalation and time intervals "
                       "in words; with --at, mark those muted then (default: off), e.g. --tree")
    rtest.add_argument("labels", nargs="*", metavar="K=V",
                       help="the alert's labels (default: none, an alert without labels), "
                       "e.g. severity=critical alertname=PodDown")
    rtest.set_defaults(func=cmd_routes_test)
    rdiff = command(
        routes, "diff", "what a routes.yaml change does: alerts whose receivers change, messages that read "
        "differently",
        "Compare two versions of routes.yaml (with their templates and rule files): alerts that stop paging first, "
        "then renamed receivers, alerts whose receivers or escalation change, and each message that reads "
        "differently, before and after. OLD and NEW are files or git revisions (REV:PATH, e.g. "
        "origin/main:routes.yaml); --base REV compares FILE (default: RELAY_ROUTES) with REV's. Exits 2 when a side "
        "cannot be read.",
        examples=["relay routes diff --base origin/main", "relay routes diff old/routes.yaml routes.yaml",
                  "relay routes diff --base origin/main --format markdown > comment.md"],
        environment=ROUTES_ENVIRONMENT)
    rdiff.add_argument("old", nargs="?", metavar="OLD", help="file or REV:PATH; with --base: the FILE to compare "
                       "(default: RELAY_ROUTES), e.g. origin/main:routes.yaml")
    rdiff.add_argument("new", nargs="?", metavar="NEW", help="file or REV:PATH (default: RELAY_ROUTES), "
                       "e.g. routes.yaml")
    rdiff.add_argument("--base", metavar="REV", help="compare with REV's version of the file, its templates "
                       "and rule files (default: off), e.g. --base origin/main")
    rdiff.add_argument("--rules", action="append", default=[], metavar="FILE",
                       help="a Prometheus rule file whose alerts to check as well, besides deploy/prometheus/*.yml; "
                       "repeatable (default: none), e.g. --rules rules/app.yml")
    rdiff.add_argument("--templates", metavar="DIR",
                       help="the templates directory (default: RELAY_TEMPLATES), e.g. --templates templates/")
    rdiff.add_argument("--fixtures", metavar="DIR", help="render messages for these Alertmanager webhook bodies "
                       "(*.json) instead of one alert per rule (default: off), e.g. --fixtures tests/fixtures")
    rdiff.add_argument("--format", choices=("text", "markdown", "json"), default="text",
                       help="text for a terminal, markdown for a pull-request comment, json for scripts "
                       "(default: %(default)s), e.g. --format markdown")
    rdiff.add_argument("--exit-code", action="store_true",
                       help="exit 1 when receivers or messages change (default: off, exit 0)")
    # Exit 1 is "the change moves receivers or messages" here, so an unusable side exits 2, as diff(1) does.
    rdiff.set_defaults(func=cmd_routes_diff, error_exit=2)
