"""`relay test-alert`: send a synthetic Alertmanager webhook and report, per receiver, what became of it."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import time
from collections.abc import Awaitable, Callable, Collection
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from relay.alerts.fingerprint import fingerprint
from relay.cli import admin, client
from relay.cli.common import ADMIN_ENVIRONMENT, URL_HELP, command, counted, labels, refused, unreachable
from relay.config.settings import Settings
from relay.errors import AdminError, StartupError, UsageError
from relay.times import GO_ZERO_TIME, epoch, rfc3339

FINAL = {"delivered", "dead"}
DEFAULT_ALERTNAME = "RelayTestAlert"
DEFAULT_SEVERITY = "warning"
REMEMBERED = 20  # firing test alerts kept for --resolve, the newest last


def state_file() -> Path:
    """Where test-alert remembers the firing alerts relay accepted: $XDG_STATE_HOME/relay/test-alerts.json (by default
    ~/.local/state/relay/). Read when called, so a test (or a user) can point XDG_STATE_HOME elsewhere."""
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "relay" / "test-alerts.json"


def remembered() -> list[dict[str, Any]]:
    """The firing test alerts relay accepted and no accepted resolve has closed, oldest first. A missing, unreadable
    or older-format file (a {fingerprint: startsAt} map, written before anything was checked) is an empty list."""
    try:
        data = json.loads(state_file().read_text())
    except (OSError, ValueError):
        return []
    fired = data.get("fired") if isinstance(data, dict) else None
    if not isinstance(fired, list):
        return []
    return [entry for entry in fired if isinstance(entry, dict) and isinstance(entry.get("labels"), dict)
            and isinstance(entry.get("startsAt"), str) and isinstance(entry.get("fingerprint"), str)]


def _save(fired: list[dict[str, Any]]) -> None:
    try:
        path = state_file()
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps({"fired": fired[-REMEMBERED:]}, indent=1))
    except OSError:
        pass  # only --resolve's convenience depends on it


def remember(alert: dict[str, Any]) -> None:
    """Relay accepted this alert: a firing is remembered for --resolve, a resolve forgets the firing it closed."""
    fired = [e for e in remembered() if e["fingerprint"] != alert["fingerprint"]]
    if alert["status"] == "firing":
        fired.append({"fingerprint": alert["fingerprint"], "labels": alert["labels"], "startsAt": alert["startsAt"]})
    _save(fired)


def last_fired(alertname: str | None, severity: str | None, labels: dict[str, str]) -> dict[str, Any] | None:
    """The newest remembered firing test alert that has what the command line names (nothing named: the newest)."""
    named = {"alertname": alertname, "severity": severity}
    wanted = {**labels, **{k: v for k, v in named.items() if v}}
    for entry in reversed(remembered()):
        if all(entry["labels"].get(k) == v for k, v in wanted.items()):
            return dict(entry)
    return None


def build_payload(alertname: str, severity: str, labels: dict[str, str], resolve: bool,
                  starts_at: str | None = None) -> dict[str, Any]:
    """An Alertmanager v4 webhook for one alert; a resolve carries the firing's startsAt so it closes that episode.
    Nothing is remembered here: `remember` is called once relay has accepted it."""
    all_labels = {"alertname": alertname, "severity": severity, **labels}
    fp = fingerprint(all_labels)
    now = datetime.now(UTC)
    start = starts_at or rfc3339(now)
    status = "resolved" if resolve else "firing"
    alert = {
        "status": status,
        "labels": all_labels,
        "annotations": {"summary": f"Test alert from relay test-alert ({alertname})",
                        "description": "Sent by `relay test-alert` to check routing and delivery."},
        "startsAt": start,
        "endsAt": rfc3339(now) if resolve else GO_ZERO_TIME,
        "generatorURL": "",
        "fingerprint": fp,
    }
    return {
        "receiver": "relay", "status": status, "alerts": [alert],
        "groupLabels": {"alertname": alertname}, "commonLabels": all_labels,
        "commonAnnotations": alert["annotations"], "externalURL": "",
        "version": "4", "groupKey": f'{{}}/{{test-alert}}:{{alertname="{alertname}"}}', "truncatedAlerts": 0,
    }


def payload_for(args: argparse.Namespace) -> dict[str, Any]:
    """The webhook this command line sends. A resolve closes the last test alert relay accepted firing that matches
    what is named (by default the last one, whatever its name, severity and labels), with that alert's startsAt."""
    extra = labels(args.label)
    if not args.resolve:
        return build_payload(args.alertname or DEFAULT_ALERTNAME, args.severity or DEFAULT_SEVERITY, extra, False)
    fired = last_fired(args.alertname, args.severity, extra)
    if fired is None:
        named = ", ".join(f"{k}={v}" for k, v in
                          {"alertname": args.alertname, "severity": args.severity, **extra}.items() if v)
        raise UsageError("no firing test alert to resolve" + (f" with {named}" if named else "")
                         + f": only alerts relay accepted are remembered (in {state_file()}); "
                         "send one first with `relay test-alert`")
    rest = {k: v for k, v in fired["labels"].items() if k not in ("alertname", "severity")}
    return build_payload(fired["labels"].get("alertname", ""), fired["labels"].get("severity", ""), rest, True,
                         starts_at=fired["startsAt"])


