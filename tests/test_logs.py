"""What an operator reads from relay's logs: RELAY_LOG_FORMAT=json gives one JSON object a line, with the fields
a log search filters on (receiver, notification_id, alertname, fingerprint, outcome, reason, latency_ms) and
every `extra` a line was given; the console format stays one plain line; no secret in either."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from relay.channels.email import EmailChannel
from relay.telemetry import logs
from relay.templating import Templates
from tests.conftest import Providers
from tests.e2e.test_routing_table import webhook
from tests.fakes import notification
from tests.fakes.smtp import SmtpServer
from tests.helpers import TEMPLATES, poll_until, relay_settings, running_relay
from tests.test_channel_email import receiver as email_receiver
from tests.test_secrets import ROUTING_KEY, leaked


def json_lines(records: list[logging.LogRecord]) -> list[dict[str, Any]]:
    """The records as RELAY_LOG_FORMAT=json writes them, parsed back."""
    formatter = logs.JsonFormatter()
    lines = [formatter.format(record) for record in records]
    assert all("\n" not in line for line in lines)  # one event, one line
    return [json.loads(line) for line in lines]


@pytest.fixture
def stderr(capsys: pytest.CaptureFixture[str]) -> Iterator[Callable[[], str]]:
    """What relay writes to stderr after `logs.configure` (called in the test, while capsys holds stderr); the
    root logger is put back afterwards."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    try:
        yield lambda: capsys.readouterr().err
    finally:
        root.handlers[:] = handlers
        root.setLevel(level)


async def test_email_partly_refused_names_its_receiver_and_the_refused_recipients(
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="relay.channels.email")
    async with SmtpServer() as smtp:
        smtp.refuse["lead@ojeomneo.example"] = "550 5.1.1 no such user"
        config = email_receiver(smarthost=smtp.smarthost, to=["ops@ojeomneo.example", "lead@ojeomneo.example"])
        await EmailChannel(config, Templates(TEMPLATES)).send(notification("firing-poddown", "ops-mail", "email"))
        [mail] = await smtp.wait_for(1)
    assert mail.rcpt_tos == ["ops@ojeomneo.example"]
    [line] = json_lines(caplog.records)
    assert line["msg"] == "email partly refused" and line["level"] == "warning"
    assert line["receiver"] == "ops-mail"
    assert line["refused"] == ["lead@ojeomneo.example"]


async def test_delivery_lines_carry_their_fields_and_no_secret(
        tmp_path: Path, providers: Providers, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    """PagerDuty fails once quoting the routing key, then takes the event: the retry line and the delivered line
    say which notification, alert and receiver, why, and how long relay has held it; the key is in neither."""
    caplog.set_level(logging.INFO, logger="relay")
    monkeypatch.setenv("PAGERDUTY_ROUTING_KEY", ROUTING_KEY)
    providers.pagerduty.respond_with(503, {"status": "unavailable", "message": f"try later, {ROUTING_KEY}"})
    body = webhook("PodDown", "critical")
    async with running_relay(relay_settings(tmp_path, providers.routes)) as relay:
        answer = (await relay.post(body)).json()
        notification_id = answer["receivers"]["pagerduty-oncall"]["notification_id"]
        await providers.pagerduty.wait_for(1)

        async def delivered() -> bool:
            return [r["state"] for r in await relay.history(ids=str(notification_id))] == ["delivered"]

        await poll_until(delivered)
    lines = json_lines(caplog.records)
    ours = [line for line in lines if line.get("notification_id") == notification_id]
    assert [line["outcome"] for line in ours] == ["retry", "delivered"]
    retry, done = ours
    for line in ours:
        assert line["receiver"] == "pagerduty-oncall" and line["logger"] == "relay.dispatcher"
        assert line["alertname"] == "PodDown" and line["alerts"] == 1
        assert line["fingerprint"] == body["alerts"][0]["fingerprint"]
        assert isinstance(line["latency_ms"], float) and line["latency_ms"] >= 0
    assert retry["reason"] == "server_error" and retry["level"] == "warning"
    assert done["reason"] is None and done["level"] == "info" and done["latency_ms"] >= retry["latency_ms"]
    assert leaked(ROUTING_KEY, "\n".join(json.dumps(line) for line in lines)) == []


def test_json_format_writes_one_object_a_line_with_every_extra(stderr: Callable[[], str]) -> None:
    logs.configure("json", "info")
    logging.getLogger("relay.test").warning("%d alerts for %s", 3, "오전 점검", extra={"receiver": "ops", "n": 2})
    logging.getLogger("relay.test").debug("not at info")
    [line] = stderr().splitlines()
    entry = json.loads(line)
    assert "오전 점검" in line  # Korean stays readable in the file, not \u-escaped
    assert entry["msg"] == "3 alerts for 오전 점검" and entry["level"] == "warning" and entry["logger"] == "relay.test"
    assert entry["ts"].endswith("Z") and entry["receiver"] == "ops" and entry["n"] == 2


def test_json_format_keeps_a_traceback_in_its_line(stderr: Callable[[], str]) -> None:
    logs.configure("json")
    try:
        raise RuntimeError("claim failed")
    except RuntimeError:
        logging.getLogger("relay.dispatcher").exception("claiming notifications failed")
    [line] = stderr().splitlines()
    entry = json.loads(line)
    assert entry["level"] == "error" and entry["exc"].endswith("RuntimeError: claim failed")


def test_console_format_stays_one_readable_line(stderr: Callable[[], str]) -> None:
    logs.configure("console")
    logging.getLogger("relay.channels.email").warning("email partly refused", extra={"receiver": "ops-mail"})
    [line] = stderr().splitlines()
    assert line.endswith("WARNING relay.channels.email: email partly refused")
    assert "{" not in line
