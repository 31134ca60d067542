"""How a storm's summary reads (relay.storms.summary, relay.channels.slack.summary, relay.channels.digest), and its
settings.

Pure: alerts in, what a person sees out; routes.yaml's `storm:` refusals name file and line; `relay templates
render --storm N` shows the summary a receiver would send.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from relay.alerts import Alert, Notification, WebhookMessage
from relay.channels.digest import build_digest
from relay.channels.slack.summary import detail_message, summary_message
from relay.config.receivers import ReceiverConfig
from relay.config.routes import load_routes
from relay.errors import ConfigError
from relay.storms.fold import Waiting, choose, storm_lane, storm_of, summary_group
from relay.storms.summary import of, summarise
from relay.templating import Templates
from tests.helpers import REPO, TEMPLATES, slack_text

NOW = datetime(2026, 12, 1, 10, 0, tzinfo=UTC)


def alert(name: str, severity: str, pod: str, status: str = "firing", **labels: str) -> Alert:
    return Alert.model_validate({
        "status": status, "labels": {"alertname": name, "severity": severity, "pod": pod, **labels},
        "annotations": {}, "startsAt": "2026-12-01T09:00:00Z",
        "endsAt": "0001-01-01T00:00:00Z" if status == "firing" else "2026-12-01T09:30:00Z",
        "generatorURL": "", "fingerprint": f"{name}-{pod}"})


def group(*alerts: Alert) -> WebhookMessage:
    return WebhookMessage.model_validate({"version": "4", "groupKey": "g", "status": "firing", "receiver": "r",
                                          "alerts": [a.model_dump() for a in alerts]})


def notification(alerts: list[Alert], summary_id: int = 9, relay_url: str = "") -> Notification:
    folded = summary_group(4, [group(a) for a in alerts], relay_url)
    return Notification(summary_id, "slack-alerts", "slack", storm_lane("slack-alerts", 4), folded, NOW)


def test_alerts_are_grouped_by_name_most_severe_first_each_once_in_its_latest_status() -> None:
    alerts = [alert("HighLatency", "warning", f"api-{i}") for i in range(5)]
    alerts += [alert("PodDown", "critical", "db-0"), alert("Info", "info", "x"),
               alert("HighLatency", "warning", "api-0", "resolved")]
    summary = summarise(alerts, storm_id=1, summary_id=2, receiver="slack-alerts")
    assert [(f.name, f.severity, f.firing, f.resolved) for f in summary.families] == [
        ("PodDown", "critical", 1, 0), ("HighLatency", "warning", 4, 1), ("Info", "info", 1, 0)]
    assert (summary.total, summary.firing, summary.resolved) == (7, 6, 1)
    assert summary.title == "Alert storm: 7 alerts folded for slack-alerts (6 firing, 1 resolved)"
    assert summary.families[1].lines[0].text == "pod=api-1"  # the labels that tell them apart, not alertname


def test_the_slack_summary_fits_slacks_limits_and_says_what_it_leaves_out() -> None:
    alerts = [alert(f"Alert{n:02d}", "warning", f"pod-{i}") for n in range(60) for i in range(50)]
    message = summary_message(of(notification(alerts, relay_url="https://relay.example")))
    blocks = message["blocks"] + message["attachments"][0]["blocks"]
    assert len(blocks) <= 50
    texts = [b["text"]["text"] for b in blocks if b["type"] in ("section", "header")]
    assert all(len(t) <= 3000 for t in texts) and len(message["blocks"][0]["text"]["text"]) <= 150
    shown = slack_text(message)
    assert "… and 10 more" in shown  # of each name's 50 alerts, 40 are listed
    assert "more alert names" in shown  # of 60 names, those past the block limit are counted
    assert "<https://relay.example/api/v1/notifications?summary=9&amp;limit=1000|notification history>" in shown


def test_hostile_alert_text_stays_text_in_every_summary() -> None:
    hostile = [alert("<!channel>", "warning", "<https://evil.example|click>", note="@here \u202eevil&")]
    slack = slack_text(summary_message(of(notification(hostile)))) + slack_text(detail_message(
        of(notification(hostile))))
    assert "<!channel>" not in slack and "<https://evil.example" not in slack
    assert "&lt;!channel&gt;" in slack and "\u202e" not in slack
    message = summary_message(of(notification(hostile)))
    assert all(e.get("verbatim") for b in message["attachments"][0]["blocks"] for e in
               ([b["text"]] if "text" in b else b["elements"]))
    receiver = ReceiverConfig.model_validate({"name": "ops", "email": {"to": ["ops@x.example"],
                                                                       "from": "relay@x.example",
                                                                       "smarthost": "localhost:25"}})
    email = build_digest(notification(hostile), receiver, now=NOW)
    html = email.get_body(("html",)).get_content()  # type: ignore[union-attr]
    assert "<https://evil.example|click>" not in html and "&lt;!channel&gt;" in html
    assert "\n" not in str(email["Subject"]).strip()


def test_a_lane_is_folded_up_to_what_is_sent_alone() -> None:
    def row(i: int, lane: str, severity: str, leased: bool = False) -> Waiting:
        return Waiting(i, lane, group(alert("A", severity, f"p{i}")), leased, 1)

    rows = [row(1, "a", "warning"), row(2, "a", "critical"), row(3, "a", "warning"),
            row(4, "b", "warning", leased=True), row(5, "b", "warning"), row(6, "c", "info")]
    assert [w.id for w in choose(rows, ["critical"])] == [1, 6]
    assert [w.id for w in choose(rows, ["critical", "info"])] == [1]
    assert [w.id for w in choose(rows, [])] == [1, 2, 3, 6]


def test_only_relay_writes_a_storm_lane() -> None:
    assert storm_of(storm_lane("slack-alerts", 12)) == 12
    assert storm_of("slack-alerts\x1f{}/relay-storm:12") is None  # a webhook's lane, whatever its groupKey
    assert storm_of("slack-alerts\x1f" + storm_lane("x", 3)) is None


def routes_with(tmp_path: Path, receiver: dict[str, Any]) -> Path:
    path = tmp_path / "routes.yaml"
    path.write_text(json.dumps({"receivers": [receiver], "default_receivers": [receiver["name"]]}, indent=1))
    return path


@pytest.mark.parametrize(("storm", "message"), [
    ({"window": "0s"}, "storm.window must be at least 1s"),
    ({"window": "soon"}, "invalid duration"),
    ({"never_fold": "critical"}, "never_fold"),
    ({"fold": True}, "fold"),
])
def test_bad_storm_settings_are_refused_with_file_and_line(tmp_path: Path, storm: dict[str, Any],
                                                          message: str) -> None:
    path = routes_with(tmp_path, {"name": "s", "slack": {"webhook_url": "https://x.example/h"}, "storm": storm})
    with pytest.raises(ConfigError) as caught:
        load_routes(path, Templates(TEMPLATES), {})
    assert message in str(caught.value) and caught.value.file == str(path) and caught.value.line is not None


def test_pagerduty_cannot_be_folded(tmp_path: Path) -> None:
    path = routes_with(tmp_path, {"name": "pd", "pagerduty": {"routing_key": "k"}, "storm": {"window": "1m"}})
    with pytest.raises(ConfigError, match="PagerDuty is never folded"):
        load_routes(path, Templates(TEMPLATES), {})
    path = routes_with(tmp_path, {"name": "pd", "pagerduty": {"routing_key": "k"}, "storm": {"enabled": False}})
    assert not load_routes(path, Templates(TEMPLATES), {}).receivers["pd"].folds


def test_storms_are_on_by_default_with_sane_values() -> None:
    receiver = ReceiverConfig.model_validate({"name": "s", "slack": {"webhook_url": "https://x.example/h"}})
    assert receiver.folds and receiver.storm.window.total_seconds() == 30 and receiver.storm.never_fold == [
        "critical"]


def test_templates_render_shows_a_storm_summary(tmp_path: Path) -> None:
    path = routes_with(tmp_path, {"name": "bot", "slack": {"token": "xoxb-SECRET-1", "channel": "#alerts"}})
    run = subprocess.run([sys.executable, "-m", "relay", "templates", "render", "--receiver", "bot", "--storm", "30",
                          "alertname=HighLatency", "severity=warning"], cwd=REPO, capture_output=True, text=True,
                         env={**os.environ, "RELAY_ROUTES": str(path)}, timeout=60, check=False)
    assert run.returncode == 0, run.stderr
    assert "Alert storm: 30 alerts folded for bot (30 firing, 0 resolved)" in run.stdout
    assert "# chat.postMessage of the storm's summary" in run.stdout and "instance=preview-30" in run.stdout
    assert "xoxb-SECRET-1" not in run.stdout


def test_notifications_show_names_the_summary_of_a_folded_notification() -> None:
    from relay.cli.admin import _show

    row: dict[str, Any] = {"id": 12, "receiver": "slack-alerts", "integration": "slack", "state": "delivered",
                           "received_at": 1.0, "attempts": 0, "last_error": None, "summary_id": 40, "group_key": "g",
                           "alerts": [], "attempt_log": [{"started_at": 2.0, "duration": 0.0, "outcome": "delivered",
                                                          "reason": "folded", "detail": "in summary 40"}]}
    assert "delivered in storm summary 40 (relay notifications show 40)" in _show(row)
    assert "delivered folded: in summary 40" in _show(row)
    summary = {**row, "id": 40, "summary_id": None, "folded": 195, "group_key": "relay-storm:3"}
    assert "a storm's summary of 195 notifications (relay notifications list --summary 40)" in _show(summary)
