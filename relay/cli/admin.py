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

from relay.auth import REQUEST_HEADER
from relay.cli.client import RelayClient, Unreachable
from relay.cli.common import ADMIN_ENVIRONMENT, URL_HELP, command, counted, refused, unreachable
from relay.config.durations import format_duration
from relay.config.settings import Settings
from relay.errors import AdminError, UsageError
from relay.times import epoch


def base_url(args: argparse.Namespace, settings: Settings) -> str:
    host = "127.0.0.1" if settings.host in ("0.0.0.0", "::") else settings.host
    return str(args.url or f"http://{host}:{settings.port}")


def admin_headers(settings: Settings) -> dict[str, str]:
    """RELAY_ADMIN_TOKEN when set, and the header that tells relay a request is not a browser's (relay.auth)."""
    headers = {REQUEST_HEADER: "1"}
    if settings.admin:
        headers["Authorization"] = f"Bearer {settings.admin}"
    return headers


def _client(args: argparse.Namespace, settings: Settings) -> RelayClient:
    return RelayClient(base_url(args, settings), admin_headers(settings))


def _call(client: RelayClient, method: str, path: str, **kwargs: Any) -> Any:
    try:
        answer = client.request(method, path, **kwargs)
    except Unreachable as exc:
        raise AdminError(unreachable(client.base_url, exc.what)) from None
    body = answer.json() if answer.is_json else {}
    if answer.status >= 400:
        raise AdminError(refused(answer.status, body.get("error") or f"relay answered {answer.status}",
                                 "RELAY_ADMIN_TOKEN"), reason=body.get("reason"))
    return body


def _when(value: float | str | None) -> str:
    """A time from the API (RFC 3339) as the terminal shows it, to the second."""
    seconds = epoch(value)
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%d %H:%M:%SZ") if seconds else "-"


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
             f"  received {_when(row['received_at'])}, {counted(row['attempts'], 'attempt')}"
             + (f", last error: {row['last_error']}" if row.get("last_error") else ""),
             *(line for line in (folded, holds) if line), f"  group {row['group_key']}"]
    action = row.get("action")
    if isinstance(action, dict):  # a click from Slack (relay.actions): who asked what, when; the attempts: its result
        until = f" until {_when(action['until'])}" if action.get("until") else ""
        who = f"{action.get('user_name') or '?'} ({action.get('user')})"
        lines.append(f"  action: {action.get('kind')}{until} by {who} at {_when(action.get('clicked_at'))}, "
                     f"on Slack message {action.get('channel')}/{action.get('ts')}")
    inferred = row.get("inferred")
    if isinstance(inferred, dict):  # a resolve relay inferred (relay.actions.silences): on what evidence
        lines.append(f"  resolved by relay ({inferred.get('by')}, silence {inferred.get('silence')}): "
                     f"{inferred.get('reason')}")
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
        if step["step"] < 0:  # a hold (relay.stages.mute): -(route + 1), or -(1000000 + maintenance window id)
            what = (f"held by maintenance window {-step['step'] - 1_000_000}" if step["step"] <= -1_000_000
                    else f"held while route {-step['step']} is muted")
            lines.append(f"    {step['fingerprint']} {what} (for {', '.join(step['receivers'])}): {state}")
            continue
        lines.append(f"    {step['fingerprint']} step {step['step']} of {step['steps']} (after "
                     f"{_after(step['after_seconds'])}, to {', '.join(step['receivers'])}): {state}")
    return lines


def _list(client: RelayClient, args: argparse.Namespace, state: str | None) -> list[dict[str, Any]]:
    summary = getattr(args, "summary", None)
    params = {k: v for k, v in (("receiver", args.receiver), ("state", state), ("alertname", args.alertname),
                                ("summary", str(summary) if summary else None), ("limit", str(args.limit))) if v}
    return list(_call(client, "GET", "/api/v1/notifications", params=params)["notifications"])


def cmd_notifications_list(args: argparse.Namespace, settings: Settings) -> int:
    with _client(args, settings) as client:
        rows = _list(client, args, args.state)
    print(json.dumps(rows, indent=2) if args.json else _table(rows))
    return 0


def _each(client: RelayClient, ids: list[int], method: str, path: str, done: str,
          reported: frozenset[str] = frozenset()) -> int:
    """One admin call per id (`path` with `{id}`), oldest first, a line each; exit 1 if any was refused, after trying
    them all. A refusal whose reason is in `reported` is an answer, not a failure: it is printed on stdout."""
    failed = 0
    for notification_id in sorted(set(ids)):
        try:
            _call(client, method, path.format(id=notification_id))
            print(f"{notification_id}: {done}")
        except AdminError as exc:
            if exc.reason in reported:
                print(f"{notification_id}: {exc}")
                continue
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


