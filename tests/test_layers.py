"""The layers a newcomer can name (docs/architecture.md): what importing a low layer drags in.

import-linter (`lint-imports` in .ci/run) checks the directions between relay's modules; this checks what a
real interpreter loads, third-party packages included: `relay routes check` and the pre-commit hook import
relay.config.routes, and must not pay for (or break on) a provider SDK or the web framework.
"""

from __future__ import annotations

import subprocess
import sys

import pytest

PROVIDERS_AND_WEB = ("aiohttp", "slack_sdk", "aiosmtplib", "asyncpg", "httpx", "starlette", "uvicorn")


def loaded_by(module: str) -> set[str]:
    """The top-level packages a fresh interpreter has loaded after `import module`."""
    code = f"import sys, {module}; print('\\n'.join(sorted({{m.partition('.')[0] for m in sys.modules}})))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    return set(out.stdout.split())


@pytest.mark.parametrize("module", ["relay.config.routes", "relay.config.receivers", "relay.times", "relay.alerts"])
def test_configuration_loads_no_provider_sdk_and_no_web_framework(module: str) -> None:
    loaded = loaded_by(module)
    assert "relay" in loaded  # the probe works: it sees what the import loaded
    assert loaded.isdisjoint(PROVIDERS_AND_WEB), sorted(loaded & set(PROVIDERS_AND_WEB))


def test_the_probe_sees_a_provider_sdk_when_one_is_loaded() -> None:
    """Without this, a probe that saw nothing would pass the test above."""
    assert {"aiohttp", "slack_sdk"} <= loaded_by("relay.channels.factory")
