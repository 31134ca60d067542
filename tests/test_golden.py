"""Golden files: what every integration sends for every fixture, firing and resolved, reviewed as diffs.

A template or channel change shows up in review as a change under tests/golden/.
Regenerate after an intended change with

    RELAY_UPDATE_GOLDEN=1 .venv/bin/pytest tests/test_golden.py

and read the diff (`git diff tests/golden`) before committing it.
"""

from __future__ import annotations

import os
from datetime import UTC, datetime
from pathlib import Path

import pytest

from relay.alerts import Notification, WebhookMessage, group_status
from relay.channels.preview import as_notification, readable_email, render, resolved
from relay.config.receivers import ReceiverConfig
from relay.storms.fold import storm_lane, summary_group
from relay.templating import Templates
from relay.times import GO_ZERO_TIME
from tests.helpers import FIXTURES, TEMPLATES

GOLDEN = Path(__file__).parent / "golden"
UPDATE = os.environ.get("RELAY_UPDATE_GOLDEN") == "1"
NOW = datetime(2026, 11, 26, 7, 50, tzinfo=UTC)  # a few minutes after the fixtures fired
SECRETS = ("xoxb-golden-SECRET-token", "GOLDEN-ROUTING-KEY-SECRET", "smtp-SECRET-password",
           "https://hooks.ojeomneo.example/golden-SECRET-path", "golden-SECRET-bearer",
           "https://discord.com/api/webhooks/1/golden-SECRET-discord-token", "123:golden-SECRET-telegram-token",
           "https://prod-1.logic.azure.com/workflows/x/triggers/manual/paths/invoke?sig=golden-SECRET-sig")

RECEIVERS = {
    "slack": ReceiverConfig.model_validate({"name": "slack-alerts", "slack": {
        "token": SECRETS[0], "channel": "#ojeomneo-alerts", "mention": "<!subteam^S0123|oncall>"}}),
    "email": ReceiverConfig.model_validate({"name": "ops-email", "email": {
        "to": ["ops@ojeomneo.example"], "from": "relay <relay@alerts.ojeomneo.example>",
        "smarthost": "smtp.ojeomneo.example:587", "auth_username": "relay", "auth_password": SECRETS[2]}}),
    "pagerduty": ReceiverConfig.model_validate({"name": "pagerduty-oncall", "pagerduty": {
        "routing_key": SECRETS[1]}}),
    "webhook": ReceiverConfig.model_validate({"name": "hook-ops", "webhook": {
        "url": SECRETS[3], "http_config": {"bearer_token": SECRETS[4]}}}),
    "discord": ReceiverConfig.model_validate({"name": "discord-ops", "discord": {"webhook_url": SECRETS[5]}}),
    "telegram": ReceiverConfig.model_validate({"name": "telegram-ops", "telegram": {
        "bot_token": SECRETS[6], "chat_id": -1001234567890, "message_thread_id": 42}}),
    "teams": ReceiverConfig.model_validate({"name": "teams-ops", "teams": {"webhook_url": SECRETS[7]}}),
}
FIXTURE_NAMES = sorted(p.stem for p in FIXTURES.glob("*.json"))
STATES = ("firing", "resolved")


def fired(group: WebhookMessage) -> WebhookMessage:
    """The same group as it was while firing."""
    alerts = [a.model_copy(update={"status": "firing", "endsAt": GO_ZERO_TIME}) for a in group.alerts]
    return group.model_copy(update={"alerts": alerts, "status": group_status(alerts)})


def rendered(integration: str, fixture: str, state: str) -> str:
    group = WebhookMessage.model_validate_json((FIXTURES / f"{fixture}.json").read_bytes())
    group = resolved(group, NOW) if state == "resolved" else fired(group)
    receiver = RECEIVERS[integration]
    text = render(receiver, as_notification(receiver, group, NOW), Templates(TEMPLATES), NOW)
    return readable_email(text) if integration == "email" else text


def golden_path(integration: str, fixture: str, state: str) -> Path:
    return GOLDEN / integration / f"{fixture}.{state}.txt"


@pytest.mark.parametrize("state", STATES)
@pytest.mark.parametrize("fixture", FIXTURE_NAMES)
@pytest.mark.parametrize("integration", sorted(RECEIVERS))
def test_output_matches_the_golden_file(integration: str, fixture: str, state: str) -> None:
    text = rendered(integration, fixture, state)
    for secret in SECRETS:
        assert secret not in text
    path = golden_path(integration, fixture, state)
    if UPDATE:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    assert path.exists(), f"{path} is missing: run RELAY_UPDATE_GOLDEN=1 pytest tests/test_golden.py"
    assert text == path.read_text(encoding="utf-8"), (
        f"{path.relative_to(GOLDEN.parent.parent)} differs; if the change is intended, regenerate with "
        "RELAY_UPDATE_GOLDEN=1 pytest tests/test_golden.py and review `git diff tests/golden`")


STORM_INTEGRATIONS = ("discord", "email", "slack", "teams", "telegram", "webhook")  # PagerDuty is never folded


def storm_rendered(integration: str) -> str:
    """A storm's summary of every fixture's alerts (firing, and one group resolved), as the storm stage folds them."""
    groups = []
    for name in FIXTURE_NAMES:
        group = WebhookMessage.model_validate_json((FIXTURES / f"{name}.json").read_bytes())
        groups.append(resolved(group, NOW) if name.startswith("resolved") else fired(group))
    receiver = RECEIVERS[integration]
    notification = Notification(7, receiver.name, receiver.integration, storm_lane(receiver.name, 3),
                                summary_group(3, groups, "https://relay.ojeomneo.example"), NOW)
    text = render(receiver, notification, Templates(TEMPLATES), NOW)
    return readable_email(text) if integration == "email" else text


@pytest.mark.parametrize("integration", STORM_INTEGRATIONS)
def test_storm_summary_matches_the_golden_file(integration: str) -> None:
    text = storm_rendered(integration)
    for secret in SECRETS:
        assert secret not in text
    path = GOLDEN / integration / "storm-summary.txt"
    if UPDATE:
        path.write_text(text, encoding="utf-8")
    assert text == path.read_text(encoding="utf-8"), (
        f"{path.relative_to(GOLDEN.parent.parent)} differs; regenerate with RELAY_UPDATE_GOLDEN=1 and review it")


def test_no_stale_golden_files() -> None:
    expected = {golden_path(i, f, s) for i in RECEIVERS for f in FIXTURE_NAMES for s in STATES}
    expected |= {GOLDEN / i / "storm-summary.txt" for i in STORM_INTEGRATIONS}
    assert set(GOLDEN.glob("*/*.txt")) == expected