def _not_dead(row: dict[str, Any]) -> str | None:
    """What `dead-letters show` says first about a notification that is not a dead letter."""
    if row["state"] == "dead":
        return None
    if row["state"] == "pending":
        due = row.get("next_attempt_at")
        when = f"; next attempt {_when(due)}" if due else ""
        return (f"notification {row['id']} is not a dead letter: it is pending, relay is still trying to deliver it "
                f"({counted(row['attempts'], 'attempt')} so far{when}); `relay notifications cancel {row['id']}` "
                "stops it")
    return f"notification {row['id']} is not a dead letter: it is {row['state']}"


def cmd_dead_letters_list(args: argparse.Namespace, settings: Settings) -> int:
    with _client(args, settings) as client:
        rows = _list(client, args, "dead")
    print(json.dumps(rows, indent=2) if args.json else _table(rows))
    return 0


def cmd_dead_letters_show(args: argparse.Namespace, settings: Settings) -> int:
    with _client(args, settings) as client:
        for notification_id in args.ids:
            row = _call(client, "GET", f"/api/v1/notifications/{notification_id}")
            if args.json:
                print(json.dumps(row, indent=2))
                continue
            note = _not_dead(row)
            print(f"{note}\n{_show(row)}" if note else _show(row))
    return 0


def _chosen(client: RelayClient, args: argparse.Namespace) -> list[int]:
    if args.all == bool(args.ids):
        raise UsageError("name dead-letter ids, or --all (with --receiver/--alertname to narrow it), not both"
                         if args.all else "name dead-letter ids, or --all (with --receiver/--alertname to narrow it)")
    return [row["id"] for row in _list(client, args, "dead")] if args.all else list(args.ids)


def cmd_dead_letters_retry(args: argparse.Namespace, settings: Settings) -> int:
    """Oldest first, so a lane gets its firing back before its resolve; a letter whose alerts have resolved since
    is reported (replaying it would re-open them), not an error."""
    with _client(args, settings) as client:
        ids = _chosen(client, args)
        if not ids:
            print("nothing to do: no dead letters" + (" match" if args.receiver or args.alertname else ""))
            return 0
        return _each(client, ids, "POST", "/api/v1/dead-letters/{id}/retry", "replayed",
                     reported=frozenset({"resolved"}))


def cmd_dead_letters_purge(args: argparse.Namespace, settings: Settings) -> int:
    with _client(args, settings) as client:
        ids = _chosen(client, args)
        if not ids:
            print("nothing to do: no dead letters" + (" match" if args.receiver or args.alertname else ""))
            return 0
        return _each(client, ids, "DELETE", "/api/v1/dead-letters/{id}", "purged")


