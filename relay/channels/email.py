"""Email through aiosmtplib: one multipart/alternative (text + HTML) message per notification.

Headers are written with the `email` package's standard policy, so a Korean
subject travels RFC 2047-encoded and bodies as UTF-8 quoted-printable, which
every relay on the way accepts. The subject is one line with no control
character and no encoded-word of its own (relay.templating.neutralise.header_text): an
alert cannot add headers or a body, whatever the Python patch level. SMTP failures are classified by reply code:
4xx and lost connections are transient, 5xx replies are permanent.

An email is kept under SIZE_LIMIT (1 MB): at most MAX_ALERTS alerts are
rendered, fewer if they do not fit, and the email says how many it leaves out;
rendering runs in a thread of its own, off the event loop.

Each notification has its own Message-ID; the email announcing an alert is
remembered (relay.channels.threads), and the email resolving it names that one in
In-Reply-To and References, so mail clients show them as one conversation.
"""

from __future__ import annotations

import asyncio
import logging
import re
import ssl
from collections.abc import Awaitable, Sequence
from datetime import UTC, datetime
from email.message import EmailMessage
from html import escape as html_escape
from typing import Any

import aiosmtplib

from relay.alerts import Notification, alert_key
from relay.channels.base import guard_store, rendered, scrub
from relay.channels.digest import build_digest
from relay.channels.mail import assemble_email, sender_domain
from relay.channels.threads import Threads
from relay.config.receivers import EmailConfig, ReceiverConfig
from relay.errors import DeliveryError, PermanentDeliveryError, Reason, TransientDeliveryError
from relay.storms.fold import redraws, storm_of
from relay.templating import Templates, context
from relay.templating.escape import cut
from relay.templating.neutralise import header_text

log = logging.getLogger(__name__)

TIMEOUT = 20.0
IMPLICIT_TLS_PORT = 465
DEFAULT_PORT = 25
# The whole message, bytes on the wire. Servers refuse 10 MB or more (a permanent failure: a lost alert); 1 MB is
# hundreds of alerts, more than anyone reads in one email. Alerts past MAX_ALERTS are not even rendered.
SIZE_LIMIT = 1_000_000
MAX_ALERTS = 500
SMTP_DETAIL_LIMIT = 200
_MSGID = re.compile(r"<[^<>\s]+@[^<>\s]+>")


def split_smarthost(smarthost: str) -> tuple[str, int]:
    """`host:port` (or `[v6]:port`) as a host and a port; no port means 25."""
    host, sep, port = smarthost.rpartition(":")
    if not sep or not port.isdigit() or (host.count(":") and not host.startswith("[")):
        return smarthost.strip("[]"), DEFAULT_PORT
    return host.strip("[]"), int(port)


def connection_options(config: EmailConfig, timeout: float = TIMEOUT) -> dict[str, Any]:
    """aiosmtplib.send keywords: STARTTLS when TLS is required, implicit TLS on port 465, auth if configured."""
    host, port = split_smarthost(config.smarthost or "")
    implicit = port == IMPLICIT_TLS_PORT
    options: dict[str, Any] = {
        "hostname": host,
        "port": port,
        "use_tls": implicit,
        "start_tls": bool(config.require_tls) and not implicit,
        "timeout": timeout,
    }
    if config.tls_ca_file:
        options["cert_bundle"] = config.tls_ca_file
    if config.hello:
        options["local_hostname"] = config.hello
    if config.auth_username:
        options["username"] = config.auth_username
        options["password"] = config.auth_password.get_secret_value() if config.auth_password else ""
    return options


def tls_context(config: EmailConfig) -> ssl.SSLContext:
    """The context aiosmtplib would build (the system's CAs plus the receiver's CA file, hostname checked), once
    per channel: loading the system's CA store costs milliseconds of CPU, which it spent on every connection."""
    context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
    if config.tls_ca_file:
        context.load_verify_locations(cafile=config.tls_ca_file)
    return context


