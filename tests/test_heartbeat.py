"""routes.yaml `heartbeats:` and heartbeat webhooks: checked like the rest of the file, consumed, never routed."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator, Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from relay.alerts import WebhookMessage
from relay.alerts.fingerprint import fingerprint
from relay.config.routes import load_routes
from relay.errors import ConfigError
from relay.heartbeat.switch import DeadMan
from relay.runtime import Runtime
from relay.store import open_store
from relay.store.base import Candidate, Enqueued, Store
from relay.store.records import HistoryFilter
from relay.templating import Templates
from tests.helpers import REPO, TEMPLATES, fixture, relay_settings, repo_routes, running_relay, without_heartbeats
from tests.test_cli import run_relay

HEARTBEAT = """
heartbeats:
  - name: watchdog
    matchers: ['alertname="Watchdog"']
    max_silence: {max_silence}
    receivers: [{receivers}]
"""


def heartbeat_section(max_silence: str = "5m", receivers: str = "slack-alerts, pagerduty-oncall",
                      arm: str | None = None) -> str:
    return HEARTBEAT.format(max_silence=max_silence, receivers=receivers) + (f"    arm: {arm}\n" if arm else "")


def watchdog(status: str = "firing") -> dict[str, Any]:
    """Alertmanager's webhook for Prometheus' Watchdog, as the kube-prometheus rules define it."""
    labels = {"alertname": "Watchdog", "severity": "none", "prometheus": "monitoring/k8s"}
    alert = {"status": status, "labels": labels,
             "annotations": {"summary": "An alert that should always be firing to certify that Alertmanager "
                                        "is working properly."},
             "startsAt": "2026-11-26T07:00:00.000Z",
             "endsAt": "2026-11-26T08:00:00Z" if status == "resolved" else "0001-01-01T00:00:00Z",
             "generatorURL": "http://prometheus:9090/graph", "fingerprint": fingerprint(labels)}
    return {"receiver": "relay", "status": status, "alerts": [alert], "groupLabels": {"alertname": "Watchdog"},
            "commonLabels": labels, "commonAnnotations": alert["annotations"], "externalURL": "http://am:9093",
            "version": "4", "groupKey": '{}/{alertname="Watchdog"}:{alertname="Watchdog"}', "truncatedAlerts": 0}


def test_repo_routes_watch_the_watchdog(tmp_path: Path) -> None:
    routes = load_routes(REPO / "routes.yaml", Templates(TEMPLATES), {})
    [beat] = routes.spec.heartbeats
    assert (beat.name, beat.max_silence, beat.receivers) == ("watchdog", timedelta(minutes=5),
                                                             ["slack-alerts", "pagerduty-oncall"])
    assert beat.matches({"alertname": "Watchdog"}) and not beat.matches({"alertname": "PodDown"})


ROUTES_LINES = len(without_heartbeats((REPO / "routes.yaml").read_text()).splitlines())


@pytest.mark.parametrize(
    ("section", "line", "reason"),
    [
        (heartbeat_section(receivers="slack-alerts, nobody"), 6,
         "heartbeat 'watchdog' names unknown receiver 'nobody'"),
        (heartbeat_section(max_silence="soon"), 5, "heartbeat 1: max_silence: invalid duration 'soon'"),
        (heartbeat_section(max_silence="0s"), 5, "max_silence must be longer than 0s"),
        (heartbeat_section().replace("matchers: ['alertname=\"Watchdog\"']", "matchers: []"), 4,
         "heartbeat 1: matchers: List should have at least 1 item"),
        (heartbeat_section().replace("alertname=", "alertname=~").replace('"Watchdog"', '"(Watchdog"'), 4,
         "bad regex"),
        (heartbeat_section() + HEARTBEAT.split("\n", 2)[2].format(max_silence="1m", receivers="slack-alerts"), 7,
         "duplicate heartbeat name 'watchdog'"),
        (heartbeat_section().replace("watchdog", "watch dog"), 3, "heartbeat 1: name: String should match pattern"),
    ],
)
def test_broken_heartbeat_is_refused_with_file_line_and_reason(tmp_path: Path, section: str, line: int,
                                                               reason: str) -> None:
    path = repo_routes(tmp_path, extra=section)
    with pytest.raises(ConfigError) as caught:
        load_routes(path, Templates(TEMPLATES), {})
    assert str(caught.value).startswith(f"{path}:{ROUTES_LINES + line}: "), str(caught.value)
    assert reason in str(caught.value)


async def test_routes_check_names_file_line_and_reason(tmp_path: Path) -> None:
    path = repo_routes(tmp_path, extra=heartbeat_section(receivers="slack-alerts, nobody"))
    code, out = await run_relay("routes", "check", str(path), env={"RELAY_TEMPLATES": str(TEMPLATES)})
    assert code == 1
    assert f"{path}:{ROUTES_LINES + 6}: heartbeat 'watchdog' names unknown receiver 'nobody'" in out
    good = repo_routes(tmp_path, extra=heartbeat_section())
    code, out = await run_relay("routes", "check", str(good), env={"RELAY_TEMPLATES": str(TEMPLATES)})
    assert code == 0, out
    assert "1 heartbeat" in out


async def test_routes_test_says_a_heartbeat_is_not_routed(tmp_path: Path) -> None:
    env = {"RELAY_ROUTES": str(repo_routes(tmp_path, extra=heartbeat_section())), "RELAY_TEMPLATES": str(TEMPLATES)}
    code, out = await run_relay("routes", "test", "alertname=Watchdog", "severity=none", env=env)
    assert code == 0, out
    assert "heartbeat watchdog" in out and "slack-alerts" not in out
    code, out = await run_relay("routes", "test", "alertname=PodDown", env=env)
    assert out.strip() == "slack-alerts,ops-email,pagerduty-oncall"


async def test_heartbeat_webhook_is_consumed_and_the_answer_says_so(tmp_path: Path) -> None:
    routes = repo_routes(tmp_path, extra=heartbeat_section())
    async with running_relay(relay_settings(tmp_path, routes)) as relay:
        # Not armed until the first one arrives (issue 22): a gauge to alert on if it never does.
        assert 'relay_heartbeat_armed{heartbeat="watchdog"} 0.0' in (await relay.client.get("/metrics")).text
        answer = (await relay.post(watchdog())).json()
        assert answer["heartbeats"] == ["watchdog"] and answer["heartbeat_alerts"] == 1
        assert (answer["notifications_enqueued"], answer["receivers"]) == (0, {})
        # A resolved Watchdog means Prometheus stopped sending it: consumed, but it is no heartbeat.
        answer = (await relay.post(watchdog("resolved"))).json()
        assert (answer["heartbeats"], answer["heartbeat_alerts"], answer["receivers"]) == ([], 1, {})
        # In one group with a real alert, only the real alert is routed.
        mixed = fixture("firing-poddown.json")
        mixed["alerts"].append(watchdog()["alerts"][0])
        answer = (await relay.post(mixed)).json()
        assert answer["heartbeats"] == ["watchdog"] and answer["notifications_enqueued"] == 3
        assert all(r["enqueued"] == 1 for r in answer["receivers"].values())
        history = await relay.history()
        assert len(history) == 3 and all(row["alertnames"] == ["PodDown"] for row in history)
        metrics = (await relay.client.get("/metrics")).text
        assert 'relay_heartbeat_last_seen_timestamp_seconds{heartbeat="watchdog"}' in metrics
        assert 'relay_heartbeat_missing{heartbeat="watchdog"} 0.0' in metrics
        assert 'relay_heartbeat_armed{heartbeat="watchdog"} 1.0' in metrics


async def test_without_heartbeats_a_watchdog_is_an_ordinary_alert(tmp_path: Path) -> None:
    async with running_relay(relay_settings(tmp_path, repo_routes(tmp_path, heartbeats=False))) as relay:
        answer = (await relay.post(watchdog())).json()
        assert answer["heartbeats"] == [] and list(answer["receivers"]) == ["slack-alerts"]


def test_the_notice_links_to_its_runbook_unless_the_heartbeat_names_another(tmp_path: Path) -> None:
    from relay.heartbeat.notice import notice_group

    path = repo_routes(tmp_path, extra=heartbeat_section("1m"))
    [beat] = load_routes(path, Templates(TEMPLATES), {}).spec.heartbeats
    [alert] = notice_group(beat, 1_800_000_000.0, None, 1_799_999_000.0).alerts
    url = alert.annotations["runbook_url"]
    assert url.endswith("/docs/runbooks/RelayHeartbeatMissing.md")
    assert (REPO / "docs" / "runbooks" / "RelayHeartbeatMissing.md").is_file()
    own = beat.model_copy(update={"annotations": {"runbook_url": "https://wiki.example/deadman"}})
    [alert] = notice_group(own, 1_800_000_000.0, None, 1_799_999_000.0).alerts
    assert alert.annotations["runbook_url"] == "https://wiki.example/deadman"


# -- the switch itself, on a clock the test moves (relay.heartbeat.switch.DeadMan.check takes `now`) ---------------

class NoDispatcher:
    """The outbox's Intake with no dispatcher: what the switch enqueues waits in the store, where the test reads it."""

    def handoff(self, receivers: object) -> None:
        return None

    def adopt(self, claimed: object, offer: object = None) -> None:
        return None

    def wake(self) -> None:
        return None


