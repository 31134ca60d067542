"""`relay routes check|test|diff`: is routes.yaml sound, where does a label set go, what does a change do."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from relay.cli.common import labels, load
from relay.errors import ConfigError
from relay.settings import Settings

if TYPE_CHECKING:
    from relay.config.routes import Routes
    from relay.review.check import Finding
    from relay.templating import Templates


def _check_one(file: Path, templates: Templates, strict: Callable[[Path, Routes], list[Finding]] | None) -> bool:
    """One file's verdict, printed; a broken file is reported and the next one still checked."""
    from relay.config import yamlconfig
    from relay.config.routes import load_routes
    from relay.preview import template_problems

    try:
        # --strict is CI's check of a pull request: it reads no secret of the job's environment into anything it
        # prints (unset ${VAR}s are found by name, relay.review.check), so variables stay as written.
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
    from relay.review import check, revisions, rulefiles
    from relay.templating import Templates

    files = [Path(f) for f in args.files] or [settings.routes]
    templates = Templates(Path(args.templates) if args.templates else settings.templates)
    strict: Callable[[Path, Routes], list[Finding]] | None = None
    if args.strict:
        root = revisions.toplevel(Path.cwd()) or Path.cwd()
        alerts = rulefiles.read_all((p, revisions.relative_to_repo(Path.cwd(), p) or str(p))
                                    for p in [*rulefiles.discover(root), *map(Path, args.rules)])
        allowed = {name.strip() for names in args.allow_unset for name in names.split(",") if name.strip()}

        def findings(file: Path, routes: Routes) -> list[Finding]:
            return check.findings(file, routes, alerts, os.environ, allowed)

        strict = findings

    results = [_check_one(file, templates, strict) for file in files]
    return 0 if all(results) else 1


def cmd_routes_test(args: argparse.Namespace, settings: Settings) -> int:
    routes, _ = load(settings)
    alert = labels(args.labels)
    beats = [h.name for h in routes.spec.heartbeats if h.matches(alert)]
    names = [] if beats else [t.receiver for t in routes.targets(alert)]
    print(",".join(names))
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


def cmd_routes_diff(args: argparse.Namespace, settings: Settings) -> int:
    from relay.review import report, sides

    request = sides.Request(
        old=args.old, new=args.new, base=args.base, routes=settings.routes,
        templates=Path(args.templates) if args.templates else settings.templates,
        rules=tuple(Path(f) for f in args.rules), fixtures=Path(args.fixtures) if args.fixtures else None,
        cwd=Path.cwd())
    result = sides.build(request)
    shown = {"text": report.text, "markdown": report.markdown, "json": report.as_json}[args.format]
    sys.stdout.write(shown(result))
    return 1 if args.exit_code and not result.empty else 0


def add_commands(sub: Any) -> None:
    routes = sub.add_parser("routes", help="check routes.yaml and test routing").add_subparsers(
        dest="routes_command", required=True)
    check = routes.add_parser("check", help="validate routes.yaml and its templates")
    check.add_argument("files", nargs="*", metavar="FILE", help="default: RELAY_ROUTES")
    check.add_argument("--strict", action="store_true", help="also fail on unset ${VAR}s, unused receivers, "
                       "routes that can never match and severities no route handles")
    check.add_argument("--allow-unset", action="append", default=[], metavar="VAR[,VAR]",
                       help="with --strict: variables only the deployment sets (e.g. secrets; repeatable)")
    check.add_argument("--rules", action="append", default=[], metavar="FILE",
                       help="with --strict: a rule file whose severities need a route, besides "
                       "deploy/prometheus/*.yml (repeatable)")
    check.add_argument("--templates", metavar="DIR", help="the templates directory (default: RELAY_TEMPLATES)")
    check.set_defaults(func=cmd_routes_check)
    rtest = routes.add_parser("test", help="print the receivers for a label set")
    rtest.add_argument("--verify-receivers")
    rtest.add_argument("labels", nargs="*", metavar="K=V")
    rtest.set_defaults(func=cmd_routes_test)
    rdiff = routes.add_parser("diff", help="what a routes.yaml change does: alerts whose receivers change, messages "
                              "that read differently", description="OLD and NEW are files or git revisions "
                              "(REV:PATH, e.g. origin/main:routes.yaml); --base REV compares FILE with REV's.")
    rdiff.add_argument("old", nargs="?", metavar="OLD", help="file or REV:PATH (with --base: the FILE to compare)")
    rdiff.add_argument("new", nargs="?", metavar="NEW", help="file or REV:PATH (default: RELAY_ROUTES)")
    rdiff.add_argument("--base", metavar="REV", help="compare with REV's version of the file (and its templates "
                       "and rule files), e.g. origin/main")
    rdiff.add_argument("--rules", action="append", default=[], metavar="FILE",
                       help="a Prometheus rule file whose alerts to check as well, besides deploy/prometheus/*.yml "
                       "(repeatable)")
    rdiff.add_argument("--templates", metavar="DIR", help="the templates directory (default: RELAY_TEMPLATES)")
    rdiff.add_argument("--fixtures", metavar="DIR", help="render messages for these Alertmanager webhook bodies "
                       "(*.json) instead of one alert per rule")
    rdiff.add_argument("--format", choices=("text", "markdown", "json"), default="text",
                       help="markdown: a pull-request comment")
    rdiff.add_argument("--exit-code", action="store_true", help="exit 1 when receivers or messages change")
    # Exit 1 is "the change moves receivers or messages" here, so an unusable side exits 2, as diff(1) does.
    rdiff.set_defaults(func=cmd_routes_diff, error_exit=2)
