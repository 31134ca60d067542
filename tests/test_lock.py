"""requirements.lock (what the image installs) agrees with pyproject.toml's dependencies (what the wheel asks for)."""

from __future__ import annotations

import re
import tomllib

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from tests.helpers import REPO

# The image's interpreter: Debian bookworm's python3 on x86_64.
IMAGE = {"python_version": "3.11", "python_full_version": "3.11.2", "sys_platform": "linux",
         "platform_system": "Linux", "platform_machine": "x86_64", "os_name": "posix",
         "implementation_name": "cpython", "platform_python_implementation": "CPython"}
PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s\\]+)")


def locked() -> dict[str, tuple[str, int]]:
    """name -> (version, number of hashes) for every pin in requirements.lock."""
    pins: dict[str, tuple[str, int]] = {}
    for entry in re.split(r"\n(?=\S)", (REPO / "requirements.lock").read_text()):
        match = PIN.match(entry)
        if match:
            pins[canonicalize_name(match[1])] = (match[2], entry.count("--hash=sha256:"))
    return pins


def test_every_runtime_dependency_is_pinned_in_range_with_hashes() -> None:
    dependencies = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    pins = locked()
    problems = []
    for line in dependencies:
        requirement = Requirement(line)
        if requirement.marker is not None and not requirement.marker.evaluate(IMAGE):
            continue
        name = canonicalize_name(requirement.name)
        if name not in pins:
            problems.append(f"{name} is not in requirements.lock")
        elif not requirement.specifier.contains(pins[name][0], prereleases=True):
            problems.append(f"{name}=={pins[name][0]} is outside {requirement.specifier}")
    assert problems == [], "regenerate requirements.lock (see its first lines): " + "; ".join(problems)
    assert pins and all(hashes for _, hashes in pins.values())  # --require-hashes needs one for every pin


def test_no_dependency_range_admits_a_jinja_with_a_known_sandbox_escape() -> None:
    """Suspected in issue 20: `jinja2>=3.1` admitted 3.1.0-3.1.5, whose sandbox (what renders a pull request's
    templates in `relay routes check`) can be escaped: CVE-2024-56201 and CVE-2024-56326 (fixed in 3.1.5) and
    CVE-2025-27516, `|attr` reaching str.format (fixed in 3.1.6)."""
    dependencies = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    [jinja] = [Requirement(line) for line in dependencies if Requirement(line).name.lower() == "jinja2"]
    assert not any(jinja.specifier.contains(v) for v in ("3.1.0", "3.1.4", "3.1.5")), str(jinja.specifier)
    assert jinja.specifier.contains("3.1.6") and locked()["jinja2"][0] == "3.1.6"
