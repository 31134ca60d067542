"""Escaping, links and cuts for each target: what makes alert text stay text in Slack mrkdwn, Discord and Teams
markdown, and links relay vouches for (only http(s) URLs). relay.templating's environments finalize every value
with these; channels call them for text they assemble themselves.
"""

from __future__ import annotations

import re
from urllib.parse import quote, urlsplit

from markupsafe import Markup

_URL_SAFE = ":/?#[]@!$&'()*+,;=%~"


def slack_escape(value: object) -> str:
    """Escape the three characters Slack's mrkdwn treats as control: & < >."""
    return str(value).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


# Markdown (Discord's, and the CommonMark subset of Adaptive Cards in Teams) that an alert value must not produce:
# emphasis, code, spoilers, quotes, links `[text](url)`, and `<...>` (Discord mentions `<@&id>`, timestamps; Teams
# `<at>` mentions); `@` so `@everyone` and `@here` read as text. A backslash makes each one literal in both.
_MARKDOWN = re.compile(r"([\\*_~`|<>\[\]()@#])")


def markdown_escape(value: object) -> str:
    """A value as literal text in Discord or Teams markdown: every character that means something there escaped."""
    return _MARKDOWN.sub(r"\\\1", str(value))


def markdown_finalize(value: object) -> object:
    if value is None:
        return ""
    if isinstance(value, Markup):
        return str(value)
    return markdown_escape(value)


def slack_finalize(value: object) -> object:
    if value is None:
        return ""
    if isinstance(value, Markup):
        return str(value)
    return slack_escape(value)


def cut(text: str, limit: int, unit: str = "characters", *, mrkdwn: bool = False) -> str:
    """Shorten text to a provider limit, saying how much was cut: `… and 1234 more characters`.

    In mrkdwn the cut never splits an entity (`&amp;`) or a link (`<url|text>`).
    """
    if len(text) <= limit:
        return text
    reserve = len(f"… and {len(text)} more {unit}")  # the count below never has more digits than this
    if limit <= reserve:
        return text[:limit]
    head = text[: limit - reserve]
    head = (_mrkdwn_safe(head) if mrkdwn else head).rstrip()
    return f"{head}… and {len(text) - len(head)} more {unit}"


def md_cut(text: str, limit: int, unit: str = "characters") -> str:
    """cut() for escaped markdown (Discord, Teams): never a lone escaping backslash before the "… and N more"."""
    shortened = cut(text, limit, unit)
    return shortened if shortened == text else shortened.replace("\\… and", "… and")


def _mrkdwn_safe(head: str) -> str:
    opened = head.rfind("<")
    if opened > head.rfind(">"):
        head = head[:opened]
    amp = head.rfind("&")
    if amp > head.rfind(";"):
        head = head[:amp]
    return head


def safe_url(url: object) -> str:
    """The URL if it is an absolute http(s) URL, with every character that could end a link percent-encoded; else ''."""
    text = str(url or "").strip()
    try:
        parts = urlsplit(text)
    except ValueError:
        return ""
    if parts.scheme.lower() not in ("http", "https") or not parts.netloc:
        return ""
    return quote(text, safe=_URL_SAFE)


def slack_link(url: object, label: object) -> Markup:
    """A Slack `<url|label>` link relay vouches for: only http(s) URLs, label escaped; '' for anything else."""
    href = safe_url(url)
    if not href:
        return Markup("")
    return Markup(f"<{href.replace('&', '&amp;')}|{slack_escape(label).replace('|', '¦')}>")


def md_link(url: object, label: object) -> Markup:
    """A markdown `[label](url)` link relay vouches for (Discord, Teams): only http(s) URLs, parentheses and spaces
    in the URL percent-encoded so it cannot end early, the label escaped; '' for anything else."""
    href = safe_url(url)
    if not href:
        return Markup("")
    href = href.replace("(", "%28").replace(")", "%29").replace("<", "%3C").replace(">", "%3E")
    return Markup(f"[{markdown_escape(label)}]({href})")
