"""docs/ci: the GitHub Actions workflow and the GitLab CI job, run step by step on a pull request's repository.

Each `run:` line (GitHub) and `script:` line (GitLab) runs as written in a clone with the change checked out,
with the CI's variables substituted. What the test cannot do is replaced, and nothing else: actions/checkout
and setup-python (the clone and this interpreter), the install step (relay is installed here; its command is
checked), and GitHub's API: the github-script step runs under node against a recording stand-in for `github`.
GitLab's notes API is a local server (tests/fakes/gitlab.py) that the job's real curl talks to.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from relay.cli.review.report import MARKER
from tests.fakes.gitlab import GitLabNotesServer
from tests.helpers import REPO
from tests.requirements import CI_EXAMPLES
from tests.review_repo import git, pull_request

WORKFLOW = REPO / "docs" / "ci" / "github-actions.yml"
GITLAB = REPO / "docs" / "ci" / "gitlab-ci.yml"
GOLDEN = REPO / "tests" / "golden" / "routesdiff" / "pull-request.md"
PATHS = ["routes.yaml", "templates/**", "deploy/prometheus/**"]


def ci_env(tmp_path: Path, extra: dict[str, str]) -> dict[str, str]:
    """A CI runner's environment: this interpreter's bin (where relay is installed) first, no RELAY_ settings
    and no provider secrets of the machine running the tests."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("RELAY_")
           and k not in ("SLACK_WEBHOOK_URL", "PAGERDUTY_ROUTING_KEY")}
    return {**env, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{env['PATH']}", "HOME": str(tmp_path),
            **extra}


async def sh(script: str, cwd: Path, env: dict[str, str], shell: tuple[str, ...]) -> str:
    proc = await asyncio.create_subprocess_exec(*shell, script, cwd=cwd, env=env, stdout=asyncio.subprocess.PIPE,
                                                stderr=asyncio.subprocess.STDOUT)
    out, _ = await asyncio.wait_for(proc.communicate(), 120)
    assert proc.returncode == 0, f"step failed ({proc.returncode}):\n{script}\n{out.decode()}"
    return out.decode()


def expand(text: str, values: dict[str, str]) -> str:
    """GitHub's `${{ expr }}` for the expressions the workflow uses (an unknown one fails the test)."""
    return re.sub(r"\$\{\{\s*(.*?)\s*\}\}", lambda m: values[m.group(1)], text)


def workflow() -> dict[Any, Any]:
    data = yaml.safe_load(WORKFLOW.read_text())
    assert isinstance(data, dict)
    return data


def test_the_workflow_runs_on_routing_pull_requests_with_what_it_needs() -> None:
    data = workflow()
    on = data.get("on", data.get(True))  # YAML 1.1 reads a bare `on` as true; GitHub reads it as `on`
    assert on == {"pull_request": {"paths": PATHS}}
    assert data["permissions"] == {"contents": "read", "pull-requests": "write"}
    steps = data["jobs"]["routes"]["steps"]
    assert steps[0] == {"uses": "actions/checkout@v4", "with": {"fetch-depth": 0, "persist-credentials": False}}
    assert steps[1]["uses"].startswith("actions/setup-python@")
    [install] = [s for s in steps if s.get("id") == "install"]
    assert install["run"] == 'pip install "$RELAY_SPEC"'
    assert re.fullmatch(r"relay @ git\+https://github\.com/\S+@v\d+\.\d+\.\d+", data["env"]["RELAY_SPEC"])
    [comment] = [s for s in steps if s.get("id") == "comment"]
    assert comment["uses"].startswith("actions/github-script@") and MARKER in comment["with"]["script"]


# What actions/github-script gives a script, with a `github` client that records instead of calling the API.
HARNESS = """
const fs = require('fs');
const calls = [];
const existing = JSON.parse(fs.readFileSync(process.env.EXISTING, 'utf8'));
const issues = {
  listComments: async (params) => ({data: existing}),
  createComment: async (params) => { calls.push({call: 'createComment', ...params}); return {data: {id: 1}}; },
  updateComment: async (params) => { calls.push({call: 'updateComment', ...params}); return {data: {}}; },
};
const github = {rest: {issues}, paginate: async (method, params) => (await method(params)).data};
const context = {repo: {owner: 'team', repo: 'alerts'}, issue: {number: 7}};
const AsyncFunction = Object.getPrototypeOf(async function () {}).constructor;
const script = new AsyncFunction('github', 'context', 'core', 'require', fs.readFileSync(process.env.SCRIPT, 'utf8'));
script(github, context, {}, require)
  .then(() => fs.writeFileSync(process.env.CALLS, JSON.stringify(calls)))
  .catch((error) => { console.error(error); process.exit(1); });
"""


