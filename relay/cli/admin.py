"""`relay notifications list|cancel` and `relay dead-letters …`: the admin API of a running relay, from a terminal.

They talk HTTP to the relay that owns the store, so they work the same on
SQLite and PostgreSQL and never race a running dispatcher.
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx

from relay.auth import REQUEST_HEADER
from relay.config.durations import format_duration
from relay.errors import AdminError
from relay.settings import Settings


def base_url(args: argparse.Namespace, settings: Settings) -> str:
    host = "127.0.0.1" if settings.host in ("0.0.0.0", "::") else settings.host
    return str(args.url or f"http://{host}:{settings.port}")


def admin_headers(settings: Settings) -> dict[str, str]:
    """RELAY_ADMIN_TOKEN when set, and the header that tells relay a request is not a browser's (relay.auth)."""
    headers = {REQUEST_HEADER: "1"}
    if settings.admin:
        headers["Authorization"] = f"Bearer {settings.admin}"
    return headers


def _client(args: argparse.Namespace, settings: Settings) -> httpx.Client:
    return httpx.Client(base_url=base_url(args, settings), headers=admin_headers(settings), timeout=10)


def _call(client: httpx.Client, method: str, path: str, **kwargs: Any) -> Any:
    try:
        answer = client.request(method, path, **kwargs)
    except httpx.HTTPError as exc:
        raise AdminError(f"cannot reach relay at {client.base_url}: {type(exc).__name__}") from None
    body = answer.json() if answer.headers.get("content-type", "").startswith("application/json") else {}
    if answer.status_code >= 400:
        raise AdminError(body.get("error") or f"relay answered {answer.status_code}")
    return body


def _when(epoch: float | None) -> str:
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%d %H:%M:%SZ") if epoch else "-"


def _after(seconds: float) -> str:
    return format_duration(timedelta(seconds=seconds))


def _table(rows: list[dict[str, Any]]) -> str:
    if not rows:
        return "no notifications"
    lines = [f"{'ID':>6}  {'RECEIVED':20}  {'RECEIVER':18}  {'STATE':9}  {'TRIES':>5}  ALERTS  /  LAST ERROR"]
    for row in rows:
        lines.append(f"{row['id']:>6}  {_when(row['received_at']):20}  {row['receiver']:18}  {row['state']:9}  "
                     f"{row['attempts']:>5}  {','.join(row['alertnames'])} ({row['status']}"
                     + (f", escalation {row['escalation']['step']}/{row['escalation']['steps']}"
                        if row.get("escalation") else "") + ")"
                     + (f"  /  {row['last_error']}" if row.get("last_error") else ""))
    return "\n".join(lines)


def _show(row: dict[str, Any]) -> str:
    folded = (f"  delivered in storm summary {row['summary_id']} (relay notifications show {row['summary_id']})"
              if row.get("summary_id") else None)
    holds = (f"  a storm's summary of {row['folded']} notifications (relay notifications list --summary {row['id']})"
             if "folded" in row else None)
    lines = [f"notification {row['id']} to {row['receiver']} ({row['integration']}): {row['state']}",
             f"  received {_when(row['received_at'])}, {row['attempts']} attempts"
             + (f", last error: {row['last_error']}" if row.get("last_error") else ""),
             *(line for line in (folded, holds) if line), f"  group {row['group_key']}"]
    action = row.get("action")
    if isinstance(action, dict):  # a click from Slack (relay.actions): who asked what, when; the attempts: its result
        until = f" until {_when(action['until'])}" if action.get("until") else ""
        who = f"{action.get('user_name') or '?'} ({action.get('user')})"
        lines.append(f"  action: {action.get('kind')}{until} by {who} at {_when(action.get('clicked_at'))}, "
                     f"on Slack message {action.get('channel')}/{action.get('ts')}")
    if row.get("escalation"):
        step = row["escalation"]
        lines.append(f"  escalation step {step['step']} of {step['steps']}: its alerts were not acknowledged for "
                     f"{_after(step['after_seconds'])}")
    lines.append("  alerts:")
    for alert in row["alerts"]:
        labels = ", ".join(f"{k}={v}" for k, v in sorted(alert["labels"].items()))
        lines.append(f"    {alert['status']:8} {labels}  (since {alert['startsAt']})")
    lines.append("  attempts:")
    for attempt in row["attempt_log"]:
        detail = f" {attempt['reason']}" if attempt["reason"] else ""
        detail += f": {attempt['detail']}" if attempt["detail"] else ""
        lines.append(f"    {_when(attempt['started_at'])}  {attempt['outcome']:9}{detail} "
                     f"({attempt['duration'] * 1000:.0f} ms)")
    lines.extend(_steps(row.get("escalation_steps", [])))
    return "\n".join(lines)


def _steps(steps: list[dict[str, Any]]) -> list[str]:
    """Where the escalation of a notification's alerts stands, one line per step."""
    lines = ["  escalation of its alerts:"] if steps else []
    for step in steps:
        if step["state"] == "pending":
            state = f"due {_when(step['due_at'])}"
        elif step["state"] == "sent":
            state = f"sent {_when(step['ended_at'])} as notification {', '.join(map(str, step['notifications']))}"
        else:
            state = f"cancelled {_when(step['ended_at'])} ({step['reason']})"
        lines.append(f"    {step['fingerprint']} step {step['step']} of {step['steps']} (after "
                     f"{_after(step['after_seconds'])}, to {', '.join(step['receivers'])}): {state}")
    return lines


