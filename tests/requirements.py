"""Tests that need a tool this machine may not have: a skip on a developer's machine, a failure in CI.

.ci/run installs every tool and sets one RELAY_REQUIRE_* variable per family, so a missing tool there fails
the run instead of passing it quietly. A test says which family it belongs to and what it is missing:

    pytestmark = ALERTMANAGER.unless(None if BINARY else "needs Debian's prometheus-alertmanager")  # a module
    @ALERTMANAGER.unless(problem)                                                                   # one test
    amtool = ALERTMANAGER.which("amtool", install="apt-get install prometheus-alertmanager")      # in a test
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from typing import NoReturn

import pytest


@dataclass(frozen=True)
class Need:
    """A family of tools .ci/run installs, required where `variable` is set (to anything but "" or "0")."""

    variable: str

    @property
    def required(self) -> bool:
        return os.environ.get(self.variable, "") not in ("", "0")

    def missing(self, problem: str) -> NoReturn:
        """Inside a test or fixture: stop it, as a skip here or a failure where CI requires this family."""
        if self.required:
            pytest.fail(f"{problem} ({self.variable} is set: .ci/run installs it)", pytrace=False)
        pytest.skip(problem)

    def unless(self, problem: str | None) -> pytest.MarkDecorator:
        """A mark for one test, or a module's `pytestmark`: nothing when `problem` is None; else a skip with it as
        the reason, or, where CI requires this family, an error collecting the module, at once."""
        if problem is None:
            return pytest.mark.skipif(False, reason="everything it needs is here")
        if self.required:
            raise RuntimeError(f"{problem} ({self.variable} is set: .ci/run installs it)")
        return pytest.mark.skip(reason=problem)

    def which(self, *names: str, install: str) -> str:
        """The first of `names` on PATH; without any, `missing` (a skip here, a failure in CI)."""
        for name in names:
            found = shutil.which(name)
            if found is not None:
                return found
        self.missing(f"needs {names[0]} ({install})")


# Alertmanager and Prometheus (Debian's prometheus-alertmanager, prometheus: amtool, promtool).
ALERTMANAGER = Need("RELAY_REQUIRE_ALERTMANAGER")
# The container image's build and run (root, podman, runc, debootstrap).
CONTAINER = Need("RELAY_REQUIRE_CONTAINER")
# The Kubernetes manifests (kubectl kustomize) and the pod tests' sandbox.
KUBECTL = Need("RELAY_REQUIRE_KUBECTL")
# docs/ci's examples (node, curl) and the pre-commit hook (which installs relay from the package index).
CI_EXAMPLES = Need("RELAY_REQUIRE_CI_EXAMPLES")
# Debian's Chromium, which Playwright drives for the console's browser tests (tests/e2e/test_console.py).
CHROMIUM = Need("RELAY_REQUIRE_CHROMIUM")
