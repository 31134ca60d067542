"""Reload survives anything (issue 20 #4): a routes.yaml or template that cannot be read or loaded is refused with
file and reason, counted, the last good configuration keeps serving, and the file watcher keeps watching."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import Providers
from tests.helpers import fixture, poll_until, relay_settings, running_relay

BOMB = ('a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]\n'
        + "".join(f'{c}: &{c} [*{p},*{p},*{p},*{p},*{p},*{p},*{p},*{p},*{p}]\n'
                  for p, c in zip("abcdefgh", "bcdefghi", strict=True)))

BROKEN = [  # (what is written, what the refusal says)
    (b"receivers:\n  - name: x\xff\n", r":2: byte 0xff is not UTF-8"),
    (b"routes: " + b"[" * 5000 + b"]" * 5000 + b"\n", r"nested deeper than"),
    (BOMB.encode(), r"aliases expand to more than"),
]


async def failures(relay: Any) -> float:
    text = (await relay.client.get("/metrics")).text
    found = re.search(r"^relay_config_reload_failures_total (\S+)$", text, re.M)
    return float(found[1]) if found else 0.0


def write(path: Path, data: bytes, stamp: int) -> None:
    """Write and give the file its own modification time, so the watcher sees each write as a change."""
    path.write_bytes(data)
    os.utime(path, (stamp, stamp))


async def test_a_broken_routes_yaml_is_refused_by_reload_and_the_watcher_keeps_watching(
        tmp_path: Path, providers: Providers, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("relay.app.WATCH_SECONDS", 0.05)
    good = providers.routes.read_bytes()
    async with running_relay(relay_settings(tmp_path, providers.routes)) as relay:
        before = await failures(relay)  # the registry is the process's: other tests count too
        for n, (data, reason) in enumerate(BROKEN, start=1):
            write(providers.routes, data, 1_000_000 + n)
            answer = await relay.admin("POST", "/-/reload")
            assert answer.status_code == 400
            assert re.search(re.escape(str(providers.routes)) + r".*" + reason, answer.json()["error"])
            await poll_until(lambda n=n: _at_least(relay, before + 2 * n))  # the API's refusal and the watcher's
            assert (await relay.client.get("/readyz")).status_code == 200
        # The last good routes still deliver, and a valid change is picked up by the watcher without a restart.
        assert (await relay.post(fixture("firing-poddown.json"))).status_code == 200
        await providers.pagerduty.wait_for(1)
        write(providers.routes, good.replace(b"receivers: [slack-alerts]\n\ndefault",
                                             b"receivers: [ops-email]\n\ndefault"), 2_000_000)
        await poll_until(lambda: _reloaded(relay))
        assert "relay_config_last_reload_successful 1.0" in (await relay.client.get("/metrics")).text


async def test_a_template_that_is_not_utf8_or_too_large_is_refused_with_its_name(
        tmp_path: Path, providers: Providers) -> None:
    templates = tmp_path / "templates"
    (templates / "slack").mkdir(parents=True)
    async with running_relay(relay_settings(tmp_path, providers.routes, templates=templates)) as relay:
        before = await failures(relay)
        (templates / "slack" / "title.j2").write_bytes(b"{{ alert.labels.alertname }} \xc3(\n")
        answer = await relay.admin("POST", "/-/reload")
        assert answer.status_code == 400
        assert "slack/title.j2:1: byte 0xc3 is not UTF-8" in answer.json()["error"]
        (templates / "slack" / "title.j2").write_text("x" * (300 * 1024))
        answer = await relay.admin("POST", "/-/reload")
        assert answer.status_code == 400 and "slack/title.j2: larger than 256 KB" in answer.json()["error"]
        assert await failures(relay) == before + 2
        (templates / "slack" / "title.j2").unlink()
        assert (await relay.admin("POST", "/-/reload")).status_code == 200


async def _at_least(relay: Any, count: int) -> bool:
    return await failures(relay) >= count


async def _reloaded(relay: Any) -> bool:
    return relay.app.state.services.runtime.routes.spec.routes[-1].receivers == ["ops-email"]


async def test_a_bug_while_loading_is_refused_like_a_broken_file(
        tmp_path: Path, providers: Providers, monkeypatch: pytest.MonkeyPatch) -> None:
    """The catch-all of Runtime.reload: every input the tests above know is now refused as a ConfigError before it,
    so without this test it could go unnoticed. A load that raises anything else (here a stand-in bug; before
    relay.config.timeintervals caught OSError, `location: Europe`, a folder of the zone database, raised
    IsADirectoryError) answers 400 with the file and the error's type, counts, and the last good routes serve."""
    async with running_relay(relay_settings(tmp_path, providers.routes)) as relay:
        before = await failures(relay)

        def broken(*_: Any, **__: Any) -> None:
            raise RuntimeError("a bug")

        with monkeypatch.context() as patch:
            patch.setattr("relay.runtime.load_routes", broken)
            answer = await relay.admin("POST", "/-/reload")
        assert answer.status_code == 400
        assert answer.json()["error"] == f"{providers.routes}: cannot load: RuntimeError: a bug"
        assert await failures(relay) == before + 1
        assert (await relay.post(fixture("firing-poddown.json"))).status_code == 200
        await providers.pagerduty.wait_for(1)
        assert (await relay.admin("POST", "/-/reload")).status_code == 200
