"""Hostile alert text for the receivers' tests: labels and annotations that try to mention, link, format or hide,
and checks that a rendered markdown text kept all of it inert."""

from __future__ import annotations

import re
from urllib.parse import urlsplit

from relay.alerts import WebhookMessage
from tests.fakes import webhook_message

EVIL = "evil.example"
LABELS = {
    "alertname": "Evil @everyone",
    "severity": "critical",
    "who": "@everyone @here <@&123456> <@!42> <#99> <t:1700000000:R>",
    "at": "<at>Bob</at>",
    "md": f"[click](https://{EVIL}) **bold** `code` ||spoiler|| ~~gone~~ > quote",
    "html": f"<b>x</b> <a href='https://{EVIL}'>y</a> &amp; <tg-spoiler>s</tg-spoiler>",
    "bidi": "gpj\u202eexe.txt\u200b",
}
ANNOTATIONS = {"summary": f"[Log in](https://{EVIL}/login) @everyone", "description": "<at>Ops</at> *urgent* @admin"}
_ESCAPED = re.compile(r"\\.", re.S)
_LINK = re.compile(r"\[([^\]]*)\]\(([^)]*)\)")


def group() -> WebhookMessage:
    """The PodDown fixture with every value hostile."""
    fixture = webhook_message("firing-poddown")
    alert = fixture.alerts[0].model_copy(update={"labels": LABELS, "annotations": ANNOTATIONS})
    return fixture.model_copy(update={"alerts": [alert], "commonLabels": LABELS, "commonAnnotations": ANNOTATIONS,
                                      "groupLabels": {"alertname": LABELS["alertname"]}})


def markdown_hazards(text: str) -> list[str]:
    """What in a markdown text (Discord, Teams) would act instead of reading as text: a mention, a link to the
    hostile host, emphasis or a spoiler made of alert text, a hidden character."""
    bare = _ESCAPED.sub("", text)  # escaped characters are literal
    found = [f"link {m.group(0)}" for m in _LINK.finditer(bare) if urlsplit(m.group(2)).hostname == EVIL]
    bare = _LINK.sub(lambda m: f"[{m.group(1)}]", bare)  # relay's own links: their URLs encode alert text
    found += [m for m in ("@everyone", "@here", "<@", "<#", "<t:", "<at>", "||", "~~", "`") if m in bare]
    found += ["**bold**"] if "**bold**" in bare else []
    found += [f"hidden U+{ord(c):04X}" for c in ("\u202e", "\u200b") if c in text]
    return found
