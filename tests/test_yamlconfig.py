"""Small inputs stay small (issue 20 #6) and YAML mistakes read in plain words with file and line (issue 22 #7)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from relay.config import yamlconfig
from relay.config.routes import load_routes
from relay.errors import ConfigError
from relay.templating import Templates
from tests.helpers import ROUTES, TEMPLATES
from tests.test_cli import run_relay
from tests.test_reload import BOMB

ENV = {"SLACK_WEBHOOK_URL": "https://hooks.slack.example/services/T/B/X", "PAGERDUTY_ROUTING_KEY": "k" * 32}


def refusal(tmp_path: Path, text: str | bytes) -> ConfigError:
    path = tmp_path / "routes.yaml"
    path.write_bytes(text.encode() if isinstance(text, str) else text)
    with pytest.raises(ConfigError) as caught:
        load_routes(path, Templates(TEMPLATES), ENV)
    return caught.value


def test_the_bomb_is_small() -> None:
    assert len(BOMB) < 500  # ten levels of nine: 9**9 = 387 million strings if expanded


@pytest.mark.parametrize("text", [BOMB, "routes: &r [{matchers: [], receivers: *r}]\n",
                                  "a: &a {x: 1, y: 2}\n" + "".join(f"{k}: &{k} {{x: *{p}, y: *{p}}}\n" for p, k in
                                                                     zip("abcdefghijklmnopqrstuvwxy",
                                                                         "bcdefghijklmnopqrstuvwxyz", strict=True))])
def test_a_bomb_is_refused_in_under_a_second_in_one_line(tmp_path: Path, text: str) -> None:
    # CPU time, not the wall clock: on a shared, loaded machine the wall clock also counts other processes' turns.
    started = time.process_time()
    error = refusal(tmp_path, text)
    assert time.process_time() - started < 1.0
    assert "\n" not in str(error) and str(error).startswith(f"{tmp_path / 'routes.yaml'}:")


def test_a_bomb_names_its_reason(tmp_path: Path) -> None:
    assert "aliases expand to more than 100,000 values: refused (an alias bomb?)" in str(refusal(tmp_path, BOMB))


def test_aliases_within_the_budget_still_load(tmp_path: Path) -> None:
    pages = "receivers: [slack-alerts, ops-email, pagerduty-oncall]"
    text = ROUTES.read_text().replace(pages, "receivers: &pages [slack-alerts, ops-email, pagerduty-oncall]", 1)
    text = text.replace(pages, "receivers: *pages")
    path = tmp_path / "routes.yaml"
    path.write_text(text)
    assert "*pages" in text
    routes = load_routes(path, Templates(TEMPLATES), ENV)
    labels = {"alertname": "AvailabilityErrorBudgetBurn", "severity": "critical"}
    assert [t.receiver for t in routes.targets(labels)] == ["slack-alerts", "ops-email", "pagerduty-oncall"]


def test_an_alias_that_contains_itself_and_deep_nesting_are_refused(tmp_path: Path) -> None:
    assert "nested deeper than 64 levels" in str(refusal(tmp_path, "receivers: &r [*r]\n"))
    assert "nested deeper than" in str(refusal(tmp_path, "receivers: " + "[" * 3000 + "]" * 3000 + "\n"))


def test_a_large_file_is_refused_unread(tmp_path: Path) -> None:
    text = ROUTES.read_text() + "#" * yamlconfig.MAX_FILE_BYTES
    assert "larger than 1024 KB: refused" in str(refusal(tmp_path, text))


def test_a_byte_that_is_not_utf8_is_named_with_its_line(tmp_path: Path) -> None:
    error = refusal(tmp_path, ROUTES.read_bytes().replace(b"slack-alerts", b"slack-\xe9lerts", 1))
    line = ROUTES.read_bytes().split(b"slack-alerts")[0].count(b"\n") + 1
    assert (error.line, error.reason) == (line, "byte 0xe9 is not UTF-8: save the file as UTF-8")


@pytest.mark.parametrize(("text", "line", "says"), [
    ("receivers:\n  - name: a\n   slack: {}\n", 3, "the indentation does not line up"),
    ("receivers:\n\t- name: a\n", 2, "a tab? indent with spaces"),
    ("receivers: [a, b\nroutes: []\n", 2, "a [list] that is not closed with ']'"),
    ('receivers:\n  - name: "a\n', 3, "a quote is not closed"),
    ("receivers: *nope\n", 1, "an alias (*name) with no anchor (&name) above it"),
])
def test_yaml_mistakes_read_in_plain_words_with_file_and_line(tmp_path: Path, text: str, line: int,
                                                               says: str) -> None:
    error = refusal(tmp_path, text)
    assert error.file == str(tmp_path / "routes.yaml") and error.line == line
    assert error.reason.startswith("invalid YAML: ") and says in error.reason
    assert "<block" not in error.reason


@pytest.mark.parametrize("command", ["check", "diff", "serve"])
async def test_serve_check_and_diff_refuse_a_bomb_in_one_line(tmp_path: Path, command: str) -> None:
    bomb = tmp_path / "bomb.yaml"
    bomb.write_text(BOMB)
    args = {"check": ["routes", "check", str(bomb)], "diff": ["routes", "diff", str(ROUTES), str(bomb)],
            "serve": ["serve"]}[command]
    started = time.monotonic()
    code, out = await run_relay(*args, env={**ENV, "RELAY_ROUTES": str(bomb), "RELAY_TEMPLATES": str(TEMPLATES),
                                            "RELAY_DATABASE_URL": f"sqlite:///{tmp_path / 'r.db'}"}, cwd=tmp_path)
    took = time.monotonic() - started
    assert code in (1, 2)
    refusals = [line for line in out.splitlines() if "aliases expand to more than" in line]
    assert len(refusals) == 1 and "Traceback" not in out, out
    assert f"{bomb}:" in refusals[0]
    assert took < 10  # the process, start to end (importing relay is most of it); the refusal itself is < 1 s above
