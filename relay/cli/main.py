"""The `relay` command: serve, test-alert, routes check|test|diff, templates render, dead-letters, notifications,
explain.

Each command group registers itself (`add_commands`) and raises relay's errors; `main` turns them into one line on
stderr and an exit code, here and nowhere else: a usage mistake exits 2, a configuration, start-up or admin-API
failure exits 1 (or the command's own `error_exit`, for `routes diff`, whose exit 1 means "it changes something").
"""

from __future__ import annotations

import argparse
import logging
import sys
import traceback

from pydantic import ValidationError
from pydantic_settings import SettingsError

from relay import __version__
from relay.cli import admin, explain, maintenance, routes, serve, startup, templates, testalert
from relay.config.settings import Settings
from relay.errors import AdminError, ConfigError, StartupError, UsageError
from relay.telemetry import logs

log = logging.getLogger("relay")


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(
        prog="relay", formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Alertmanager's webhooks to Slack, email and PagerDuty, from a durable outbox.\n"
                    "`relay COMMAND --help` explains each command, with examples.",
        epilog="examples:\n  relay serve\n  relay test-alert --severity critical\n"
               "  relay routes test severity=critical alertname=PodDown\n  relay dead-letters list\n\n"
               "environment:\n  every setting is a RELAY_* variable (docs/configuration.md): RELAY_HOST, RELAY_PORT,\n"
               "  RELAY_ROUTES, RELAY_DATABASE_URL, RELAY_WEBHOOK_TOKEN, RELAY_ADMIN_TOKEN, ...")
    top.add_argument("--version", action="version", version=f"relay {__version__}",
                     help="print the installed version and exit")
    sub = top.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for group in (serve, testalert, routes, admin, maintenance, explain, templates):
        group.add_commands(sub)
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
    except UsageError as exc:
        print(f"relay: {exc}", file=sys.stderr)
        return 2
    except (ConfigError, AdminError) as exc:
        print(f"relay: {exc}", file=sys.stderr)
        return int(getattr(args, "error_exit", 1))
    except StartupError as exc:  # a mistake the user can fix: one line; the traceback only when asked for
        if settings.log_level.upper() == "DEBUG":
            traceback.print_exc()
        print(f"relay: {exc}", file=sys.stderr)
        return 1
