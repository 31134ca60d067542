"""The one table from aiohttp failures to delivery errors (relay.channels.http), which every HTTP channel shares:
which failure is retried, which is final, and that the text kept never quotes the URL."""

from __future__ import annotations

import ssl

import aiohttp
import pytest
from multidict import CIMultiDict, CIMultiDictProxy
from yarl import URL

from relay.channels.factory import build_channel
from relay.channels.http import NETWORK_ERRORS, network_error
from relay.channels.slack.channel import SlackChannel
from relay.config.receivers import ReceiverConfig
from relay.errors import Reason
from relay.templating import Templates
from tests.channel_contract import (
    PERMANENT,
    TRANSIENT,
    Expected,
    assert_leaks_no_secret,
    assert_outcome,
    outcome_of,
    shown,
)
from tests.fakes import notification
from tests.helpers import TEMPLATES

WEBHOOK = "http:///services/T0001/B0002/hookSECRETxyz123"  # no host: aiohttp cannot use it
SECRET = "hookSECRETxyz123"
FTP = "ftp://hooks.slack.com/services/T0001/B0002/hookSECRETxyz123"  # a scheme aiohttp does not speak
REQUEST = aiohttp.RequestInfo(URL("https://hooks.slack.com/services/T0001/B0002/hookSECRETxyz123"), "POST",
                              CIMultiDictProxy(CIMultiDict()), URL(WEBHOOK))


def certificate_error() -> aiohttp.ClientConnectorCertificateError:
    key = aiohttp.client_reqrep.ConnectionKey("hooks.slack.com", 443, True, True, None, None, None)
    return aiohttp.ClientConnectorCertificateError(key, ValueError("certificate verify failed"))


@pytest.mark.parametrize(("error", "expected"), [
    (aiohttp.InvalidURL(WEBHOOK), Expected(PERMANENT, Reason.CONFIG)),
    (aiohttp.InvalidUrlClientError(WEBHOOK), Expected(PERMANENT, Reason.CONFIG)),
    (aiohttp.NonHttpUrlClientError(FTP), Expected(PERMANENT, Reason.CONFIG)),
    (aiohttp.ServerTimeoutError(f"Timeout on reading data from {WEBHOOK}"), Expected(TRANSIENT, Reason.TIMEOUT)),
    (TimeoutError(), Expected(TRANSIENT, Reason.TIMEOUT)),
    (aiohttp.ServerDisconnectedError(), Expected(TRANSIENT, Reason.CONNECTION)),
    (aiohttp.ClientOSError(104, f"Connection reset by peer: {WEBHOOK}"), Expected(TRANSIENT, Reason.CONNECTION)),
    (certificate_error(), Expected(TRANSIENT, Reason.TLS)),
    (ssl.SSLError(1, "[SSL: WRONG_VERSION_NUMBER] wrong version number"), Expected(TRANSIENT, Reason.TLS)),
    (aiohttp.ClientResponseError(REQUEST, (), status=502, message=WEBHOOK), Expected(TRANSIENT, Reason.CONNECTION)),
    (ConnectionRefusedError(111, "Connection refused"), Expected(TRANSIENT, Reason.CONNECTION)),
], ids=["invalid-url", "invalid-url-client", "not-http", "server-timeout", "timeout", "disconnected", "reset",
        "certificate", "tls", "response-error", "refused-socket"])
def test_each_aiohttp_failure_becomes_its_delivery_error_without_the_url(
        error: BaseException, expected: Expected) -> None:
    assert isinstance(error, NETWORK_ERRORS)
    translated = network_error(error, "Slack URL", timeout=5)
    assert_outcome(translated, expected)
    assert_leaks_no_secret(shown(translated), [WEBHOOK, FTP, SECRET])


def test_the_detail_says_what_a_person_can_act_on() -> None:
    invalid = network_error(aiohttp.InvalidURL(WEBHOOK), "PagerDuty URL")
    assert invalid.detail == "the configured PagerDuty URL is not usable"
    assert network_error(TimeoutError(), "Slack URL", timeout=2.5).detail == "no answer in 2.5s"
    assert network_error(aiohttp.ServerDisconnectedError(), "Slack URL").detail == "ServerDisconnectedError"


def test_anything_else_is_not_translated() -> None:
    with pytest.raises(TypeError):
        network_error(KeyError("x"), "Slack URL")


async def test_a_slack_webhook_url_aiohttp_cannot_use_is_final_and_not_quoted() -> None:
    receiver = ReceiverConfig.model_validate({"name": "team-slack", "slack": {"webhook_url": WEBHOOK}})
    async with aiohttp.ClientSession() as session:
        channel = SlackChannel(receiver, Templates(TEMPLATES), session, timeout=5)
        exc = await outcome_of(channel.send(notification("firing-poddown", "team-slack")))
    assert_outcome(exc, Expected(PERMANENT, Reason.CONFIG))
    assert exc is not None and exc.detail == "the configured Slack URL is not usable"
    assert_leaks_no_secret(shown(exc), [WEBHOOK, SECRET])


@pytest.mark.parametrize("config", [
    {"slack": {"webhook_url": FTP}},
    {"pagerduty": {"routing_key": SECRET, "url": "ftp://events.pagerduty.com/v2/enqueue"}},
], ids=["slack-webhook", "pagerduty"])
async def test_an_ftp_url_fails_the_send_as_final_instead_of_being_retried_until_give_up(
        config: dict[str, object]) -> None:
    """aiohttp refuses a non-http URL with NonHttpUrlClientError; no retry makes it usable, so the send is a
    permanent `config` failure (a dead letter now, not after give_up_after of retries) that quotes no URL."""
    receiver = ReceiverConfig.model_validate({"name": "team", **config})
    async with aiohttp.ClientSession() as session:
        channel = build_channel(receiver, Templates(TEMPLATES), session)
        exc = await outcome_of(channel.send(notification("firing-poddown", "team")))
    assert_outcome(exc, Expected(PERMANENT, Reason.CONFIG))
    assert_leaks_no_secret(shown(exc), [FTP, SECRET])
