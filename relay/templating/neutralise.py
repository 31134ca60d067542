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
# word joiner, BOM; C0 controls but tab, LF and CR (text bodies keep their lines), DEL and C1. Also what renders as
# nothing or as a blank letter (Unicode's default-ignorable code points but the variation selectors, which emoji
# need): soft hyphen, combining grapheme joiner, Hangul fillers, Khmer inherent vowels, the Mongolian vowel
# separator, invisible operators, deprecated format controls, interlinear annotation marks, musical formatting
# and the tags (U+E0000-E007F), which spell ASCII no one sees.
_HIDDEN = re.compile("[\u202a-\u202e\u2066-\u2069\u061c\u200b-\u200f\u2060\ufeff"
                     "\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f"
                     "\u00ad\u034f\u115f\u1160\u17b4\u17b5\u180e\u2061-\u2065\u206a-\u206f\u3164\uffa0"
                     "\ufff0-\ufffb\U0001d173-\U0001d17a\U000e0000-\U000e007f]")
# A word joiner between `=` and `?`: the value reads the same, and no decoder sees an encoded-word.
_ENCODED_WORD = re.compile(r"=(?=\?)")
_BREAK = "=\u2060"


def visible(value: str) -> str:
    """The value with every hidden or control character shown as `[U+XXXX]`."""
    return _HIDDEN.sub(lambda m: f"[U+{ord(m.group()):04X}]", value)


def header_text(value: str) -> str:
    """Text for an email header: one line, hidden and control characters shown, encoded-word markers broken."""
    return _ENCODED_WORD.sub(_BREAK, " ".join(visible(value).split()))
