"""Durations follow Prometheus's grammar (`model.ParseDuration`) exactly, checked against the real amtool too."""

from __future__ import annotations

import shutil
import subprocess
from datetime import timedelta
from pathlib import Path

import pytest
import yaml
from pydantic import TypeAdapter, ValidationError

from relay.config.durations import Duration, parse_duration

ACCEPTED = [
    ("0", timedelta(0)),
    ("0s", timedelta(0)),
    ("30s", timedelta(seconds=30)),
    ("5m", timedelta(minutes=5)),
    ("1h30m", timedelta(hours=1, minutes=30)),
    ("2d", timedelta(days=2)),
    ("1w", timedelta(weeks=1)),
    ("1y", timedelta(days=365)),
    ("500ms", timedelta(milliseconds=500)),
    ("1m500ms", timedelta(minutes=1, milliseconds=500)),
    ("1y2w3d4h5m6s7ms", timedelta(days=365 + 14 + 3, hours=4, minutes=5, seconds=6, milliseconds=7)),
    ("90m", timedelta(minutes=90)),
]
REFUSED = ["90", "30m4h", "1.5h", "", "1h1h", "-1s", " 5m", "5m ", "5M", "1s500ms1m", "ms", "h", "5 m", "٣s"]


@pytest.mark.parametrize(("text", "expected"), ACCEPTED)
def test_prometheus_durations_are_read(text: str, expected: timedelta) -> None:
    assert parse_duration(text) == expected


@pytest.mark.parametrize("text", REFUSED)
def test_what_prometheus_refuses_is_refused(text: str) -> None:
    with pytest.raises(ValueError, match="duration"):
        parse_duration(text)


@pytest.mark.parametrize(("value", "ok"), [(90, False), (1.5, False), (0, True), (True, False), ("4h", True)])
def test_a_yaml_number_needs_a_unit_unless_it_is_zero(value: object, ok: bool) -> None:
    adapter = TypeAdapter(Duration)
    if ok:
        adapter.validate_python(value)
    else:
        with pytest.raises(ValidationError, match="duration"):
            adapter.validate_python(value)


AMTOOL = shutil.which("amtool")


@pytest.mark.skipif(AMTOOL is None, reason="Debian's prometheus-alertmanager (amtool) is not installed")
def test_amtool_agrees(tmp_path: Path) -> None:
    """Alertmanager's repeat_interval is a Prometheus duration: amtool accepts and refuses the same texts."""
    disagree = []
    for text, ok in [*((t, True) for t, _ in ACCEPTED if t not in ("0", "0s")), *((t, False) for t in REFUSED)]:
        path = tmp_path / "alertmanager.yml"
        path.write_text(yaml.safe_dump({"route": {"receiver": "r", "repeat_interval": text},
                                        "receivers": [{"name": "r"}]}))
        done = subprocess.run([AMTOOL or "amtool", "check-config", str(path)], capture_output=True, timeout=30,
                              check=False)
        if (done.returncode == 0) != ok:
            disagree.append(text)
    assert disagree == []
