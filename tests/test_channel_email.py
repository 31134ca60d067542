"""Email channel against a real aiosmtpd server: reply codes, STARTTLS, AUTH and Korean text."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import shutil
import threading
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager, nullcontext
from dataclasses import dataclass, field
from email.message import EmailMessage
from email.utils import parseaddr
from pathlib import Path
from typing import Any

import pytest

from relay.alerts import WebhookMessage
from relay.channels import email as email_channel
from relay.channels import pagerduty as pagerduty_channel
from relay.channels.email import MAX_ALERTS, SIZE_LIMIT, EmailChannel, build_message, connection_options
from relay.channels.threads import Threads
from relay.config.receivers import ReceiverConfig
from relay.errors import Reason, TransientDeliveryError
from relay.store import open_store
from relay.templating import Templates
from tests.channel_contract import (
    OK,
    PERMANENT,
    TRANSIENT,
    Expected,
    assert_leaks_no_secret,
    assert_outcome,
    contract_case,
    outcome_of,
    shown,
)
from tests.conftest import Providers
from tests.e2e.test_routing_table import webhook
from tests.fakes import notification, webhook_message
from tests.fakes.smtp import SmtpServer, free_port
from tests.helpers import FIXTURES, TEMPLATES, poll_until, relay_settings, running_relay

PASSWORD = "SMTP-SECRET-pw-4711"
USER = "relay@ojeomneo.example"


def receiver(**email: Any) -> ReceiverConfig:
    config = {"to": ["ops@ojeomneo.example"], "from": "Relay <relay@alerts.ojeomneo.example>",
              "require_tls": False, **email}
    return ReceiverConfig.model_validate({"name": "ops-mail", "email": config})


@asynccontextmanager
async def silent_server() -> AsyncIterator[str]:
    """A TCP server that accepts and never greets: the client must time out."""
    writers: list[asyncio.StreamWriter] = []

    async def hold(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writers.append(writer)
        await reader.read()

    server = await asyncio.start_server(hold, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield f"127.0.0.1:{port}"
    finally:
        for writer in writers:
            writer.close()
        server.close()
        await server.wait_closed()


@asynccontextmanager
async def server_that_drops_after_ehlo() -> AsyncIterator[str]:
    """A mail server that offers STARTTLS, then goes away (a restart): the moment aiosmtplib misreports."""

    async def drop(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"220 mail.example ESMTP\r\n")
        await reader.readline()
        writer.write(b"250-mail.example\r\n250-STARTTLS\r\n250 AUTH PLAIN LOGIN\r\n")
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(drop, "127.0.0.1", 0)
    try:
        yield f"127.0.0.1:{server.sockets[0].getsockname()[1]}"
    finally:
        server.close()
        await server.wait_closed()


@asynccontextmanager
async def nothing_listening() -> AsyncIterator[str]:
    """A smarthost whose port nobody listens on: connections are refused."""
    yield f"127.0.0.1:{free_port()}"


Script = Callable[[SmtpServer], None]


def nothing(smtp: SmtpServer) -> None:
    pass


def reply(text: str, stage: str) -> Script:
    return lambda smtp: smtp.fail_next(text, stage)  # type: ignore[arg-type]


def refuse(text: str) -> Script:
    return lambda smtp: smtp.refuse.update({"ops@ojeomneo.example": text})


@dataclass(frozen=True)
class Session:
    """A row's SMTP session: the mail server's scripted reply, or another server in its place (`elsewhere`: refused,
    silent, gone after EHLO), and the receiver settings that differ from a TLS + AUTH receiver's."""

    script: Script = nothing
    elsewhere: Callable[[], AbstractAsyncContextManager[str]] | None = None
    settings: dict[str, Any] = field(default_factory=dict)


