"""PagerDuty channel against a local Events API v2 (tests/fakes/pagerduty.py speaks the documented API)."""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from relay.channels.pagerduty import PagerDutyChannel, build_events, dedup_key
from relay.config.receivers import ReceiverConfig
from relay.errors import PermanentDeliveryError, Reason, TransientDeliveryError
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
from tests.fakes import REFUSED, STALL, UNTRUSTED, Answer, notification, webhook_message
from tests.fakes.pagerduty import PagerDutyServer, problems
from tests.helpers import RunningRelay, poll_until, relay_settings, running_relay

ROUTING_KEY = "R0UT1NGKEYSECRET0000000000000042"


@pytest.fixture
async def pd() -> AsyncIterator[PagerDutyServer]:
    async with PagerDutyServer(routing_keys={ROUTING_KEY}) as server:
        yield server


def receiver(url: str, **config: Any) -> ReceiverConfig:
    return ReceiverConfig.model_validate(
        {"name": "oncall", "pagerduty": {"routing_key": ROUTING_KEY, "url": url, **config}})


@pytest.fixture
async def channel(pd: PagerDutyServer, templates: Templates,
                  session: aiohttp.ClientSession) -> AsyncIterator[PagerDutyChannel]:
    sender = PagerDutyChannel(receiver(pd.url), templates, session, timeout=5.0)
    yield sender
    await sender.close()


# A library's masked form of the key (`****0042`, its last four characters): not shown either.
MASKED = ["*" + ROUTING_KEY[-4:], ROUTING_KEY[-4:] + " "]

# The Events API's answers -> outcome (the fake's documented bodies for each status).
TABLE = [
    contract_case(Answer(202), Expected(OK), id="202-ok"),
    contract_case(Answer(400), Expected(PERMANENT, Reason.CLIENT_ERROR), id="400-invalid-event"),
    contract_case(Answer(401), Expected(PERMANENT, Reason.AUTH), id="401"),
    contract_case(Answer(403), Expected(PERMANENT, Reason.AUTH), id="403"),
    contract_case(Answer(404), Expected(PERMANENT, Reason.NOT_FOUND), id="404"),
    contract_case(Answer(429, None, {"Retry-After": "30"}), Expected(TRANSIENT, Reason.RATE_LIMITED, 30.0),
                  id="429-retry-after"),
    contract_case(Answer(429), Expected(TRANSIENT, Reason.RATE_LIMITED), id="429-no-retry-after"),
    contract_case(Answer(500), Expected(TRANSIENT, Reason.SERVER_ERROR), id="500"),
    contract_case(Answer(502), Expected(TRANSIENT, Reason.SERVER_ERROR), id="502"),
    contract_case(Answer(503), Expected(TRANSIENT, Reason.SERVER_ERROR), id="503"),
    contract_case(REFUSED, Expected(TRANSIENT, Reason.CONNECTION), id="connection-refused"),
    contract_case(STALL, Expected(TRANSIENT, Reason.TIMEOUT), id="timeout"),
    # Retried (relay.channels.http's table, as every HTTP channel), where email's untrusted certificate is final.
    contract_case(UNTRUSTED, Expected(TRANSIENT, Reason.TLS), id="untrusted-certificate"),
]


@pytest.mark.parametrize(("answer", "expected"), TABLE)
async def test_provider_answers_map_to_outcomes(
    pd: PagerDutyServer, templates: Templates, session: aiohttp.ClientSession, caplog: pytest.LogCaptureFixture,
    answer: Answer | str, expected: Expected,
) -> None:
    caplog.set_level(logging.DEBUG)
    async with pd.answering(answer) as base_url:
        sender = PagerDutyChannel(receiver(base_url + "/v2/enqueue"), templates, session,
                                  timeout=0.2 if answer == STALL else 5.0)
        try:
            exc = await outcome_of(sender.send(notification("firing-poddown", "oncall", "pagerduty")))
        finally:
            await sender.close()

    assert_outcome(exc, expected)
    if exc is None:
        [event] = pd.events
        assert event["routing_key"] == ROUTING_KEY
    else:
        assert pd.events == []
    pd.recover()
    texts = shown(exc, caplog.text)
    assert_leaks_no_secret(texts, [ROUTING_KEY])
    assert_leaks_no_secret(texts, MASKED, fragment=None)


