"""`relay maintenance add|list|end`: maintenance windows of a running relay, through its admin API.

A window mutes the alerts its matchers match, on every replica; what they would send is held and sent when the
window ends, if they still fire (docs/operations.md, Maintenance windows).
"""

from __future__ import annotations

import argparse
import getpass
import json
import time
from datetime import UTC, datetime
from typing import Any

from relay.cli.admin import _call, _client, _json, _url, _when
from relay.cli.common import ADMIN_ENVIRONMENT, command
from relay.config.durations import parse_duration
from relay.config.settings import Settings
from relay.errors import UsageError


def _instant(text: str, option: str) -> str:
    """An RFC 3339 time as given, or `now`, or a duration from now (`2h`), as the RFC 3339 the API takes."""
    value = text.strip()
    if value == "now":
        return datetime.now(UTC).isoformat()
    try:
        return datetime.fromtimestamp(time.time() + parse_duration(value).total_seconds(), UTC).isoformat()
    except ValueError:
        pass
    try:
        parsed = datetime.fromisoformat(value.replace("z", "Z"))
    except ValueError:
        raise UsageError(f"{option} {text!r}: expected an RFC 3339 time (2026-03-06T22:00:00+09:00), now, or a "
                         "duration from now (2h)") from None
    if parsed.tzinfo is None:
        raise UsageError(f"{option} {text!r} has no offset: add Z or one like +09:00 (RFC 3339)")
    return parsed.isoformat()


def _line(window: dict[str, Any]) -> str:
    who = f" by {window['created_by']}" if window.get("created_by") else ""
    who += f", while {window['time_interval']} holds" if window.get("time_interval") else ""
    return (f"{window['id']:>4}  {window['state']:8}  {_when(window['starts_at'])} - {_when(window['ends_at'])}  "
            f"{', '.join(window['matchers'])}  ({window['comment']}{who})")


def cmd_maintenance_add(args: argparse.Namespace, settings: Settings) -> int:
    body = {"matchers": args.matchers, "starts_at": _instant(args.start, "--from"),
            "ends_at": _instant(args.until, "--until"), "comment": args.comment,
            "created_by": args.created_by if args.created_by is not None else getpass.getuser(),
            "time_interval": args.interval}
    with _client(args, settings) as client:
        made = _call(client, "POST", "/api/v1/maintenance", json=body)
    print(json.dumps(made, indent=2) if args.json else f"maintenance window {made['id']} added\n{_line(made)}")
    return 0


def cmd_maintenance_list(args: argparse.Namespace, settings: Settings) -> int:
    with _client(args, settings) as client:
        found = _call(client, "GET", "/api/v1/maintenance", params={"all": "1"} if args.all else {})
    if args.json:
        print(json.dumps(found, indent=2))
    else:
        print("\n".join(_line(w) for w in found["windows"]) or "no maintenance windows")
    return 0


def cmd_maintenance_end(args: argparse.Namespace, settings: Settings) -> int:
    with _client(args, settings) as client:
        for window in args.ids:
            ended = _call(client, "POST", f"/api/v1/maintenance/{window}/end")
            print(f"maintenance window {ended['id']} ended: what it held is sent if it still fires")
    return 0


def add_commands(sub: Any) -> None:
    """Register `maintenance add|list|end` on the top-level parser."""
    env = ADMIN_ENVIRONMENT
    group = command(
        sub, "maintenance", "maintenance windows: add, list, end",
        "Mute the alerts that match some labels during planned work, on every replica, through the running relay's "
        "admin API. What they would send is held, and sent when the window ends if they still fire (not resolved, "
        "silenced or acknowledged meanwhile).",
        examples=["relay maintenance add --matchers 'service=\"api\"' --until 2h --comment 'database upgrade'",
                  "relay maintenance list", "relay maintenance end 3"], environment=env).add_subparsers(
        dest="maintenance_command", required=True, metavar="{add,list,end}")
    add = command(group, "add", "add a maintenance window",
                  "Add a window: alerts all its matchers match are muted from --from until --until. Prints its id.",
                  examples=["relay maintenance add --matchers 'service=\"api\"' --until 2h --comment 'deploy'",
                            "relay maintenance add --matchers 'service=\"api\", env=\"prod\"' "
                            "--from 2026-03-06T22:00:00+09:00 --until 2026-03-07T02:00:00+09:00 --comment 'upgrade'"],
                  environment=env)
    add.add_argument("--matchers", action="append", required=True, metavar="MATCHERS",
                     help="Alertmanager matchers the alerts must all match; repeatable (required), "
                     "e.g. --matchers 'service=\"api\"'")
    add.add_argument("--from", dest="start", default="now", metavar="TIME",
                     help="when it starts: RFC 3339 with an offset, now, or a duration from now "
                     "(default: %(default)s), e.g. --from 2026-03-06T22:00:00+09:00")
    add.add_argument("--until", required=True, metavar="TIME",
                     help="when it ends: RFC 3339 with an offset, or a duration from now (required), e.g. --until 2h")
    add.add_argument("--comment", required=True, metavar="TEXT",
                     help="why, shown wherever the window is (required), e.g. --comment 'database upgrade'")
    add.add_argument("--interval", metavar="NAME",
                     help="recurring: between --from and --until, mute only while this time interval of routes.yaml "
                     "holds (default: throughout), e.g. --interval sunday-nights")
    add.add_argument("--created-by", metavar="NAME",
                     help="who made it (default: your login name), e.g. --created-by kim")
    _url(add)
    _json(add)
    add.set_defaults(func=cmd_maintenance_add)
    listing = command(group, "list", "maintenance windows not over yet",
                      "The windows not over yet (pending or active), by start; --all also those that ended.",
                      examples=["relay maintenance list", "relay maintenance list --all --json"], environment=env)
    listing.add_argument("--all", action="store_true", help="also windows that are over (default: off)")
    _url(listing)
    _json(listing)
    listing.set_defaults(func=cmd_maintenance_list)
    end = command(group, "end", "end maintenance windows now",
                  "End windows now: they mute nothing from now on, and what they held is sent at once if it still "
                  "fires.", examples=["relay maintenance end 3"], environment=env)
    end.add_argument("ids", nargs="+", type=int, metavar="ID", help="the windows to end (required), e.g. 3")
    _url(end)
    end.set_defaults(func=cmd_maintenance_end)
