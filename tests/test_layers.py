"""The layers a newcomer can name (docs/architecture.md): what importing a low layer drags in.

import-linter (`lint-imports` in .ci/run) checks the directions between relay's modules; this checks what a
real interpreter loads, third-party packages included: `relay routes check` and the pre-commit hook import
relay.config.routes, and must not pay for (or break on) a provider SDK or the web framework.
"""

from __future__ import annotations

import ast
import pkgutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

import relay

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


def test_every_module_of_relay_is_in_a_layer_of_the_contract() -> None:
    """import-linter checks only the modules its `layers` contract names: a new top-level module left out of it
    could import anything. The two feature packages spanning layers (storms, actions) name their parts, so their
    __init__ must import nothing; __main__ only runs the command line."""
    root = Path(relay.__file__).parent
    contracts = tomllib.loads((root.parent / "pyproject.toml").read_text())["tool"]["importlinter"]["contracts"]
    [layers] = [c["layers"] for c in contracts if c["id"] == "layers"]
    named = [name.strip() for line in layers for name in line.replace("|", ":").split(":")]
    modules = [m.name for m in pkgutil.walk_packages(relay.__path__, "relay.")]
    outside = {m for m in modules if not any(m == n or m.startswith(n + ".") for n in named)}
    assert outside == {"relay.__main__", "relay.storms", "relay.actions"}, sorted(outside)
    for package in ("storms", "actions"):
        tree = ast.parse((root / package / "__init__.py").read_text())
        assert not [n for n in ast.walk(tree) if isinstance(n, ast.Import | ast.ImportFrom)
                    and not (isinstance(n, ast.ImportFrom) and n.module == "__future__")], package
