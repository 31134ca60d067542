"""relay SIGKILLed every few seconds under steady load: every webhook answered 200 is delivered, and the only
duplicates are sends a killed process made but had not yet recorded (at most twice its slots per receiver).
"""

from __future__ import annotations

import asyncio
import itertools
import random
import time
from pathlib import Path

from relay.config.settings import Settings
from tests.e2e.process import RelayProcess
from tests.reliability.conftest import Profile, Stack, expose, record
from tests.reliability.load import Load, settled

# What a killed process can have sent but not recorded: per receiver, its sends in flight (its slots) and the sends
# whose outcome was still being written (a slot is free once the provider answered, issue 24; at most as many again).
IN_FLIGHT_PER_RECEIVER = 2 * Settings.model_fields["workers_per_receiver"].default
# A send the killed process wrote can reach the provider a moment after the kill (later still when this machine is
# busy); a new relay process cannot send anything this soon after it is spawned (importing Python takes longer).
IN_FLIGHT_GRACE = 0.5


async def test_sigkill_every_few_seconds_loses_nothing(tmp_path: Path, stack: Stack, profile: Profile) -> None:
    relay = RelayProcess(tmp_path, stack.routes, {**stack.env, "RELAY_SEND_TIMEOUT_SECONDS": "5",
                                                  "RELAY_LEASE_SECONDS": "10"})
    await relay.start()
    load = Load(relay.url, stack.token, profile.rate, prefix="Relk")
    kills: list[float] = []  # time.time() of each SIGKILL
    spawns: list[float] = []  # ... and of the restart that followed it
    offering = asyncio.create_task(load.run(profile.load_seconds))
    rng = random.Random(3)  # kills land at different phases of the work, reproducibly
    started, started_at = time.monotonic(), time.time()
    try:
        while time.monotonic() - started < profile.load_seconds:
            await asyncio.sleep(profile.kill_every * rng.uniform(0.5, 1.5))
            kills.append(time.time())
            await relay.kill()
            spawns.append(time.time())
            await relay.start()
        await offering  # every webhook offered has been answered 200 by now
        result = await settled(stack, load, timeout=60)
        await expose(stack, relay.url, None)
    finally:
        offering.cancel()
        await relay.terminate()
    stack.exposure.add("log", relay.log.read_text(errors="replace"))
    stack.exposure.add("error body", "\n".join(load.error_bodies))

    per_kill: dict[tuple[int, str], int] = {}
    for integration, name, kind, times in result.duplicates:
        for first, again in itertools.pairwise(times):
            # A repeat is a send a killed process made before it died, made again by a later process: charge it
            # to the kill that ended the first sender (the first restart after the first copy arrived).
            killed = next((k for k, spawn in enumerate(spawns) if first <= spawn + IN_FLIGHT_GRACE), None)
            assert killed is not None and again >= kills[killed], (
                f"{integration} got {name} ({kind}) twice without a crash in between: at "
                f"{[round(t - started_at, 2) for t in times]}s, kills at {[round(k - started_at, 2) for k in kills]}s")
            per_kill[(killed, integration)] = per_kill.get((killed, integration), 0) + 1
    record("sigkill under load", profile=profile.name, seconds=profile.load_seconds, rate=profile.rate,
           kills=len(kills), webhooks_accepted=load.accepted_count, posts=load.sent, answers=dict(load.answers),
           **result.summary(), most_duplicates_in_one_kill=max(per_kill.values(), default=0))
    assert result.lost == [] and result.out_of_order == [] and "500" not in load.answers
    assert len(kills) >= 2 and load.accepted_count >= profile.rate * profile.load_seconds * 0.5
    # Each kill can repeat at most what one receiver had in flight; summed per receiver, so that a repeat whose first
    # copy reached the provider late (and is charged to the next kill) cannot fail the bound.
    for integration in ("slack", "email", "pagerduty"):
        repeats = sum(n for (_, i), n in per_kill.items() if i == integration)
        assert repeats <= IN_FLIGHT_PER_RECEIVER * len(kills), (integration, per_kill)
