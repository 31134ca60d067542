"""The `relay` command: serve, test-alert, routes check|test|diff, templates render, dead-letters, notifications."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
import time
import traceback
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
from pydantic import ValidationError
from pydantic_settings import SettingsError

from relay import __version__, admin, logs, startup, testalert
from relay.auth import is_loopback
from relay.errors import ConfigError, StartupError
from relay.settings import Settings

if TYPE_CHECKING:
    from relay.routes import Routes
    from relay.routescheck import Finding
    from relay.templating import Templates

log = logging.getLogger("relay")


def cmd_serve(args: argparse.Namespace, settings: Settings) -> int:
    from relay import serve
    from relay.routes import load_routes
    from relay.templating import Templates

    if args.host:
        settings = settings.model_copy(update={"host": args.host})
    if args.port:
        settings = settings.model_copy(update={"port": args.port})
    if settings.token is None and not is_loopback(settings.host):
        print(f"relay: refusing to listen on {settings.host} without RELAY_WEBHOOK_TOKEN; set a token or "
              "listen on 127.0.0.1", file=sys.stderr)
        return 2
    try:
        load_routes(settings.routes, Templates(settings.templates))
    except ConfigError as exc:
        # An installed relay run outside a checkout has no ./routes.yaml: say which setting names the file.
        hint = ""
        if not settings.routes.exists():
            where = "" if settings.routes.is_absolute() else f", relative to {Path.cwd()}"
            hint = f" (RELAY_ROUTES names the routes file{where})"
        print(f"relay: {exc}{hint}", file=sys.stderr)
        return 1
    return serve.run(settings)


def _labels(pairs: list[str]) -> dict[str, str]:
    out = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise SystemExit(f"relay: expected k=v, got {pair!r}")
        out[key] = value
    return out


async def _test_alert_http(args: argparse.Namespace, settings: Settings, payload: dict[str, Any]) -> int:
    url = admin.base_url(args, settings)
    headers = {"Authorization": f"Bearer {settings.token}"} if settings.token else {}
    async with httpx.AsyncClient(base_url=url, headers=headers, timeout=10) as client:
        try:
            answer = await client.post("/webhook", json=payload)
        except httpx.HTTPError as exc:
            print(f"relay: cannot reach relay at {url}: {type(exc).__name__}", file=sys.stderr)
            return 1
        if answer.status_code != 200:
            print(f"relay: webhook answered {answer.status_code}: {answer.text}", file=sys.stderr)
            return 1
        summary = answer.json()

        async def fetch(ids: list[int]) -> list[dict[str, Any]]:
            if not ids:
                return []
            answer = await client.get("/api/v1/notifications", params={"ids": ",".join(map(str, ids))},
                                      headers=admin.admin_headers(settings))
            body = answer.json() if answer.headers.get("content-type", "").startswith("application/json") else {}
            if answer.status_code != 200:
                raise admin.AdminError(f"the alert was accepted, but its delivery cannot be followed: "
                                       f"{body.get('error') or answer.status_code}")
            return list(body["notifications"])

        rows = await testalert.follow(fetch, _ids(summary), args.timeout, testalert.on_defaults(summary))
        return _print_outcome(summary, rows)


async def _test_alert_direct(args: argparse.Namespace, settings: Settings, payload: dict[str, Any]) -> int:
    """In this process, on the database itself: refused while `relay serve` holds that SQLite file, whose leases
    and deliveries a second dispatcher would compete with (PostgreSQL allows several)."""
    from relay.store.filelock import lock_database

    try:
        lock = lock_database(settings.database_url)
    except StartupError as exc:
        raise StartupError(f"{exc}; without --direct, test-alert sends through the running relay") from exc
    try:
        return await _deliver_here(args, settings, payload)
    finally:
        if lock is not None:
            lock.release()


async def _deliver_here(args: argparse.Namespace, settings: Settings, payload: dict[str, Any]) -> int:
    from relay import outbox
    from relay.alerts import WebhookMessage
    from relay.services import open_services
    from relay.store.base import HistoryFilter
    from relay.webhook import candidates, summary

    try:
        services = await open_services(settings)
    except ConfigError as exc:
        print(f"relay: {exc}", file=sys.stderr)
        return 1
    store, routes = services.store, services.runtime.routes
    task = asyncio.create_task(services.dispatcher.run())
    try:
        message = WebhookMessage.model_validate(payload)
        assert routes is not None
        results = await outbox.enqueue(services.dispatcher, store, candidates(message, routes), time.time())
        info = summary(message, results, defaults=routes.defaults)

        async def fetch(ids: list[int]) -> list[dict[str, Any]]:
            return await store.history(HistoryFilter(ids=tuple(ids))) if ids else []

        rows = await testalert.follow(fetch, _ids(info), args.timeout, testalert.on_defaults(info))
        return _print_outcome(info, rows)
    finally:
        await services.close([task])


def _ids(summary: dict[str, Any]) -> list[int]:
    return [r["notification_id"] for r in summary["receivers"].values() if r["notification_id"] is not None]


def _print_outcome(summary: dict[str, Any], rows: list[dict[str, Any]]) -> int:
    text, ok = testalert.report(summary, rows)
    print(text)
    return 0 if ok else 1


def cmd_test_alert(args: argparse.Namespace, settings: Settings) -> int:
    payload = testalert.build_payload(args.alertname, args.severity, _labels(args.label), args.resolve)
    alert = payload["alerts"][0]
    print(f"{alert['status']} test alert {args.alertname} (severity={args.severity}, "
          f"fingerprint {alert['fingerprint']}, startsAt {alert['startsAt']})")
    runner = _test_alert_direct if args.direct else _test_alert_http
    return asyncio.run(runner(args, settings, payload))


def _check_one(file: Path, templates: Templates, strict: Callable[[Path, Routes], list[Finding]] | None) -> bool:
    from relay.preview import template_problems
    from relay.routes import load_routes

    try:
        routes = load_routes(file, templates)
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
    import os

    from relay import revisions, routescheck, rulefiles
    from relay.templating import Templates

    files = [Path(f) for f in args.files] or [settings.routes]
    templates = Templates(Path(args.templates) if args.templates else settings.templates)
    strict: Callable[[Path, Routes], list[Finding]] | None = None
    if args.strict:
        root = revisions.toplevel(Path.cwd()) or Path.cwd()
        try:
            alerts = rulefiles.read_all((p, revisions.relative_to_repo(Path.cwd(), p) or str(p))
                                        for p in [*rulefiles.discover(root), *map(Path, args.rules)])
        except ConfigError as exc:
            print(f"relay: {exc}", file=sys.stderr)
            return 1
        allowed = {name.strip() for names in args.allow_unset for name in names.split(",") if name.strip()}

        def findings(file: Path, routes: Routes) -> list[Finding]:
            return routescheck.findings(file, routes, alerts, os.environ, allowed)

        strict = findings

    results = [_check_one(file, templates, strict) for file in files]
    return 0 if all(results) else 1


def cmd_routes_test(args: argparse.Namespace, settings: Settings) -> int:
    from relay.routes import load_routes
    from relay.templating import Templates

    try:
        routes = load_routes(settings.routes, Templates(settings.templates))
    except ConfigError as exc:
        print(f"relay: {exc}", file=sys.stderr)
        return 1
    labels = _labels(args.labels)
    beats = [h.name for h in routes.spec.heartbeats if h.matches(labels)]
    names = [] if beats else [t.receiver for t in routes.targets(labels)]
    print(",".join(names))
    if beats:
        print(f"heartbeat {', '.join(beats)}: consumed by relay's dead man's switch, not routed", file=sys.stderr)
    if args.verify_receivers is not None and names != [n for n in args.verify_receivers.split(",") if n]:
        print(f"WARNING: expected receivers did not match resolved receivers: {args.verify_receivers}",
              file=sys.stderr)
        return 1
    return 0


def cmd_templates_render(args: argparse.Namespace, settings: Settings) -> int:
    from pydantic import ValidationError

    from relay.alerts import WebhookMessage
    from relay.errors import DeliveryError
    from relay.preview import as_notification, render, resolved, synthetic_group
    from relay.routes import load_routes
    from relay.templating import Templates

    if args.fixture and args.labels:
        print("relay: give either --fixture FILE or labels k=v, not both", file=sys.stderr)
        return 2
    templates = Templates(settings.templates)
    try:
        routes = load_routes(settings.routes, templates)
    except ConfigError as exc:
        print(f"relay: {exc}", file=sys.stderr)
        return 1
    receiver = routes.receivers.get(args.receiver)
    if receiver is None:
        known = ", ".join(sorted(routes.receivers))
        print(f"relay: no receiver {args.receiver!r} in {settings.routes}; known: {known}", file=sys.stderr)
        return 1
    now = datetime.now(UTC)
    try:
        if args.fixture:
            group = WebhookMessage.model_validate_json(Path(args.fixture).read_bytes())
        else:
            group = synthetic_group(_labels(args.labels), _labels(args.annotation), now)
    except (OSError, ValidationError) as exc:
        print(f"relay: cannot read {args.fixture or 'the labels'}: {exc}", file=sys.stderr)
        return 1
    if args.resolve:
        group = resolved(group, now)
    try:
        print(render(receiver, as_notification(receiver, group, now), templates, now), end="")
    except DeliveryError as exc:
        print(f"relay: {exc}", file=sys.stderr)
        return 1
    return 0


def cmd_routes_diff(args: argparse.Namespace, settings: Settings) -> int:
    from relay import diffreport, review

    request = review.Request(
        old=args.old, new=args.new, base=args.base, routes=settings.routes,
        templates=Path(args.templates) if args.templates else settings.templates,
        rules=tuple(Path(f) for f in args.rules), fixtures=Path(args.fixtures) if args.fixtures else None,
        cwd=Path.cwd())
    try:
        result = review.build(request)
    except ConfigError as exc:
        print(f"relay: {exc}", file=sys.stderr)
        return 2
    shown = {"text": diffreport.text, "markdown": diffreport.markdown, "json": diffreport.as_json}[args.format]
    sys.stdout.write(shown(result))
    return 1 if args.exit_code and not result.empty else 0


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog="relay", description=__doc__)
    top.add_argument("--version", action="version", version=f"relay {__version__}")
    sub = top.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="run the service")
    serve.add_argument("--host")
    serve.add_argument("--port", type=int)
    serve.set_defaults(func=cmd_serve)

    test = sub.add_parser("test-alert", help="send a synthetic alert and show what each receiver got")
    test.add_argument("--alertname", default="RelayTestAlert")
    test.add_argument("--severity", default="warning")
    test.add_argument("--label", action="append", default=[], metavar="K=V")
    test.add_argument("--resolve", action="store_true", help="send the resolve of the last test alert")
    test.add_argument("--url", help="relay's base URL (default: from RELAY_HOST/RELAY_PORT)")
    test.add_argument("--direct", action="store_true", help="route, render and deliver in this process")
    test.add_argument("--timeout", type=float, default=30.0, help="seconds to wait for delivery")
    test.set_defaults(func=cmd_test_alert)

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
    rdiff.set_defaults(func=cmd_routes_diff)

    admin.add_commands(sub)

    templates = sub.add_parser("templates", help="preview messages").add_subparsers(
        dest="templates_command", required=True)
    render = templates.add_parser("render", help="print exactly what a receiver would send (secrets left out)")
    render.add_argument("--receiver", required=True)
    render.add_argument("--fixture", metavar="FILE", help="an Alertmanager webhook body (JSON)")
    render.add_argument("--resolve", action="store_true", help="render the resolve of these alerts")
    render.add_argument("--annotation", action="append", default=[], metavar="K=V",
                        help="an annotation of the synthetic alert (with labels k=v)")
    render.add_argument("labels", nargs="*", metavar="K=V", help="labels of a synthetic alert")
    render.set_defaults(func=cmd_templates_render)
    return top


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        settings = Settings()
    except (ValidationError, SettingsError) as exc:
        lines = startup.settings_problems(exc) if isinstance(exc, ValidationError) else [str(exc)]
        for line in lines:
            print(f"relay: {line}", file=sys.stderr)
        return 2
    try:
        logs.configure(settings.log_format, settings.log_level)
    except ValueError:
        print(f"relay: RELAY_LOG_LEVEL={settings.log_level!r} is not valid: expected debug, info, warning or error",
              file=sys.stderr)
        return 2
    try:
        return int(args.func(args, settings))
    except admin.AdminError as exc:
        print(f"relay: {exc}", file=sys.stderr)
        return 1
    except StartupError as exc:  # a mistake the user can fix: one line; the traceback only when asked for
        if settings.log_level.upper() == "DEBUG":
            traceback.print_exc()
        print(f"relay: {exc}", file=sys.stderr)
        return 1
