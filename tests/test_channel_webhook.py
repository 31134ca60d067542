"""The generic webhook receiver against a local webhook consumer (tests/fakes/webhook.py), through relay's real
aiohttp client: the shared outcome table, the v4 body a consumer of Alertmanager's webhooks reads, auth and TLS
from http_config, max_alerts, a templated body, and hostile labels."""

from __future__ import annotations

import base64
import json
import logging
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from relay.alerts import WebhookMessage
from relay.channels.factory import build_channel
from relay.channels.webhook import WebhookChannel
from relay.config.receivers import ReceiverConfig
from relay.config.routes import load_routes
from relay.errors import ConfigError, PermanentDeliveryError, Reason
from relay.pacing.ratelimit import budget_of
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
from tests.fakes import REFUSED, STALL, UNTRUSTED, Answer, notification, webhook_message
from tests.fakes.webhook import WebhookServer
from tests.helpers import TEMPLATES

PATH_SECRET = "hook-SECRET-0123456789abcdef"
BEARER = "bearer-SECRET-token-42424242"
PASSWORD = "basic-SECRET-password-777"
HOSTILE = {"alertname": "Evil", "severity": "critical", "who": "@everyone <@&123> <at>Bob</at>",
           "md": "[click](https://evil.example) *bold* <b>x</b>", "bidi": "gpj\u202eexe.txt", "quote": 'a"b\\c'}


@pytest.fixture
async def hook() -> AsyncIterator[WebhookServer]:
    async with WebhookServer(authorization=f"Bearer {BEARER}") as server:
        yield server


def receiver(url: str, templates: dict[str, str] | None = None, **config: Any) -> ReceiverConfig:
    config.setdefault("http_config", {"bearer_token": BEARER})
    return ReceiverConfig.model_validate({"name": "hook-ops", "webhook": {"url": url, **config},
                                          "templates": templates or {}})


def hostile_group() -> WebhookMessage:
    group = webhook_message("firing-poddown")
    alert = group.alerts[0].model_copy(update={"labels": HOSTILE, "annotations": {"summary": HOSTILE["md"]}})
    return group.model_copy(update={"alerts": [alert], "commonLabels": HOSTILE})


TABLE = [
    contract_case(Answer(200), Expected(OK), id="200"),
    contract_case(Answer(204), Expected(OK), id="204"),
    contract_case(Answer(400, f"bad request for /{PATH_SECRET}"), Expected(PERMANENT, Reason.CLIENT_ERROR), id="400"),
    contract_case(Answer(401), Expected(PERMANENT, Reason.AUTH), id="401"),
    contract_case(Answer(403), Expected(PERMANENT, Reason.AUTH), id="403"),
    contract_case(Answer(404, f"no route /alerts/{PATH_SECRET}"), Expected(PERMANENT, Reason.NOT_FOUND), id="404"),
    contract_case(Answer(413), Expected(PERMANENT, Reason.PAYLOAD_TOO_LARGE), id="413"),
    contract_case(Answer(429, None, {"Retry-After": "12"}), Expected(TRANSIENT, Reason.RATE_LIMITED, 12.0),
                  id="429-retry-after"),
    contract_case(Answer(429), Expected(TRANSIENT, Reason.RATE_LIMITED), id="429"),
    contract_case(Answer(500, f"Authorization: Bearer {BEARER}"), Expected(TRANSIENT, Reason.SERVER_ERROR),
                  id="500-echoing-the-token"),
    contract_case(Answer(503), Expected(TRANSIENT, Reason.SERVER_ERROR), id="503"),
    contract_case(Answer(307, None, {"Location": "http://127.0.0.1:9/elsewhere"}),
                  Expected(PERMANENT, Reason.INVALID_RESPONSE), id="redirect-not-followed"),
    contract_case(REFUSED, Expected(TRANSIENT, Reason.CONNECTION), id="connection-refused"),
    contract_case(STALL, Expected(TRANSIENT, Reason.TIMEOUT), id="timeout"),
    contract_case(UNTRUSTED, Expected(TRANSIENT, Reason.TLS), id="untrusted-certificate"),
]


