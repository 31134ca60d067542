"""PostgreSQL restarted (cleanly, and crashed) under steady load, with two relay replicas that an HA Alertmanager
pair both posts every webhook to: webhooks get 503 while it is down and are retried; everything answered 200 is
delivered once per destination, except sends whose outcome could not be recorded while it was down (bounded by
what was in flight).
"""

from __future__ import annotations

import asyncio
import itertools
import time
from pathlib import Path

from relay.config.settings import Settings
from tests.e2e.process import RelayProcess
from tests.reliability.conftest import Profile, Stack, expose, record
from tests.reliability.load import Load, settled
from tests.reliability.postgres_cluster import postgres_cluster

REPLICAS = 2
IN_FLIGHT_PER_RECEIVER = Settings.model_fields["workers_per_receiver"].default
LEASE_SECONDS = 6  # an unrecorded send is tried again when its lease ends


async def test_postgresql_restarted_under_load(tmp_path: Path, stack: Stack, profile: Profile) -> None:
    async with postgres_cluster() as pg:
        replicas = []
        for i in range(REPLICAS):
            (tmp_path / f"replica{i}").mkdir()
            replicas.append(RelayProcess(tmp_path / f"replica{i}", stack.routes,
                                         {**stack.env, "RELAY_SEND_TIMEOUT_SECONDS": "5",
                                          "RELAY_LEASE_SECONDS": str(LEASE_SECONDS)}, database_url=pg.url))
        await asyncio.gather(*(r.start() for r in replicas))
        load = Load(replicas[0].url, stack.token, profile.rate, prefix="Relp",
                    mirrors=tuple(r.url for r in replicas[1:]))
        offering = asyncio.create_task(load.run(profile.load_seconds))
        outages: list[tuple[float, float, str]] = []  # (went down, back up, how)
        started, started_at = time.monotonic(), time.time()
        try:
            for mode in itertools.cycle(["fast", "immediate"]):  # a clean restart, then a crash, ...
                await asyncio.sleep(profile.restart_every)
                if time.monotonic() - started > profile.load_seconds and len(outages) >= 2:
                    break
                down = time.time()
                await pg.restart(mode)
                outages.append((down, time.time(), mode))
            await offering
            result = await settled(stack, load, timeout=LEASE_SECONDS + 60)
            for replica in replicas:
                await expose(stack, replica.url)
        finally:
            offering.cancel()
            for replica in replicas:
                await replica.terminate()
                stack.exposure.add("log", replica.log.read_text(errors="replace"))
    stack.exposure.add("error body", "\n".join(load.error_bodies))

    per_outage: dict[tuple[int, str], int] = {}
    for integration, name, kind, times in result.duplicates:
        for first, again in itertools.pairwise(times):
            # A send whose outcome could not be recorded while PostgreSQL was down, sent again after its lease.
            outage = next((k for k, (_, up, _) in enumerate(outages) if first <= up), None)
            assert outage is not None and again >= outages[outage][0], (
                f"{integration} got {name} ({kind}) twice with no outage in between: at "
                f"{[round(t - started_at, 2) for t in times]}s, "
                f"outages {[(round(d - started_at, 2), round(u - started_at, 2)) for d, u, _ in outages]}")
            per_outage[(outage, integration)] = per_outage.get((outage, integration), 0) + 1
    record("postgresql restarts under load", profile=profile.name, seconds=profile.load_seconds, rate=profile.rate,
           replicas=REPLICAS, restarts=len(outages), crashes=sum(1 for *_, m in outages if m == "immediate"),
           longest_outage_seconds=round(max((u - d for d, u, _ in outages), default=0), 2),
           webhooks_accepted=load.accepted_count, posts=load.sent, answers=dict(load.answers), **result.summary(),
           most_duplicates_in_one_outage=max(per_outage.values(), default=0))
    assert result.lost == [] and result.out_of_order == []
    assert "500" not in load.answers  # while PostgreSQL was away relay said 503 (retry), never 500
    assert len(outages) >= 2 and load.answers["503"] + sum(v for k, v in load.answers.items() if "Error" in k) > 0
    for integration in ("slack", "email", "pagerduty"):  # at most what every replica had in flight, per outage
        repeats = sum(n for (_, i), n in per_outage.items() if i == integration)
        assert repeats <= IN_FLIGHT_PER_RECEIVER * REPLICAS * len(outages), (integration, per_outage)