def need(binary: str) -> str:
    return CI_EXAMPLES.which(binary, install="the CI example cannot run without it; .ci/run installs it")


async def github_script(script: str, repo: Path, tmp_path: Path, existing: list[dict[str, Any]]) -> list[Any]:
    node = need("node")
    files = {name: tmp_path / name for name in ("harness.js", "script.js", "existing.json", "calls.json")}
    files["harness.js"].write_text(HARNESS)
    files["script.js"].write_text(script)
    files["existing.json"].write_text(json.dumps(existing))
    env = {**os.environ, "SCRIPT": str(files["script.js"]), "EXISTING": str(files["existing.json"]),
           "CALLS": str(files["calls.json"])}
    await sh(str(files["harness.js"]), repo, env, (node,))
    return list(json.loads(files["calls.json"].read_text()))


async def run_workflow(repo: Path, tmp_path: Path, existing: list[dict[str, Any]]) -> tuple[list[Any], str]:
    data = workflow()
    summary = tmp_path / "step-summary.md"
    summary.write_text("")
    env = ci_env(tmp_path, {**data["env"], "GITHUB_STEP_SUMMARY": str(summary)})
    values = {"github.base_ref": "main"}
    calls: list[Any] = []
    for step in data["jobs"]["routes"]["steps"]:
        if step.get("id") == "comment":
            assert step["if"] == "github.event.pull_request.head.repo.full_name == github.repository"
            calls = await github_script(step["with"]["script"], repo, tmp_path, existing)
        elif "run" in step and step.get("id") != "install":
            step_env = {**env, **{k: expand(str(v), values) for k, v in step.get("env", {}).items()}}
            await sh(expand(step["run"], values), repo, step_env, ("bash", "--noprofile", "--norc", "-eo", "pipefail",
                                                                   "-c"))
    return calls, summary.read_text()


async def test_the_workflow_posts_the_diff_as_one_comment_and_then_updates_it(tmp_path: Path) -> None:
    repo = pull_request(tmp_path)
    golden = GOLDEN.read_text()
    calls, summary = await run_workflow(repo, tmp_path, existing=[])
    assert calls == [{"call": "createComment", "owner": "team", "repo": "alerts", "issue_number": 7, "body": golden}]
    assert summary == golden  # also in the job summary, where a pull request from a fork can read it

    bot = {"login": "github-actions[bot]", "type": "Bot"}
    existing = [{"id": 11, "user": {"login": "dev", "type": "User"}, "body": f"{MARKER} quoted by a person"},
                {"id": 12, "user": bot, "body": "another workflow's comment"},
                {"id": 13, "user": bot, "body": f"{MARKER}\nan earlier diff"}]
    calls, _ = await run_workflow(repo, tmp_path, existing)
    assert calls == [{"call": "updateComment", "owner": "team", "repo": "alerts", "comment_id": 13, "body": golden}]


async def test_the_workflow_fails_on_a_strict_finding(tmp_path: Path) -> None:
    repo = pull_request(tmp_path)
    routes = repo / "routes.yaml"
    routes.write_text(routes.read_text().replace("pagerduty: {routing_key: \"${PAGERDUTY_ROUTING_KEY}\"}",
                                                 "pagerduty: {routing_key: \"${PAGERDUTY_ROUTNG_KEY}\"}"))
    with pytest.raises(AssertionError, match=r"routes\.yaml:7: \$\{PAGERDUTY_ROUTNG_KEY\} is unset"):
        await run_workflow(repo, tmp_path, existing=[])


def gitlab_job() -> dict[str, Any]:
    data = yaml.safe_load(GITLAB.read_text())
    assert isinstance(data, dict) and list(data) == ["relay-routes"]
    return dict(data["relay-routes"])