def build_message(notification: Notification, templates: Templates, receiver: ReceiverConfig, *,
                  replying_to: Sequence[str] = (), now: datetime | None = None) -> EmailMessage:
    """The rendered message with From/To/Date/Message-ID; a resolve names the emails it answers in In-Reply-To."""
    config = receiver.email
    assert config is not None
    domain = sender_domain(config)
    now = now or datetime.now(UTC)
    ctx = context(notification, now=now)
    subject = header_text(templates.render("email", "subject", receiver.templates, ctx))

    def assemble(text: str, html: str) -> EmailMessage:
        return assemble_email(notification, receiver, subject, text, html, domain, replying_to, now)

    alerts = ctx["alerts"]
    shown = min(len(alerts), MAX_ALERTS)  # cut before rendering: a 20,000-alert group renders MAX_ALERTS
    while True:
        text, html = _bodies(templates, receiver, {**ctx, "alerts": alerts[:shown]}, len(alerts) - shown)
        message = assemble(text, html)
        size = len(message.as_bytes())
        if size <= SIZE_LIMIT or shown <= 1:
            break
        shown = max(1, min(shown - 1, int(shown * SIZE_LIMIT * 0.8 / size)))
    if size > SIZE_LIMIT:  # one alert alone is too large (100,000 labels): its text, cut, is the whole email
        text = cut(text, SIZE_LIMIT // 20) + "\n\nThis alert is too large for email; see it in Alertmanager."
        message = assemble(text, f"<!DOCTYPE html>\n<html><body><pre>{html_escape(text)}</pre></body></html>")
    return message


def _bodies(templates: Templates, receiver: ReceiverConfig, ctx: dict[str, Any], omitted: int) -> tuple[str, str]:
    """The text and HTML bodies; alerts left out to keep the email under SIZE_LIMIT are counted at the end."""
    text = templates.render("email", "text", receiver.templates, ctx)
    html = templates.render("email", "html", receiver.templates, ctx)
    if omitted:
        note = f"… and {omitted} more alerts, not shown to keep this email under {SIZE_LIMIT // 1_000_000} MB"
        where = f": see them in Alertmanager, {ctx['externalURL']}" if ctx["externalURL"] else ""
        text = f"{text}\n\n{note}{where}"
        end = html.rfind("</body>")
        end = len(html) if end < 0 else end
        html = f"{html[:end]}<p><strong>{html_escape(note)}</strong>{html_escape(where)}</p>\n{html[end:]}"
    return text, html


def _scrub(text: str, secret: str | None) -> str:
    return scrub(text, [secret], SMTP_DETAIL_LIMIT)


# SMTP replies relay reads as "authentication needed or refused" (RFC 4954), and "message too large" (RFC 5321).
_AUTH_CODES = {530, 534, 535, 538}
_TOO_LARGE_CODES = {552}


def classify(exc: Exception, password: str | None) -> DeliveryError:
    """Translate an aiosmtplib or socket failure; server replies are kept (they help), secrets are not."""
    if isinstance(exc, aiosmtplib.SMTPRecipientsRefused):
        refused = [(r.code, r.recipient) for r in exc.recipients]
        detail = _scrub("; ".join(f"{code} {rcpt}" for code, rcpt in refused), password)
        if refused and all(400 <= code < 500 for code, _ in refused):
            return TransientDeliveryError(Reason.SERVER_ERROR, f"recipients deferred: {detail}")
        return PermanentDeliveryError(Reason.CLIENT_ERROR, f"recipients refused: {detail}")
    if isinstance(exc, aiosmtplib.SMTPResponseException):
        detail = _scrub(f"{exc.code} {exc.message}", password)
        if 400 <= exc.code < 500:
            return TransientDeliveryError(Reason.SERVER_ERROR, detail)
        if isinstance(exc, aiosmtplib.SMTPAuthenticationError) or exc.code in _AUTH_CODES:
            return PermanentDeliveryError(Reason.AUTH, detail)
        if exc.code in _TOO_LARGE_CODES:
            return PermanentDeliveryError(Reason.PAYLOAD_TOO_LARGE, detail)
        if 500 <= exc.code < 600:
            return PermanentDeliveryError(Reason.CLIENT_ERROR, detail)
        return TransientDeliveryError(Reason.INVALID_RESPONSE, detail)
    if isinstance(exc, ssl.SSLCertVerificationError):  # retried, as every HTTP channel's (relay.channels.http)
        return TransientDeliveryError(Reason.TLS, _scrub(exc.verify_message or type(exc).__name__, password))
    # aiosmtplib raises the bare base class for missing STARTTLS or AUTH support: a configuration mismatch.
    if isinstance(exc, aiosmtplib.SMTPNotSupported) or type(exc) is aiosmtplib.SMTPException:
        return PermanentDeliveryError(Reason.CONFIG, _scrub(str(exc), password))
    if isinstance(exc, TimeoutError):
        return TransientDeliveryError(Reason.TIMEOUT, type(exc).__name__)
    if isinstance(exc, aiosmtplib.SMTPException | OSError):
        return TransientDeliveryError(Reason.CONNECTION, _scrub(f"{type(exc).__name__}: {exc}", password))
    return PermanentDeliveryError(Reason.CONFIG, type(exc).__name__)


class _Smtp(aiosmtplib.SMTP):
    """aiosmtplib forgets what the server offered when the connection drops, then reports STARTTLS or AUTH as
    "not supported" (a permanent failure); report the lost connection instead, so the send is retried."""

    async def starttls(self, *args: Any, **kwargs: Any) -> aiosmtplib.SMTPResponse:
        return await self._unless_lost(super().starttls(*args, **kwargs))

    async def login(self, *args: Any, **kwargs: Any) -> aiosmtplib.SMTPResponse:
        return await self._unless_lost(super().login(*args, **kwargs))

    async def _unless_lost(self, call: Awaitable[aiosmtplib.SMTPResponse]) -> aiosmtplib.SMTPResponse:
        try:
            return await call
        except aiosmtplib.SMTPServerDisconnected:
            raise
        except aiosmtplib.SMTPException:
            if not self.is_connected:
                raise aiosmtplib.SMTPServerDisconnected("connection lost") from None
            raise


class EmailChannel:
    """Sends each notification as one email to the receiver's `to` list through its smarthost."""

    integration = "email"

    def __init__(self, receiver: ReceiverConfig, templates: Templates, *, timeout: float = TIMEOUT) -> None:
        if receiver.email is None:
            raise ValueError(f"receiver {receiver.name!r} is not an email receiver")
        self.receiver = receiver
        self.config: EmailConfig = receiver.email
        self.templates = templates
        self.timeout = timeout
        self._tls: ssl.SSLContext | None = None  # built at the first send over TLS, shared by every connection

    @property
    def destination(self) -> str:
        return f"email:{self.config.smarthost}"

    async def send(self, notification: Notification, threads: Threads | None = None) -> None:
        if storm_of(notification.lane) is not None:  # a storm's digest (relay.channels.digest)

            if redraws(notification.group):  # a Slack message's redraw: an email cannot be changed once sent
                return
            message = await rendered(build_digest, notification, self.receiver)
        else:
            replying_to = await self._answered(notification, threads)
            message = await rendered(build_message, notification, self.templates, self.receiver,
                                     replying_to=replying_to)
        password = self.config.auth_password.get_secret_value() if self.config.auth_password else None
        options = connection_options(self.config, self.timeout)
        try:
            if options["use_tls"] or options["start_tls"]:  # one TLS context for every connection
                options["tls_context"] = await self._tls_context()
                options.pop("cert_bundle", None)
            async with _Smtp(**options) as client:
                errors, _ = await client.send_message(message)
        except (aiosmtplib.SMTPException, OSError, ValueError) as exc:
            raise classify(exc, password) from None
        if errors:  # some recipients refused, the others got it: retrying would duplicate for them
            log.warning("email partly refused", extra={"receiver": self.receiver.name,
                                                       "refused": sorted(errors)})
        firing = [a for a in notification.alerts if a.status == "firing"]
        if threads is not None and firing:
            await guard_store(threads.remember(firing, str(message["Message-ID"])))

    async def _tls_context(self) -> ssl.SSLContext:
        """A CA file that cannot be read fails the send (retried), and the next send tries to read it again."""
        if self._tls is None:
            self._tls = await asyncio.to_thread(tls_context, self.config)  # file reads: off the event loop
        return self._tls

    @staticmethod
    async def _answered(notification: Notification, threads: Threads | None) -> list[str]:
        """The Message-IDs of the emails that announced the alerts this notification resolves, in order."""
        resolved = [a for a in notification.alerts if a.status == "resolved"]
        if threads is None or not resolved:
            return []
        refs = await guard_store(threads.find(resolved))
        ids = [refs[key] for key in (alert_key(a) for a in resolved) if _MSGID.fullmatch(refs.get(key, ""))]
        return list(dict.fromkeys(ids))

    async def close(self) -> None:
        """Each send opens and closes its own SMTP connection."""
