"""Hostile input at POST /webhook: generated bodies and headers never get a 500 or crash relay, and a refusal
(4xx) changes nothing that is kept; what is accepted is delivered.

Generated requests go through the real Starlette app in-process (httpx's ASGI transport, with relay's lifespan
running its store and dispatcher), which is fast enough for thousands of cases in every CI run.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from relay.alerts.fingerprint import fingerprint
from relay.app import create_app
from tests.fakes.slack import SlackWebhookServer
from tests.helpers import FIXTURES, poll_until, relay_settings
from tests.reliability.conftest import (
    ADMIN_HEADERS,
    ADMIN_TOKEN,
    SLACK_PATH,
    WEBHOOK_TOKEN,
    Exposure,
    Profile,
    record,
)

MAX_BODY = 64 * 1024
REFUSALS = {400, 401, 413, 415}
ROUTES = """\
receivers:
  - name: slack-alerts
    slack:
      webhook_url: ${SLACK_WEBHOOK_URL}
routes:
  - matchers: ['severity="critical"']
    receivers: [slack-alerts]
default_receivers: [slack-alerts]
"""

# -- what a hostile or broken client sends ---------------------------------------------------------------------

FIXTURE_TEXTS = [path.read_text() for path in sorted(FIXTURES.glob("*.json"))]

scalars = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20)
json_values = scalars | st.lists(scalars, max_size=4) | st.dictionaries(st.text(max_size=8), scalars, max_size=4) | \
    st.lists(st.lists(scalars, max_size=2), max_size=2)
label_text = st.text(max_size=30) | st.sampled_from(
    ["", " ", "<!channel>", "*bold*", "&lt;", "${SLACK_WEBHOOK_URL}", "{{ 7*7 }}", "\u202e", "\ud800", "a" * 5000])
labels = st.dictionaries(label_text, label_text, max_size=4)
timestamps = st.sampled_from(["2026-11-26T07:40:12.571836967Z", "0001-01-01T00:00:00Z", "2026-11-26T07:40:12+09:00",
                              "2026-13-45T99:99:99Z", "yesterday", "", "2026-11-26T07:40:12.5Z"])


def _fingerprint(alert_labels: dict[str, str]) -> str:
    try:
        return fingerprint(alert_labels)
    except UnicodeEncodeError:  # a lone surrogate: relay refuses the JSON before it gets this far
        return "x"


@st.composite
def alerts(draw: st.DrawFn) -> dict[str, Any]:
    alert_labels = draw(labels)
    if draw(st.booleans()):
        alert_labels["alertname"] = draw(label_text)
    alert: dict[str, Any] = {
        "status": draw(st.sampled_from(["firing", "resolved", "burning", ""])),
        "labels": alert_labels,
        "annotations": draw(labels),
        "startsAt": draw(timestamps),
        "endsAt": draw(timestamps),
        "generatorURL": draw(st.sampled_from(["", "http://prometheus:9090/graph", "javascript:alert(1)"])),
        "fingerprint": draw(st.sampled_from([_fingerprint(alert_labels), "", "x"])),
    }
    for key in draw(st.sets(st.sampled_from(sorted(alert)), max_size=2)):
        alert[key] = draw(json_values) if draw(st.booleans()) else alert.pop(key)
    return alert


@st.composite
def webhooks(draw: st.DrawFn) -> dict[str, Any]:
    """Alertmanager-shaped bodies, some valid, most subtly not."""
    base = json.loads(draw(st.sampled_from(FIXTURE_TEXTS)))
    base["alerts"] = draw(st.lists(alerts(), max_size=3)) if draw(st.booleans()) else base["alerts"]
    for key in draw(st.sets(st.sampled_from(sorted(base)), max_size=3)):
        if draw(st.booleans()):
            base[key] = draw(json_values)
        else:
            del base[key]
    return base


def encode(value: Any, ascii_only: bool) -> bytes:
    return json.dumps(value, ensure_ascii=ascii_only, allow_nan=True).encode("utf-8", "surrogatepass")


bodies = st.one_of(
    st.builds(encode, webhooks(), st.booleans()),
    st.builds(encode, json_values, st.booleans()),
    st.binary(max_size=512),
    st.builds(lambda n: b'{"version": "4", "pad": "' + b"x" * n + b'"}', st.integers(MAX_BODY - 64, MAX_BODY + 64)),
)
header_text = st.text(st.characters(min_codepoint=0x20, max_codepoint=0xFF), max_size=60)
content_types = st.sampled_from(["application/json", "application/json; charset=utf-8", "APPLICATION/JSON",
                                 "application/vnd.alertmanager+json", "text/plain", "", "multipart/form-data",
                                 "application/json; charset=latin-1"]) | header_text
authorizations = st.sampled_from([f"Bearer {WEBHOOK_TOKEN}", f"bearer  {WEBHOOK_TOKEN} ", f"Bearer {WEBHOOK_TOKEN}x",
                                  "Bearer ", "Basic " + WEBHOOK_TOKEN, ""]) | header_text


@st.composite
def requests(draw: st.DrawFn) -> tuple[dict[str, bytes], bytes]:
    headers: dict[str, bytes] = {}
    if draw(st.integers(0, 9)):  # mostly authorized, so the parser is what gets tested
        headers["authorization"] = f"Bearer {WEBHOOK_TOKEN}".encode()
    else:
        headers["authorization"] = draw(authorizations).encode("latin-1")
    if draw(st.integers(0, 9)):
        headers["content-type"] = b"application/json"
    elif draw(st.booleans()):
        headers["content-type"] = draw(content_types).encode("latin-1")
    if not draw(st.integers(0, 19)):
        headers["content-length"] = draw(st.sampled_from(["-1", "abc", "99999999999999999999", "0", " 12"])).encode()
    for _ in range(draw(st.integers(0, 2))):
        headers[draw(st.sampled_from(["x-forwarded-for", "accept", "x-junk", "transfer-encoding"]))] = \
            draw(header_text).encode("latin-1")
    return headers, draw(bodies)


# -- relay under test -------------------------------------------------------------------------------------------

class Kept:
    """What the outbox holds that a refused request must not change: notifications and dedup marks."""

    def __init__(self, database: Path) -> None:
        self.db = sqlite3.connect(f"file:{database}?mode=ro", uri=True, isolation_level=None)

    def snapshot(self) -> tuple[Any, ...]:
        return (*self.db.execute("SELECT count(*), max(id) FROM notifications").fetchone(),
                *self.db.execute("SELECT count(*), total(notified_at) FROM dedup").fetchone())


def test_generated_webhooks_never_500_and_refusals_change_nothing(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, profile: Profile, exposure: Exposure) -> None:
    outcomes: Counter[int] = Counter()
    routes = tmp_path / "routes.yaml"
    routes.write_text(ROUTES)
    with asyncio.Runner() as runner:  # one loop for relay, Slack and every generated request
        slack = SlackWebhookServer()
        runner.run(slack.start())
        monkeypatch.setenv("SLACK_WEBHOOK_URL", slack.url(SLACK_PATH))
        monkeypatch.setenv("RELAY_WEBHOOK_TOKEN", WEBHOOK_TOKEN)
        monkeypatch.setenv("RELAY_ADMIN_TOKEN", ADMIN_TOKEN)
        app = create_app(relay_settings(tmp_path, routes, max_body_bytes=MAX_BODY))
        lifespan = app.router.lifespan_context(app)
        runner.run(lifespan.__aenter__())
        client = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://relay")
        kept = Kept(tmp_path / "relay.db")
        try:
            @settings(max_examples=profile.hostile_examples, deadline=None, database=None,
                      suppress_health_check=list(HealthCheck))
            @given(request=requests())
            def one(request: tuple[dict[str, bytes], bytes]) -> None:
                headers, body = request
                before = kept.snapshot()
                answer = runner.run(client.post("/webhook", content=body, headers=headers))
                outcomes[answer.status_code] += 1
                assert answer.status_code == 200 or answer.status_code in REFUSALS, (answer.status_code, answer.text)
                if answer.status_code != 200:
                    assert kept.snapshot() == before, answer.text
                    exposure.add("error body", answer.text)
                    assert answer.json()["error"]  # says what is wrong

            one()
            accepted = kept.snapshot()[0]
            runner.run(poll_until(lambda: _all_delivered(client), timeout=60))
            metrics = runner.run(client.get("/metrics")).text
            history = runner.run(client.get("/api/v1/notifications", params={"limit": "1000"},
                                            headers=ADMIN_HEADERS)).text
        finally:
            kept.db.close()
            runner.run(client.aclose())
            runner.run(lifespan.__aexit__(None, None, None))
            runner.run(slack.stop())
    exposure.add("metrics", metrics)
    exposure.add("history", history)
    record("hostile webhooks", examples=sum(outcomes.values()), **{f"answered_{k}": v for k, v in
                                                                    sorted(outcomes.items())},
           notifications_accepted=accepted, slack_messages=len(slack.messages), answered_500=outcomes[500])
    assert sum(outcomes.values()) >= profile.hostile_examples * 0.9
    assert outcomes[200] > 0 and all(outcomes[code] > 0 for code in (400, 401, 413, 415))  # every path was tried
    assert len(slack.messages) == accepted  # whatever was accepted was deliverable


async def _all_delivered(client: httpx.AsyncClient) -> bool:
    answer = await client.get("/api/v1/notifications", params={"limit": "1000"},
                              headers=ADMIN_HEADERS)
    return all(row["state"] == "delivered" for row in answer.json()["notifications"])