# The mail server's answers -> outcome: SMTP 4xx are tried again, 5xx are not.
TABLE = [
    contract_case(Session(), Expected(OK), id="250-ok"),
    contract_case(Session(reply("451 4.3.0 try again", "RCPT")), Expected(TRANSIENT, Reason.SERVER_ERROR),
                  id="rcpt-451"),
    contract_case(Session(refuse("550 5.1.1 no such user")), Expected(PERMANENT, Reason.CLIENT_ERROR), id="rcpt-550"),
    contract_case(Session(reply("452 4.3.1 insufficient storage", "MAIL")), Expected(TRANSIENT, Reason.SERVER_ERROR),
                  id="mail-452"),
    contract_case(Session(reply("553 5.7.1 sender rejected", "MAIL")), Expected(PERMANENT, Reason.CLIENT_ERROR),
                  id="mail-553"),
    contract_case(Session(reply("451 4.3.0 try again", "DATA")), Expected(TRANSIENT, Reason.SERVER_ERROR),
                  id="data-451"),
    contract_case(Session(reply("554 5.6.0 message rejected", "DATA")), Expected(PERMANENT, Reason.CLIENT_ERROR),
                  id="data-554"),
    contract_case(Session(reply("552 5.3.4 message size exceeds fixed maximum message size", "DATA")),
                  Expected(PERMANENT, Reason.PAYLOAD_TOO_LARGE), id="data-552-too-large"),
    contract_case(Session(settings={"auth_password": "wrong-" + PASSWORD}), Expected(PERMANENT, Reason.AUTH),
                  id="auth-535"),
    # Retried, as every HTTP channel's: a smarthost's expired or rotated certificate is fixed by people, and the
    # retries deliver once it is, within give_up_after (relay.channels.http).
    contract_case(Session(settings={"tls_ca_file": None}), Expected(TRANSIENT, Reason.TLS), id="untrusted-certificate"),
    contract_case(Session(settings={"tls_ca_file": "/nonexistent/ca.pem"}), Expected(TRANSIENT, Reason.CONNECTION),
                  id="no-ca-file"),
    contract_case(Session(elsewhere=nothing_listening), Expected(TRANSIENT, Reason.CONNECTION),
                  id="connection-refused"),
    contract_case(Session(elsewhere=silent_server), Expected(TRANSIENT, Reason.TIMEOUT), id="timeout"),
    # aiosmtplib reports the lost STARTTLS as "not supported" (a permanent config error): it must be retried.
    contract_case(Session(elsewhere=server_that_drops_after_ehlo), Expected(TRANSIENT, Reason.CONNECTION),
                  id="gone-after-ehlo"),
]


@pytest.mark.parametrize(("answer", "expected"), TABLE)
async def test_smtp_answers_map_to_outcomes(
    caplog: pytest.LogCaptureFixture, templates: Templates, answer: Session, expected: Expected,
) -> None:
    caplog.set_level(logging.DEBUG)
    async with SmtpServer(require_starttls=True, auth={USER: PASSWORD}) as smtp:
        answer.script(smtp)
        config = {"require_tls": True, "tls_ca_file": smtp.ca_file, "auth_username": USER, "auth_password": PASSWORD,
                  **answer.settings}
        async with (answer.elsewhere or (lambda: nullcontext(smtp.smarthost)))() as smarthost:
            channel = EmailChannel(receiver(smarthost=smarthost, **config), templates, timeout=0.5)
            exc = await outcome_of(channel.send(notification("firing-poddown")))

        assert_outcome(exc, expected)
        if exc is None:
            [mail] = await smtp.wait_for(1)
            assert mail.tls and mail.auth_user == USER
        else:
            assert smtp.messages == []
        assert_leaks_no_secret(shown(exc, caplog.text), [PASSWORD, config["auth_password"]])


async def test_korean_text_survives_subject_and_both_bodies(tmp_path: Path) -> None:
    directory = tmp_path / "templates"
    shutil.copytree(TEMPLATES, directory)
    (directory / "email" / "subject-summary.j2").write_text(
        "[{{ status | upper }}] {{ alerts[0].annotations.summary }}", encoding="utf-8")
    config = receiver().model_copy(update={"templates": {"subject": "email/subject-summary.j2"}})
    group = notification("firing-highmemory-group3-truncated").group
    summaries = [a.annotations["summary"] for a in group.alerts]

    async with SmtpServer() as smtp:
        assert config.email is not None
        config = config.model_copy(update={"email": config.email.model_copy(update={"smarthost": smtp.smarthost})})
        await EmailChannel(config, Templates(directory)).send(notification(group, "ops-mail", "email"))
        [mail] = await smtp.wait_for(1)

    message = mail.message
    assert message["Subject"] == f"[FIRING] {summaries[0]}"
    head = mail.raw.split(b"\r\n\r\n", 1)[0]
    head.decode("ascii")  # every header is 7-bit on the wire ...
    assert b"Subject: [FIRING] =?utf-8?b?" in head  # ... because the subject is RFC 2047 encoded
    assert message.get_content_type() == "multipart/alternative"
    text = message.get_body(("plain",))
    html = message.get_body(("html",))
    assert isinstance(text, EmailMessage) and isinstance(html, EmailMessage)
    for summary in [*summaries, group.alerts[0].annotations["description"]]:
        assert summary in text.get_content()
        assert summary in html.get_content()
    assert "+2 alerts not sent by Alertmanager" in text.get_content()


