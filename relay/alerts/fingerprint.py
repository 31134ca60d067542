"""Alertmanager's alert fingerprint: FNV-1a (64 bit) over the sorted label names and values."""

from __future__ import annotations

from collections.abc import Mapping

_OFFSET = 0xCBF29CE484222325
_PRIME = 0x100000001B3
_SEPARATOR = 0xFF


def fingerprint(labels: Mapping[str, str]) -> str:
    """The same 16-hex-digit fingerprint Alertmanager (prometheus/common model) gives these labels."""
    h = _OFFSET
    for name in sorted(labels):
        for part in (name, labels[name]):
            for byte in part.encode():
                h = ((h ^ byte) * _PRIME) & 0xFFFFFFFFFFFFFFFF
            h = ((h ^ _SEPARATOR) * _PRIME) & 0xFFFFFFFFFFFFFFFF
    return f"{h:016x}"
