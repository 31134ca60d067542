"""PagerDuty Events API v2 through the `pagerduty` package: one incident per alert.

Each alert gets its own event, keyed by `dedup_key(alert)`, so a firing alert
opens one incident and its resolve closes exactly that one; a repeated trigger
(a retried notification) is merged by PagerDuty instead of paging twice. The
client is synchronous and runs in worker threads of its own, with its built-in
retries and sleeps turned off: the dispatcher owns retries.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import functools
import hashlib
import json
import logging
from datetime import datetime
from typing import Any

import httpx2
import pagerduty

from relay.alerts import Alert, Notification
from relay.channels.base import parse_retry_after, scrub, secret_digest
from relay.errors import DeliveryError, PermanentDeliveryError, Reason, TransientDeliveryError, http_reason
from relay.receivers import PagerDutyConfig, ReceiverConfig
from relay.templating import Templates, context, cut, safe_url
from relay.threads import Threads

log = logging.getLogger(__name__)

# The library logs "exceeded maximum number of attempts" for every answer once retries are off; the
# channel reports outcomes itself, so the library's logger stays quiet (and never at DEBUG).
_lib_log = logging.getLogger(f"{__name__}.lib")
_lib_log.setLevel(logging.CRITICAL)

TIMEOUT = 10.0
# Not the event loop's default executor: a slow PagerDuty would fill it, and aiohttp and aiosmtplib resolve
# Slack's and the mail server's host names there, so every other receiver would wait for PagerDuty.
_CALLS = concurrent.futures.ThreadPoolExecutor(max_workers=32, thread_name_prefix="relay-pagerduty")
ENQUEUE_PATH = "/v2/enqueue"
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
# Any status in `retry` makes the client return at once instead of raising (401) or sleeping (429, 5xx).
_NO_RETRY = {status: 1 for status in (400, 401, 403, 404, 408, 429, 500, 502, 503, 504)}


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
        labels = alert.labels
        payload: dict[str, Any] = {
            "summary": cut(" ".join(summary.split()) or alert.name or "alert", SUMMARY_LIMIT),
            "source": labels.get("instance") or labels.get("pod") or labels.get("service") or alert.name or "unknown",
            "severity": severity(alert),
            "class": alert.name or None,
            "component": labels.get("service"),
            "group": labels.get("namespace"),
            "timestamp": alert.starts_at.isoformat() if alert.starts_at is not None else None,
            "custom_details": {"labels": dict(labels), "annotations": dict(alert.annotations)},
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


class EventsClient(pagerduty.EventsApiV2Client):
    """The library's client, also accepting http:// (local test servers, proxies) and any enqueue URL."""

    def __init__(self, routing_key: str, enqueue_url: str, timeout: float) -> None:
        self.enqueue_url = enqueue_url
        base = enqueue_url.removesuffix(ENQUEUE_PATH).rstrip("/") if enqueue_url.endswith(ENQUEUE_PATH) else enqueue_url
        super().__init__(routing_key, base_url=base)
        self.log = _lib_log
        self.retry = dict(_NO_RETRY)
        self.max_http_attempts = -1
        self.max_network_attempts = 0
        self.timeout = timeout  # type: ignore[assignment]  # typed int by the library; httpx takes float

    @property
    def url(self) -> str:
        return str(self._url)

    @url.setter
    def url(self, new_base_url: str) -> None:
        if not new_base_url.startswith(("https://", "http://")):
            raise pagerduty.UrlError("PagerDuty URL must use http:// or https://")
        self._url = new_base_url

    def normalize_url(self, url: str) -> str:
        return self.enqueue_url if url == ENQUEUE_PATH else str(super().normalize_url(url))


