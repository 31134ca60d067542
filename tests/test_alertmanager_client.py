"""relay.actions.alertmanager against a local server answering as Alertmanager's API v2 does: what is sent (auth, the
silence's body, the filter), and how answers are classified, with no secret in any error text."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import aiohttp
import pytest
from aiohttp import web
from pydantic import SecretStr

from relay.actions.alertmanager import AlertmanagerClient, base_url, equal_matchers
from relay.config.receivers import AlertmanagerApi
from relay.config.routes import load_routes
from relay.errors import ConfigError, PermanentDeliveryError, Reason, TransientDeliveryError
from relay.templating import Templates

TOKEN = "am-bearer-SECRET-0123456789"


class Alertmanager:
    def __init__(self) -> None:
        self.seen: list[tuple[str, str, dict[str, str], Any]] = []
        self.answer: tuple[int, Any] | None = None
        self.headers: dict[str, str] = {}

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.text()
        self.seen.append((request.method, request.path_qs, dict(request.headers), json.loads(body) if body else None))
        if self.answer is not None:
            status, payload = self.answer
            return web.Response(status=status, text=payload if isinstance(payload, str) else json.dumps(payload),
                                headers=self.headers)
        if request.method == "POST":
            return web.json_response({"silenceID": "5e1"})
        if request.path == "/api/v2/alerts":
            return web.json_response([{"fingerprint": "f1", "labels": {}, "status": {"state": "suppressed",
                                                                                     "silencedBy": ["5e1"]}}])
        return web.json_response([])


@pytest.fixture
async def am() -> AsyncIterator[tuple[Alertmanager, str]]:
    fake = Alertmanager()
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", fake.handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    yield fake, f"http://127.0.0.1:{runner.addresses[0][1]}"
    await runner.cleanup()


async def test_a_silence_is_posted_with_every_label_and_the_bearer_token(am: tuple[Alertmanager, str]) -> None:
    fake, url = am
    start = datetime(2026, 12, 1, 13, 0, tzinfo=UTC)
    async with aiohttp.ClientSession() as session:
        client = AlertmanagerClient(session, url, AlertmanagerApi(bearer_token=SecretStr(TOKEN)))
        labels = {"alertname": "PodDown", "pod": 'a"b\\c'}
        assert await client.create_silence(equal_matchers(labels), start, start + timedelta(hours=1), "kim",
                                           "why") == "5e1"
        assert await client.alert_state(labels, "f1") == "suppressed"
        assert await client.alert_state(labels, "other") is None
    method, path, headers, body = fake.seen[0]
    assert (method, path) == ("POST", "/api/v2/silences")
    assert headers["Authorization"] == f"Bearer {TOKEN}"
    assert body == {"matchers": [{"name": "alertname", "value": "PodDown", "isRegex": False, "isEqual": True},
                                 {"name": "pod", "value": 'a"b\\c', "isRegex": False, "isEqual": True}],
                    "startsAt": "2026-12-01T13:00:00+00:00", "endsAt": "2026-12-01T14:00:00+00:00",
                    "createdBy": "kim", "comment": "why"}
    _, query, _, _ = fake.seen[1]
    assert "filter=alertname%3D%22PodDown%22" in query and "filter=pod%3D%22a%5C%22b%5C%5Cc%22" in query


@pytest.mark.parametrize(("status", "kind", "reason"), [
    (400, PermanentDeliveryError, Reason.CLIENT_ERROR),
    (401, PermanentDeliveryError, Reason.AUTH),
    (429, TransientDeliveryError, Reason.RATE_LIMITED),
    (500, TransientDeliveryError, Reason.SERVER_ERROR),
    (503, TransientDeliveryError, Reason.SERVER_ERROR),
])
async def test_answers_are_classified_and_never_quote_the_token(am: tuple[Alertmanager, str], status: int,
                                                                kind: type[Exception], reason: Reason) -> None:
    fake, url = am
    fake.answer = (status, f"refused, you sent Bearer {TOKEN}")
    async with aiohttp.ClientSession() as session:
        client = AlertmanagerClient(session, url, AlertmanagerApi(bearer_token=SecretStr(TOKEN)))
        with pytest.raises(kind) as raised:
            await client.create_silence([], datetime.now(UTC), datetime.now(UTC), "kim", "")
    assert raised.value.reason is reason  # type: ignore[attr-defined]
    assert TOKEN not in str(raised.value) and f"HTTP {status}" in str(raised.value)


@pytest.mark.parametrize("answer", [(500, '"silence not found"\n'), (404, "silence not found")])
async def test_an_expired_and_forgotten_silence_is_no_failure(am: tuple[Alertmanager, str],
                                                             answer: tuple[int, str]) -> None:
    """Alertmanager 0.25 answers a silence it does not know with 500 "silence not found" (later ones 404)."""
    fake, url = am
    fake.answer = answer
    async with aiohttp.ClientSession() as session:
        assert await AlertmanagerClient(session, url, AlertmanagerApi()).expire_silence("5e1") is False
    assert fake.seen[0][:2] == ("DELETE", "/api/v2/silence/5e1")
    fake.answer = (500, "internal error")
    async with aiohttp.ClientSession() as session:
        with pytest.raises(TransientDeliveryError):
            await AlertmanagerClient(session, url, AlertmanagerApi()).expire_silence("5e1")


async def test_an_unreachable_alertmanager_is_transient_and_no_url_is_permanent() -> None:
    async with aiohttp.ClientSession() as session:
        client = AlertmanagerClient(session, "http://127.0.0.1:9", AlertmanagerApi())
        with pytest.raises(TransientDeliveryError) as unreachable:
            await client.silences()
        # The channels' one table (relay.channels.http) classifies it, and the detail says whom relay called.
        assert unreachable.value.reason is Reason.CONNECTION
        assert unreachable.value.detail.startswith("Alertmanager: ")
        with pytest.raises(PermanentDeliveryError) as unusable:  # no retry makes an ftp:// URL callable
            await AlertmanagerClient(session, "ftp://127.0.0.1:9", AlertmanagerApi()).silences()
        assert unusable.value.reason is Reason.CONFIG
    with pytest.raises(PermanentDeliveryError):
        base_url("", AlertmanagerApi())
    assert base_url("http://am:9093", AlertmanagerApi(url="http://other:9093/prefix/")) == "http://other:9093/prefix"


def test_a_webhook_never_chooses_where_the_credentials_go() -> None:
    """The receiver's url wins over any externalURL; without it only an allow-listed externalURL is used, compared by
    scheme, host, port and path, never by text (a user part, a longer host name, another port are other hosts)."""
    configured = AlertmanagerApi(url="http://am.monitoring:9093", bearer_token=SecretStr(TOKEN))
    assert base_url("http://evil.example:9093", configured) == "http://am.monitoring:9093"
    listed = AlertmanagerApi(external_urls=["https://am.example.com", "http://am-1:9093/am"],
                             bearer_token=SecretStr(TOKEN))
    assert base_url("https://AM.example.com/", listed) == "https://AM.example.com"
    assert base_url("https://am.example.com:443/alertmanager", listed) == "https://am.example.com:443/alertmanager"
    assert base_url("http://am-1:9093/am/", listed) == "http://am-1:9093/am"
    for foreign in ("http://evil.example", "https://am.example.com.evil.example", "https://am.example.com@evil.example",
                    "https://evil.example/?https://am.example.com", "http://am.example.com", "https://am.example.com:8443",
                    "http://am-1:9093/amx", "http://am-1:9093", "ftp://am.example.com", "", "not a url"):
        with pytest.raises(PermanentDeliveryError) as refused:
            base_url(foreign, listed)
        assert refused.value.reason is Reason.CONFIG and TOKEN not in str(refused.value)
        with pytest.raises(PermanentDeliveryError):
            base_url(foreign, AlertmanagerApi())


@pytest.mark.parametrize("escape", ["/team-a/../team-b", "/team-a/%2e%2e/team-b", "/team-a/%2E./team-b",
                                    "/team-a/..%2fteam-b", "/team-a/./../team-b", "/team-a/..", "/team-a/\\../team-b"])
async def test_an_external_url_cannot_leave_the_allowed_path_through_dot_segments(
        am: tuple[Alertmanager, str], escape: str) -> None:
    """One gateway, an Alertmanager per team under its own path: team A's allow-list names only /team-a. The HTTP
    client resolves dot segments (`/team-a/../team-b` is requested as `/team-b`), so a webhook naming one sent team
    A's token to team B's Alertmanager and believed its answers. Refused like any foreign externalURL."""
    fake, url = am
    listed = AlertmanagerApi(external_urls=[f"{url}/team-a"], bearer_token=SecretStr(TOKEN))
    assert base_url(f"{url}/team-a/", listed) == f"{url}/team-a"
    with pytest.raises(PermanentDeliveryError) as refused:
        base_url(url + escape, listed)
    assert refused.value.reason is Reason.CONFIG and TOKEN not in str(refused.value)
    async with aiohttp.ClientSession() as session:  # what the unchecked text would have reached
        await AlertmanagerClient(session, url + "/team-a/../team-b", listed).silences()
    assert [(method, path.split("?")[0], headers["Authorization"]) for method, path, headers, _ in fake.seen] == [
        ("GET", "/team-b/api/v2/silences", f"Bearer {TOKEN}")]


@pytest.mark.parametrize(("alertmanager", "line", "says"), [
    ("", 7, "actions need alertmanager.url"),
    ("        alertmanager: {url: '${AM_URL:-}', bearer_token: t0ken}\n", 7, "actions need alertmanager.url"),
    ("        alertmanager: {external_urls: ['http://user@am:9093']}\n", 8, "without user, query or fragment"),
])
def test_actions_without_a_configured_alertmanager_are_refused_at_load(tmp_path: Path, alertmanager: str, line: int,
                                                                       says: str) -> None:
    routes = tmp_path / "routes.yaml"
    routes.write_text(f"""receivers:
  - name: slack-bot
    slack:
      token: xoxb-1
      channel: C0123ABCD
      actions:
        team_id: T0123ABCD
{alertmanager}default_receivers: [slack-bot]
""")
    with pytest.raises(ConfigError) as refused:
        load_routes(routes, Templates(), {})
    assert str(refused.value).startswith(f"{routes}:{line}: ") and says in str(refused.value)
    assert "t0ken" not in str(refused.value)


@pytest.mark.parametrize(("name", "sent"), [
    ("pod", 'pod="a\\"b"'),
    ("service.name", '"service.name"="a\\"b"'),  # Alertmanager 0.27+ UTF-8 names: quoted, as its parser reads them
    ("team name", '"team name"="a\\"b"'),  # unquoted, the space would end the name
    ('a="x",b', '"a=\\"x\\",b"="a\\"b"'),  # unquoted, another matcher: quoted and escaped, one name
    ("9lives", '"9lives"="a\\"b"'),
])
async def test_the_filter_quotes_names_that_are_not_classic_identifiers(am: tuple[Alertmanager, str], name: str,
                                                                       sent: str) -> None:
    fake, url = am
    async with aiohttp.ClientSession() as session:
        await AlertmanagerClient(session, url, AlertmanagerApi()).alert_state({name: 'a"b'}, "f1")
    [(_, query, _, _)] = fake.seen
    assert parse_qs(urlsplit(query).query)["filter"] == [sent]


async def test_uptime_is_read_by_alertmanagers_own_clock(am: tuple[Alertmanager, str]) -> None:
    """A skewed clock cannot make a just-restarted Alertmanager look old: its Date header is the reference."""
    fake, url = am
    fake.headers = {"Date": "Tue, 08 Dec 2026 02:46:11 GMT"}
    fake.answer = (200, {"uptime": "2026-12-08T02:45:41.219Z", "versionInfo": {"version": "0.25.0"}})
    async with aiohttp.ClientSession() as session:
        client = AlertmanagerClient(session, url, AlertmanagerApi())
        assert 29 <= await client.up_for() <= 30  # whatever this machine's clock says
        fake.answer = (200, {"cluster": {}})
        with pytest.raises(TransientDeliveryError):
            await client.up_for()
