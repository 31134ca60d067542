"""POST /slack/interactions: a click on one of relay's buttons, verified, checked and written to the outbox.

Every request is verified with the app's signing secret (slack_sdk's SignatureVerifier over the raw body; a
timestamp more than 5 minutes away is refused first, so the answer says which), then its workspace (`team.id`, and
the user's own `user.team_id`: in a Slack Connect channel a user of another organisation clicks in our workspace)
and, when the receiver lists them, its user (`allowed_users`, or a member of `allowed_usergroup`, read with the
bot token through usergroups.users.list, asked again after USERGROUP_SECONDS and trusted, when Slack cannot
answer, for at most USERGROUP_LIFETIME_SECONDS since it was read). The click becomes outbox rows
(relay.actions.model) in one transaction with its marks: a replayed request is refused (409), a second click on the same
button acts once. Slack's 3 seconds are spent on that one durable write; Alertmanager, PagerDuty and the message
update are the dispatcher's. A refusal is a 4xx naming what is wrong, and changes nothing.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import re
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs

from pydantic import ValidationError
from slack_sdk.signature import SignatureVerifier
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from relay import outbox
from relay.actions.model import Action, ActionRow, Kind, once_mark, request_mark, row
from relay.alerts import WebhookMessage
from relay.channels.slack import buttons
from relay.config.receivers import ReceiverConfig, SlackActions
from relay.errors import DeliveryError, Rejected, StoreRejected, StoreUnavailable
from relay.services import Services, services

log = logging.getLogger(__name__)

MAX_AGE_SECONDS = 300  # Slack's advice, and SignatureVerifier's own window
USERGROUP_SECONDS = 60.0  # a member list this fresh is used without asking Slack
USERGROUP_LIFETIME_SECONDS = 300.0  # when Slack cannot answer, an older list holds until this age, then clicks fail
SILENCE_LONGEST = 90 * 86400  # a silence "until" further away than this is a mistaken pick
FORM = "application/x-www-form-urlencoded"
_CHANNEL = re.compile(r"[CGD][A-Z0-9]{2,30}")
_TS = re.compile(r"\d{1,12}\.\d{1,9}")
_TEAM = re.compile(r"[TE][A-Z0-9]{2,30}")
_DOMAIN = re.compile(r"[a-z0-9][a-z0-9-]{0,62}")


@dataclass(frozen=True)
class Click:
    """What a verified block_actions payload asked for."""

    team: str
    team_domain: str
    user: str
    user_team: str  # the user's own workspace (user.team_id); "" when Slack did not say
    user_name: str
    channel: str
    ts: str
    receiver: str
    version: str
    kind: Kind
    until: float | None


def verify(body: bytes, timestamp: str | None, signature: str | None, secret: str, now: float) -> str:
    """The request's signature if Slack signed this body with the app's secret recently; Rejected(401) if not."""
    if not timestamp or not signature:
        raise Rejected(401, "missing X-Slack-Request-Timestamp or X-Slack-Signature")
    try:
        sent = int(timestamp)
    except ValueError:
        raise Rejected(401, "X-Slack-Request-Timestamp is not a number") from None
    if abs(now - sent) > MAX_AGE_SECONDS:
        raise Rejected(401, "X-Slack-Request-Timestamp is more than 5 minutes away: a stale or replayed request")
    if not SignatureVerifier(secret).is_valid(body, timestamp, signature):
        raise Rejected(401, "X-Slack-Signature does not match the body (wrong signing secret?)")
    return signature


def payload(body: bytes) -> dict[str, Any]:
    """The JSON of the form field `payload` that Slack posts."""
    try:
        fields = parse_qs(body.decode("utf-8"), strict_parsing=True, max_num_fields=10)
        found = json.loads(fields["payload"][0])
    except (UnicodeDecodeError, ValueError, KeyError):
        raise Rejected(400, "expected a form with a JSON `payload` field, as Slack posts interactions") from None
    if not isinstance(found, dict):
        raise Rejected(400, "`payload` is not a JSON object")
    return found


def _text(value: Any, pattern: re.Pattern[str], what: str) -> str:
    if not isinstance(value, str) or not pattern.fullmatch(value):
        raise Rejected(400, f"{what} is missing or not a Slack ID")
    return value


def _get(value: Any, *path: str) -> Any:
    for key in path:
        value = value.get(key) if isinstance(value, dict) else None
    return value


def parse(found: dict[str, Any], now: float) -> Click:
    """The click of one of relay's buttons in a block_actions payload; Rejected(400) for anything else."""
    if found.get("type") != "block_actions":
        raise Rejected(400, f"only block_actions payloads are handled, not {str(found.get('type'))[:40]!r}")
    if _get(found, "container", "type") != "message":
        raise Rejected(400, "the click did not come from a message")
    channel = _text(_get(found, "container", "channel_id") or _get(found, "channel", "id"), _CHANNEL, "channel")
    ts = _text(_get(found, "container", "message_ts") or _get(found, "message", "ts"), _TS, "message_ts")
    team = _text(_get(found, "team", "id") or _get(found, "user", "team_id"), _TEAM, "team.id")
    user = _text(_get(found, "user", "id"), buttons.USER_ID, "user.id")
    user_team = _get(found, "user", "team_id")
    user_team = _text(user_team, _TEAM, "user.team_id") if user_team is not None else ""
    domain = _get(found, "team", "domain")
    name = _get(found, "user", "username") or _get(found, "user", "name")
    for action in found.get("actions") or []:
        if not isinstance(action, dict):
            continue
        ident = buttons.parse_block_id(str(action.get("block_id") or ""))
        if ident is None:
            continue
        kind, until = _kind(action, now)
        return Click(team, domain if isinstance(domain, str) and _DOMAIN.fullmatch(domain) else "", user, user_team,
                     name[:80] if isinstance(name, str) else "", channel, ts, ident[1], ident[0], kind, until)
    raise Rejected(400, "the payload holds no action of relay's buttons")