async def test_headers_and_envelope(templates: Templates) -> None:
    async with SmtpServer() as smtp:
        config = receiver(smarthost=smtp.smarthost, to=["ops@ojeomneo.example", "lead@ojeomneo.example"])
        channel = EmailChannel(config, templates)
        await channel.send(notification("firing-poddown", "ops-mail", "email"))
        await channel.send(notification("resolved-poddown", "ops-mail", "email"))
        firing, resolved = await smtp.wait_for(2)

    assert firing.rcpt_tos == ["ops@ojeomneo.example", "lead@ojeomneo.example"]
    assert firing.mail_from == "relay@alerts.ojeomneo.example"
    message = firing.message
    assert parseaddr(str(message["From"]))[1] == "relay@alerts.ojeomneo.example"
    assert message["To"].addresses[1].addr_spec == "lead@ojeomneo.example"
    assert message["Date"].datetime is not None
    assert str(message["Message-ID"]).endswith("@alerts.ojeomneo.example>")
    assert message["Message-ID"] != resolved.message["Message-ID"]
    assert message["References"] == resolved.message["References"]  # one thread per alert group
    assert message["Subject"] == "[FIRING:1] PodDown ojeomneo (critical)"
    assert resolved.message["Subject"] == "[RESOLVED] PodDown ojeomneo"
    assert not firing.tls


async def test_starttls_with_private_ca(templates: Templates) -> None:
    async with SmtpServer(require_starttls=True) as smtp:
        assert smtp.ca_file is not None
        config = receiver(smarthost=smtp.smarthost, require_tls=True, tls_ca_file=smtp.ca_file)
        await EmailChannel(config, templates).send(notification("firing-poddown", "ops-mail", "email"))
        [mail] = await smtp.wait_for(1)
    assert mail.tls


async def test_server_requiring_starttls_refuses_plain_sessions(templates: Templates) -> None:
    async with SmtpServer(require_starttls=True) as smtp:
        exc = await outcome_of(EmailChannel(receiver(smarthost=smtp.smarthost), templates).send(
            notification("firing-poddown")))
    assert_outcome(exc, Expected(PERMANENT, Reason.AUTH))
    assert exc is not None and exc.detail.startswith("530")  # Must issue a STARTTLS first


async def test_require_tls_fails_when_server_offers_no_starttls(templates: Templates) -> None:
    async with SmtpServer() as smtp:
        config = receiver(smarthost=smtp.smarthost, require_tls=True)
        exc = await outcome_of(EmailChannel(config, templates).send(notification("firing-poddown")))
    assert_outcome(exc, Expected(PERMANENT, Reason.CONFIG))


async def test_a_deferred_recipient_is_retried_then_delivered(templates: Templates) -> None:
    async with SmtpServer() as smtp:
        smtp.fail_next("451 4.7.1 greylisted, try again", "RCPT")
        channel = EmailChannel(receiver(smarthost=smtp.smarthost), templates)
        with pytest.raises(TransientDeliveryError):
            await channel.send(notification("firing-poddown"))
        await channel.send(notification("firing-poddown"))
        assert len(await smtp.wait_for(1)) == 1


@pytest.mark.parametrize(
    ("settings", "expected"),
    [
        ({"smarthost": "smtp.example:587", "require_tls": True}, {"port": 587, "start_tls": True, "use_tls": False}),
        ({"smarthost": "smtp.example:465", "require_tls": True}, {"port": 465, "start_tls": False, "use_tls": True}),
        ({"smarthost": "smtp.example:25", "require_tls": False}, {"port": 25, "start_tls": False, "use_tls": False}),
        ({"smarthost": "[::1]:2525"}, {"hostname": "::1", "port": 2525}),
        ({"smarthost": "smtp.example"}, {"hostname": "smtp.example", "port": 25}),
    ],
)
def test_connection_options(settings: dict[str, Any], expected: dict[str, Any]) -> None:
    email = receiver(**settings).email
    assert email is not None
    options = connection_options(email)
    assert {key: options[key] for key in expected} == expected
    assert "username" not in options