def _list(client: httpx.Client, args: argparse.Namespace, state: str | None) -> list[dict[str, Any]]:
    summary = getattr(args, "summary", None)
    params = {k: v for k, v in (("receiver", args.receiver), ("state", state), ("alertname", args.alertname),
                                ("summary", str(summary) if summary else None), ("limit", str(args.limit))) if v}
    return list(_call(client, "GET", "/api/v1/notifications", params=params)["notifications"])


def cmd_notifications_list(args: argparse.Namespace, settings: Settings) -> int:
    with _client(args, settings) as client:
        rows = _list(client, args, args.state)
    print(json.dumps(rows, indent=2) if args.json else _table(rows))
    return 0


def _each(client: httpx.Client, ids: list[int], method: str, path: str, done: str) -> int:
    """One admin call per id (`path` with `{id}`), a line each; exit 1 if any was refused, after trying them all."""
    failed = 0
    for notification_id in ids:
        try:
            _call(client, method, path.format(id=notification_id))
            print(f"{notification_id}: {done}")
        except AdminError as exc:
            failed += 1
            print(f"{notification_id}: {exc}", file=sys.stderr)
    return 1 if failed else 0


def cmd_notifications_show(args: argparse.Namespace, settings: Settings) -> int:
    """One notification (or action) with its alerts and every attempt; a folded one names its storm summary."""
    with _client(args, settings) as client:
        for notification_id in args.ids:
            row = _call(client, "GET", f"/api/v1/notifications/{notification_id}")
            print(json.dumps(row, indent=2) if args.json else _show(row))
    return 0


def cmd_notifications_cancel(args: argparse.Namespace, settings: Settings) -> int:
    """Cancel pending notifications: they will not be sent, and the next ones of their lanes go."""
    with _client(args, settings) as client:
        return _each(client, args.ids, "POST", "/api/v1/notifications/{id}/cancel", "cancelled")


def cmd_dead_letters(args: argparse.Namespace, settings: Settings) -> int:
    with _client(args, settings) as client:
        if args.action == "list":
            rows = _list(client, args, "dead")
            print(json.dumps(rows, indent=2) if args.json else _table(rows))
            return 0
        if args.action == "show":
            for notification_id in args.ids:
                row = _call(client, "GET", f"/api/v1/notifications/{notification_id}")
                print(json.dumps(row, indent=2) if args.json else _show(row))
            return 0
        ids = [row["id"] for row in _list(client, args, "dead")] if args.all else args.ids
        if not ids:
            print("nothing to do: name dead-letter ids, or --all (with --receiver/--alertname to narrow it)")
            return 1
        if args.action == "retry":
            return _each(client, ids, "POST", "/api/v1/dead-letters/{id}/retry", "replayed")
        return _each(client, ids, "DELETE", "/api/v1/dead-letters/{id}", "purged")


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--url", help="relay's base URL (default: from RELAY_HOST/RELAY_PORT)")
    parser.add_argument("--receiver")
    parser.add_argument("--alertname")
    parser.add_argument("--limit", type=int, default=100)
    parser.add_argument("--json", action="store_true", help="print the API's JSON")


def add_commands(sub: Any) -> None:
    """Register `notifications list|show|cancel` and `dead-letters list|show|retry|purge` on the top-level parser."""
    notifications = sub.add_parser("notifications", help="delivery history").add_subparsers(
        dest="notifications_command", required=True)
    nlist = notifications.add_parser("list", help="recent notifications, newest first")
    _common(nlist)
    nlist.add_argument("--state", choices=["pending", "delivered", "dead", "cancelled"])
    nlist.add_argument("--summary", type=int, metavar="ID", help="the notifications folded into this storm summary")
    nlist.set_defaults(func=cmd_notifications_list)
    nshow = notifications.add_parser("show", help="notifications or actions with their alerts and attempts")
    nshow.add_argument("ids", nargs="+", type=int, metavar="ID")
    nshow.add_argument("--url", help="relay's base URL (default: from RELAY_HOST/RELAY_PORT)")
    nshow.add_argument("--json", action="store_true", help="print the API's JSON")
    nshow.set_defaults(func=cmd_notifications_show)
    ncancel = notifications.add_parser("cancel", help="cancel pending notifications (recorded in history)")
    ncancel.add_argument("ids", nargs="+", type=int, metavar="ID")
    ncancel.add_argument("--url", help="relay's base URL (default: from RELAY_HOST/RELAY_PORT)")
    ncancel.set_defaults(func=cmd_notifications_cancel)

    dead = sub.add_parser("dead-letters", help="notifications relay gave up on: inspect, replay, purge")
    dead.add_argument("action", choices=["list", "show", "retry", "purge"])
    dead.add_argument("ids", nargs="*", type=int, metavar="ID")
    dead.add_argument("--all", action="store_true", help="retry or purge every listed dead letter")
    _common(dead)
    dead.set_defaults(func=cmd_dead_letters)
