"""Teams channel against a local Workflows webhook (tests/fakes/teams.py) through relay's real HTTP client: the
shared outcome table, cards valid against the vendored Adaptive Cards 1.5 schema (the golden cards too), colour,
facts and buttons, resolves as new cards, the size limit, and hostile labels."""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from relay.alerts import Notification
from relay.channels.factory import build_channel
from relay.channels.preview import as_notification, render
from relay.channels.teams import CARD_LIMIT, TeamsChannel, build_message
from relay.config.receivers import ReceiverConfig
from relay.config.routes import load_routes
from relay.errors import Reason
from relay.pacing.ratelimit import budget_of
from relay.storms.fold import storm_lane, summary_group
from relay.templating import Templates
from tests import hostile
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
from tests.fakes import REFUSED, STALL, UNTRUSTED, Answer, notification, webhook_message
from tests.fakes.teams import SIG, TeamsServer, card_problems, problems
from tests.helpers import TEMPLATES

GOLDEN = Path(__file__).parent / "golden" / "teams"


@pytest.fixture
async def teams() -> AsyncIterator[TeamsServer]:
    async with TeamsServer() as server:
        yield server


def receiver(url: str) -> ReceiverConfig:
    return ReceiverConfig.model_validate({"name": "teams-ops", "teams": {"webhook_url": url}})


def texts(card: dict[str, Any], markdown_only: bool = False) -> str:
    """Every text a person reads on the card: text blocks, text runs, facts; with `markdown_only` just those a
    renderer reads as markdown (TextBlock and facts, not a RichTextBlock's TextRuns)."""
    out: list[str] = []

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            if node.get("type") == "TextBlock" or (node.get("type") == "TextRun" and not markdown_only):
                out.append(node["text"])
            if node.get("type") == "FactSet":
                out.extend(f"{f['title']}: {f['value']}" for f in node["facts"])
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(card)
    return "\n".join(out)


TABLE = [
    contract_case(Answer(202), Expected(OK), id="202-accepted"),
    contract_case(Answer(200, ""), Expected(OK), id="200"),
    contract_case(Answer(400, {"error": {"code": "InvalidRequestContent", "message": "bad"}}),
                  Expected(PERMANENT, Reason.CLIENT_ERROR, code="InvalidRequestContent"), id="400"),
    contract_case(Answer(401, {"error": {"code": "DirectApiInvalidAuthorizationSignature", "message": f"sig={SIG}"}}),
                  Expected(PERMANENT, Reason.AUTH), id="401-echoing-the-sig"),
    contract_case(Answer(403, {"error": {"code": "WorkflowDisabled", "message": "disabled"}}),
                  Expected(PERMANENT, Reason.AUTH, code="WorkflowDisabled"), id="403"),
    contract_case(Answer(404, {"error": {"code": "WorkflowNotFound", "message": "no"}}),
                  Expected(PERMANENT, Reason.NOT_FOUND, code="WorkflowNotFound"), id="404"),
    contract_case(Answer(413), Expected(PERMANENT, Reason.PAYLOAD_TOO_LARGE), id="413"),
    contract_case(Answer(429, {"error": {"code": "WorkflowRequestsThrottled", "message": "slow down"}},
                         {"Retry-After": "20"}), Expected(TRANSIENT, Reason.RATE_LIMITED, 20.0), id="429"),
    contract_case(Answer(500), Expected(TRANSIENT, Reason.SERVER_ERROR), id="500"),
    contract_case(Answer(502, "<html>Bad Gateway</html>"), Expected(TRANSIENT, Reason.SERVER_ERROR), id="502"),
    contract_case(Answer(503), Expected(TRANSIENT, Reason.SERVER_ERROR), id="503"),
    contract_case(REFUSED, Expected(TRANSIENT, Reason.CONNECTION), id="connection-refused"),
    contract_case(STALL, Expected(TRANSIENT, Reason.TIMEOUT), id="timeout"),
    contract_case(UNTRUSTED, Expected(TRANSIENT, Reason.TLS), id="untrusted-certificate"),
]


@pytest.mark.parametrize(("answer", "expected"), TABLE)
async def test_workflow_answers_map_to_outcomes(teams: TeamsServer, templates: Templates,
                                                session: aiohttp.ClientSession, caplog: pytest.LogCaptureFixture,
                                                answer: Answer | str, expected: Expected) -> None:
    caplog.set_level(logging.DEBUG)
    async with teams.answering(answer) as base_url:
        url = teams.url_at(base_url)
        sender = TeamsChannel(receiver(url), templates, session, timeout=0.3 if answer == STALL else 5.0)
        exc = await outcome_of(sender.send(notification("firing-poddown", "teams-ops", "teams")))
    assert_outcome(exc, expected)
    teams.recover()
    assert_leaks_no_secret(shown(exc, caplog.text), [SIG])
    assert_leaks_no_secret(shown(exc, caplog.text), [url], fragment=None)


