"""`.pre-commit-hooks.yaml`: pre-commit installs relay from this repository and its relay-routes-check hook passes a
good routes.yaml and stops a broken one, as in a team's repository (`pre-commit try-repo`, the real pre-commit).

pre-commit builds a virtualenv and pip-installs relay into it (about 20-30 s with a warm pip cache); try-repo
builds it for each run, so the two runs go side by side.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import sys
from pathlib import Path

import yaml

from tests.helpers import REPO
from tests.requirements import CI_EXAMPLES
from tests.review_repo import HEAD_ROUTES, commit, git, write

OFFLINE = ("Failed to establish a new connection", "Temporary failure in name resolution", "Network is unreachable",
           "No matching distribution found")
SECRETS = {"SLACK_WEBHOOK_URL": "https://hooks.example/x", "PAGERDUTY_ROUTING_KEY": "k"}


def hook_repository(into: Path) -> Path:
    """This repository as a team's pre-commit would fetch it: its tracked files as they are now, in one commit."""
    for name in git(REPO, "ls-files", "-z", "--cached", "--others", "--exclude-standard").split("\0"):
        source = REPO / name
        if name and source.is_file():
            (into / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, into / name)
    git(into, "init", "-q")
    commit(into, "relay")
    return into


def team_repository(into: Path, routes: str) -> Path:
    into.mkdir()
    git(into, "init", "-q")
    # a YAML file the hook must not be given (it is not a routes file: `routes check` would refuse it)
    write(into, {"routes.yaml": routes, "deploy/values.yaml": "replicas: 2\n"})
    commit(into, "routes")
    return into


async def try_repo(hooks: Path, team: Path, home: Path) -> tuple[int, str]:
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("RELAY_")}, **SECRETS,
           "PRE_COMMIT_HOME": str(home), "PRE_COMMIT_COLOR": "never"}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "pre_commit", "try-repo", str(hooks), "relay-routes-check", "--all-files",
        "--verbose", cwd=team, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
    out, _ = await asyncio.wait_for(proc.communicate(), 300)
    assert proc.returncode is not None
    return proc.returncode, out.decode()


def test_the_hook_manifest() -> None:
    [hook] = yaml.safe_load((REPO / ".pre-commit-hooks.yaml").read_text())
    assert (hook["id"], hook["language"], hook["entry"]) == ("relay-routes-check", "python",
                                                             "relay routes check --strict")
    assert hook["pass_filenames"] is True


async def test_try_repo_passes_a_good_routes_file_and_stops_a_broken_one(tmp_path: Path) -> None:
    hooks = hook_repository(tmp_path / "relay")
    good = team_repository(tmp_path / "good", HEAD_ROUTES)
    broken = team_repository(tmp_path / "broken", HEAD_ROUTES.replace("receivers: [slack-alerts]\n\ndefault",
                                                                      "receivers: [slack-alertz]\n\ndefault"))
    (passed, passed_out), (failed, failed_out) = await asyncio.gather(
        try_repo(hooks, good, tmp_path / "home-good"), try_repo(hooks, broken, tmp_path / "home-broken"))
    if any(s in out for s in OFFLINE for out in (passed_out, failed_out)):
        CI_EXAMPLES.missing("pre-commit cannot install relay's dependencies here (no package index)")
    assert passed == 0, passed_out
    assert "relay routes check --strict" in passed_out and "Passed" in passed_out
    assert "routes.yaml: ok (3 receivers, 3 routes, strict)" in passed_out
    assert failed == 1, failed_out
    assert "Failed" in failed_out
    assert ("relay: routes.yaml:15: route 3 names unknown receiver 'slack-alertz'; "
            "known: ['ops-mail', 'pagerduty-oncall', 'slack-alerts']") in failed_out
    assert "values.yaml" not in passed_out + failed_out
