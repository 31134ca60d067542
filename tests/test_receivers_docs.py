"""The routes.yaml blocks of docs/receivers/*.md load as written (with their ${VAR}s set), so a reader who copies
one gets a receiver relay accepts, of the integration the page is about."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from relay.config.routes import load_routes
from relay.templating import Templates
from tests.helpers import REPO, TEMPLATES

PAGES = sorted(p for p in (REPO / "docs" / "receivers").glob("*.md") if p.name != "index.md")
_BLOCK = re.compile(r"```yaml\n(.*?)```", re.S)
_VARS = re.compile(r"\$\{([A-Z_]+)\}")
VALUES = {"WEBHOOK_URL": "https://hooks.example/alerts", "DISCORD_WEBHOOK_URL": "https://discord.com/api/webhooks/1/t",
          "TELEGRAM_BOT_TOKEN": "1:token", "TEAMS_WORKFLOW_URL": "https://prod-1.logic.azure.com/workflows/x?sig=s"}


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.stem)
def test_the_pages_routes_yaml_loads(page: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    [block] = _BLOCK.findall(page.read_text(encoding="utf-8"))
    for name in _VARS.findall(block):
        monkeypatch.setenv(name, VALUES.get(name, "secret-value"))
    routes = tmp_path / "routes.yaml"
    routes.write_text(block)
    loaded = load_routes(routes, Templates(TEMPLATES))
    [receiver] = loaded.receivers.values()
    assert receiver.integration == page.stem and loaded.unconfigured() == {}
