"""The handlers behind each page (relay.console.views does sign-in, sessions and forms for them)."""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from relay.alerts import WebhookMessage
from relay.console import amsilences, health, message
from relay.console import explain as explaining
from relay.console.views import Ctx, parse_time, positive, reader
from relay.errors import Rejected
from relay.services import Services, services
from relay.store.console import Page
from relay.storms.fold import storm_lane, storm_of
from relay.times import rfc3339_millis

log = logging.getLogger(__name__)

STATES = ("pending", "delivered", "dead", "cancelled")


async def receivers(request: Request, ctx: Ctx) -> Response:
    routes = ctx.services.runtime.routes
    names = {name: r.integration for name, r in routes.receivers.items()} if routes else {}
    now = time.time()
    rows = await health.receivers(ctx.services.store, ctx.reader, names, now)
    charts = {h.name: health.chart(h.latencies, now) for h in rows}
    return ctx.render("receivers.html", receivers=rows, charts=charts, now=now, refresh=ctx.form.get("refresh"))


def _filters(form: dict[str, str]) -> tuple[Page, dict[str, str]]:
    label = None
    if form.get("label", "").strip():
        name, sep, value = form["label"].strip().partition("=")
        if not sep or not name.strip():
            raise Rejected(400, "a label filter is name=value")
        label = (name.strip(), value.strip().strip('"'))
    state = form.get("state") or None
    if state is not None and state not in STATES:
        raise Rejected(400, f"state is one of {', '.join(STATES)}")
    query = Page(receiver=form.get("receiver") or None, alertname=form.get("alertname", "").strip() or None,
                 state=state, since=parse_time(form.get("since", "")), until=parse_time(form.get("until", "")),
                 label=label, before=positive(form.get("before")))
    kept = {k: form.get(k, "") for k in ("receiver", "alertname", "state", "since", "until", "label", "refresh")}
    return query, kept


async def notifications(request: Request, ctx: Ctx) -> Response:
    query, kept = _filters(ctx.form)
    rows = await ctx.reader.page(query)
    more = rows[-1]["id"] if len(rows) == query.limit else None
    routes = ctx.services.runtime.routes
    return ctx.render("notifications.html", rows=rows, filters=kept, more=more, states=STATES,
                      receiver_names=list(routes.receivers) if routes else [], paged=query.before is not None)


async def notification(request: Request, ctx: Ctx) -> Response:
    notification_id = positive(request.path_params["id"])
    assert notification_id is not None
    found = await ctx.services.store.detail(notification_id)
    if found is None:
        raise Rejected(404, f"no notification {notification_id} (never written, or forgotten after retention)")
    shown = await message.as_sent(ctx.services, ctx.reader, found)
    return ctx.render("notification.html", n=found, shown=shown)


async def dead_letters(request: Request, ctx: Ctx) -> Response:
    rows = await ctx.reader.page(Page(state="dead", receiver=ctx.form.get("receiver") or None, limit=100,
                                      before=positive(ctx.form.get("before"))))
    more = rows[-1]["id"] if len(rows) == 100 else None
    receivers = sorted({r["receiver"] for r in rows})
    return ctx.render("dead_letters.html", rows=rows, more=more, receivers=receivers, flash=None)


async def dead_letter_confirm(request: Request, ctx: Ctx) -> Response:
    """Retry and Purge ask first: this page names what will happen; its button does it."""
    action = ctx.form.get("action", "")
    if action not in ("retry", "purge", "retry_receiver"):
        raise Rejected(400, "unknown action")
    target: Any = ctx.form.get("receiver", "") if action == "retry_receiver" else positive(ctx.form.get("id"))
    return ctx.render("confirm.html", action=action, target=target)


