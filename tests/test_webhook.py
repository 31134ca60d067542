"""POST /webhook: what Alertmanager (or a careless client) gets back, and that refusals change nothing."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import fixture, relay_settings, repo_routes, running_relay

TOKEN = "webhook-token-SECRET-123"
ADMIN = "admin-token-SECRET-456"


def settings(tmp_path: Path, **overrides: Any):  # type: ignore[no-untyped-def]
    return relay_settings(tmp_path, repo_routes(tmp_path), **{"webhook_token": TOKEN, "admin_token": ADMIN,
                                                              "max_body_bytes": 64 * 1024, **overrides})


async def test_accepted_webhook_answers_summary_per_receiver(tmp_path: Path) -> None:
    async with running_relay(settings(tmp_path)) as relay:
        answer = await relay.post(fixture("firing-poddown.json"), token=TOKEN)
        assert answer.status_code == 200
        body = answer.json()
        assert body["status"] == "accepted"
        assert body["notifications_enqueued"] == 3
        assert set(body["receivers"]) == {"slack-alerts", "ops-email", "pagerduty-oncall"}
        assert all(r["enqueued"] == 1 and r["deduplicated"] == 0 for r in body["receivers"].values())


async def test_same_webhook_twice_is_deduplicated(tmp_path: Path) -> None:
    async with running_relay(settings(tmp_path)) as relay:
        await relay.post(fixture("firing-highlatency-group2.json"), token=TOKEN)
        again = (await relay.post(fixture("firing-highlatency-group2.json"), token=TOKEN)).json()
        assert again["notifications_enqueued"] == 0
        assert again["receivers"]["slack-alerts"] == {"notification_id": None, "enqueued": 0, "deduplicated": 2}
        assert len(await relay.history()) == 1


def _without(field: str) -> dict[str, Any]:
    body = fixture("firing-poddown.json")
    del body[field]
    return body


def _alert_without(field: str) -> dict[str, Any]:
    body = fixture("firing-poddown.json")
    del body["alerts"][0][field]
    return body


JSON = {"content-type": "application/json"}
CASES = [
    ("malformed json", {"content": b'{"version": "4", "alerts": [', "headers": JSON},
     400, "malformed JSON: EOF while parsing a list at line 1"),
    ("not an object", {"content": b"[1, 2]", "headers": JSON}, 400,
     "expected a JSON object"),
    ("wrong version", {"json": {**fixture("firing-poddown.json"), "version": "3"}}, 400, 'version: expected "4"'),
    ("missing groupKey", {"json": _without("groupKey")}, 400, "groupKey: Field required"),
    ("missing alerts", {"json": _without("alerts")}, 400, "alerts: Field required"),
    ("empty alerts", {"json": {**fixture("firing-poddown.json"), "alerts": []}}, 400, "alerts: List should have"),
    ("alert without fingerprint", {"json": _alert_without("fingerprint")}, 400, "alerts.0.fingerprint: Field required"),
    ("bad startsAt", {"json": {**fixture("firing-poddown.json"),
                               "alerts": [{**fixture("firing-poddown.json")["alerts"][0], "startsAt": "yesterday"}]}},
     400, "alerts.0.startsAt: must be an RFC 3339 timestamp"),
    ("deep nesting", {"content": b'{"version": "4", "x": ' + b"[" * 5000 + b"]" * 5000 + b"}", "headers": JSON}, 400,
     "malformed JSON: recursion limit exceeded"),
    ("huge number", {"content": b'{"version": "4", "x": ' + b"1" * 5000 + b"}", "headers": JSON}, 400,
     "malformed JSON: number out of range"),
    ("lone surrogate", {"content": b'{"version": "4", "groupKey": "\\ud800"}', "headers": JSON}, 400,
     "malformed JSON"),
    ("bad status", {"json": {**fixture("firing-poddown.json"), "status": "burning"}}, 400, "status: Input should be"),
    ("invalid utf-8", {"content": b'{"version": "4", "x": "\xff\xfe"}', "headers": JSON},
     400, "malformed JSON: invalid unicode code point"),
    ("not json", {"content": b"alert!", "headers": {"content-type": "text/plain"}}, 415, "expected Content-Type"),
    ("too large", {"content": json.dumps({"pad": "x" * 70000}).encode(), "headers": JSON},
     413, "over the limit of 65536 bytes"),
]


@pytest.mark.parametrize(("name", "request_kwargs", "status", "message"), CASES, ids=[c[0] for c in CASES])
async def test_bad_input_is_refused_with_a_reason_and_changes_nothing(
        tmp_path: Path, name: str, request_kwargs: dict[str, Any], status: int, message: str) -> None:
    async with running_relay(settings(tmp_path)) as relay:
        headers = {"Authorization": f"Bearer {TOKEN}", **request_kwargs.pop("headers", {})}
        answer = await relay.client.post("/webhook", headers=headers, **request_kwargs)
        assert answer.status_code == status, answer.text
        assert message in answer.json()["error"]
        assert await relay.history() == []
        # Nothing was marked as notified either: the real webhook still goes through.
        assert (await relay.post(fixture("firing-poddown.json"), token=TOKEN)).json()["notifications_enqueued"] == 3


@pytest.mark.parametrize(("header", "message"), [
    (None, "missing bearer token"),
    ("Bearer wrong-token", "invalid bearer token"),
    (f"Basic {TOKEN}", "missing bearer token"),
])
async def test_wrong_or_missing_token_is_401(tmp_path: Path, header: str | None, message: str) -> None:
    async with running_relay(settings(tmp_path)) as relay:
        headers = {"Authorization": header} if header else {}
        answer = await relay.client.post("/webhook", json=fixture("firing-poddown.json"), headers=headers)
        assert answer.status_code == 401
        assert answer.json()["error"].startswith(message)
        assert TOKEN not in answer.text
        assert await relay.history() == []


async def test_body_over_limit_without_content_length_is_413(tmp_path: Path) -> None:
    async def chunks():  # type: ignore[no-untyped-def]
        for _ in range(20):
            yield b"x" * 8192

    async with running_relay(settings(tmp_path)) as relay:
        answer = await relay.client.post("/webhook", content=chunks(), headers={
            "Authorization": f"Bearer {TOKEN}", "content-type": "application/json"})
        assert answer.status_code == 413
        assert await relay.history() == []


async def test_store_that_cannot_commit_answers_503(tmp_path: Path) -> None:
    async with running_relay(settings(tmp_path)) as relay:
        await relay.app.state.services.store.close()
        answer = await relay.post(fixture("firing-poddown.json"), token=TOKEN)
        assert answer.status_code == 503
        assert answer.headers["retry-after"] == "5"
        assert "store unavailable" in answer.json()["error"]
        await relay.app.state.services.store.open()
        assert await relay.history() == []


async def test_newer_alertmanager_fields_are_accepted(tmp_path: Path) -> None:
    body = fixture("firing-poddown.json")
    body["notification_reason"] = "new_alerts"
    body["routeLabels"] = {"team": "api"}
    body["alerts"][0]["newField"] = 1
    async with running_relay(settings(tmp_path)) as relay:
        assert (await relay.post(body, token=TOKEN)).status_code == 200


async def test_metrics_and_health(tmp_path: Path) -> None:
    async with running_relay(settings(tmp_path)) as relay:
        await relay.post(fixture("firing-poddown.json"), token=TOKEN)
        await relay.client.post("/webhook", content=b"{", headers={"content-type": "application/json"})
        assert (await relay.client.get("/healthz")).status_code == 200
        assert (await relay.client.get("/readyz")).text == "ready\n"
        text = (await relay.client.get("/metrics")).text
        assert 'relay_webhook_requests_total{code="200"}' in text
        assert 'relay_webhook_requests_total{code="401"}' in text
        assert 'relay_alerts_received_total{status="firing"}' in text
        assert 'relay_notifications_total{integration="pagerduty",receiver="pagerduty-oncall"}' in text
        assert "relay_outbox_pending{" in text
        assert "relay_config_last_reload_successful 1.0" in text
        assert TOKEN not in text


async def test_admin_api_checks_its_input(tmp_path: Path) -> None:
    async with running_relay(settings(tmp_path)) as relay:
        assert (await relay.admin("GET", "/api/v1/notifications?ids=99999999999999999999999")).status_code == 400
        assert (await relay.admin("POST", "/api/v1/dead-letters/99999999999999999999999/retry")).status_code == 400
        for limit in ("-1", "0", "1001", "x"):
            answer = await relay.admin("GET", f"/api/v1/notifications?limit={limit}")
            assert answer.status_code == 400 and "limit 1 to 1000" in answer.json()["error"]


async def test_body_too_slow_to_arrive_is_408_and_closes(tmp_path: Path) -> None:
    async with running_relay(settings(tmp_path, request_read_timeout_seconds=0.5)) as relay:
        reader, writer = await asyncio.open_connection("127.0.0.1", int(relay.url.rsplit(":", 1)[1]))
        writer.write(f"POST /webhook HTTP/1.1\r\nHost: relay\r\nAuthorization: Bearer {TOKEN}\r\n"
                     "Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n{".encode())
        await writer.drain()  # ...and the other 999 bytes never come
        answer = (await asyncio.wait_for(reader.read(), 10)).decode()  # read() to EOF: relay closed it
        writer.close()
        assert answer.startswith("HTTP/1.1 408") and "connection: close" in answer.lower()
        assert "did not arrive within" in answer
        assert await relay.history() == []


async def test_a_configured_token_with_a_trailing_newline_still_matches(tmp_path: Path) -> None:
    """A Kubernetes Secret made with `echo tok | kubectl create secret …` holds "tok\\n"; Alertmanager trims its
    credentials file and sends "tok", so relay trims its configured token too."""
    async with running_relay(settings(tmp_path, webhook_token=f"{TOKEN}\n")) as relay:
        assert (await relay.post(fixture("firing-poddown.json"), token=TOKEN)).status_code == 200
        assert (await relay.post(fixture("firing-poddown.json"), token=TOKEN + "x")).status_code == 401