def _kind(action: dict[str, Any], now: float) -> tuple[Kind, float | None]:
    action_id = str(action.get("action_id") or "")
    if action_id == buttons.ACKNOWLEDGE:
        return "acknowledge", None
    if action_id == buttons.UNSILENCE:
        return "unsilence", None
    if action_id.startswith(buttons.SILENCE + ":"):
        seconds = str(action.get("value") or "")
        if not seconds.isdigit() or not 60 <= int(seconds) <= SILENCE_LONGEST:
            raise Rejected(400, "a Silence button's value is not a number of seconds")
        return "silence", now + int(seconds)
    if action_id == buttons.SILENCE_UNTIL:
        picked = action.get("selected_date_time")
        if not isinstance(picked, int) or not now + 60 <= picked <= now + SILENCE_LONGEST:
            raise Rejected(400, "pick a time at least a minute and at most 90 days ahead to silence until")
        return "silence", float(picked)
    raise Rejected(400, f"unknown action {action_id[:60]!r}")


def actions_of(state: Services, click: Click) -> tuple[ReceiverConfig, SlackActions]:
    routes = state.runtime.routes
    config = routes.receivers.get(click.receiver) if routes is not None else None
    if config is None or config.slack is None or config.slack.actions is None:
        raise Rejected(400, f"receiver {click.receiver[:80]!r} does not take Slack actions (no slack.actions)")
    return config, config.slack.actions


async def check_user(state: Services, click: Click, config: ReceiverConfig, actions: SlackActions) -> None:
    """Rejected(403) unless the click is from the receiver's workspace by one of its own users (not a guest from
    another organisation in a Slack Connect channel) and, when restricted, an allowed user."""
    if click.team != actions.team_id:
        raise Rejected(403, f"workspace {click.team} is not the one receiver {config.name!r} takes actions from")
    if click.user_team and click.user_team != actions.team_id:
        raise Rejected(403, f"user {click.user} belongs to workspace {click.user_team} (a Slack Connect channel?), "
                            f"not the one receiver {config.name!r} takes actions from")
    if not actions.allowed_users and actions.allowed_usergroup is None:
        return
    if click.user in actions.allowed_users:
        return
    if actions.allowed_usergroup is not None:
        if click.user in await members(state, config, actions.allowed_usergroup):
            return
    raise Rejected(403, f"user {click.user} may not act on receiver {config.name!r}'s alerts")


_members: dict[tuple[str, str], tuple[float, frozenset[str]]] = {}
clock = time.monotonic  # how old a member list is (a test moves it)


async def members(state: Services, config: ReceiverConfig, usergroup: str) -> frozenset[str]:
    """The user group's members, asked of Slack with the receiver's bot token at most every USERGROUP_SECONDS; when
    Slack cannot answer, what it said last holds while younger than USERGROUP_LIFETIME_SECONDS, and after that the
    click is refused (503): someone removed from the group must not keep acting through an outage."""
    key = (config.name, usergroup)
    known = _members.get(key)
    if known is not None and clock() - known[0] >= USERGROUP_LIFETIME_SECONDS:
        known = None
    if known is not None and clock() - known[0] < USERGROUP_SECONDS:
        return known[1]
    found = state.runtime.receiver(config.name)
    ask = getattr(found.channel if found else None, "usergroup_members", None)
    if ask is None:
        raise Rejected(503, "cannot check the user group now: the receiver's channel is not loaded")
    try:
        async with asyncio.timeout(2.0):  # Slack waits 3 s for the whole answer
            users = frozenset(await ask(usergroup))
    except (DeliveryError, TimeoutError) as exc:
        if known is not None:  # Slack cannot answer: what it said last holds, within its lifetime
            return known[1]
        raise Rejected(503, f"cannot check membership of user group {usergroup} now: {exc}") from None
    _members[key] = (clock(), users)
    return users