@pytest.mark.parametrize(("answer", "expected"), TABLE)
async def test_consumer_answers_map_to_outcomes(hook: WebhookServer, templates: Templates,
                                                session: aiohttp.ClientSession, caplog: pytest.LogCaptureFixture,
                                                answer: Answer | str, expected: Expected) -> None:
    caplog.set_level(logging.DEBUG)
    async with hook.answering(answer) as base_url:
        sender = WebhookChannel(receiver(f"{base_url}/alerts/{PATH_SECRET}"), templates, session,
                                timeout=0.3 if answer == STALL else 5.0)
        exc = await outcome_of(sender.send(notification("firing-poddown", "hook-ops", "webhook")))
    assert_outcome(exc, expected)
    assert len(hook.bodies) == (1 if exc is None else 0)
    hook.recover()
    assert_leaks_no_secret(shown(exc, caplog.text), [PATH_SECRET, BEARER, f"{base_url}/alerts/{PATH_SECRET}"])


async def test_the_default_body_is_the_alertmanager_v4_body_a_consumer_reads(
        hook: WebhookServer, templates: Templates, session: aiohttp.ClientSession) -> None:
    sent = notification("firing-highlatency-group2", "hook-ops", "webhook")
    await WebhookChannel(receiver(hook.url()), templates, session).send(sent)
    [body] = await hook.wait_for(1)
    parsed = WebhookMessage.model_validate(body)  # what relay's own /webhook (and any v4 consumer) accepts
    assert (parsed.version, parsed.receiver, parsed.groupKey, parsed.status) == (
        "4", "hook-ops", sent.group.groupKey, "firing")
    assert parsed.alerts == sent.alerts
    assert body["commonLabels"] == sent.group.commonLabels and body["externalURL"] == "http://vm:19093"
    assert hook.requests[0].headers["Content-Type"] == "application/json"
    assert hook.requests[0].headers["Authorization"] == f"Bearer {BEARER}"


async def test_max_alerts_sends_the_first_alerts_and_counts_the_rest(
        hook: WebhookServer, templates: Templates, session: aiohttp.ClientSession) -> None:
    group = webhook_message("firing-highmemory-group3-truncated")
    await WebhookChannel(receiver(hook.url(), max_alerts=1), templates, session).send(
        notification(group, "hook-ops", "webhook"))
    [body] = await hook.wait_for(1)
    assert [a["fingerprint"] for a in body["alerts"]] == [group.alerts[0].fingerprint]
    assert body["truncatedAlerts"] == group.truncatedAlerts + len(group.alerts) - 1


async def test_basic_auth_and_no_auth(templates: Templates, session: aiohttp.ClientSession) -> None:
    expected = "Basic " + base64.b64encode(f"relay:{PASSWORD}".encode()).decode()
    async with WebhookServer(authorization=expected) as server:
        basic = receiver(server.url(), http_config={"basic_auth": {"username": "relay", "password": PASSWORD}})
        await WebhookChannel(basic, templates, session).send(notification("firing-poddown", "hook-ops", "webhook"))
        await server.wait_for(1)
        exc = await outcome_of(WebhookChannel(receiver(server.url(), http_config={}), templates, session).send(
            notification("firing-poddown", "hook-ops", "webhook")))
        assert_outcome(exc, Expected(PERMANENT, Reason.AUTH))
        assert "Authorization" not in server.requests[-1].headers


async def test_tls_ca_file_is_trusted_and_without_it_the_certificate_is_not(
        tmp_path: Path, templates: Templates, session: aiohttp.ClientSession) -> None:
    async with WebhookServer(tls_dir=tmp_path) as server:
        assert server.url().startswith("https://")
        trusted = receiver(server.url(), http_config={"tls_config": {"ca_file": server.ca_file}})
        await WebhookChannel(trusted, templates, session).send(notification("firing-poddown", "hook-ops", "webhook"))
        await server.wait_for(1)
        exc = await outcome_of(WebhookChannel(receiver(server.url(), http_config={}), templates, session).send(
            notification("firing-poddown", "hook-ops", "webhook")))
        assert_outcome(exc, Expected(TRANSIENT, Reason.TLS))
        missing = receiver(server.url(), http_config={"tls_config": {"ca_file": str(tmp_path / "nope.pem")}})
        exc = await outcome_of(WebhookChannel(missing, templates, session).send(
            notification("firing-poddown", "hook-ops", "webhook")))
        assert_outcome(exc, Expected(PERMANENT, Reason.CONFIG))
        assert len(server.bodies) == 1