@contextlib.asynccontextmanager
async def switch(tmp_path: Path, section: str) -> AsyncIterator[tuple[Store, Callable[[], DeadMan]]]:
    """A store and a way to start a relay process's dead man's switch on it (each call: a new process)."""
    settings = relay_settings(tmp_path, repo_routes(tmp_path, extra=section))
    runtime = Runtime(settings.routes, settings.templates)
    await runtime.start()
    store = open_store(settings.database_url)
    await store.open()
    try:
        yield store, lambda: DeadMan(store, runtime, NoDispatcher())
    finally:
        await store.close()
        await runtime.close()


async def notices(store: Store) -> list[tuple[str, str]]:
    """(receiver, status) of every notification written, oldest first."""
    return [(row["receiver"], row["status"]) for row in reversed(await store.history(HistoryFilter()))]


async def test_a_crash_loop_does_not_postpone_the_missing_notice(tmp_path: Path) -> None:
    """Issue 20 #9: each process waited max_silence from its own start, so a relay restarting every minute never
    said that the Watchdog (max_silence 5m) had stopped. The deadline is the store's."""
    t0 = 1_800_000_000.0
    async with switch(tmp_path, heartbeat_section("5m", "slack-alerts")) as (store, process):
        await process().check(t0)
        await store.heartbeat_seen(["watchdog"], t0)
        for minute in range(1, 6):  # a new process every minute, each checking once before it crashes
            await process().check(t0 + 60 * minute)
        assert await notices(store) == []  # 5m0s: not yet
        await process().check(t0 + 60 * 5 + 30)
        assert await notices(store) == [("slack-alerts", "firing")]