async def dead_letter_act(request: Request, ctx: Ctx) -> Response:
    state = ctx.services
    action = ctx.form.get("action", "")
    now = time.time()
    forgotten = now - state.settings.retention_hours * 3600
    results: list[str] = []
    if action == "retry_receiver":
        receiver = ctx.form.get("receiver", "")
        rows = await ctx.reader.page(Page(state="dead", receiver=receiver, limit=1000))
        ids = sorted(r["id"] for r in rows)  # oldest first: a lane's firing before its resolve
    else:
        one = positive(ctx.form.get("id"))
        ids = [one] if one is not None else []
    for notification_id in ids:
        if action == "purge":
            done = await state.store.purge(notification_id)
            results.append(f"dead letter {notification_id} purged" if done else f"no dead letter {notification_id}")
            log.info("console: dead letter %d purged: %s", notification_id, done)
            continue
        outcome = await state.store.replay(notification_id, now, forgotten)
        results.append(f"dead letter {notification_id}: {REPLAYED.get(outcome, outcome)}")
        log.info("console: dead letter %d retried: %s", notification_id, outcome)
    if action != "purge":
        state.dispatcher.wake()
    rows = await ctx.reader.page(Page(state="dead", limit=100))
    return ctx.render("dead_letters.html", rows=rows, more=None, receivers=sorted({r["receiver"] for r in rows}),
                      flash=results or ["nothing to do"])


REPLAYED = {
    "replayed": "put back in its lane; it is sent again now",
    "missing": "not a dead letter any more (replayed or purged already)",
    "resolved": "not replayed: its alerts resolved since (and the resolve was sent); purge it instead",
    "too_old": "not replayed: older than RELAY_RETENTION_HOURS, relay no longer knows whether its alerts resolved",
}


async def storms(request: Request, ctx: Ctx) -> Response:
    rows = await ctx.reader.rows("storms_recent", 100)
    for row in rows:
        row["summaries"] = await ctx.reader.rows("storm_summaries", storm_lane(row["receiver"], row["id"]))
    return ctx.render("storms.html", storms=rows)


async def summary(request: Request, ctx: Ctx) -> Response:
    """One storm summary and every alert it folded: where a summary message's "full list" link lands."""
    summary_id = positive(request.path_params["id"])
    assert summary_id is not None
    head = await ctx.reader.row("summary_storm", summary_id)
    storm_id = storm_of(head["lane"]) if head else None
    if head is None or storm_id is None:
        raise Rejected(404, f"no storm summary {summary_id} (or it was forgotten after retention)")
    folded = []
    for row in await ctx.reader.rows("folded_into", summary_id):
        for alert in WebhookMessage.model_validate_json(row["payload"]).alerts:
            folded.append({"id": row["id"], "receiver": row["receiver"], "received_at": row["received_at"],
                           "status": alert.status, "labels": alert.labels, "fingerprint": alert.fingerprint})
    return ctx.render("summary.html", summary_id=summary_id, storm_id=storm_id, receiver=head["receiver"],
                      folded=folded)


def asker(state: Services) -> explaining.Asker:
    """Explain's question to the Alertmanagers relay may ask, on the runtime's HTTP session."""

    async def ask(labels: Mapping[str, str], external_urls: list[str]) -> list[explaining.Line]:
        return await amsilences.silences(state.runtime.routes, state.runtime.session, labels, external_urls)

    return ask


async def explain(request: Request, ctx: Ctx) -> Response:
    query = ctx.form.get("query", "").strip()
    answer, problem = None, None
    if query:
        try:
            answer = await explaining.explain(ctx.services.store, ctx.reader, ctx.services.runtime.routes, query,
                                              asker(ctx.services))
        except ValueError as exc:
            problem = str(exc)
    return ctx.render("explain.html", query=query, answer=answer, problem=problem)


async def explain_api(request: Request) -> Response:
    """`relay explain`'s question through the admin API: a JSON body {"query": ...} (never a URL), the answer with
    times in RFC 3339 as the rest of the API gives them."""
    try:
        body = await request.json()
        query = body["query"] if isinstance(body, dict) else None
        if not isinstance(query, str) or not query.strip():
            raise ValueError("the body is {\"query\": \"<fingerprint or name=value,...>\"}")
        state = services(request)
        answer = await explaining.explain(state.store, reader(state), state.runtime.routes, query, asker(state))
    except (ValueError, KeyError) as exc:
        message = str(exc) if isinstance(exc, ValueError) and str(exc) else "the body is {\"query\": \"...\"}"
        return JSONResponse({"status": "error", "error": message}, status_code=400)
    return JSONResponse(_times(answer.as_json()))


def _times(answer: dict[str, Any]) -> dict[str, Any]:
    """Each line's time in RFC 3339, as the rest of the admin API gives times."""
    for section in answer["sections"]:
        for line in section["lines"]:
            line["at"] = None if line["at"] is None else rfc3339_millis(line["at"])
    return answer