async def follow(fetch: Callable[[list[int]], Awaitable[list[dict[str, Any]]]], ids: list[int],
                 timeout: float, on_defaults: Collection[int] = ()) -> list[dict[str, Any]]:
    """Poll the history until every notification is delivered or dead, or `timeout` passes. One in `on_defaults`
    (its receiver sends to routes.yaml placeholders) is not waited for once it failed: it is retried for hours.
    A pending one that waits behind an older notification of its lane gets that one as `waiting_behind`."""
    deadline = time.monotonic() + timeout
    while True:
        rows = await fetch(ids)
        waiting = [r for r in rows if r["state"] not in FINAL and not (r["id"] in on_defaults and r["attempts"])]
        if not waiting or time.monotonic() >= deadline:
            break
        await asyncio.sleep(0.2)
    ahead = {row["id"]: row for row in await fetch(sorted({r["behind"] for r in rows if r.get("behind")}))}
    for row in rows:
        if row.get("behind") in ahead:
            row["waiting_behind"] = ahead[row["behind"]]
    return rows


def on_defaults(summary: dict[str, Any]) -> list[int]:
    """The notifications whose receivers send to routes.yaml defaults (the webhook's answer warns of them)."""
    return [info["notification_id"] for info in summary["receivers"].values()
            if info.get("warning") and info["notification_id"] is not None]


def _behind(row: dict[str, Any]) -> str:
    """Why a pending notification is not sent yet: an older one of its lane goes first (lanes keep order)."""
    ahead = row.get("waiting_behind")
    if not ahead:
        return ""
    error = f", last error: {ahead['last_error']}" if ahead.get("last_error") else ""
    return (f"; it waits behind notification {ahead['id']} of its lane ({ahead['state']}, "
            f"{counted(ahead['attempts'], 'attempt')}{error}); "
            f"`relay notifications cancel {ahead['id']}` would let it go")


def report(summary: dict[str, Any], rows: list[dict[str, Any]]) -> tuple[str, bool]:
    """Human-readable lines per receiver, and whether everything was delivered."""
    by_id = {row["id"]: row for row in rows}
    lines, ok = [], True
    for receiver, info in sorted(summary["receivers"].items()):
        nid = info["notification_id"]
        if nid is None:
            lines.append(f"  {receiver:<24} deduplicated (already notified of this alert)")
            continue
        row = by_id.get(nid)
        if row is None:
            lines.append(f"  {receiver:<24} unknown (notification {nid} not found)")
            ok = False
        elif row["state"] == "delivered":
            took = (epoch(row["finished_at"]) or time.time()) - (epoch(row["received_at"]) or 0.0)
            lines.append(f"  {receiver:<24} delivered in {took * 1000:.0f} ms (attempt {row['attempts']})")
        elif row["state"] == "dead":
            lines.append(f"  {receiver:<24} dead-lettered: {row['last_error']}")
            ok = False
        else:
            wait = max(0.0, (epoch(row["next_attempt_at"]) or 0.0) - time.time())
            lines.append(f"  {receiver:<24} retrying (attempts {row['attempts']}, next in {wait:.0f}s): "
                         f"{row['last_error'] or 'not yet sent'}{_behind(row)}")
            ok = False
        if info.get("warning"):
            lines.append(f"  {'':<24} warning: it sends to {info['warning']}")
    if not summary["receivers"]:
        lines.append("  no receiver matched (check default_receivers)")
    return "\n".join(lines), ok