async def test_a_planned_downtime_longer_than_max_silence_does_not_page_by_itself(tmp_path: Path) -> None:
    """No relay was running to hear the Watchdog: after such a gap the heartbeat is watched again from the next check
    (and pages max_silence later if none comes)."""
    t0 = 1_800_000_000.0
    async with switch(tmp_path, heartbeat_section("5m", "slack-alerts")) as (store, process):
        await store.heartbeat_seen(["watchdog"], t0)
        await process().check(t0 + 1)
        back = t0 + 3600  # relay was stopped for an hour
        await process().check(back)
        await process().check(back + 290)
        assert await notices(store) == []
        await process().check(back + 301)
        assert await notices(store) == [("slack-alerts", "firing")]


async def test_a_trial_relay_does_not_page_until_a_heartbeat_has_arrived_and_says_so(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """Issue 22 #3: the repository's routes.yaml watches the Watchdog, and a relay started only to try it paged five
    minutes later. Now the switch arms on the first Watchdog: until then relay warns (once) and pages nobody."""
    t0 = 1_800_000_000.0
    async with switch(tmp_path, heartbeat_section("5m", "slack-alerts")) as (store, process):
        deadman = process()
        with caplog.at_level(logging.INFO, logger="relay.heartbeat.switch"):
            for later in (0, 301, 3600, 86400):
                await deadman.check(t0 + later)
            assert await notices(store) == []
            warned = [r.getMessage() for r in caplog.records if "not armed" in r.getMessage()]
            assert warned == ["heartbeat watchdog is not armed: no Watchdog alert has reached relay yet, so relay "
                              "does not page while none arrives; it will once one has arrived and then none for 5m "
                              "(set arm: start to page when none arrives within 5m)"]
            await store.heartbeat_seen(["watchdog"], t0 + 86400)
            await deadman.check(t0 + 86401)
            assert any("heartbeat watchdog is armed: the first Watchdog arrived" in r.getMessage()
                       for r in caplog.records)
        await deadman.check(t0 + 86400 + 301)
        assert await notices(store) == [("slack-alerts", "firing")]


async def test_arm_start_pages_when_none_arrives_within_max_silence_of_the_first_watch(tmp_path: Path) -> None:
    t0 = 1_800_000_000.0
    async with switch(tmp_path, heartbeat_section("5m", "slack-alerts", arm="start")) as (store, process):
        await process().check(t0)
        await process().check(t0 + 240)  # a restart: the clock is the store's, still from t0
        assert await notices(store) == []
        await process().check(t0 + 301)
        assert await notices(store) == [("slack-alerts", "firing")]


async def test_the_return_says_how_long_none_arrived(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """Issue 22 #3: "missing for 56s" was logged for a Watchdog that had not arrived in 8 minutes (the time since relay
    noticed, not since the last one). The log line and the resolve say how long none came."""
    t0 = 1_800_000_000.0
    async with switch(tmp_path, heartbeat_section("5m", "slack-alerts", arm="start")) as (store, process):
        deadman = process()
        for later in range(0, 306, 5):  # it checks every few seconds
            await deadman.check(t0 + later)
        await store.heartbeat_seen(["watchdog"], t0 + 480)
        written: list[WebhookMessage] = []  # the resolve's payload, as the store writes it
        recovered = store.heartbeat_recovered

        async def spy(name: str, since: float, now: float, notice: list[Candidate]) -> list[Enqueued] | None:
            written.extend(c.group for c in notice)
            return await recovered(name, since, now, notice)

        store.heartbeat_recovered = spy  # type: ignore[method-assign]
        with caplog.at_level(logging.WARNING, logger="relay.heartbeat.switch"):
            await deadman.check(t0 + 481)
        assert "heartbeat watchdog arrives again (none had arrived for 8m); telling slack-alerts" in caplog.text
        assert await notices(store) == [("slack-alerts", "firing"), ("slack-alerts", "resolved")]
        [resolve] = written
        assert "none had arrived for 8m (since 2027-01-15 08:00:00 UTC)" in resolve.alerts[0].annotations["description"]