async def test_an_invalid_event_is_refused_by_the_fake_like_the_real_api(pd: PagerDutyServer) -> None:
    assert problems({"routing_key": ROUTING_KEY, "event_action": "trigger", "payload": {"summary": "x"}}, None) == [
        "'payload.source' is missing or blank",
        "'payload.severity' is missing or invalid (must be one of: critical, error, warning, info)",
    ]
    assert problems({"routing_key": ROUTING_KEY, "event_action": "resolve"}, None) == [
        "'dedup_key' is required for event_action resolve"]


async def test_a_group_of_two_pages_twice_and_resolves_the_same_incidents(
    pd: PagerDutyServer, channel: PagerDutyChannel
) -> None:
    await channel.send(notification("firing-highlatency-group2", "oncall", "pagerduty"))
    triggers = await pd.wait_for(2)
    assert [e["event_action"] for e in triggers] == ["trigger", "trigger"]
    assert triggers[0]["dedup_key"] != triggers[1]["dedup_key"]
    assert set(pd.open_incidents()) == {e["dedup_key"] for e in triggers}

    await channel.send(notification("resolved-highlatency-group2", "oncall", "pagerduty"))
    resolves = (await pd.wait_for(4))[2:]
    assert [e["event_action"] for e in resolves] == ["resolve", "resolve"]
    assert [e["dedup_key"] for e in resolves] == [e["dedup_key"] for e in triggers]
    assert pd.open_incidents() == {}


async def test_a_retried_trigger_does_not_open_a_second_incident(
    pd: PagerDutyServer, channel: PagerDutyChannel
) -> None:
    pd.respond_with(202)  # the first alert's trigger gets through, the second one's fails
    pd.respond_with(500)
    with pytest.raises(TransientDeliveryError):
        await channel.send(notification("firing-highlatency-group2", "oncall", "pagerduty"))
    await channel.send(notification("firing-highlatency-group2", "oncall", "pagerduty"))
    events = await pd.wait_for(3)
    assert events[0]["dedup_key"] == events[1]["dedup_key"] != events[2]["dedup_key"]
    assert len(pd.open_incidents()) == 2


def test_dedup_key_names_one_firing_episode() -> None:
    firing = notification("firing-poddown").alerts[0]
    resolved = notification("resolved-poddown").alerts[0]
    assert dedup_key(firing) == dedup_key(resolved)
    assert len(dedup_key(firing)) == 32
    later = firing.model_copy(update={"startsAt": "2026-11-27T07:37:16.831024258Z"})
    assert dedup_key(later) != dedup_key(firing)


@pytest.mark.parametrize(
    ("label", "expected"),
    [("critical", "critical"), ("error", "error"), ("warning", "warning"), ("info", "info"),
     ("Critical", "critical"), ("page", "critical"), ("none", "warning"), (None, "warning")],
)
def test_severity_mapping(templates: Templates, label: str | None, expected: str) -> None:
    group = notification("firing-poddown").group
    labels = {k: v for k, v in group.alerts[0].labels.items() if k != "severity"}
    if label is not None:
        labels["severity"] = label
    alert = group.alerts[0].model_copy(update={"labels": labels})
    [event] = build_events(notification(group.model_copy(update={"alerts": [alert]})), templates,
                           receiver("https://events.pagerduty.com/v2/enqueue"))
    assert event["payload"]["severity"] == expected


async def test_trigger_event_carries_what_an_on_call_engineer_needs(
    pd: PagerDutyServer, channel: PagerDutyChannel
) -> None:
    await channel.send(notification("firing-poddown", "oncall", "pagerduty"))
    [event] = await pd.wait_for(1)
    payload = event["payload"]
    assert payload["summary"] == "[FIRING] PodDown: Pod down (server-abc-123)"
    assert payload["source"] == "server-abc-123"
    assert (payload["severity"], payload["component"], payload["group"], payload["class"]) == (
        "critical", "server", "ojeomneo", "PodDown")
    assert payload["timestamp"].startswith("2026-11-26T07:37:16.831024")
    assert payload["custom_details"]["labels"]["pod"] == "server-abc-123"
    assert payload["custom_details"]["annotations"]["runbook_url"] == "https://runbooks/PodDown"
    assert {"href": "https://runbooks/PodDown", "text": "Runbook"} in event["links"]
    assert (event["client"], event["client_url"]) == ("relay", "http://vm:19093")


async def test_summary_is_cut_to_the_api_limit(pd: PagerDutyServer, channel: PagerDutyChannel) -> None:
    group = notification("firing-poddown").group
    alert = group.alerts[0].model_copy(update={"annotations": {"summary": "x" * 5000}})
    await channel.send(notification(group.model_copy(update={"alerts": [alert]}), "oncall", "pagerduty"))
    [event] = await pd.wait_for(1)
    assert len(event["payload"]["summary"]) == 1024