async def run_gitlab(repo: Path, tmp_path: Path, server: GitLabNotesServer, base: str) -> str:
    job = gitlab_job()
    assert job["rules"] == [{"if": '$CI_PIPELINE_SOURCE == "merge_request_event"',
                             "changes": ["routes.yaml", "templates/**/*", "deploy/prometheus/**/*"]}]
    assert job["variables"]["GIT_DEPTH"] == "0"
    need("curl")
    install, *script = job["script"]
    assert install == 'pip install "$RELAY_SPEC"' and job["variables"]["RELAY_SPEC"].startswith("relay @ git+https")
    env = ci_env(tmp_path, {**job["variables"], "CI_API_V4_URL": server.api_url, "CI_PROJECT_ID": "42",
                            "CI_MERGE_REQUEST_IID": "7", "CI_MERGE_REQUEST_TARGET_BRANCH_NAME": "main",
                            "CI_MERGE_REQUEST_DIFF_BASE_SHA": base, "RELAY_GITLAB_TOKEN": server.token})
    # the runner stops at the first line that fails, as `set -e` does
    return await sh("\n".join(script), repo, env, ("bash", "-eo", "pipefail", "-c"))


async def test_the_gitlab_job_posts_the_diff_as_one_note_and_then_updates_it(tmp_path: Path) -> None:
    repo = pull_request(tmp_path)
    base = git(repo, "merge-base", "HEAD", "origin/main").strip()
    # the base is the merge request's merge base (a commit id, shown cut to 12 characters), not origin/main
    golden = GOLDEN.read_text().replace("`origin/main:", f"`{base[:12]}:")
    async with GitLabNotesServer("glpat-SECRET-token") as gitlab:
        gitlab.add_note("42", "7", f"{MARKER} quoted by a person", {"id": 2, "username": "dev"})
        out = await run_gitlab(repo, tmp_path, gitlab, base)
        assert "glpat-SECRET-token" not in out
        [person, ours] = gitlab.notes[("42", "7")]
        assert ours["body"] == golden and person["body"] != golden
        out = await run_gitlab(repo, tmp_path, gitlab, base)
        assert [n["body"] == golden for n in gitlab.notes[("42", "7")]] == [False, True]  # updated, not added
        assert [(r.method, r.path.rsplit("/", 1)[-1], r.status) for r in gitlab.requests] == [
            ("GET", "user", 200), ("GET", "notes", 200), ("POST", "notes", 201),
            ("GET", "user", 200), ("GET", "notes", 200), ("PUT", str(ours["id"]), 200)]
        assert all(r.headers["PRIVATE-TOKEN"] == "glpat-SECRET-token" for r in gitlab.requests)


def test_the_diff_step_gets_no_token() -> None:
    """Issue 20 #3: the step that reads the pull request's files has no token in its environment (GitHub: none
    given, and none left in .git/config by checkout; GitLab: the job's tokens unset for that command)."""
    steps = workflow()["jobs"]["routes"]["steps"]
    [diff] = [s for s in steps if s.get("id") == "diff"]
    assert "secrets." not in str(diff) and "github.token" not in str(diff) and "TOKEN" not in str(diff)
    assert steps[0]["with"]["persist-credentials"] is False
    [line] = [line for line in gitlab_job()["script"] if "relay routes diff" in line]
    assert line.startswith("env -u RELAY_GITLAB_TOKEN -u CI_JOB_TOKEN relay routes diff ")


async def test_a_merge_request_cannot_post_the_jobs_token(tmp_path: Path) -> None:
    repo = pull_request(tmp_path)
    routes = (repo / "routes.yaml").read_text()
    (repo / "routes.yaml").write_text(routes.replace('channel: "#alerts"', 'channel: "${RELAY_GITLAB_TOKEN}"'))
    git(repo, "commit", "-q", "-am", "the channel from the job's environment")
    base = git(repo, "merge-base", "HEAD", "origin/main").strip()
    async with GitLabNotesServer("glpat-SECRET-token") as gitlab:
        await run_gitlab(repo, tmp_path, gitlab, base)
        [ours] = gitlab.notes[("42", "7")]
    assert "glpat-SECRET-token" not in ours["body"] and "${RELAY_GITLAB_TOKEN}" in ours["body"]
