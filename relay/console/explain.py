"""Explain: "why was I (not) paged?" for one alert, from what relay recorded, step by step.

The answer is built from positive evidence only: the dedup marks relay wrote when it notified a receiver (each
names the notification that wrote it: the receiver's, received at the mark's instant), those notifications and
their attempts, the storms they were folded into, the alert's escalation steps and why each ended, and the
silences relay watches. routes.yaml as loaded now says which route matches. The console's Explain page and
`relay explain` show the same Explanation.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from relay.alerts import INFERRED, WebhookMessage, key_part
from relay.alerts.fingerprint import fingerprint
from relay.config.durations import format_duration
from relay.config.routes import DEFAULT_REPEAT_INTERVAL, Routes
from relay.console.message import slack_acts
from relay.store.base import Store
from relay.store.console import Reader
from relay.store.maintenance import HOLD_BASE

FINGERPRINT_CHARS = frozenset("0123456789abcdef")
# Asks Alertmanager about the alert's silences: (labels, the externalURLs its webhooks came from) -> lines.
Asker = Callable[[Mapping[str, str], list[str]], Awaitable[list["Line"]]]
EPISODES = 20  # per receiver, the newest: what "why was I (not) paged" is about, and a bound on what a page reads


@dataclass(frozen=True)
class Line:
    """One fact: `mark` is ok (it went), no (it did not, and why), or info; `at` an epoch time; `ref` a
    notification id to open."""

    mark: str
    text: str
    at: float | None = None
    ref: int | None = None


@dataclass
class Explanation:
    fingerprint: str
    labels: dict[str, str]
    sections: list[tuple[str, list[Line]]] = field(default_factory=list)

    def add(self, title: str, lines: list[Line]) -> None:
        self.sections.append((title, lines))

    def as_json(self) -> dict[str, Any]:
        """What the admin API answers (POST /api/v1/explain) and `relay explain --json` prints."""
        return {"fingerprint": self.fingerprint, "labels": self.labels,
                "sections": [{"title": title, "lines": [{"mark": line.mark, "text": line.text, "at": line.at,
                                                         "ref": line.ref} for line in lines]}
                             for title, lines in self.sections]}


_MARKS = {"ok": "+", "no": "-", "info": "."}


def as_text(answer: Mapping[str, Any], when: Callable[[Any], str]) -> str:
    """An explanation (as_json's form) as `relay explain` prints it; `when` formats a time of the API."""
    labels = answer.get("labels") or {}
    out = [f"alert {answer['fingerprint']}" + (f" {{{_labels(labels)}}}" if labels else "")]
    for section in answer["sections"]:
        out.append(f"\n{section['title']}")
        for line in section["lines"]:
            at = f"{when(line['at'])}  " if line.get("at") is not None else ""
            ref = f"  [notification {line['ref']}]" if line.get("ref") is not None else ""
            out.append(f"  {_MARKS.get(line['mark'], '.')} {at}{line['text']}{ref}")
    return "\n".join(out) + "\n"


def _labels(labels: Mapping[str, str]) -> str:
    return ", ".join(f"{k}={json.dumps(v, ensure_ascii=False)}" for k, v in sorted(labels.items()))


def parse_query(text: str) -> tuple[str, dict[str, str]]:
    """A fingerprint (16 hex digits), or labels typed as `k=v` (one per line or comma-separated, values optionally
    quoted, braces allowed as amtool prints them): the fingerprint and the labels (empty for a fingerprint)."""
    text = text.strip()
    if len(text) == 16 and set(text) <= FINGERPRINT_CHARS:
        return text, {}
    labels: dict[str, str] = {}
    for part in text.strip("{}").replace("\n", ",").split(","):
        if not part.strip():
            continue
        key, sep, value = part.partition("=")
        key, value = key.strip(), value.strip()
        if not sep or not key:
            raise ValueError(f"expected a fingerprint or labels as name=value, got {part.strip()[:80]!r}")
        if len(value) >= 2 and value[0] == value[-1] == '"':
            value = json.loads(value) if value.startswith('"') else value
        labels[key] = value
    if not labels:
        raise ValueError("type a fingerprint or the alert's labels as name=value")
    return fingerprint(labels), labels


@dataclass
class _Found:
    """A notification of this alert: its row, and the alert's status and startsAt in it."""

    row: dict[str, Any]
    status: str
    starts_at: str
    group: WebhookMessage


async def explain(store: Store, reader: Reader, routes: Routes | None, query: str,
                  alertmanager: Asker | None = None) -> Explanation:
    """`alertmanager(labels, external_urls)`: lines about Alertmanager's own silences (relay.console.amsilences)."""
    fp, labels = parse_query(query)
    marks = await _marks(reader, routes, fp)
    found = await _notifications(reader, marks, fp)
    if not labels and found:
        alert = next(a for a in found[-1].group.alerts if a.fingerprint == fp)
        labels = dict(alert.labels)
    answer = Explanation(fp, labels)
    answer.add("Received", _received(found))
    answer.add("Routes (routes.yaml as loaded now)", _routes(routes, labels, datetime.now(UTC)))
    answer.add("Deduplication", _dedup(routes, labels, marks, found))
    answer.add("Storms", _storms(found))
    answer.add("Escalation", await _escalation(store, fp))
    answer.add("Deliveries", await _deliveries(reader, found))
    acks = await _acks(store, reader, fp)
    for item in found:  # each receiver's Slack message of the alert, once
        if item.row["integration"] == "slack" and all(o.row["receiver"] != item.row["receiver"]
                                                      for o in found[found.index(item) + 1:]):
            alert = next(a for a in item.group.alerts if a.fingerprint == fp)
            acks += [Line("ok", act.what, act.at) for act in await slack_acts(reader, item.row["receiver"], [alert])]
    if not acks:
        acks.append(Line("info", "no acknowledgement or silence recorded by relay"))
    if alertmanager is not None:
        acks += await alertmanager(labels, sorted({i.group.externalURL for i in found if i.group.externalURL}))
    answer.add("Acknowledgements and silences", acks)
    return answer


def _receiver_names(routes: Routes | None) -> list[str]:
    return list(routes.receivers) if routes is not None else []


async def _marks(reader: Reader, routes: Routes | None, fp: str) -> dict[str, list[dict[str, Any]]]:
    """Per receiver, its newest EPISODES dedup marks of this alert, newest first."""
    names = _receiver_names(routes)
    found = await reader.batch([("marks_of", (name, key_part(fp), EPISODES)) for name in names])
    return {name: rows for name, rows in zip(names, found, strict=True) if rows}


async def _notifications(reader: Reader, marks: dict[str, list[dict[str, Any]]], fp: str) -> list[_Found]:
    """The notification that wrote each mark (and carried this alert), oldest first: the delivered ones on the
    delivered index, then the few others."""
    asked = [(name, mark["notified_at"]) for name, rows in marks.items() for mark in rows]
    rows = [found[0] if found else None
            for found in await reader.batch([("notified_by_delivered", key) for key in asked])]
    missing = [i for i, row in enumerate(rows) if row is None]
    others = await reader.batch([("notified_by_other", asked[i]) for i in missing])
    for i, found in zip(missing, others, strict=True):
        rows[i] = found[0] if found else None  # else forgotten after retention, or purged
    seen: dict[int, _Found] = {}
    for row in rows:
        item = _with_alert(row, fp) if row is not None else None
        if item is not None:
            seen[item.row["id"]] = item
    return [seen[i] for i in sorted(seen)]


def _with_alert(row: dict[str, Any], fp: str) -> _Found | None:
    try:
        group = WebhookMessage.model_validate_json(row["payload"])
    except ValueError:
        return None
    for alert in group.alerts:
        if alert.fingerprint == fp:
            return _Found(row, alert.status, alert.startsAt, group)
    return None


def _received(found: list[_Found]) -> list[Line]:
    if not found:
        return [Line("no", "relay has no record of this alert: no receiver was notified of it (never received, "
                           "routed to no receiver, or older than the retention period)")]
    arrivals: dict[tuple[float, str, str], list[_Found]] = {}
    for item in found:  # one webhook wrote a notification per receiver: one arrival
        arrivals.setdefault((item.row["received_at"], item.status, item.starts_at), []).append(item)
    lines = []
    for (received_at, status, starts_at), items in arrivals.items():
        group = items[0].group
        source = group.externalURL or "(no externalURL)"
        to = ", ".join(f"{i.row['receiver']} #{i.row['id']}" for i in items)
        why = (group.model_extra or {}).get(INFERRED)
        if isinstance(why, dict):  # relay's own resolve (relay.actions.silences), and on what evidence
            lines.append(Line("info", f"{status} (startsAt {starts_at}) inferred by relay's {why.get('by')} "
                                      f"(silence {why.get('silence')}): {why.get('reason')}: written for {to}",
                              received_at, items[0].row["id"]))
            continue
        lines.append(Line("info", f"{status} (startsAt {starts_at}) from Alertmanager {source}, its receiver "
                                  f"{group.receiver!r}, group {group.groupKey}: written for {to}",
                          received_at, items[0].row["id"]))
    return lines


def _routes(routes: Routes | None, labels: Mapping[str, str], now: datetime) -> list[Line]:
    if routes is None:
        return [Line("no", "routes.yaml is not loaded")]
    if not labels:
        return [Line("info", "the alert's labels are unknown (type them to see which route matches)")]
    lines, matched = [], False
    for i, route in enumerate(routes.spec.routes, 1):
        failing = [str(m) for m in route.matchers if not m.matches(labels)]
        shown = ", ".join(str(m) for m in route.matchers) or "(matches every alert)"
        if failing:
            lines.append(Line("no", f"route {i} [{shown}] does not match: {', '.join(failing)} is false"))
            continue
        matched = True
        then = "continues to the next route" if route.continue_ else "stops here"
        muted = routes.muted_by(route.mute_time_intervals, route.active_time_intervals, now)
        lines.append(Line("no" if muted else "ok",
                          f"route {i} [{shown}] matches: receivers {', '.join(route.receivers)}; "
                          f"repeat_interval {format_duration(route.repeat_interval)}; {then}"
                          + (f"; sends nothing now: {muted}" if muted else "")))
        if not route.continue_:
            break
    if not matched:
        names = ", ".join(routes.spec.default_receivers) or "none"
        lines.append(Line("info", f"no route matches: default_receivers ({names})"))
    walk = routes.walk(labels, now)
    targets = walk.targets
    names = ", ".join(t.receiver for t in targets)
    lines.append(Line("ok" if targets else "no", f"goes to now: {names}" if targets else "goes to no receiver now"))
    lines += [Line("no", f"{m.receiver}: not now, route {m.route + 1} is {m.reason}") for m in walk.muted]
    return lines


def _dedup(routes: Routes | None, labels: Mapping[str, str], marks: dict[str, list[dict[str, Any]]],
           found: list[_Found]) -> list[Line]:
    intervals = {t.receiver: t.repeat_interval for t in routes.targets(labels)} if routes and labels else {}
    by_mark = {(i.row["receiver"], i.row["received_at"]): i.row["id"] for i in found}
    lines = []
    for name, rows in marks.items():
        interval = intervals.get(name, DEFAULT_REPEAT_INTERVAL)
        for mark in rows:
            ref = by_mark.get((name, mark["notified_at"]))
            against = f"#{ref}" if ref is not None else "that notification"
            firing = mark["status"] == "firing"
            until = f" until repeat_interval {format_duration(interval)} has passed" if firing else ""
            head = f"{name}: {mark['status']} of the episode that started {mark['starts_at']} was notified"
            if any(m["starts_at"] == mark["starts_at"] and m["status"] != mark["status"]
                   and m["notified_at"] > mark["notified_at"] for m in rows):  # as store.rows.dedup_passes decides
                lines.append(Line("info", f"{head}, then its {'resolve' if firing else 'firing again'}: a "
                                          f"{mark['status']} of it arriving now is notified again (a change of state, "
                                          f"not a copy)", mark["notified_at"], ref))
                continue
            lines.append(Line("info", f"{head}; a copy of it arriving again (a re-sent group, an HA Alertmanager "
                                      f"peer) is deduplicated against {against}{until}", mark["notified_at"], ref))
    for name in intervals:
        if name not in marks:
            lines.append(Line("no", f"{name}: never notified of this alert (no dedup mark)"))
    if not lines:
        lines.append(Line("info", "no receiver holds a dedup mark for this alert"))
    if any(len(rows) == EPISODES for rows in marks.values()):
        lines.append(Line("info", f"only the newest {EPISODES} episodes per receiver are shown"))
    return lines


def _storms(found: list[_Found]) -> list[Line]:
    lines = [Line("info", f"{i.row['receiver']}: {i.status} folded into the storm summary notification "
                          f"#{i.row['summary_id']} instead of a message of its own",
                  i.row["finished_at"], i.row["summary_id"])
             for i in found if i.row["summary_id"] is not None]
    return lines or [Line("info", "not folded into any storm summary")]


async def _escalation(store: Store, fp: str) -> list[Line]:
    steps = await store.escalations_of([fp])
    lines = []
    for step in steps:
        where = ", ".join(step.receivers)
        head = f"step {step.step} of {step.steps} (to {where}, due {step.after:g} s after it fired)"
        if step.step <= -HOLD_BASE:  # a maintenance window's hold (relay.stages.mute)
            head = f"muted: held for {where} by maintenance window {-step.step - HOLD_BASE} (until it ends)"
        elif step.step < 0:  # a mute's hold (relay.stages.mute): the route was muted when the alert arrived
            head = f"muted: held for {where} while route {-step.step}'s time intervals mute it (until its end)"
        if step.state == "sent":
            sent = ", ".join(f"#{n}" for n in step.notifications)
            lines.append(Line("ok", f"{head}: sent ({sent})", step.ended_at,
                              step.notifications[0] if step.notifications else None))
        elif step.state == "cancelled":
            lines.append(Line("no", f"{head}: cancelled, {step.reason}", step.ended_at))
        else:
            lines.append(Line("info", f"{head}: pending", step.due_at))
    return lines or [Line("info", "no escalation armed for this alert")]


async def _deliveries(reader: Reader, found: list[_Found]) -> list[Line]:
    lines = []
    logs = await reader.batch([("attempts_of", (item.row["id"],)) for item in found])
    for item, attempts in zip(found, logs, strict=True):
        row = item.row
        head = f"{row['receiver']} ({row['integration']}) {item.status}"
        if row["summary_id"] is not None:
            lines.append(Line("info", f"{head}: delivered in storm summary #{row['summary_id']}", row["finished_at"],
                              row["id"]))
            continue
        for attempt in attempts:
            mark = "ok" if attempt["outcome"] == "delivered" else "no"
            reason = f": {attempt['reason']}" if attempt["reason"] else ""
            lines.append(Line(mark, f"{head}: attempt {attempt['outcome']}{reason} ({attempt['duration']:.3f} s)",
                              attempt["started_at"], row["id"]))
        state = row["state"]
        if state == "delivered" and attempts and attempts[-1]["outcome"] == "delivered":
            continue  # its last attempt says so
        lines.append(Line("ok" if state == "delivered" else "info" if state == "pending" else "no",
                          f"{head}: {state}" + (f" ({row['last_error']})" if row["last_error"] and state != "delivered"
                                                else ""), row["finished_at"], row["id"]))
    return lines or [Line("info", "no delivery of this alert")]


async def _acks(store: Store, reader: Reader, fp: str) -> list[Line]:
    lines = []
    for step in await store.escalations_of([fp]):
        if step.state == "cancelled" and step.reason in ("acknowledged", "silenced"):
            lines.append(Line("ok", f"{step.reason} in relay (escalation step {step.step} cancelled)",
                              step.ended_at))
    for watch in await reader.rows("watches_all"):
        if fp in watch["payload"]:
            lines.append(Line("ok", f"silenced from {watch['receiver']}'s Slack message: Alertmanager silence "
                                    f"{watch['silence_id']}, relay watches it until it ends", watch["ends_at"]))
    return lines
