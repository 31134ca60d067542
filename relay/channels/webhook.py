"""A generic webhook: each notification POSTed as Alertmanager's webhook v4 body, so any consumer of Alertmanager
webhooks works behind relay (with relay's dedup, retries and durable outbox in front of it).

The body is the receiver's `body` template, whose packaged default prints `webhook_v4`: the v4 JSON of the
notification's alerts (those that survived dedup), `receiver` being relay's receiver name, at most `max_alerts`
of them with the rest counted in `truncatedAlerts`, as Alertmanager's own `max_alerts` does. Label values go out
exactly as received: this is data for a program, which must see the labels it would see from Alertmanager. A
custom template writes any text; with a JSON content type it must render JSON (`| tojson` every value), or the
notification is refused as a template error rather than sent broken.

A storm's summary (when the receiver has a `rate_limit`, so relay can fold) is one v4 body holding the folded
alerts, with groupKey `relay-storm:N`. Auth and TLS come from `http_config`, as Alertmanager's.
"""

from __future__ import annotations

import base64
import dataclasses
import functools
import json
import ssl
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import aiohttp

from relay.alerts import Notification
from relay.channels.base import rendered, secret_digest
from relay.channels.http import TIMEOUT, call, failure, usable_url
from relay.channels.threads import Threads
from relay.config.integrations import HttpConfig, WebhookConfig
from relay.config.receivers import ReceiverConfig
from relay.errors import PermanentDeliveryError, Reason
from relay.templating import Templates, context

V4_ALERT_FIELDS = ("status", "labels", "annotations", "startsAt", "endsAt", "generatorURL", "fingerprint")


def capped(notification: Notification, max_alerts: int) -> Notification:
    """The notification with at most `max_alerts` alerts (0: all), the others counted in truncatedAlerts."""
    group = notification.group
    if not max_alerts or len(group.alerts) <= max_alerts:
        return notification
    dropped = len(group.alerts) - max_alerts
    group = group.model_copy(update={"alerts": group.alerts[:max_alerts],
                                     "truncatedAlerts": group.truncatedAlerts + dropped})
    return dataclasses.replace(notification, group=group)


def v4_body(notification: Notification) -> dict[str, Any]:
    """Alertmanager's webhook v4 body for the notification's alerts, its fields in Alertmanager's order."""
    group = notification.group
    return {
        "receiver": notification.receiver, "status": group.status,
        "alerts": [{name: getattr(alert, name) for name in V4_ALERT_FIELDS} for alert in group.alerts],
        "groupLabels": group.groupLabels, "commonLabels": group.commonLabels,
        "commonAnnotations": group.commonAnnotations, "externalURL": group.externalURL, "version": "4",
        "groupKey": group.groupKey, "truncatedAlerts": group.truncatedAlerts,
    }


def is_json(content_type: str) -> bool:
    kind = content_type.split(";")[0].strip().lower()
    return kind == "application/json" or kind.endswith("+json")


@dataclass(frozen=True)
class Outgoing:
    """The request a send makes, as data (no secret in it: the URL and credentials stay with the channel)."""

    content_type: str
    body: str


def build_request(notification: Notification, templates: Templates, receiver: ReceiverConfig,
                  now: datetime | None = None) -> Outgoing:
    config = receiver.webhook
    assert config is not None
    notification = capped(notification, config.max_alerts)
    v4 = json.dumps(v4_body(notification), ensure_ascii=False, separators=(",", ":"))
    body = templates.render("webhook", "body", receiver.templates,
                            context(notification, {"webhook_v4": v4}, now=now))
    if is_json(config.content_type):
        try:
            json.loads(body)
        except json.JSONDecodeError as exc:
            raise PermanentDeliveryError(Reason.TEMPLATE, f"the body template did not render JSON ({exc.msg} at "
                                                          f"character {exc.pos}); use `| tojson` for values") from None
    return Outgoing(config.content_type, body)


def auth_of(http: HttpConfig) -> dict[str, str]:
    """The Authorization header `http_config` asks for (none without one)."""
    if http.bearer_token is not None and http.bearer_token.get_secret_value().strip():
        return {"Authorization": f"Bearer {http.bearer_token.get_secret_value().strip()}"}
    if http.authorization is not None and http.authorization.credentials is not None:
        credentials = http.authorization.credentials.get_secret_value().strip()
        return {"Authorization": f"{http.authorization.type} {credentials}"}
    if http.basic_auth is not None:
        password = http.basic_auth.password.get_secret_value() if http.basic_auth.password else ""
        pair = base64.b64encode(f"{http.basic_auth.username}:{password}".encode()).decode()
        return {"Authorization": f"Basic {pair}"}
    return {}


def tls_context(http: HttpConfig) -> ssl.SSLContext | bool | None:
    """None: aiohttp's default verification; False: none (insecure_skip_verify); else a context with the CA file
    and client certificate. A file that cannot be read is a permanent `config` failure naming the setting."""
    tls = http.tls_config
    if tls.insecure_skip_verify:
        return False
    if not tls.ca_file and not tls.cert_file:
        return None
    try:
        context = ssl.create_default_context(cafile=tls.ca_file or None)
        if tls.cert_file and tls.key_file:
            context.load_cert_chain(tls.cert_file, tls.key_file)
    except (OSError, ssl.SSLError) as exc:
        raise PermanentDeliveryError(Reason.CONFIG, f"http_config.tls_config: cannot load the CA file or client "
                                                    f"certificate ({type(exc).__name__})") from None
    return context


class WebhookChannel:
    """POSTs each notification's body to the configured URL."""

    integration = "webhook"

    def __init__(self, receiver: ReceiverConfig, templates: Templates, session: aiohttp.ClientSession, *,
                 timeout: float = TIMEOUT) -> None:
        if receiver.webhook is None:
            raise ValueError(f"receiver {receiver.name!r} is not a webhook receiver")
        self.receiver = receiver
        self.config: WebhookConfig = receiver.webhook
        self.templates = templates
        self.session = session
        self.timeout = timeout
        self._url = self.config.url.get_secret_value().strip() if self.config.url else ""

    @functools.cached_property
    def destination(self) -> str:
        return "webhook:" + secret_digest(self._url)

    @functools.cached_property
    def _tls(self) -> ssl.SSLContext | bool | None:
        return tls_context(self.config.http_config)

    async def send(self, notification: Notification, threads: Threads | None = None) -> None:
        outgoing = await rendered(build_request, notification, self.templates, self.receiver)
        url = usable_url(self._url, "webhook url")
        headers = auth_of(self.config.http_config)
        reply = await call(self.session, "POST", url, outgoing.body.encode(), timeout=self.timeout,
                           headers={**headers, "Content-Type": outgoing.content_type},
                           ssl_context=self._tls, what="webhook url")
        if not reply.ok:
            raise failure(reply, self.receiver.secrets(), said=reply.text[:200])

    async def close(self) -> None:
        """Nothing of its own to close: the session is relay's (relay.runtime)."""
