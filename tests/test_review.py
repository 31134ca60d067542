"""`relay routes diff` on a git repository: revisions as specs, a file missing at the base, a renamed receiver, and a
template change shown as the messages before and after."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

from tests.review_repo import BASE_ROUTES, RULES, commit, git, pull_request, write
from tests.test_cli import run_relay

ENV = {"RELAY_TEMPLATES": "templates", "RELAY_ROUTES": "routes.yaml"}


async def review(repo: Path, *args: str) -> dict[str, Any]:
    code, out = await run_relay("routes", "diff", *args, "--format", "json", env=ENV, cwd=repo)
    assert code == 0, out
    return dict(json.loads(out))


def slack_header(render: str) -> str:
    """The header a person reads in Slack, from a rendered webhook call (`# POST ...` then the JSON body)."""
    body = json.loads(render.partition("\n")[2])
    return str(body["blocks"][0]["text"]["text"])


async def test_base_and_rev_path_specs_compare_the_same_versions(tmp_path: Path) -> None:
    repo = pull_request(tmp_path)
    by_base = await review(repo, "--base", "origin/main")
    assert (by_base["base"], by_base["head"]) == ("origin/main:routes.yaml", "routes.yaml")
    by_specs = await review(repo, "origin/main:routes.yaml", "routes.yaml")
    both_revs = await review(repo, "HEAD~1:routes.yaml", "HEAD:routes.yaml")
    assert both_revs["head"] == "HEAD:routes.yaml"
    for other in (by_specs, both_revs):
        assert other["changes"] == by_base["changes"] and other["templates"] == by_base["templates"]
    # the base's rule files are read at the base revision, promtool's rules.test.yml at neither
    assert by_base["rule_files"] == ["origin/main:deploy/prometheus/rules.yml", "deploy/prometheus/rules.yml"]
    assert not any(c["alertname"] == "Ignored" for c in by_base["changes"])
    paging = {c["alert"]: c["stops_paging"] for c in by_base["changes"] if c["stops_paging"]}
    assert paging == {"HighErrorRate (severity=critical)": ["pagerduty-oncall"],
                      "any alert with severity=critical": ["pagerduty-oncall"]}


async def test_a_renamed_receiver_is_a_rename_not_a_lost_receiver(tmp_path: Path) -> None:
    repo = pull_request(tmp_path)
    result = await review(repo, "--base", "origin/main")
    assert result["receivers"] == {"added": [], "removed": [], "renamed": [{"from": "ops-email", "to": "ops-mail"}]}
    [poddown] = [c for c in result["changes"] if c["alert"] == "PodDown (severity=critical)"]
    assert (poddown["before"], poddown["after"]) == (["slack-alerts", "ops-email", "pagerduty-oncall"],
                                                     ["slack-alerts", "ops-mail", "pagerduty-oncall"])
    assert (poddown["lost"], poddown["gained"]) == ([], [])
    # same settings and templates under the new name: its messages read the same (no template change listed)
    assert [t["receiver"] for t in result["templates"]] == ["slack-alerts"]

    write(repo, {"routes.yaml": (repo / "routes.yaml").read_text().replace(
        "to: [ops@example.com]", "to: [other@example.com]")})
    code, out = await run_relay("routes", "diff", "--base", "origin/main", env=ENV, cwd=repo)
    assert code == 0, out
    assert "receiver added: ops-mail" in out and "receiver removed: ops-email" in out
    assert "STOPS NOTIFYING: PodDown (severity=critical) loses ops-email" in out


async def test_a_template_change_shows_each_message_before_and_after(tmp_path: Path) -> None:
    repo = pull_request(tmp_path)
    [slack] = (await review(repo, "--base", "origin/main"))["templates"]
    assert (slack["receiver"], slack["files"]) == ("slack-alerts", ["title: slack/title.j2"])
    shown = {(m["sample"], m["status"]): (slack_header(m["before"]), slack_header(m["after"]))
             for m in slack["messages"]}
    assert shown == {
        ("HighErrorRate", "firing"): ("[FIRING] HighErrorRate", "[FIRING] HighErrorRate (critical)"),
        ("HighErrorRate", "resolved"): ("[RESOLVED] HighErrorRate", "[RESOLVED] HighErrorRate (critical)"),
        ("PodDown", "firing"): ("[FIRING] PodDown", "[FIRING] PodDown (critical)"),
        ("PodDown", "resolved"): ("[RESOLVED] PodDown", "[RESOLVED] PodDown (critical)"),
        ("HighLatency", "firing"): ("[FIRING] HighLatency", "[FIRING] HighLatency (warning)"),
        ("HighLatency", "resolved"): ("[RESOLVED] HighLatency", "[RESOLVED] HighLatency (warning)"),
    }
    # without RELAY_TEMPLATES both sides use the packaged defaults: the repository's template change is not seen
    code, out = await run_relay("routes", "diff", "--base", "origin/main", "--format", "json",
                                env={"RELAY_TEMPLATES": ""}, cwd=repo)
    assert code == 0, out
    assert json.loads(out)["templates"] == []


async def test_fixtures_are_rendered_instead_of_rule_alerts(tmp_path: Path) -> None:
    repo = pull_request(tmp_path)
    fixtures = Path(__file__).parent / "fixtures" / "alertmanager"
    [slack] = (await review(repo, "--base", "origin/main", "--fixtures", str(fixtures)))["templates"]
    samples = {m["sample"] for m in slack["messages"]}
    assert samples == {p.name for p in fixtures.glob("*.json")}
    assert slack["rendered"] == 10  # four firing bodies and their resolves, two resolved bodies


async def test_a_file_missing_at_the_base_is_an_empty_routes_set(tmp_path: Path) -> None:
    repo = pull_request(tmp_path, base={"README.md": "no routes yet\n", "deploy/prometheus/rules.yml": RULES})
    result = await review(repo, "--base", "origin/main")
    assert result["base_missing"] is True
    assert result["receivers"]["added"] == ["ops-mail", "pagerduty-oncall", "slack-alerts"]
    assert all(c["before"] == [] and c["lost"] == [] for c in result["changes"])
    assert {"alert": "PodDown", "after": ["slack-alerts", "ops-mail", "pagerduty-oncall"]}.items() <= next(
        c for c in result["changes"] if c["alert"] == "PodDown").items()
    code, out = await run_relay("routes", "diff", "--base", "origin/main", "--format", "markdown", env=ENV, cwd=repo)
    assert code == 0, out
    assert "`origin/main:routes.yaml` does not exist: every route is new" in out


async def test_revision_mistakes_are_one_clear_line(tmp_path: Path) -> None:
    repo = pull_request(tmp_path)
    code, out = await run_relay("routes", "diff", "--base", "origin/nope", env=ENV, cwd=repo)
    assert code == 2
    assert out.startswith("relay: ") and "unknown revision 'origin/nope'" in out and "fetch-depth: 0" in out
    assert len(out.strip().splitlines()) == 1
    code, out = await run_relay("routes", "diff", "nope.yaml", env=ENV, cwd=repo)
    assert (code, out.strip()) == (2, "relay: nope.yaml: no such file (a revision is given as REV:PATH, "
                                      "e.g. origin/main:routes.yaml)")
    code, out = await run_relay("routes", "diff", env=ENV, cwd=repo)
    assert code == 2 and "give OLD [NEW]" in out
    # a broken base is named as REV:PATH with its line, never as the temporary copy
    write(repo, {"routes.yaml": BASE_ROUTES.replace("receivers: [slack-alerts]\n\ndefault",
                                                    "receivers: [slack-alertz]\n\ndefault")})
    commit(repo, "broken")
    code, out = await run_relay("routes", "diff", "HEAD:routes.yaml", "origin/main:routes.yaml", env=ENV, cwd=repo)
    assert code == 2
    assert out.strip() == ("relay: HEAD:routes.yaml:13: route 2 names unknown receiver 'slack-alertz'; "
                           "known: ['ops-email', 'pagerduty-oncall', 'slack-alerts']")


async def test_exit_code_on_any_change(tmp_path: Path) -> None:
    repo = pull_request(tmp_path)
    code, _ = await run_relay("routes", "diff", "--base", "origin/main", "--exit-code", env=ENV, cwd=repo)
    assert code == 1
    git(repo, "checkout", "-q", "main")
    code, out = await run_relay("routes", "diff", "--base", "origin/main", "--exit-code", env=ENV, cwd=repo)
    assert code == 0 and "no alert changes receivers and no message changes" in out


async def test_review_reads_no_variable_of_the_ci_job_and_no_file_through_a_link(tmp_path: Path) -> None:
    """Issue 20 #3: a pull request cannot make the posted comment show the CI job's secrets, neither through a
    `${VAR}` in routes.yaml nor through a template, routes or rule file that is a symbolic link."""
    secret = "glpat-SECRET-of-the-ci-job"
    outside = tmp_path / "credentials"
    outside.write_text(f"token: {secret}\n")
    repo = pull_request(tmp_path)
    write(repo, {"routes.yaml": (repo / "routes.yaml").read_text().replace('channel: "#alerts"',
                                                                            'channel: "${CI_JOB_TOKEN}"')})
    commit(repo, "the channel from the environment")
    env = {**ENV, "CI_JOB_TOKEN": secret}
    code, out = await run_relay("routes", "diff", "--base", "origin/main", "--format", "markdown", env=env, cwd=repo)
    assert code == 0, out
    assert secret not in out and "${CI_JOB_TOKEN}" in out  # shown as written
    for link in ("templates/slack/title.j2", "routes.yaml", "deploy/prometheus/extra.yml", "templates"):
        clone = tmp_path / f"link-{len(link)}"
        git(tmp_path, "clone", "-q", "--branch", "change", str(repo), str(clone))
        target = clone / link
        if target.is_dir():
            subprocess.run(["rm", "-r", str(target)], check=True)
        target.unlink(missing_ok=True)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.symlink_to(outside)
        code, out = await run_relay("routes", "diff", "--base", "origin/main", "--format", "markdown", env=env,
                                    cwd=clone)
        assert code == 2 and secret not in out, out
        assert out.strip() == (f"relay: {clone / link}: a symbolic link: a review reads only regular files in the "
                               "repository, never what a link points to")


UNSET = "SLACK_WEBHOOK_URL,PAGERDUTY_ROUTING_KEY"


async def test_check_strict_reads_no_file_through_a_link(tmp_path: Path) -> None:
    """Issue 20 #3 asks the same of `routes check --strict` (CI's check of a pull request) as of routes diff: it
    followed a template, routes or rule file that is a symbolic link (to /proc/self/environ, a CI credential) and
    read it (shown nowhere in these cases, but read: a template's syntax error quotes its tokens). Refused with the
    link's name, before anything is read."""
    secret = "glpat-SECRET-of-the-ci-job"
    outside = tmp_path / "credentials"
    outside.write_text(f"groups: [{{name: {secret}, rules: [{{alert: {secret}, expr: up}}]}}]\n")
    repo = pull_request(tmp_path)
    for link in ("templates/slack/title.j2", "routes.yaml", "deploy/prometheus/extra.yml", "templates"):
        clone = tmp_path / f"link-{len(link)}"
        git(tmp_path, "clone", "-q", "--branch", "change", str(repo), str(clone))
        target = clone / link
        if target.is_dir():
            subprocess.run(["rm", "-r", str(target)], check=True)
        target.unlink(missing_ok=True)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.symlink_to(outside)
        code, out = await run_relay("routes", "check", "--strict", "--allow-unset", UNSET, "--templates", "templates",
                                    "routes.yaml", env=ENV, cwd=clone)
        assert code == 1 and secret not in out, out
        assert out.strip() == (f"relay: {clone / link}: a symbolic link: a review reads only regular files in the "
                               "repository, never what a link points to")