async def test_a_ca_file_that_appears_later_is_read_at_the_next_send(templates: Templates, tmp_path: Path) -> None:
    ca_file = tmp_path / "ca.pem"  # e.g. a secret still being mounted when relay starts
    async with SmtpServer(require_starttls=True, auth={USER: PASSWORD}) as smtp:
        channel = EmailChannel(receiver(smarthost=smtp.smarthost, require_tls=True, tls_ca_file=str(ca_file),
                                        auth_username=USER, auth_password=PASSWORD), templates)
        missing = await outcome_of(channel.send(notification("firing-poddown")))
        ca_file.write_bytes(Path(smtp.ca_file).read_bytes())
        await channel.send(notification("firing-poddown"))
        await channel.send(notification("resolved-poddown"))  # the same TLS context serves every connection
        mails = await smtp.wait_for(2)
    assert_outcome(missing, Expected(TRANSIENT, Reason.CONNECTION))
    assert [m.tls for m in mails] == [True, True]


def test_destination_names_the_smarthost_only() -> None:
    channel = EmailChannel(receiver(smarthost="smtp.example:587", auth_username=USER, auth_password=PASSWORD),
                           Templates(TEMPLATES))
    assert channel.destination == "email:smtp.example:587"


async def test_the_resolve_answers_the_email_that_announced_the_alert(templates: Templates, tmp_path: Path) -> None:
    store = open_store(f"sqlite:///{tmp_path / 'relay.db'}")
    await store.open()
    try:
        async with SmtpServer() as smtp:
            channel, threads = EmailChannel(receiver(smarthost=smtp.smarthost), templates), Threads(store, "ops-mail")
            await channel.send(notification("firing-highlatency-group2", "ops-mail", "email", id=1), threads)
            await channel.send(notification("firing-poddown", "ops-mail", "email", id=2), threads)
            await channel.send(notification("resolved-highlatency-group2", "ops-mail", "email", id=3), threads)
            group, other, resolve = (m.message for m in await smtp.wait_for(3))
    finally:
        await store.close()

    assert len({str(m["Message-ID"]) for m in (group, other, resolve)}) == 3
    assert resolve["In-Reply-To"] == group["Message-ID"]
    assert str(resolve["References"]).split() == [*str(group["References"]).split(), str(group["Message-ID"])]
    assert group["In-Reply-To"] is None and other["In-Reply-To"] is None


def test_a_retried_notification_keeps_its_message_id(templates: Templates) -> None:
    config = receiver(smarthost="smtp.example:25")
    claimed = notification("firing-poddown", "ops-mail", "email")
    first = build_message(claimed, templates, config)
    again = build_message(dataclasses.replace(claimed, attempts=3), templates, config)
    other = build_message(dataclasses.replace(claimed, id=2), templates, config)
    assert first["Message-ID"] == again["Message-ID"] != other["Message-ID"]


def test_subject_is_one_line_and_cut(templates: Templates) -> None:
    group = notification("firing-poddown").group
    long_name = "Very\nLong  " + "x" * 400
    group = group.model_copy(update={"groupLabels": {"alertname": long_name}})
    message = build_message(notification(group, "ops-mail", "email"), templates, receiver())
    subject = str(message["Subject"])
    assert "\n" not in subject and len(subject) <= 250
    assert subject.startswith("[FIRING:1] Very Long xxx") and subject.endswith("more characters")


# CVE-2024-6923: Python before 3.11.10 / 3.12.5 decodes an encoded-word assigned to a header and writes its CR LF.
INJECTION = "=?utf-8?q?=0D=0AReply-To:_attacker@evil.example=0D=0A=0D=0AWire_money_to_evil?="
HEADERS = ["Subject", "From", "To", "Date", "Message-ID", "References", "Auto-Submitted", "MIME-Version",
           "Content-Type"]


@pytest.mark.parametrize("value", [INJECTION, f"x {INJECTION} y", "api\x00\r\nBcc: a@evil.example",
                                   "=?utf-8?b?DQpSZXBseS1UbzogYUBldmlsLmV4YW1wbGUNCg0KYm9keQ==?=",
                                   "\x1b[31mred\x85\u202eevil"])
async def test_a_label_cannot_add_headers_or_a_body_to_the_email(templates: Templates, value: str) -> None:
    """The subject shows group labels: a value holding an encoded-word, CR LF or NUL reaches a real SMTP server as
    text in the Subject, with exactly relay's headers and relay's body."""
    group = webhook_message("firing-highlatency-group2")
    group = group.model_copy(update={"groupLabels": {**group.groupLabels, "namespace": value}})
    async with SmtpServer() as smtp:
        await EmailChannel(receiver(smarthost=smtp.smarthost), templates).send(notification(group))
        [mail] = await smtp.wait_for(1)
    head = mail.raw.split(b"\r\n\r\n", 1)[0]
    assert b"\x00" not in head and b"\x1b" not in head
    assert [name for name, _ in mail.message.items()] == HEADERS  # no Reply-To, no Bcc
    assert mail.rcpt_tos == ["ops@ojeomneo.example"]
    subject = str(mail.message["Subject"])
    assert not any(c in subject for c in "\r\n\x00\x1b\x85\u202e")
    assert "[U+" in subject or "=\u2060?" in subject  # the value is there, as text
    parts = [p for p in mail.message.walk() if not p.is_multipart()]
    assert [p.get_content_type() for p in parts] == ["text/plain", "text/html"]  # relay's body, nobody else's
    assert parts[0].get_content().startswith("2 firing, 0 resolved")