def _url(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--url", metavar="URL", help=URL_HELP)


def _json(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print the admin API's JSON instead of text (default: off)")


def _filters(parser: argparse.ArgumentParser, limit: bool = True) -> None:
    parser.add_argument("--receiver", metavar="NAME",
                        help="only this receiver's (default: every receiver), e.g. --receiver slack-alerts")
    parser.add_argument("--alertname", metavar="NAME",
                        help="only those holding this alert (default: any), e.g. --alertname PodDown")
    if limit:
        parser.add_argument("--limit", type=int, default=100, metavar="N",
                            help="at most N rows, newest first, 1 to 1000 (default: %(default)s), e.g. --limit 20")


def _ids(parser: argparse.ArgumentParser, what: str, required: bool = True) -> None:
    parser.add_argument("ids", nargs="+" if required else "*", type=int, metavar="ID",
                        help=f"{what} (the ID column of `relay notifications list`), e.g. 17"
                        + ("" if required else "; or --all"))


def add_commands(sub: Any) -> None:
    """Register `notifications list|show|cancel` and `dead-letters list|show|retry|purge` on the top-level parser."""
    env = ADMIN_ENVIRONMENT
    notifications = command(
        sub, "notifications", "delivery history: list, show, cancel",
        "The running relay's delivery history, through its admin API: every notification with its state (pending, "
        "delivered, dead, cancelled), its alerts and each attempt.",
        examples=["relay notifications list --state pending", "relay notifications show 17",
                  "relay notifications cancel 17"], environment=env).add_subparsers(
        dest="notifications_command", required=True, metavar="{list,show,cancel}")
    nlist = command(notifications, "list", "recent notifications, newest first",
                    "Recent notifications, newest first: id, when received, receiver, state, tries, alerts and the "
                    "last error.",
                    examples=["relay notifications list", "relay notifications list --state dead --receiver ops-email",
                              "relay notifications list --summary 42   # what storm summary 42 folded"],
                    environment=env)
    _url(nlist)
    _filters(nlist)
    nlist.add_argument("--state", choices=["pending", "delivered", "dead", "cancelled"],
                       help="only notifications in this state (default: all), e.g. --state pending")
    nlist.add_argument("--summary", type=int, metavar="ID",
                       help="only the notifications folded into this storm summary (default: off), e.g. --summary 42")
    _json(nlist)
    nlist.set_defaults(func=cmd_notifications_list)
    nshow = command(notifications, "show", "notifications or actions with their alerts and attempts",
                    "Each notification named: its alerts, every attempt with its outcome and reason, where its "
                    "escalation stands, the storm summary it was folded into, or for a Slack click who did what.",
                    examples=["relay notifications show 17", "relay notifications show 17 18 --json"],
                    environment=env)
    _ids(nshow, "the notifications to show")
    _url(nshow)
    _json(nshow)
    nshow.set_defaults(func=cmd_notifications_show)
    ncancel = command(notifications, "cancel", "cancel pending notifications (recorded in history)",
                      "Take pending notifications out of their lanes: they will not be sent and the next one of "
                      "their lane goes. One being sent at this moment is refused (try again). History keeps them as "
                      "cancelled.",
                      examples=["relay notifications cancel 17"], environment=env)
    _ids(ncancel, "the pending notifications to cancel")
    _url(ncancel)
    ncancel.set_defaults(func=cmd_notifications_cancel)

    dead = command(
        sub, "dead-letters", "notifications relay gave up on: list, show, retry, purge",
        "Notifications relay gave up on (a permanent error, an unset secret, or retries past give_up_after), "
        "through the running relay's admin API. Fix the cause, then replay them with retry.",
        examples=["relay dead-letters list", "relay dead-letters show 17",
                  "relay dead-letters retry --all --receiver pagerduty-oncall", "relay dead-letters purge 17"],
        environment=env).add_subparsers(dest="dead_letters_command", required=True,
                                        metavar="{list,show,retry,purge}")
    dlist = command(dead, "list", "dead letters, newest first",
                    "Dead letters, newest first: id, when received, receiver, tries, alerts and the last error.",
                    examples=["relay dead-letters list", "relay dead-letters list --receiver slack-alerts --json"],
                    environment=env)
    _url(dlist)
    _filters(dlist)
    _json(dlist)
    dlist.set_defaults(func=cmd_dead_letters_list)
    dshow = command(dead, "show", "dead letters with their alerts and every attempt",
                    "Each dead letter named, with its alerts and every attempt with its reason. A notification that "
                    "is not dead (still pending, delivered, cancelled) is shown with a first line saying so.",
                    examples=["relay dead-letters show 17"], environment=env)
    _ids(dshow, "the dead letters to show")
    _url(dshow)
    _json(dshow)
    dshow.set_defaults(func=cmd_dead_letters_show)
    for name, summary, description, example in (
            ("retry", "put dead letters back in their lanes, oldest first",
             "Replay dead letters once their cause is fixed: each goes back into its lane, oldest first, so a "
             "firing is sent before its resolve. A letter whose alerts have resolved since (and whose resolve was "
             "sent) is not replayed, which would re-open them: it is reported, and the exit code stays 0.",
             "relay dead-letters retry 17 18"),
            ("purge", "forget dead letters for good",
             "Delete dead letters from history for good; their alerts are not sent.", "relay dead-letters purge 17")):
        action = command(dead, name, summary, description,
                         examples=[example, f"relay dead-letters {name} --all --receiver pagerduty-oncall"],
                         environment=env)
        _ids(action, f"the dead letters to {name}", required=False)
        action.add_argument("--all", action="store_true",
                            help=f"{name} every dead letter, or those --receiver and --alertname narrow it to "
                            "(at most 1000) (default: off)")
        _url(action)
        _filters(action, limit=False)
        action.set_defaults(func=cmd_dead_letters_retry if name == "retry" else cmd_dead_letters_purge, limit=1000)
