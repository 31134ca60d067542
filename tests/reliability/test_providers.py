"""Providers that are down, refusing or slow, under steady load: delivery is delayed, never dropped or doubled,
Retry-After is waited for, and a slow provider holds only its own receiver's share of the workers.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections import defaultdict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from relay.config.settings import Settings
from tests.helpers import poll_until, relay_settings, running_relay
from tests.reliability.conftest import Profile, Stack, expose, record
from tests.reliability.load import NAME, Load, settled, webhook

RETRY_AFTER = 2
IN_FLIGHT_PER_RECEIVER = Settings.model_fields["workers_per_receiver"].default


@dataclass(frozen=True)
class Faults:
    name: str
    start: Callable[[Stack], Awaitable[None]]
    end: Callable[[Stack], Awaitable[None]]
    # Integrations whose server vanishes mid-conversation: a message it took may lose its answer, so relay
    # cannot know and sends again (bounded by what was in flight).
    may_repeat: tuple[str, ...] = ()


async def _down(stack: Stack) -> None:
    stack.slack.fail_all(503)
    await stack.pagerduty.go_offline()
    await stack.smtp.go_offline()


async def _up(stack: Stack) -> None:
    stack.slack.recover()
    await stack.pagerduty.go_online()
    await stack.smtp.go_online()


async def _refusing(stack: Stack) -> None:
    stack.slack.fail_all(429, headers={"Retry-After": str(RETRY_AFTER)})
    stack.pagerduty.fail_all(500)
    stack.smtp.fail_all("421 4.3.2 Service not available, closing transmission channel", stage="MAIL")


async def _accepting(stack: Stack) -> None:
    stack.slack.recover()
    stack.pagerduty.recover()
    stack.smtp.recover()


FAULTS = [
    Faults("down: Slack 503, PagerDuty and SMTP not listening", _down, _up, may_repeat=("pagerduty", "email")),
    Faults("refusing: Slack 429 storm with Retry-After, PagerDuty 500, SMTP 421", _refusing, _accepting),
]


@pytest.mark.parametrize("faults", FAULTS, ids=["down", "refusing"])
async def test_providers_down_then_up_deliver_everything_once_in_order(tmp_path: Path, stack: Stack,
                                                                         profile: Profile, faults: Faults) -> None:
    # Retry-After is honoured up to RELAY_RETRY_MAX_SECONDS (issue 11 item 4): keep the cap above the 429s' hint.
    settings = relay_settings(tmp_path, stack.routes, retry_max_seconds=RETRY_AFTER + 1)
    async with running_relay(settings) as relay:
        load = Load(relay.url, stack.token, profile.rate, prefix="Relo")
        offering = asyncio.create_task(load.run(profile.outage_seconds + 2))
        await asyncio.sleep(1)  # load flowing normally first
        await faults.start(stack)
        await asyncio.sleep(profile.outage_seconds)
        await faults.end(stack)
        await offering
        recovered = time.monotonic()
        # Delivery is not timed here (speed lives in bench/): the bound only has to outlast draining what piled up.
        result = await settled(stack, load, timeout=max(30.0, 3 * profile.outage_seconds))
        drained = time.monotonic() - recovered
        unfinished = [r for r in await relay.history(limit="1000") if r["state"] != "delivered"]
        await expose(stack, relay.url)
    stack.exposure.add("error body", "\n".join(load.error_bodies))

    repeats: dict[str, int] = defaultdict(int)
    for integration, _, _, times in result.duplicates:
        repeats[integration] += len(times) - 1
    failed = sum(1 for r in [*stack.slack.requests, *stack.pagerduty.requests] if r.status >= 300)
    gaps = retry_after_gaps(stack)
    record(f"providers {faults.name.split(':')[0]}", profile=profile.name, outage_seconds=profile.outage_seconds,
           rate=profile.rate, webhooks_accepted=load.accepted_count, failed_provider_calls=failed,
           **result.summary(), drained_seconds=round(drained, 1),
           shortest_wait_after_429=round(min(gaps), 2) if gaps else None)
    assert result.lost == [] and result.out_of_order == [], unfinished
    assert load.answers.keys() == {"200"}  # relay kept accepting while providers were down
    assert failed > 0  # the faults were felt
    assert set(repeats) <= set(faults.may_repeat) and all(n <= IN_FLIGHT_PER_RECEIVER for n in repeats.values())
    assert all(gap >= RETRY_AFTER for gap in gaps)


def retry_after_gaps(stack: Stack) -> list[float]:
    """For each Slack message answered 429, seconds until relay tried that message again."""
    tries: dict[tuple[str, bool], list[tuple[float, int]]] = defaultdict(list)
    for request in stack.slack.requests:
        text = str(request.body)
        for name in set(NAME.findall(text)):
            tries[(name, "[RESOLVED]" in text)].append((request.monotonic, request.status))
    gaps = []
    for attempts in tries.values():
        for (at, status), (next_at, _) in itertools.pairwise(attempts):
            if status == 429:
                gaps.append(next_at - at)
    return gaps


async def test_slow_provider_does_not_stall_other_receivers(tmp_path: Path, stack: Stack, profile: Profile) -> None:
    headers = {"Authorization": f"Bearer {stack.token}"}

    async def post(relay: Any, name: str, to: list[str]) -> None:
        answer = await relay.client.post("/webhook", json=webhook(name, to), headers=headers)
        assert answer.status_code == 200

    # A backlog for PagerDuty, left by an outage: relay restarts with all of it due at once.
    stack.pagerduty.fail_all(503)
    async with running_relay(relay_settings(tmp_path, stack.routes)) as relay:
        await asyncio.gather(*(post(relay, f"Relsx{i:05d}", ["pagerduty"]) for i in range(profile.slow_notifications)))
        await stack.pagerduty.wait_for_requests(profile.slow_notifications)
    stack.pagerduty.recover()
    stack.pagerduty.slow(profile.slow_seconds)
    async with running_relay(relay_settings(tmp_path, stack.routes)) as relay:
        await stack.pagerduty.wait_for_slowed(IN_FLIGHT_PER_RECEIVER)
        # PagerDuty now holds every send it is allowed; Slack and email must flow regardless, also when
        # Alertmanager flushes many groups at once.
        others = 2 * IN_FLIGHT_PER_RECEIVER + 10
        await asyncio.gather(*(post(relay, f"Relfx{i:05d}", ["slack", "email"]) for i in range(others)))
        await stack.slack.wait_for(others, timeout=30)
        await stack.smtp.wait_for(others, timeout=30)
        paged_meanwhile = len(stack.pagerduty.events)
        stack.pagerduty.recover()  # the sends already waiting still take their full time
        await poll_until(lambda: len({e["dedup_key"] for e in stack.pagerduty.events}) >= profile.slow_notifications,
                         timeout=profile.slow_seconds + 30)
        await expose(stack, relay.url)
    paged = {event["dedup_key"] for event in stack.pagerduty.events}
    record("slow provider", profile=profile.name, answer_seconds=profile.slow_seconds,
           slow_notifications=profile.slow_notifications, other_messages=2 * others,
           pagerduty_delivered_while_others_flowed=paged_meanwhile,
           pagerduty_concurrent_peak=stack.pagerduty.slowed_peak,
           pagerduty_repeats=len(stack.pagerduty.events) - len(paged))
    assert paged_meanwhile == 0  # everything else went through while PagerDuty's first answers were still due
    assert stack.pagerduty.slowed_peak <= IN_FLIGHT_PER_RECEIVER
    assert len(paged) == profile.slow_notifications