async def _through_relay(args: argparse.Namespace, settings: Settings, payload: dict[str, Any]) -> int:
    url = admin.base_url(args, settings)
    headers = {"Authorization": f"Bearer {settings.token}"} if settings.token else {}
    try:
        answer = await client.request(url, "POST", "/webhook", headers=headers, json=payload)
    except client.Unreachable as exc:
        raise AdminError(unreachable(url, exc.what)) from None
    if answer.status != 200:
        error = answer.json().get("error") if answer.is_json else None
        raise AdminError(refused(answer.status, f"relay refused the webhook ({answer.status} "
                                 f"{error or answer.text[:200]})", "RELAY_WEBHOOK_TOKEN"))
    remember(payload["alerts"][0])
    summary = answer.json()

    async def fetch(ids: list[int]) -> list[dict[str, Any]]:
        if not ids:
            return []
        try:
            answer = await client.request(url, "GET", "/api/v1/notifications", headers=admin.admin_headers(settings),
                                          params={"ids": ",".join(map(str, ids))})
        except client.Unreachable as exc:
            raise AdminError(unreachable(url, exc.what)) from None
        body = answer.json() if answer.is_json else {}
        if answer.status != 200:
            raise AdminError(f"the alert was accepted, but its delivery cannot be followed: "
                             f"{body.get('error') or answer.status}")
        return list(body["notifications"])

    rows = await follow(fetch, _ids(summary), args.timeout, on_defaults(summary))
    return _print_outcome(summary, rows)


async def _direct(args: argparse.Namespace, settings: Settings, payload: dict[str, Any]) -> int:
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
    from relay.store.records import HistoryFilter
    from relay.webhook import candidates, summary

    services = await open_services(settings)
    store, routes = services.store, services.runtime.routes
    task = asyncio.create_task(services.dispatcher.run())
    try:
        message = WebhookMessage.model_validate(payload)
        assert routes is not None
        results = await outbox.enqueue(services.dispatcher, store, candidates(message, routes), time.time())
        remember(payload["alerts"][0])
        info = summary(message, results, defaults=routes.defaults)

        async def fetch(ids: list[int]) -> list[dict[str, Any]]:
            return await store.history(HistoryFilter(ids=tuple(ids))) if ids else []

        rows = await follow(fetch, _ids(info), args.timeout, on_defaults(info))
        return _print_outcome(info, rows)
    finally:
        await services.close([task])


def _ids(summary: dict[str, Any]) -> list[int]:
    return [r["notification_id"] for r in summary["receivers"].values() if r["notification_id"] is not None]


def _print_outcome(summary: dict[str, Any], rows: list[dict[str, Any]]) -> int:
    text, ok = report(summary, rows)
    print(text)
    return 0 if ok else 1


def cmd_test_alert(args: argparse.Namespace, settings: Settings) -> int:
    payload = payload_for(args)
    alert = payload["alerts"][0]
    print(f"{alert['status']} test alert {alert['labels']['alertname']} (severity={alert['labels']['severity']}, "
          f"fingerprint {alert['fingerprint']}, startsAt {alert['startsAt']})")
    runner = _direct if args.direct else _through_relay
    return asyncio.run(runner(args, settings, payload))


def add_commands(sub: Any) -> None:
    test = command(
        sub, "test-alert", "send a synthetic alert and show what each receiver got",
        "Post one synthetic Alertmanager webhook to the running relay (or, with --direct, route and deliver it in this "
        "process) and print, per receiver, whether it was delivered, is being retried or was dead-lettered. Firing "
        "alerts relay accepted are remembered (in $XDG_STATE_HOME/relay/test-alerts.json, by default "
        "~/.local/state/relay/) so that --resolve can close the last one. Exits 1 unless every receiver got it.",
        examples=["relay test-alert", "relay test-alert --severity critical --label team=web",
                  "relay test-alert --resolve", "relay test-alert --direct   # no running relay needed"],
        environment=[*ADMIN_ENVIRONMENT, "RELAY_WEBHOOK_TOKEN   sent with the webhook when set"])
    test.add_argument("--alertname", metavar="NAME",
                      help=f"the alertname label (default: {DEFAULT_ALERTNAME}; with --resolve: any), "
                      "e.g. --alertname DiskFull")
    test.add_argument("--severity", metavar="LEVEL",
                      help=f"the severity label, which picks the route (default: {DEFAULT_SEVERITY}; with --resolve: "
                      "any), e.g. --severity critical")
    test.add_argument("--label", action="append", default=[], metavar="K=V",
                      help="another label, repeatable (default: none), e.g. --label team=web")
    test.add_argument("--resolve", action="store_true",
                      help="resolve the last test alert relay accepted firing, whatever its severity; --alertname, "
                      "--severity and --label narrow which (default: off)")
    test.add_argument("--url", metavar="URL", help=URL_HELP)
    test.add_argument("--direct", action="store_true",
                      help="route, render and deliver in this process, on RELAY_DATABASE_URL itself; refused while a "
                      "`relay serve` holds that SQLite file (default: off, send through the running relay)")
    test.add_argument("--timeout", type=float, default=30.0, metavar="SECONDS",
                      help="how long to wait for every receiver's outcome (default: %(default)s), e.g. --timeout 60")
    test.set_defaults(func=cmd_test_alert)
