"""`relay … --help` explains every command: a description, examples, the environment it reads, and for every option
and argument what it is, its default and an example (issue 22: 22 of them had no help at all)."""

from __future__ import annotations

import argparse
import subprocess
import sys
from collections.abc import Iterator

import pytest

from relay.cli.main import parser
from tests.helpers import REPO


def commands(top: argparse.ArgumentParser, path: tuple[str, ...] = ()) -> Iterator[tuple[tuple[str, ...],
                                                                                           argparse.ArgumentParser]]:
    """Every parser under `relay`, with the words that reach it, walked from the real parser."""
    yield path, top
    for action in top._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, child in action.choices.items():
                yield from commands(child, (*path, name))


ALL = list(commands(parser()))
SKIP = (argparse._HelpAction, argparse._VersionAction, argparse._SubParsersAction)


def test_the_walk_finds_every_command() -> None:
    names = {" ".join(path) for path, _ in ALL}
    assert {"serve", "test-alert", "routes check", "routes test", "routes diff", "templates render",
            "notifications list", "notifications show", "notifications cancel", "dead-letters list",
            "dead-letters show", "dead-letters retry", "dead-letters purge"} <= names


@pytest.mark.parametrize(("path", "command"), ALL, ids=[" ".join(p) or "relay" for p, _ in ALL])
def test_every_option_and_argument_has_help_with_its_default_and_an_example(
        path: tuple[str, ...], command: argparse.ArgumentParser) -> None:
    assert command.description, f"relay {' '.join(path)} has no description"
    assert command.epilog and "examples:\n  relay" in command.epilog, f"relay {' '.join(path)} has no example"
    for action in command._actions:
        if isinstance(action, SKIP):
            continue
        name = "/".join(action.option_strings) or action.dest
        where = f"relay {' '.join(path)} {name}"
        assert action.help and action.help != argparse.SUPPRESS, f"{where} has no help"
        assert "default" in action.help or action.required, f"{where} does not say its default"
        if action.nargs != 0:  # takes a value: show one
            assert "e.g." in action.help, f"{where} has no example"
    for action in command._actions:
        if isinstance(action, argparse._SubParsersAction):
            for choice in action._choices_actions:
                assert choice.help, f"relay {' '.join(path)} {choice.dest} has no summary"


@pytest.mark.parametrize(("path", "command"), ALL, ids=[" ".join(p) or "relay" for p, _ in ALL])
def test_each_command_prints_its_own_help(path: tuple[str, ...], command: argparse.ArgumentParser,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        parser().parse_args([*path, "--help"])
    assert exited.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith(f"usage: relay {' '.join(path)}".rstrip()), out
    assert "examples:\n" in out and "environment:\n" in out


def test_dead_letters_list_help_is_lists_own() -> None:
    """As a user runs it: list's help names list's options, not the dead-letters family's summary."""
    done = subprocess.run([sys.executable, "-m", "relay", "dead-letters", "list", "--help"], cwd=REPO,
                          capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("usage: relay dead-letters list [-h]")
    assert "--receiver NAME" in done.stdout and "--limit N" in done.stdout and "(default: 100)" in done.stdout
    assert "RELAY_ADMIN_TOKEN" in done.stdout
