"""`relay templates render`: exactly what a receiver would send for an alert, secrets left out."""

from __future__ import annotations

import argparse
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from relay.cli.common import command, labels, load
from relay.config.settings import Settings
from relay.errors import ConfigError, UsageError


def cmd_templates_render(args: argparse.Namespace, settings: Settings) -> int:
    from pydantic import ValidationError

    from relay.alerts import WebhookMessage
    from relay.channels.preview import as_notification, render, resolved, storm_summary, synthetic_group
    from relay.errors import DeliveryError

    if args.fixture and args.labels:
        raise UsageError("give either --fixture FILE or labels k=v, not both")
    routes, templates = load(settings)
    receiver = routes.receivers.get(args.receiver)
    if receiver is None:
        known = ", ".join(sorted(routes.receivers))
        raise ConfigError(f"no receiver {args.receiver!r}; known: {known}", file=str(settings.routes))
    now = datetime.now(UTC)
    try:
        if args.fixture:
            group = WebhookMessage.model_validate_json(Path(args.fixture).read_bytes())
        else:
            group = synthetic_group(labels(args.labels), labels(args.annotation), now)
    except (OSError, ValidationError) as exc:
        print(f"relay: cannot read {args.fixture or 'the labels'}: {exc}", file=sys.stderr)
        return 1
    if args.resolve:
        group = resolved(group, now)
    if args.storm is not None and not receiver.folds:
        raise UsageError(f"receiver {receiver.name!r} is never folded into storm summaries "
                         + ("(PagerDuty: each incident matters)" if receiver.pagerduty else "(storm.enabled is false)"))
    notification = (storm_summary(receiver, group, args.storm, now) if args.storm is not None
                    else as_notification(receiver, group, now))
    try:
        print(render(receiver, notification, templates, now), end="")
    except DeliveryError as exc:
        print(f"relay: {exc}", file=sys.stderr)
        return 1
    return 0


def _count(text: str) -> int:
    value = int(text)
    if not 1 <= value <= 100_000:
        raise argparse.ArgumentTypeError("N must be 1 to 100000")
    return value


def add_commands(sub: Any) -> None:
    environment = ["RELAY_ROUTES      the routes file naming the receivers (default: routes.yaml)",
                   "RELAY_TEMPLATES   a directory whose files override the packaged templates (default: none)"]
    templates = command(
        sub, "templates", "preview messages", "Preview what relay's templates make of alerts, without sending.",
        examples=["relay templates render --receiver slack-alerts alertname=DiskFull severity=critical"],
        environment=environment).add_subparsers(dest="templates_command", required=True, metavar="{render}")
    render = command(
        templates, "render", "print exactly what a receiver would send (secrets left out)",
        "Render one notification with the receiver's templates and print each provider call it would make (Slack "
        "message, email, PagerDuty event), secrets left out. The alerts come from an Alertmanager webhook body "
        "(--fixture) or are one synthetic alert made of the labels given.",
        examples=["relay templates render --receiver slack-alerts --fixture tests/fixtures/alertmanager/"
                  "firing-poddown.json",
                  "relay templates render --receiver ops-email alertname=DiskFull severity=critical "
                  "--annotation summary='Disk 95%'",
                  "relay templates render --receiver slack-alerts --storm 200 alertname=HighLatency severity=warning"],
        environment=environment)
    render.add_argument("--receiver", required=True, metavar="NAME",
                        help="the routes.yaml receiver whose templates and settings to use (required, no default), "
                        "e.g. --receiver slack-alerts")
    render.add_argument("--fixture", metavar="FILE", help="an Alertmanager webhook body, JSON (default: a "
                        "synthetic alert of the labels given), e.g. --fixture alert.json")
    render.add_argument("--resolve", action="store_true", help="render the resolve of these alerts (default: off)")
    render.add_argument("--storm", type=_count, metavar="N",
                        help="render the summary of a storm of N such alerts, each its own group, 1 to 100000 "
                        "(default: off), e.g. --storm 200")
    render.add_argument("--annotation", action="append", default=[], metavar="K=V",
                        help="an annotation of the synthetic alert; repeatable (default: none), "
                        "e.g. --annotation summary='Disk 95%%'")
    render.add_argument("labels", nargs="*", metavar="K=V", help="labels of a synthetic alert (default: none), "
                        "e.g. alertname=DiskFull severity=critical")
    render.set_defaults(func=cmd_templates_render)
