"""Hostile text stays text: characters in alert values that would change how a message reads, or what it is.

Labels and annotations come from anyone who can set a Kubernetes label or a
Prometheus annotation. Bidi overrides (U+202E) make `gpj.exe` read as
`exe.jpg`; zero-width characters hide text or split words; control characters
(NUL, ESC, C1) break headers and terminals. Each is shown as `[U+XXXX]` rather
than stripped, so a reader sees that something was there and nothing vanishes.
An email header additionally never carries an RFC 2047 encoded-word from a
value: Python before 3.11.10 / 3.12.5 (CVE-2024-6923) decodes `=?utf-8?q?=0D=0A…?=`
on assignment and writes the CR LF out raw, so the marker is broken first.
"""

from __future__ import annotations

import re

# Bidi embeddings, overrides and isolates, the Arabic letter mark; zero-width space, non-joiner, joiner, marks,
# word joiner, BOM; C0 controls but tab, LF and CR (text bodies keep their lines), DEL and C1.
_HIDDEN = re.compile("[\u202a-\u202e\u2066-\u2069\u061c\u200b-\u200f\u2060\ufeff"
                     "\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")
# A word joiner between `=` and `?`: the value reads the same, and no decoder sees an encoded-word.
_ENCODED_WORD = re.compile(r"=(?=\?)")
_BREAK = "=\u2060"


def visible(value: str) -> str:
    """The value with every hidden or control character shown as `[U+XXXX]`."""
    return _HIDDEN.sub(lambda m: f"[U+{ord(m.group()):04X}]", value)


def header_text(value: str) -> str:
    """Text for an email header: one line, hidden and control characters shown, encoded-word markers broken."""
    return _ENCODED_WORD.sub(_BREAK, " ".join(visible(value).split()))