async def test_a_firing_card_and_its_resolve_as_a_new_card(teams: TeamsServer, templates: Templates,
                                                           session: aiohttp.ClientSession) -> None:
    sender = TeamsChannel(receiver(teams.url), templates, session)
    await sender.send(notification("firing-higherrorrate", "teams-ops", "teams"))
    await sender.send(notification("resolved-poddown", "teams-ops", "teams", id=2))
    firing, resolved = await teams.wait_for_cards(2)
    assert firing["body"][0]["style"] == "attention" and resolved["body"][0]["style"] == "good"
    assert firing["body"][0]["items"][0]["inlines"][0]["text"].startswith("[FIRING:1] HighErrorRate")
    buttons = [a for block in firing["body"] for item in block.get("items", []) if item["type"] == "ActionSet"
               for a in item["actions"]]
    assert [b["title"] for b in buttons] == ["Runbook", "Source", "Silence"]
    assert all(b["type"] == "Action.OpenUrl" and b["url"].startswith("http") for b in buttons)
    assert "namespace: ojeomneo" in texts(firing)  # labels as facts
    assert "Silence" not in json.dumps(resolved)  # nothing to silence once resolved


async def test_hostile_labels_never_mention_link_or_format(teams: TeamsServer, templates: Templates,
                                                           session: aiohttp.ClientSession) -> None:
    await TeamsChannel(receiver(teams.url), templates, session).send(
        notification(hostile.group(), "teams-ops", "teams"))
    [card] = await teams.wait_for_cards(1)
    assert hostile.markdown_hazards(texts(card, markdown_only=True)) == []
    # The summary and description are shown as written, in TextRuns, which no renderer reads as markdown.
    runs = [run for block in card["body"] for item in block.get("items", []) if item["type"] == "RichTextBlock"
            for run in item["inlines"]]
    assert {"type": "TextRun", "text": hostile.ANNOTATIONS["summary"], "weight": "Bolder"} in runs
    assert "\u202e" not in json.dumps(card, ensure_ascii=False)
    assert "msteams" not in json.dumps(card)  # no mention entities: <at> is only ever text
    assert all(hostile.EVIL not in a["url"].split("/")[2] for a in json.loads(json.dumps(card))["body"][1]["items"][
        -1]["actions"])


def test_a_large_group_stays_under_the_size_limit_and_says_what_it_left_out(templates: Templates) -> None:
    group = webhook_message("firing-highlatency-group2")
    alerts = [a.model_copy(update={"labels": {**a.labels, "pod": f"pod-{i}", "blob": "b" * 900},
                                   "fingerprint": f"{i:016x}", "annotations": {"description": "d" * 1500}})
              for i, a in enumerate(group.alerts * 30)]
    body = build_message(notification(group.model_copy(update={"alerts": alerts}), "teams-ops", "teams"), templates,
                         receiver("https://x.example/a"))
    assert len(json.dumps(body, ensure_ascii=False).encode()) <= CARD_LIMIT and problems(body) == []
    assert "more alerts" in texts(body["attachments"][0]["content"])


def test_a_storm_summary_is_one_valid_card(templates: Templates) -> None:
    groups = [webhook_message(f) for f in ("firing-poddown", "firing-highlatency-group2", "firing-higherrorrate")]
    summary = Notification(7, "teams-ops", "teams", storm_lane("teams-ops", 3),
                           summary_group(3, groups, "https://relay.example"), datetime.now(UTC))
    body = build_message(summary, templates, receiver("https://x.example/a"))
    assert problems(body) == []
    card = body["attachments"][0]["content"]
    assert texts(card).startswith("Alert storm: 4 alerts folded")
    assert card["body"][-1]["actions"][0]["url"] == "https://relay.example/api/v1/notifications?summary=7&limit=1000"


@pytest.mark.parametrize("path", sorted(GOLDEN.glob("*.txt")), ids=lambda p: p.name)
def test_every_golden_card_is_valid_against_the_adaptive_cards_schema(path: Path) -> None:
    body = json.loads(path.read_text(encoding="utf-8").partition("\n")[2])
    assert problems(body) == []


def test_the_schema_check_itself_refuses_a_broken_card() -> None:
    assert card_problems({"type": "AdaptiveCard", "version": "1.4", "body": [{"type": "TextBlock"}]})
    assert card_problems({"type": "AdaptiveCard", "version": "1.4", "body": [], "msteams": {"entities": []}})


async def test_routes_yaml_takes_a_teams_receiver(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                  session: aiohttp.ClientSession) -> None:
    secret = f"https://prod-12.westeurope.logic.azure.com/workflows/abc/triggers/manual/paths/invoke?sig={SIG}"
    monkeypatch.setenv("TEAMS_WORKFLOW_URL", secret)
    routes = tmp_path / "routes.yaml"
    routes.write_text("receivers:\n  - name: teams-ops\n    teams:\n      webhook_url: ${TEAMS_WORKFLOW_URL}\n"
                      "default_receivers: [teams-ops]\n")
    config = load_routes(routes, Templates(TEMPLATES)).receivers["teams-ops"]
    channel = build_channel(config, Templates(TEMPLATES), session)
    assert isinstance(channel, TeamsChannel) and SIG not in channel.destination
    budget = budget_of(config, channel.destination, True)
    assert budget is not None and (budget.rate, budget.burst) == (1.0, 4)
    text = render(config, as_notification(config, webhook_message("firing-poddown"), datetime.now(UTC)),
                  Templates(TEMPLATES))
    assert text.startswith("# POST to the Teams Workflows URL (a secret: not shown)")
    assert_leaks_no_secret([text], [SIG])