def big_group(alerts: int) -> dict[str, Any]:
    """One Alertmanager group of `alerts` critical alerts (a node pool going down), as a webhook body."""
    body = json.loads((FIXTURES / "firing-poddown.json").read_text())
    first = body["alerts"][0]
    body["alerts"] = [{**first, "labels": {**first["labels"], "pod": f"server-{i:05d}"}, "fingerprint": f"{i:016x}"}
                      for i in range(alerts)]
    return body


async def test_a_20000_alert_group_is_one_email_under_the_cap_saying_what_it_left_out(templates: Templates) -> None:
    group = WebhookMessage.model_validate(big_group(20_000))
    async with SmtpServer() as smtp:
        await EmailChannel(receiver(smarthost=smtp.smarthost), templates).send(notification(group))
        [mail] = await smtp.wait_for(1)
    assert len(mail.raw) < SIZE_LIMIT  # it used to be 11.5 MB, which servers refuse (a dead letter)
    assert str(mail.message["Subject"]).startswith("[FIRING:20000] PodDown")
    text = mail.message.get_body(("plain",))
    html = mail.message.get_body(("html",))
    assert text is not None and html is not None
    shown = text.get_content().count("[FIRING] ")
    assert 0 < shown <= MAX_ALERTS
    note = f"… and {20_000 - shown} more alerts, not shown to keep this email under 1 MB"
    assert note in text.get_content() and note in html.get_content()
    assert text.get_content().startswith("20000 firing, 0 resolved")


async def test_one_alert_too_large_for_email_is_cut_not_refused(templates: Templates) -> None:
    body = big_group(1)
    body["alerts"][0]["labels"].update({f"label_{i:06d}": "x" * 40 for i in range(100_000)})
    async with SmtpServer() as smtp:
        await EmailChannel(receiver(smarthost=smtp.smarthost), templates).send(
            notification(WebhookMessage.model_validate(body)))
        [mail] = await smtp.wait_for(1)
    assert len(mail.raw) < SIZE_LIMIT  # 6.6 MB before
    text = mail.message.get_body(("plain",))
    assert text is not None and "This alert is too large for email" in text.get_content()


async def test_a_small_webhook_is_answered_and_delivered_while_a_big_group_renders(
        tmp_path: Path, providers: Providers, monkeypatch: pytest.MonkeyPatch) -> None:
    """A 20,000-alert PodDown group goes to Slack, email and PagerDuty. Its email and PagerDuty renders are held in
    progress (in their threads) until a small webhook got through: answered and delivered to Slack. Rendering on
    the event loop, as before, held every webhook until it finished (PagerDuty's 20,000 summaries: ~6 s)."""
    release, lock = threading.Event(), threading.Lock()
    holding = [0]

    def held(real: Any) -> Any:
        def build(notification: Any, *args: Any, **kwargs: Any) -> Any:
            if len(notification.alerts) > 1000:
                with lock:
                    holding[0] += 1
                release.wait(15)
                with lock:
                    holding[0] -= 1
            return real(notification, *args, **kwargs)
        return build

    monkeypatch.setattr(email_channel, "build_message", held(email_channel.build_message))
    monkeypatch.setattr(pagerduty_channel, "build_events", held(pagerduty_channel.build_events))
    settings = relay_settings(tmp_path, providers.routes, max_body_bytes=32 * 1024 * 1024)
    async with running_relay(settings) as relay:
        assert (await relay.post(big_group(20_000))).status_code == 200
        await poll_until(lambda: holding[0] == 2, timeout=30)  # both renders in progress
        answer = await relay.post(webhook("HighLatency", "warning"))
        answered_while_rendering = holding[0] == 2
        await providers.slack.wait_for(2)  # the big group's Slack message and the small one
        delivered_while_rendering = holding[0] == 2
        release.set()
        [mail] = await providers.smtp.wait_for(1, timeout=60)
    assert answer.status_code == 200 and answered_while_rendering and delivered_while_rendering
    assert any("HighLatency" in str(m) for m in providers.slack.messages)
    assert len(mail.raw) < SIZE_LIMIT
