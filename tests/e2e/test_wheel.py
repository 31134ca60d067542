"""The wheel users install: built from this checkout, it holds everything relay reads at run time."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from tests.helpers import REPO


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """`pip wheel .` as the image build does: no editable install, only what package-data ships."""
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(out),
                    str(REPO)], check=True, timeout=120, capture_output=True)
    [built] = out.glob("relay-*.whl")
    return built


def test_the_wheel_holds_migrations_templates_and_type_marker(wheel: Path) -> None:
    names = set(zipfile.ZipFile(wheel).namelist())
    for kind in ("sqlite", "postgres"):
        shipped = {n for n in names if n.startswith(f"relay/store/migrations/{kind}/") and n.endswith(".sql")}
        on_disk = {p.relative_to(REPO).as_posix() for p in (REPO / "relay/store/migrations" / kind).glob("*.sql")}
        assert shipped == on_disk and on_disk
    templates = {p.relative_to(REPO).as_posix() for p in (REPO / "relay/templates").rglob("*.j2")}
    assert templates and templates <= names
    assert "relay/py.typed" in names
