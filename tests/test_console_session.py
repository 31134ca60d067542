"""The console's session cookie and CSRF token (relay.console.session), and the rules pages apply with them."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest

from relay.console import session
from tests.helpers import relay_settings, repo_routes, running_relay

KEY = session.session_key("the-admin-token")
NOW = 1_800_000_000.0


def test_a_session_reads_back_with_its_role_until_it_expires() -> None:
    for role in ("admin", "viewer"):
        value = session.issue(KEY, role, NOW, lifetime=60)
        found = session.read(KEY, value, NOW + 59)
        assert found is not None and found.role == role and found.admin == (role == "admin")
        assert session.read(KEY, value, NOW + 60) is None  # expired
    assert "the-admin-token" not in session.issue(KEY, "admin", NOW)


def test_a_tampered_or_foreign_cookie_is_no_session() -> None:
    value = session.issue(KEY, "viewer", NOW)
    body, signature = value.split(".")
    fields = json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
    promoted = base64.urlsafe_b64encode(json.dumps({**fields, "r": "admin"}).encode()).rstrip(b"=").decode()
    extended = base64.urlsafe_b64encode(json.dumps({**fields, "e": NOW * 2}).encode()).rstrip(b"=").decode()
    flipped = signature[:5] + ("B" if signature[5] == "A" else "A") + signature[6:]  # one character of it changed
    for forged in (f"{promoted}.{signature}", f"{extended}.{signature}", f"{body}.{flipped}", body, "",
                   f"{body}.{signature}.x", "a.b"):
        assert session.read(KEY, forged, NOW) is None, forged
    assert session.read(session.session_key("another-token"), value, NOW) is None  # the token changed: signed out
    assert session.read(KEY, value, NOW) is not None


def test_the_csrf_token_belongs_to_its_session() -> None:
    one = session.read(KEY, session.issue(KEY, "admin", NOW), NOW)
    two = session.read(KEY, session.issue(KEY, "admin", NOW), NOW)
    assert one is not None and two is not None
    token = session.csrf_token(KEY, one)
    assert session.csrf_ok(KEY, one, token)
    assert not session.csrf_ok(KEY, two, token) and not session.csrf_ok(KEY, one, None)
    assert not session.csrf_ok(session.session_key("another-token"), one, token)


def test_a_token_signs_in_as_its_role() -> None:
    assert session.role_of("adm ", "adm", "view") == "admin"
    assert session.role_of("view", "adm", "view") == "viewer"
    assert session.role_of("nope", "adm", "view") is None
    assert session.role_of("", "adm", None) is None


@pytest.mark.parametrize("proto", ["http", "https"])
async def test_pages_behind_tls_get_a_secure_cookie_and_a_viewer_changes_nothing(tmp_path: Path, proto: str) -> None:
    settings = relay_settings(tmp_path, repo_routes(tmp_path), webhook_token="w-token", admin_token="a-token",
                              viewer_token="v-token")
    async with running_relay(settings) as relay:
        answer = await relay.client.post("/sign-in", data={"token": "v-token"}, headers={"X-Forwarded-Proto": proto})
        cookie = answer.headers["set-cookie"]
        assert "HttpOnly" in cookie and "SameSite=strict" in cookie and ("Secure" in cookie) == (proto == "https")
        relay.client.cookies.clear()  # httpx keeps a Secure cookie for https only: send it as the browser would
        headers = {"Cookie": cookie.split(";")[0]}
        page = await relay.client.get("/dead-letters", headers=headers)
        assert page.status_code == 200 and "Retry" not in page.text
        csrf = page.text.split('name="csrf" value="')[1].split('"')[0]
        answer = await relay.client.post("/dead-letters/act", data={"csrf": csrf, "action": "purge", "id": "1"},
                                         headers=headers)
        assert answer.status_code == 403 and "read-only" in answer.text


async def test_with_only_a_webhook_token_the_console_is_closed(tmp_path: Path) -> None:
    settings = relay_settings(tmp_path, repo_routes(tmp_path), webhook_token="w-token")
    async with running_relay(settings) as relay:
        for path in ("/", "/receivers"):
            answer = await relay.client.get(path)
            assert answer.status_code == 403 and "RELAY_ADMIN_TOKEN" in answer.text
        answer = await relay.client.post("/sign-in", data={"token": "w-token"})
        assert answer.status_code == 403 and "set-cookie" not in answer.headers


@pytest.mark.parametrize("same_as", ["admin_token", "webhook_token"])
def test_the_viewer_token_must_be_its_own(tmp_path: Path, same_as: str) -> None:
    tokens = {"admin_token": "a-token", "webhook_token": "w-token", same_as: "v-token"}
    with pytest.raises(ValueError, match="RELAY_VIEWER_TOKEN must differ"):
        relay_settings(tmp_path, repo_routes(tmp_path), viewer_token="v-token", **tokens)
