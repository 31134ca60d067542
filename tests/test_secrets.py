"""A provider that echoes a secret back in its error (a proxy, a verbose API) must not put it in front of anyone.

Texts are scrubbed before they are cut (relay.channels.base.scrub), in every form a provider may quote them,
and the dispatcher scrubs every failure with the receiver's secrets before history, logs and the CLI see it.
"""

from __future__ import annotations

import base64
import json
import logging
from pathlib import Path
from urllib.parse import quote, quote_plus

import pytest
from hypothesis import given
from hypothesis import strategies as st

from relay.channels.base import DETAIL_LIMIT, scrub
from relay.channels.email import EmailChannel
from relay.errors import PermanentDeliveryError
from relay.templating import Templates
from tests.conftest import Providers
from tests.fakes import notification
from tests.fakes.smtp import SmtpServer
from tests.helpers import TEMPLATES, fixture, poll_until, relay_settings, running_relay
from tests.test_channel_email import USER
from tests.test_channel_email import receiver as email_receiver
from tests.test_cli import run_relay

# Not hex, as PagerDuty's are, so that its URL-encoded and JSON-escaped forms differ from it.
ROUTING_KEY = "pdKey+Sec/ret=Zq81xW4vT9mB2nL7cJ"
ADMIN = "admin-tok-SECRET"


def pieces(secret: str, size: int = 10) -> set[str]:
    return {secret[i:i + size] for i in range(len(secret) - size + 1)}


def leaked(secret: str, text: str) -> list[str]:
    """The 10-character pieces of `secret`, in any of its quoted forms, found in `text`."""
    forms = (secret, quote(secret, safe=""), quote_plus(secret), json.dumps(secret)[1:-1])
    return sorted({piece for form in forms for piece in pieces(form) if piece.lower() in text.lower()})


@given(prefix=st.integers(0, 400), secret=st.text(st.characters(codec="utf-8", exclude_categories=["Cs"]),
                                                  min_size=16, max_size=64).filter(lambda s: s.strip() == s),
       form=st.sampled_from(["raw", "quote", "quote_plus", "json", "json-slash"]))
def test_scrub_removes_every_form_of_a_secret_wherever_the_cut_falls(prefix: int, secret: str, form: str) -> None:
    quoted = {"raw": secret, "quote": quote(secret, safe=""), "quote_plus": quote_plus(secret),
              "json": json.dumps(secret)[1:-1], "json-slash": json.dumps(secret).replace("/", "\\/")[1:-1]}[form]
    text = "x" * prefix + quoted + " and more"
    shown = scrub(text, [secret])
    assert len(shown) <= DETAIL_LIMIT
    around = "x" * prefix + "*** and more"  # what is left when the secret goes; a piece of it is no leak
    assert not [p for p in pieces(quoted) if p in shown and p not in around], shown


async def test_an_echoed_routing_key_reaches_no_history_api_log_or_cli(
        tmp_path: Path, providers: Providers, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    """PagerDuty (or a proxy in front of it) answers 400 quoting the routing key after character 300, and
    URL-encoded: relay used to cut the text at 300 first, keeping the key's first characters."""
    caplog.set_level(logging.DEBUG)
    monkeypatch.setenv("PAGERDUTY_ROUTING_KEY", ROUTING_KEY)
    echo = {"status": "invalid event", "message": "Event object is invalid",
            "errors": ["y" * 265 + f" routing_key {ROUTING_KEY} is not valid", f"key={quote(ROUTING_KEY, safe='')}",
                       json.dumps({"routing_key": ROUTING_KEY})]}
    providers.pagerduty.respond_with(400, echo)
    settings = relay_settings(tmp_path, providers.routes, admin_token=ADMIN)
    async with running_relay(settings) as relay:
        answer = await relay.post(fixture("firing-poddown.json"))
        notification_id = answer.json()["receivers"]["pagerduty-oncall"]["notification_id"]

        async def dead() -> bool:
            return [r["state"] for r in await relay.history(ids=str(notification_id))] == ["dead"]

        await poll_until(dead)
        history = (await relay.admin("GET", "/api/v1/notifications", params={"state": "dead"})).text
        detail = (await relay.admin("GET", f"/api/v1/notifications/{notification_id}")).text
        env = {"RELAY_ADMIN_TOKEN": ADMIN}
        _, listed = await run_relay("dead-letters", "list", "--url", relay.url, env=env)
        _, shown = await run_relay("dead-letters", "show", str(notification_id), "--url", relay.url, env=env)
        metrics = (await relay.client.get("/metrics")).text
    assert "events refused; first: HTTP 400: yyy" in history  # the provider's answer is still there to read
    for where, text in (("history", history), ("detail", detail), ("dead-letters list", listed),
                        ("dead-letters show", shown), ("log", caplog.text), ("metrics", metrics)):
        assert leaked(ROUTING_KEY, text) == [], where


async def test_an_smtp_reply_quoting_the_password_after_the_cut_leaks_none_of_it() -> None:
    """A server's reply that quotes the password (plain, URL-encoded, base64 as AUTH LOGIN sent it) near the
    200-character cut: relay used to cut first, keeping the password's first characters."""
    password = "Sm7p/Pass+word=Secret42"
    encoded = base64.b64encode(password.encode()).decode()
    echo = f"554 5.7.1 {'z' * 160} rejected for {password} ({quote(password, safe='')}, {encoded})"
    async with SmtpServer(require_starttls=True, auth={USER: password}) as smtp:
        smtp.fail_next(echo, "DATA")
        channel = EmailChannel(email_receiver(smarthost=smtp.smarthost, require_tls=True, tls_ca_file=smtp.ca_file,
                                              auth_username=USER, auth_password=password), Templates(TEMPLATES))
        with pytest.raises(PermanentDeliveryError) as caught:
            await channel.send(notification("firing-poddown"))
    assert caught.value.detail.startswith("554 5.7.1 zzz")
    assert leaked(password, str(caught.value)) == [] and leaked(encoded, str(caught.value)) == []