async def test_destination_is_secret_free(templates: Templates, session: aiohttp.ClientSession) -> None:
    sender = PagerDutyChannel(receiver("https://events.pagerduty.com/v2/enqueue"), templates, session)
    assert sender.destination.startswith("pagerduty:")
    assert_leaks_no_secret([sender.destination], [ROUTING_KEY])
    assert sender.destination == PagerDutyChannel(receiver("https://x.example/v2/enqueue"), templates,
                                                  session).destination


def test_summary_names_the_pod_once(templates: Templates) -> None:
    events = build_events(notification("firing-highmemory-group3-truncated"), templates,
                          receiver("https://events.pagerduty.com/v2/enqueue"))
    assert events[0]["payload"]["summary"] == "[FIRING] HighMemory: 메모리 사용률 80% 초과 (server-7d9f-0)"


KOREAN_LONG = "가" * 70_000  # 3 bytes in UTF-8, 9 once percent-encoded into the Silence link


def huge_alert(**labels: str) -> Any:
    group = notification("firing-poddown").group
    alert = group.alerts[0]
    alert = alert.model_copy(update={"labels": {**alert.labels, **labels}})
    return group.model_copy(update={"alerts": [alert]})


async def test_an_alert_with_a_huge_korean_label_still_pages(pd: PagerDutyServer, channel: PagerDutyChannel) -> None:
    await channel.send(notification(huge_alert(note=KOREAN_LONG), "oncall", "pagerduty"))
    [event] = await pd.wait_for(1)  # the fake refuses 512 KB and more, like the Events API
    assert event["payload"]["source"] == "server-abc-123"
    assert [link["text"] for link in event["links"]] == ["Runbook"]  # the Silence link was 630 KB: dropped


async def test_huge_labels_in_every_payload_field_stay_under_the_limit(
    pd: PagerDutyServer, channel: PagerDutyChannel
) -> None:
    group = huge_alert(instance=KOREAN_LONG, service=KOREAN_LONG, namespace=KOREAN_LONG, alertname=KOREAN_LONG)
    await channel.send(notification(group, "oncall", "pagerduty"))
    [event] = await pd.wait_for(1)
    payload = event["payload"]
    for field in ("source", "component", "group", "class"):
        assert payload[field].startswith("가가가") and len(payload[field]) <= 255, field


async def test_one_refused_event_does_not_stop_the_other_alerts_of_the_group(
    pd: PagerDutyServer, channel: PagerDutyChannel
) -> None:
    group = webhook_message("firing-highmemory-group3-truncated")
    pd.respond_with(400)  # the first alert's event is refused for good
    exc = await outcome_of(channel.send(notification(group, "oncall", "pagerduty")))
    assert_outcome(exc, Expected(PERMANENT, Reason.CLIENT_ERROR))
    assert exc is not None and "1 of 3" in exc.detail
    accepted = await pd.wait_for(2)
    assert [e["payload"]["source"] for e in accepted] == [a.labels["pod"] for a in group.alerts[1:]]
    assert len(pd.open_incidents()) == 2


async def test_a_transient_failure_stops_at_once_and_the_retry_sends_everything(
    pd: PagerDutyServer, channel: PagerDutyChannel
) -> None:
    pd.respond_with(400)  # the first is refused for good, the second meets an outage
    pd.respond_with(503)
    with pytest.raises(TransientDeliveryError):  # retried: the rest of the group still has to go out
        await channel.send(notification("firing-highmemory-group3-truncated", "oncall", "pagerduty"))
    assert len(pd.requests) == 2
    pd.respond_with(400)  # the refused event is refused again
    with pytest.raises(PermanentDeliveryError):  # the retry delivers the others, then gives up on the refused one
        await channel.send(notification("firing-highmemory-group3-truncated", "oncall", "pagerduty"))
    assert len(pd.open_incidents()) == 2


# -- one slow endpoint, large groups (issue 11, items 5 and 6) -----------------------------------------------------

TWO_PAGERDUTY = """\
receivers:
  - name: slow-oncall
    pagerduty:
      routing_key: ${PAGERDUTY_ROUTING_KEY}
      url: %(slow)s
  - name: oncall
    pagerduty:
      routing_key: ${PAGERDUTY_ROUTING_KEY}
      url: %(healthy)s
routes:
  - matchers: ['to="slow"']
    receivers: [slow-oncall]
default_receivers: [oncall]
"""