def classify(exc: Exception, routing_key: str) -> DeliveryError:
    """Translate a library error; messages are built here, never copied with the key in them."""
    response = getattr(exc, "response", None)
    if isinstance(exc, pagerduty.HttpError) and response is not None:
        return _classify_response(response, routing_key)
    if isinstance(exc, pagerduty.UrlError):
        return PermanentDeliveryError(Reason.CONFIG, "the configured PagerDuty URL is not usable")
    if isinstance(exc, pagerduty.Error):
        cause = exc.__cause__
        if isinstance(cause, httpx2.TimeoutException):
            return TransientDeliveryError(Reason.TIMEOUT, type(cause).__name__)
        return TransientDeliveryError(Reason.CONNECTION, type(cause or exc).__name__)
    return PermanentDeliveryError(Reason.CLIENT_ERROR, f"invalid event: {type(exc).__name__}")


def _classify_response(response: httpx2.Response, routing_key: str) -> DeliveryError:
    status = response.status_code
    try:
        body = response.json()
    except ValueError:
        body = {}
    errors = body.get("errors") if isinstance(body, dict) else None
    detail = scrub(f"HTTP {status}" + (f": {'; '.join(map(str, errors))}" if errors else ""), [routing_key])
    if status == 429:
        return TransientDeliveryError(Reason.RATE_LIMITED, detail,
                                      parse_retry_after(response.headers.get("Retry-After")))
    if status >= 500 or status == 408:
        return TransientDeliveryError(http_reason(status), detail)
    if 200 <= status < 300:  # accepted, but the answer had no dedup_key: sending again is harmless
        return TransientDeliveryError(Reason.INVALID_RESPONSE, detail)
    return PermanentDeliveryError(http_reason(status), detail)


class PagerDutyChannel:
    """Sends one Events API v2 event per alert of a notification, in order."""

    integration = "pagerduty"

    def __init__(self, receiver: ReceiverConfig, templates: Templates, *, timeout: float = TIMEOUT) -> None:
        if receiver.pagerduty is None:
            raise ValueError(f"receiver {receiver.name!r} is not a pagerduty receiver")
        self.receiver = receiver
        self.config: PagerDutyConfig = receiver.pagerduty
        self.templates = templates
        self._key = self.config.routing_key.get_secret_value().strip() if self.config.routing_key else ""
        self._client: EventsClient | None = None
        self.timeout = timeout

    @functools.cached_property
    def destination(self) -> str:
        return "pagerduty:" + secret_digest(self._key)

    def _events_client(self) -> EventsClient:
        if self._client is None:
            try:
                self._client = EventsClient(self._key, self.config.url, self.timeout)
            except pagerduty.UrlError:
                raise PermanentDeliveryError(Reason.CONFIG, "the configured PagerDuty URL is not usable") from None
        return self._client

    async def send(self, notification: Notification, threads: Threads | None = None) -> None:
        """Send every alert's event. PagerDuty refusing one event (400) must not keep the group's other incidents
        from opening: the rest are sent, then the refusal is raised. Anything else stops at once; a retry sends
        every event again, which PagerDuty merges by dedup_key."""
        events = build_events(notification, self.templates, self.receiver)
        client = self._events_client()
        refused: list[PermanentDeliveryError] = []
        for event in events:
            try:
                await asyncio.get_running_loop().run_in_executor(_CALLS, self._send_event, client, event)
            except (pagerduty.Error, pagerduty.UrlError, ValueError, TypeError) as exc:
                error = classify(exc, self._key)
                if not (isinstance(error, PermanentDeliveryError) and error.reason is Reason.CLIENT_ERROR):
                    raise error from None
                refused.append(error)
        if refused:
            first = refused[0]
            raise PermanentDeliveryError(first.reason, f"{len(refused)} of {len(events)} events refused; "
                                                       f"first: {first.detail}")

    @staticmethod
    def _send_event(client: EventsClient, event: dict[str, Any]) -> None:
        properties = {k: v for k, v in event.items() if k not in ("event_action", "dedup_key")}
        client.send_event(event["event_action"], dedup_key=event["dedup_key"], **properties)

    async def close(self) -> None:
        if self._client is not None:
            await asyncio.get_running_loop().run_in_executor(_CALLS, self._client.close)
            self._client = None
