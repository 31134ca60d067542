"""PagerDuty Events API v2: one incident per alert, posted on the event loop with a deadline per call.

Each alert gets its own event, keyed by `dedup_key(alert)`, so a firing alert
opens one incident and its resolve closes exactly that one; a repeated trigger
(a retried notification) is merged by PagerDuty instead of paging twice.

The events are posted with relay's shared aiohttp session, as Slack's are, each
call under a total deadline that really ends it. The `pagerduty` package's
client is synchronous: it ran in a pool of threads that a cancelled send could
not stop, and httpx's timeout is per read, so one endpoint that dripped a byte
every 3 s held every thread and starved every other PagerDuty receiver. The
body is the one that client sent (`event_action`, the event's fields,
`dedup_key`, `routing_key`), so what PagerDuty receives has not changed.

A large group's events are sent in order until the attempt's time is nearly up;
what PagerDuty accepted is remembered per alert (relay.channels.threads), so the next
attempt, started at once, continues where this one stopped instead of from the
first event.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import json
import logging
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

import aiohttp

from relay.actions.model import action_of
from relay.alerts import Alert, Notification, alert_key
from relay.channels.base import parse_retry_after, rendered, scrub, secret_digest
from relay.channels.deadline import remaining
from relay.channels.http import NETWORK_ERRORS, network_error
from relay.channels.threads import Threads
from relay.config.receivers import PagerDutyConfig, ReceiverConfig
from relay.errors import (
    DeliveryError,
    DeliveryUnfinished,
    PermanentDeliveryError,
    Reason,
    StoreUnavailable,
    TransientDeliveryError,
    http_reason,
)
from relay.templating import Templates, context
from relay.templating.escape import cut, safe_url

log = logging.getLogger(__name__)

TIMEOUT = 10.0  # one call, connecting to the end of the answer
# A group's events stop being started when less than this share of the attempt's time is left (at most TIMEOUT),
# so the events in flight end before the attempt's deadline and what was accepted is remembered.
RESERVE_SHARE = 0.25
ANSWER_LIMIT = 64 * 1024  # PagerDuty's answers are a few hundred bytes
HEADERS = {"Content-Type": "application/json", "User-Agent": "relay"}
SUMMARY_LIMIT = 1024
# The Events API refuses events of 512 KB or more; like Alertmanager, relay reads that as 512,000 bytes. The
# routing key and JSON framing are added by the client.
EVENT_LIMIT = 512_000 - 1
ROUTING_KEY_ALLOWANCE = 256
DETAIL_LIMIT = 2048
# Payload fields taken from labels are names, not documents: PagerDuty shows them in one line.
FIELD_LIMIT = 255
FIELDS = ("source", "component", "group", "class")
# A link longer than this is not one a person follows (a Silence link percent-encodes every label value).
LINK_LIMIT = 2048
LINKS = (("runbookURL", "Runbook"), ("sourceURL", "Source"), ("silenceURL", "Silence"))
# Alertmanager `severity` label -> PagerDuty payload.severity; anything else pages as a warning,
# so an unlabelled alert neither wakes someone as critical nor disappears as info.
SEVERITIES = {"critical": "critical", "error": "error", "warning": "warning", "info": "info",
              "crit": "critical", "err": "error", "warn": "warning", "page": "critical"}
DEFAULT_SEVERITY = "warning"


def dedup_key(alert: Alert) -> str:
    """One key per firing episode (fingerprint + start), the same for its trigger and its resolve."""
    start = alert.starts_at.isoformat() if alert.starts_at is not None else alert.startsAt
    return hashlib.sha256(f"{alert.fingerprint}:{start}".encode()).hexdigest()[:32]


def severity(alert: Alert) -> str:
    return SEVERITIES.get(alert.labels.get("severity", "").strip().lower(), DEFAULT_SEVERITY)


def build_events(notification: Notification, templates: Templates, receiver: ReceiverConfig,
                 *, now: datetime | None = None) -> list[dict[str, Any]]:
    """One Events API v2 event per alert (without routing_key, which the client adds)."""
    config = receiver.pagerduty
    assert config is not None
    base = context(notification, now=now)
    events: list[dict[str, Any]] = []
    for alert, alert_ctx in zip(notification.alerts, base["alerts"], strict=True):
        key = dedup_key(alert)
        if alert.status == "resolved":
            events.append({"event_action": "resolve", "dedup_key": key})
            continue
        summary = templates.render("pagerduty", "summary", receiver.templates, {**base, "alert": alert_ctx})
        labels, name = alert_ctx["labels"], alert_ctx["name"]  # as shown: hidden characters made visible
        payload: dict[str, Any] = {
            "summary": cut(" ".join(summary.split()) or name or "alert", SUMMARY_LIMIT),
            "source": labels.get("instance") or labels.get("pod") or labels.get("service") or name or "unknown",
            "severity": severity(alert),
            "class": name or None,
            "component": labels.get("service"),
            "group": labels.get("namespace"),
            "timestamp": alert.starts_at.isoformat() if alert.starts_at is not None else None,
            "custom_details": {"labels": labels, "annotations": alert_ctx["annotations"]},
        }
        links = [{"href": alert_ctx[field], "text": text} for field, text in LINKS if alert_ctx[field]]
        event = {
            "event_action": "trigger",
            "dedup_key": key,
            "payload": {k: v for k, v in payload.items() if v is not None},
            "client": config.client,
            "client_url": safe_url(config.client_url) or base["externalURL"] or None,
            "links": links,
        }
        events.append(fit({k: v for k, v in event.items() if v}))
    return events


def fit(event: dict[str, Any]) -> dict[str, Any]:
    """Keep an event under PagerDuty's 512 KB whatever the labels hold: label fields are capped at 255 characters;
    then long detail values are cut, then the details dropped, then long links dropped, then every link."""
    payload = event["payload"]
    for field in FIELDS:
        if field in payload:
            payload[field] = cut(payload[field], FIELD_LIMIT)
    if _size(event) <= EVENT_LIMIT:
        return event
    details = payload["custom_details"]
    payload["custom_details"] = {part: {k: cut(str(v), DETAIL_LIMIT) for k, v in values.items()}
                                 for part, values in details.items()}
    if _size(event) > EVENT_LIMIT:
        payload["custom_details"] = {"note": "labels and annotations were too large for PagerDuty; "
                                             "see the alert in Alertmanager"}
    if _size(event) > EVENT_LIMIT:
        event["links"] = [link for link in event.get("links", []) if len(link["href"]) <= LINK_LIMIT]
    if _size(event) > EVENT_LIMIT:  # only a huge client_url is left: links are a convenience, paging is not
        event.pop("links", None)
        event.pop("client_url", None)
    return {k: v for k, v in event.items() if v}


def _size(event: dict[str, Any]) -> int:
    return len(json.dumps(event, ensure_ascii=False).encode()) + ROUTING_KEY_ALLOWANCE


def classify(status: int, body: Any, retry_after: str | None, routing_key: str) -> DeliveryError:
    """The DeliveryError for an answer that is not an accepted event; messages are built here, never copied with
    the key in them."""
    errors = body.get("errors") if isinstance(body, dict) else None
    detail = scrub(f"HTTP {status}" + (f": {'; '.join(map(str, errors))}" if errors else ""), [routing_key])
    if status == 429:
        return TransientDeliveryError(Reason.RATE_LIMITED, detail, parse_retry_after(retry_after))
    if status >= 500 or status == 408:
        return TransientDeliveryError(http_reason(status), detail)
    if 200 <= status < 300:  # accepted, but the answer had no dedup_key: sending again is harmless
        return TransientDeliveryError(Reason.INVALID_RESPONSE, detail)
    return PermanentDeliveryError(http_reason(status), detail)


def event_body(event: dict[str, Any], routing_key: str) -> bytes:
    """The JSON the `pagerduty` client posted for this event (same fields, same order)."""
    fields = {k: v for k, v in event.items() if k not in ("event_action", "dedup_key")}
    body = {"event_action": event["event_action"], **fields, "dedup_key": event["dedup_key"],
            "routing_key": routing_key}
    return json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode()


def progress_ref(notification: Notification) -> str:
    """What relay.channels.threads remembers for an alert whose event of this notification PagerDuty accepted."""
    return f"pagerduty-accepted:{notification.id}"


class PagerDutyChannel:
    """Sends one Events API v2 event per alert of a notification, in order."""

    integration = "pagerduty"

    def __init__(self, receiver: ReceiverConfig, templates: Templates, session: aiohttp.ClientSession, *,
                 timeout: float = TIMEOUT) -> None:
        if receiver.pagerduty is None:
            raise ValueError(f"receiver {receiver.name!r} is not a pagerduty receiver")
        self.receiver = receiver
        self.config: PagerDutyConfig = receiver.pagerduty
        self.templates = templates
        self.session = session
        self._key = self.config.routing_key.get_secret_value().strip() if self.config.routing_key else ""
        self.timeout = timeout

    @functools.cached_property
    def destination(self) -> str:
        return "pagerduty:" + secret_digest(self._key)

    def _url(self) -> str:
        try:
            parts = urlsplit(self.config.url)
            usable = parts.scheme in ("https", "http") and bool(parts.hostname)
        except (TypeError, ValueError):
            usable = False
        if not usable:
            raise PermanentDeliveryError(Reason.CONFIG, "the configured PagerDuty URL is not usable")
        return self.config.url

    async def send(self, notification: Notification, threads: Threads | None = None) -> None:
        """Send every alert's event not yet accepted. PagerDuty refusing one event (400) must not keep the group's
        other incidents from opening: the rest are sent, then the refusal is raised. Anything else stops at once;
        the retry sends only what PagerDuty has not accepted (and PagerDuty merges a repeat by dedup_key)."""
        action = action_of(notification)
        if action is not None:  # acknowledged from Slack (relay.actions.model): each alert's incident, by its key
            events = [{"event_action": "acknowledge", "dedup_key": dedup_key(a)} for a in notification.alerts]
        else:
            events = await rendered(build_events, notification, self.templates, self.receiver)
        url = self._url()
        pending = list(zip(notification.alerts, events, strict=True))
        if threads is not None and len(pending) > 1:
            done = await threads.find(notification.alerts)
            pending = [(a, e) for a, e in pending if done.get(alert_key(a)) != progress_ref(notification)]
        accepted: list[Alert] = []
        try:
            refused = await self._send_all(url, pending, accepted)
        except BaseException:
            await self._remember(threads, notification, accepted)
            raise
        if refused:
            await self._remember(threads, notification, accepted)
            first = refused[0]
            raise PermanentDeliveryError(first.reason, f"{len(refused)} of {len(events)} events refused; "
                                                       f"first: {first.detail}")

    async def _send_all(self, url: str, pending: list[tuple[Alert, dict[str, Any]]],
                        accepted: list[Alert]) -> list[PermanentDeliveryError]:
        budget = remaining(self.timeout * max(1, len(pending)))
        reserve = min(self.timeout, budget * RESERVE_SHARE)
        refused: list[PermanentDeliveryError] = []
        for n, (alert, event) in enumerate(pending):
            left = remaining(budget)
            if n > 0 and left < reserve:  # at least one event per attempt: every attempt makes progress
                raise DeliveryUnfinished(f"{len(accepted)} of {len(pending)} events accepted in this attempt; "
                                         "the rest follow at once")
            try:
                await self._post(url, event, min(self.timeout, max(left, 0.001)))
            except PermanentDeliveryError as error:
                if error.reason is not Reason.CLIENT_ERROR:
                    raise
                refused.append(error)
                continue
            accepted.append(alert)
        return refused

    async def _post(self, url: str, event: dict[str, Any], timeout: float) -> None:
        """One event, ended after `timeout` seconds whatever the endpoint does (a drip of bytes included)."""
        try:
            async with asyncio.timeout(timeout), self.session.post(
                    url, data=event_body(event, self._key), headers=HEADERS, allow_redirects=False,
                    timeout=aiohttp.ClientTimeout(total=timeout)) as response:
                raw = await response.content.read(ANSWER_LIMIT)
                status, retry_after = response.status, response.headers.get("Retry-After")
        except NETWORK_ERRORS as exc:
            raise network_error(exc, "PagerDuty URL", timeout) from None
        try:
            body = json.loads(raw)
        except ValueError:
            body = {}
        if 200 <= status < 300 and isinstance(body, dict) and "dedup_key" in body:
            return
        raise classify(status, body, retry_after, self._key)

    async def _remember(self, threads: Threads | None, notification: Notification, accepted: list[Alert]) -> None:
        """Keep which alerts' events were accepted, for the next attempt; if the store cannot, it resends them."""
        if threads is None or not accepted or len(notification.alerts) < 2:
            return
        try:
            await threads.remember(accepted, progress_ref(notification))
        except StoreUnavailable as exc:
            log.warning("notification %d: cannot remember which PagerDuty events were accepted (the next attempt "
                        "sends them again, merged by dedup_key): %s", notification.id, exc)

    async def close(self) -> None:
        """Nothing of its own to close: the session is relay's (relay.runtime)."""