def page(name: str, to: str = "", alerts: int = 1) -> dict[str, Any]:
    """A webhook of `alerts` firing alerts named `name`, each its own PagerDuty incident."""
    labels = [{"alertname": name, "severity": "critical", "to": to, "pod": f"pod-{i:04d}"} for i in range(alerts)]
    return {"version": "4", "groupKey": f"{{}}:{{alertname=\"{name}\"}}", "status": "firing", "receiver": "relay",
            "groupLabels": {"alertname": name}, "commonLabels": {"alertname": name}, "externalURL": "http://am:9093",
            "alerts": [{"status": "firing", "labels": lab, "annotations": {"summary": f"{name} {lab['pod']}"},
                        "startsAt": "2026-11-26T07:40:12.571836967Z", "fingerprint": f"{name}-{i:04d}"}
                       for i, lab in enumerate(labels)]}


async def test_an_endpoint_that_drips_does_not_stall_another_pagerduty_receiver(
    tmp_path: Path, providers: Providers
) -> None:
    async with PagerDutyServer() as slow:
        slow.drip(3.0)  # 202, then a byte every 3 s: a per-read timeout never fires
        routes = tmp_path / "two-pagerduty.yaml"
        routes.write_text(TWO_PAGERDUTY % {"slow": slow.url, "healthy": providers.pagerduty.url})
        settings = relay_settings(tmp_path, routes, send_timeout_seconds=1, lease_seconds=3)
        async with running_relay(settings) as relay:
            for i in range(12):
                assert (await relay.post(page(f"Slow{i:02d}", to="slow"))).status_code == 200
            # The pool of 32 threads the `pagerduty` client ran in would now be full of calls nobody can stop.
            await slow.wait_for_requests(40, timeout=30)
            started = time.monotonic()
            assert (await relay.post(page("Healthy"))).status_code == 200
            [event] = await providers.pagerduty.wait_for(1, timeout=10)
            paged_after = time.monotonic() - started
            hanging = slow.dripping
            rows = await relay.history(receiver="slow-oncall", limit="1")
            detail = (await relay.admin("GET", f"/api/v1/notifications/{rows[0]['id']}")).json()
    assert event["payload"]["summary"].startswith("[FIRING")
    assert paged_after < 5 and hanging > 0  # paged while the slow endpoint still hangs
    durations = [a["duration"] for a in detail["attempt_log"] if a["reason"] == "timeout"]
    assert durations and all(0.8 < d < 2.0 for d in durations), durations  # each call ended at its deadline


async def test_a_group_of_1000_alerts_reaches_pagerduty_whole_each_event_once(
    tmp_path: Path, providers: Providers
) -> None:
    routes = tmp_path / "two-pagerduty.yaml"
    routes.write_text(TWO_PAGERDUTY % {"slow": providers.pagerduty.url, "healthy": providers.pagerduty.url})
    # Far less time per attempt than 1,000 events take: without progress, every retry starts again from event 1.
    settings = relay_settings(tmp_path, routes, send_timeout_seconds=0.5, lease_seconds=1)
    providers.pagerduty.slow(0.005)  # 5 ms an event: 1,000 take 5 s or more, an attempt 0.8 s
    async with running_relay(settings) as relay:
        assert (await relay.post(page("Storm", alerts=1000))).status_code == 200
        await providers.pagerduty.wait_for(1000, timeout=90)
        await poll_until(lambda: _delivered(relay), timeout=30)
        [row] = await relay.history()
        detail = (await relay.admin("GET", f"/api/v1/notifications/{row['id']}")).json()
    per_key = Counter(e["dedup_key"] for e in providers.pagerduty.events)
    # Every alert paged. One is paged twice only when its call ran out of time after PagerDuty had taken it (the
    # answer came too late to be remembered; PagerDuty merges the repeat by dedup_key): at most one repeat per
    # timed-out attempt, where a retry that forgot its progress would repeat hundreds.
    repeats = sum(n - 1 for n in per_key.values())
    timeouts = [a for a in detail["attempt_log"] if a["reason"] == "timeout"]
    assert len(per_key) == 1000 and repeats <= len(timeouts), (repeats, len(timeouts))
    unfinished = [a for a in detail["attempt_log"] if a["reason"] == "unfinished"]
    assert len(unfinished) >= 1 and detail["attempt_log"][-1]["outcome"] == "delivered"


async def _delivered(relay: RunningRelay) -> bool:
    return [r["state"] for r in await relay.history()] == ["delivered"]