async def test_hostile_labels_arrive_exactly_as_alertmanager_sent_them_in_valid_json(
        hook: WebhookServer, templates: Templates, session: aiohttp.ClientSession) -> None:
    await WebhookChannel(receiver(hook.url()), templates, session).send(
        notification(hostile_group(), "hook-ops", "webhook"))
    [body] = await hook.wait_for(1)
    assert body["alerts"][0]["labels"] == HOSTILE  # data for a program: nothing rewritten, nothing interpreted


async def test_a_body_template_writes_any_json_and_a_broken_one_is_refused(
        tmp_path: Path, hook: WebhookServer, session: aiohttp.ClientSession) -> None:
    (tmp_path / "ok.j2").write_text('{"text": {{ (alerts[0].labels.alertname ~ ": " ~ alerts[0].labels.who) | tojson }}'
                                    ', "count": {{ alerts | length }}}')
    (tmp_path / "broken.j2").write_text('{"text": "{{ alerts[0].labels.quote }}"}')
    templates = Templates(tmp_path)
    group = notification(hostile_group(), "hook-ops", "webhook")
    await WebhookChannel(receiver(hook.url(), {"body": "ok.j2"}), templates, session).send(group)
    [body] = await hook.wait_for(1)
    assert body == {"text": f"Evil: {HOSTILE['who']}", "count": 1}
    with pytest.raises(PermanentDeliveryError) as refused:
        await WebhookChannel(receiver(hook.url(), {"body": "broken.j2"}), templates, session).send(group)
    assert refused.value.reason is Reason.TEMPLATE and "tojson" in refused.value.detail
    assert len(hook.requests) == 1


async def test_routes_yaml_takes_a_webhook_receiver_with_secrets_from_the_environment(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, session: aiohttp.ClientSession) -> None:
    monkeypatch.setenv("WEBHOOK_URL", f"https://hooks.example/{PATH_SECRET}")
    monkeypatch.setenv("WEBHOOK_TOKEN", BEARER)
    routes = tmp_path / "routes.yaml"
    routes.write_text("receivers:\n  - name: hook-ops\n    webhook:\n      url: ${WEBHOOK_URL}\n      max_alerts: 5\n"
                      "      http_config:\n        authorization: {credentials: '${WEBHOOK_TOKEN}'}\n"
                      "default_receivers: [hook-ops]\n")
    loaded = load_routes(routes, Templates(TEMPLATES))
    hook_ops = loaded.receivers["hook-ops"]
    assert hook_ops.integration == "webhook" and loaded.unconfigured() == {}
    assert set(hook_ops.secrets()) == {f"https://hooks.example/{PATH_SECRET}", BEARER}
    channel = build_channel(hook_ops, Templates(TEMPLATES), session)
    assert isinstance(channel, WebhookChannel) and PATH_SECRET not in channel.destination
    assert budget_of(hook_ops, channel.destination, True) is None  # no provider limit to default to
    monkeypatch.delenv("WEBHOOK_URL")
    assert load_routes(routes, Templates(TEMPLATES)).unconfigured() == {"hook-ops": "url"}
    routes.write_text("receivers:\n  - name: hook-ops\n    webhook:\n      url: https://x.example\n"
                      "      http_config: {bearer_token: a, basic_auth: {username: u}}\n")
    with pytest.raises(ConfigError, match="one of bearer_token, authorization, basic_auth"):
        load_routes(routes, Templates(TEMPLATES))


def test_the_preview_shows_the_body_and_never_a_secret(templates: Templates) -> None:
    from datetime import UTC, datetime

    from relay.channels.preview import as_notification, render

    hook_ops = receiver(f"https://hooks.example/{PATH_SECRET}")
    text = render(hook_ops, as_notification(hook_ops, webhook_message("firing-poddown"), datetime.now(UTC)),
                  templates)
    assert text.startswith("# POST to the webhook URL (a secret: not shown) with an Authorization header")
    assert json.loads(text.partition("\n")[2])["alerts"][0]["labels"]["alertname"] == "PodDown"
    assert_leaks_no_secret([text], [PATH_SECRET, BEARER])
