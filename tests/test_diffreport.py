"""The pull-request comment of `relay routes diff --format markdown`: a golden file, what comes first, what GitHub
would render from it (names stay text), and its size limit."""

from __future__ import annotations

import os
import re
from pathlib import Path

from markdown_it import MarkdownIt

from relay.cli.review import report as diffreport
from relay.cli.review import sides as review
from tests.review_repo import pull_request, write
from tests.test_cli import run_relay

GOLDEN = Path(__file__).parent / "golden" / "routesdiff"
UPDATE = os.environ.get("RELAY_UPDATE_GOLDEN") == "1"
ENV = {"RELAY_TEMPLATES": "templates", "RELAY_ROUTES": "routes.yaml"}


def golden(name: str, text: str) -> None:
    path = GOLDEN / name
    if UPDATE:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    assert text == path.read_text(encoding="utf-8"), (
        f"{path} differs; if intended, regenerate with RELAY_UPDATE_GOLDEN=1 and read `git diff tests/golden`")


def pull_request_markdown(tmp_path: Path) -> str:
    """What the CI examples post for tests/review_repo.py's pull request."""
    repo = pull_request(tmp_path)
    return diffreport.markdown(review.build(review.Request(
        old=None, new=None, base="origin/main", routes=Path("routes.yaml"), templates=Path("templates"), cwd=repo)))


def headings(text: str) -> list[str]:
    return re.findall(r"^#+ (.*)$", text, flags=re.MULTILINE)


async def test_markdown_matches_the_golden_file_and_a_lost_page_comes_first(tmp_path: Path) -> None:
    repo = pull_request(tmp_path)
    code, text = await run_relay("routes", "diff", "--base", "origin/main", "--format", "markdown", env=ENV, cwd=repo)
    assert code == 0, text
    golden("pull-request.md", text)
    assert text.startswith(f"{diffreport.MARKER}\n")
    assert "**⚠ 2 alerts stop paging**" in text.splitlines()[3]
    assert headings(text) == ["relay routes diff", "⚠ Stops paging", "Starts paging", "Receivers",
                              "Alerts whose receivers change (4)", "Messages that change"]
    stops = text.split("### ⚠ Stops paging")[1].split("###")[0]
    assert "| `HighErrorRate (severity=critical)` | `pagerduty-oncall` | `slack-alerts`, `ops-mail` |" in stops


def rendered(text: str) -> str:
    """The comment as HTML, parsed as GitHub does: CommonMark with tables and raw HTML."""
    return MarkdownIt("commonmark", {"html": True}).enable("table").render(text)


def test_names_from_the_files_stay_text_in_the_comment(tmp_path: Path) -> None:
    hostile = "ops`| <b>bold</b> @org/oncall [x](https://evil.example)"
    name = f'"{hostile}"'
    old = tmp_path / "old.yaml"
    old.write_text(f"receivers:\n  - name: {name}\n    slack: {{webhook_url: 'https://hooks.example/x'}}\n"
                   "  - name: pager\n    pagerduty: {routing_key: k}\n"
                   f"routes:\n  - matchers: ['severity=\"critical\"']\n    receivers: [{name}, pager]\n"
                   f"default_receivers: [{name}]\n")
    new = tmp_path / "new.yaml"
    new.write_text(old.read_text().replace(f"receivers: [{name}, pager]", f"receivers: [{name}]")
                   .replace("slack: {", 'slack: {mention: "<!here>", '))
    result = review.build(review.Request(old=str(old), new=str(new), base=None, routes=new, templates=None,
                                         cwd=tmp_path))
    text = diffreport.markdown(result)
    html = rendered(text)
    assert "<b>" not in html and "<a " not in html and "<img" not in html
    table = html.split("<table>")[1]
    rows = re.findall(r"<tr>(.*?)</tr>", table, flags=re.DOTALL)
    assert all(row.count("<td>") == 3 for row in rows[1:])  # the name's pipe did not split a cell
    cells = re.findall(r"<code>(.*?)</code>", table)
    assert "ops`| &lt;b&gt;bold&lt;/b&gt; @org/oncall [x](https://evil.example)" in cells
    # outside code, no text an @-mention or a link could be made of
    outside = re.sub(r"<code>.*?</code>", "", html, flags=re.DOTALL)
    assert "@org" not in outside and "evil.example" not in outside
    summary = re.search(r"<summary>(.*?)</summary>", html)
    assert summary and "<code>ops`| &lt;b&gt;bold&lt;/b&gt; @org/oncall" in summary.group(1)


def test_a_huge_change_stays_within_a_comment(tmp_path: Path) -> None:
    repo = pull_request(tmp_path)
    rules = "groups:\n  - name: many\n    rules:\n" + "".join(
        f"      - alert: Alert{i:02}\n        expr: vector(1)\n        labels: {{severity: critical}}\n"
        for i in range(40))
    write(repo, {"templates/slack/title.j2": "{{ commonLabels.alertname }} " + "x" * 1500,
                 "deploy/prometheus/rules.yml": rules})
    text = diffreport.markdown(review.build(review.Request(
        old=None, new=None, base="origin/main", routes=Path("routes.yaml"), templates=Path("templates"), cwd=repo)))
    assert len(text) < 65_536
    assert re.search(r"\d+ more changed messages left out to keep this comment within its size limit", text)
    assert text.index("### ⚠ Stops paging") < text.index("### Messages that change")
    assert text.count("<details>") == text.count("</details>") and text.count("```") % 2 == 0