async def rows_for(state: Services, click: Click, config: ReceiverConfig, request: str,
                   now: float) -> tuple[Action, list[ActionRow]]:
    """The action and its rows: the Slack receiver's, and for an acknowledge each PagerDuty receiver's on the
    clicking receiver's own routes (relay.config.routes.Routes.acting_for)."""
    anchor = f"slack-message:{click.channel}:{click.ts}"
    record = (await state.store.find_refs(config.name, [anchor])).get(anchor)
    try:
        group = WebhookMessage.model_validate(json.loads(record)["group"]) if record else None
    except (TypeError, ValueError, KeyError, ValidationError):
        group = None
    if group is None:
        raise Rejected(404, "relay does not know this message (not relay's, or older than RELAY_RETENTION_HOURS)")
    firing = [a for a in group.alerts if a.status == "firing"]
    if not firing:
        raise Rejected(409, "every alert of this message has resolved: nothing to act on")
    group = group.model_copy(update={"alerts": firing, "status": "firing"})
    routes = state.runtime.routes
    # Only what the clicking receiver's own routes reach: another team's PagerDuty and escalation stay theirs.
    scope = {a.fingerprint: routes.acting_for(config.name, a.labels) for a in firing} if routes else {}
    action = Action(kind=click.kind, user=click.user, user_name=click.user_name, team_domain=click.team_domain,
                    slack_receiver=config.name, channel=click.channel, ts=click.ts, clicked_at=now,
                    until=click.until, version=click.version,
                    escalations=tuple(sorted(f for f, (_, owns) in scope.items() if owns)))
    give_up = config.give_up_after.total_seconds()
    if action.until is not None:  # a silence created after it would have ended is no use
        give_up = min(give_up, action.until - now)
    made = [row(config.name, request, group, action, give_up)]
    if click.kind == "acknowledge" and routes is not None:
        paged: dict[str, list[Any]] = {}
        for alert in firing:
            team, _ = scope[alert.fingerprint]
            for target in routes.targets(alert.labels):
                receiver = routes.receivers.get(target.receiver)
                if receiver is not None and receiver.integration == "pagerduty" and receiver.name in team:
                    paged.setdefault(receiver.name, []).append(alert)
        for name, alerts in paged.items():
            pd = routes.receivers[name]
            made.append(row(name, request, group.model_copy(update={"alerts": alerts}),
                            action.model_copy(update={"kind": "pagerduty_acknowledge"}),
                            pd.give_up_after.total_seconds()))
    return action, made


async def read_form(request: Request, limit: int, timeout: float) -> bytes:
    media = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if media != FORM:
        raise Rejected(415, f"expected Content-Type {FORM}, got {media or 'none'!r}")
    chunks, size = [], 0
    try:
        async with asyncio.timeout(timeout):
            async for chunk in request.stream():
                size += len(chunk)
                if size > limit:
                    raise Rejected(413, f"body is over the limit of {limit} bytes (RELAY_MAX_BODY_BYTES)")
                chunks.append(chunk)
    except TimeoutError:
        raise Rejected(408, f"the request body did not arrive within {timeout:.0f}s") from None
    return b"".join(chunks)


async def handle(request: Request) -> Response:
    state = services(request)
    now = time.time()
    try:
        secret = state.settings.signing_secret
        if secret is None:
            raise Rejected(404, "Slack actions are off: RELAY_SLACK_SIGNING_SECRET is not set")
        body = await read_form(request, state.settings.max_body_bytes, state.settings.request_read_timeout_seconds)
        signature = verify(body, request.headers.get("x-slack-request-timestamp"),
                           request.headers.get("x-slack-signature"), secret, now)
        click = parse(payload(body), now)
        config, actions = actions_of(state, click)
        await check_user(state, click, config, actions)
        request_id = hashlib.sha256(signature.encode()).hexdigest()[:16]
        action, made = await rows_for(state, click, config, request_id, now)
        marks = [request_mark(signature), once_mark(action)]
        acted = None

        async def write(offer: Any) -> Any:
            nonlocal acted
            acted = await state.store.act(marks, made, now, offer)
            return acted.enqueued

        await outbox.put(state.dispatcher, [r.receiver for r in made], write)
    except Rejected as exc:
        log.info("slack interaction refused (%d): %s", exc.status, exc.message)
        return JSONResponse({"status": "error", "error": exc.message}, status_code=exc.status)
    except StoreUnavailable as exc:
        log.error("slack interaction not accepted (503): %s", exc)
        return JSONResponse({"status": "error", "error": "store unavailable, try again"}, status_code=503)
    except StoreRejected as exc:
        return JSONResponse({"status": "error", "error": f"nothing was stored: {exc}"}, status_code=400)
    assert acted is not None
    if acted.refused == marks[0]:
        log.info("slack interaction refused (409): a replay of a request already handled")
        return JSONResponse({"status": "error", "error": "this request was handled already (a replay)"},
                            status_code=409)
    if acted.refused is not None:
        log.info("%s by %s on %s:%s: already asked on this message, acting once", action.kind, click.user,
                 click.channel, click.ts)
        return JSONResponse({"status": "duplicate"})
    log.info("%s by %s on %s:%s accepted: notifications %s", action.kind, click.user, click.channel, click.ts,
             ",".join(str(e.notification_id) for e in acted.enqueued))
    return JSONResponse({"status": "accepted", "ids": [e.notification_id for e in acted.enqueued]})
