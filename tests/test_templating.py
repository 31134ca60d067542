"""Templates and the messages built from them: escaping, links, provider limits, Korean text, overrides."""

from __future__ import annotations

import json
import re
import shutil
import time
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from relay.alerts import WebhookMessage
from relay.channels.email import build_message as email_message
from relay.channels.pagerduty import EVENT_LIMIT, build_events
from relay.channels.slack.message import BLOCK_LIMIT, build_message
from relay.config.receivers import ReceiverConfig
from relay.errors import ConfigError, PermanentDeliveryError, Reason
from relay.templating import Templates, context, relative_time, silence_url
from relay.templating.escape import cut, safe_url, slack_link
from relay.templating.neutralise import visible
from tests.fakes import notification, webhook_message
from tests.fakes.slack import block_problems
from tests.helpers import TEMPLATES

NOW = datetime(2026, 11, 26, 7, 50, tzinfo=UTC)
MENTION = "<!subteam^S0123|oncall>"
SLACK = ReceiverConfig.model_validate({"name": "s", "slack": {"token": "t", "channel": "#c", "mention": MENTION}})
EMAIL = ReceiverConfig.model_validate({"name": "e", "email": {"to": ["ops@ojeomneo.example"],
                                                              "from": "relay@ojeomneo.example"}})
PAGERDUTY = ReceiverConfig.model_validate({"name": "p", "pagerduty": {"routing_key": "k"}})
TEMPLATES_ = Templates(TEMPLATES)
LINK_LABELS = ("Runbook", "Source", "Silence")


def mrkdwn_texts(message: dict[str, Any]) -> list[str]:
    """Every text Slack parses as mrkdwn (where `<…>` would become a mention or a link), and the attachment
    fallback, which phones show in notifications: treated the same, to be safe."""
    texts = [message["text"], *(a["fallback"] for a in message.get("attachments", []))]
    blocks = list(message["blocks"]) + [b for a in message.get("attachments", []) for b in a["blocks"]]
    for block in blocks:
        if block["type"] == "section":
            texts.append(block["text"]["text"])
        elif block["type"] == "context":
            texts.extend(e["text"] for e in block["elements"])
    return texts


def assert_slack_safe(message: dict[str, Any]) -> None:
    """The only control sequences are the routes.yaml mention and relay's own http(s) links."""
    for text in mrkdwn_texts(message):
        for sequence in re.findall(r"<[^>]*>?", text):
            if sequence == MENTION:
                continue
            match = re.fullmatch(r"<(https?://[^\s|<>]+)\|(\w+)>", sequence)
            assert match, f"unexpected control sequence {sequence!r} in {text!r}"
            assert match.group(2) in LINK_LABELS


class _Html(HTMLParser):
    ALLOWED = frozenset({"html", "head", "meta", "title", "body", "p", "strong", "code", "table", "tr", "th", "td",
                         "br", "a"})
    ATTRIBUTES = frozenset({"charset", "style", "border", "cellpadding", "cellspacing", "href"})

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.text: list[str] = []
        self.hrefs: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        assert tag in self.ALLOWED, f"unexpected tag <{tag}>"
        for name, value in attrs:
            assert name in self.ATTRIBUTES, f"unexpected attribute {name}"
            if name == "href":
                assert value is not None and re.match(r"https?://", value), value
                self.hrefs.append(value)

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def parse_html(message: EmailMessage) -> _Html:
    part = message.get_body(("html",))
    assert isinstance(part, EmailMessage)
    parser = _Html()
    parser.feed(part.get_content())
    return parser


def with_alert(group: WebhookMessage, **changes: Any) -> WebhookMessage:
    alert = group.alerts[0]
    updated = alert.model_copy(update={k: {**getattr(alert, k), **v} if isinstance(v, dict) else v
                                       for k, v in changes.items()})
    return group.model_copy(update={"alerts": [updated]})


# escaping ---------------------------------------------------------------------------------------------------------

def test_the_injection_fixture_shows_its_text_but_cannot_mention_or_link() -> None:
    n = notification("firing-higherrorrate")
    message = build_message(n, TEMPLATES_, SLACK, now=NOW)
    assert_slack_safe(message)
    wire = json.dumps(message)
    assert "&lt;!channel&gt; *bold* &lt;https://evil.example|click&gt;" in wire
    parsed = parse_html(email_message(n, TEMPLATES_, EMAIL, now=NOW))
    assert "Error ratio is 7.3% (<!channel> *bold* <https://evil.example|click>)" in "".join(parsed.text)
    assert not any("evil" in href for href in parsed.hrefs)


def test_notification_texts_cannot_mention_either() -> None:
    group = webhook_message("firing-highlatency-group2")
    injected = "<!channel> & <https://evil.example|click>"
    group = group.model_copy(update={"groupLabels": {**group.groupLabels, "namespace": injected}})
    message = build_message(notification(group), TEMPLATES_, SLACK, now=NOW)
    assert_slack_safe(message)
    escaped = "&lt;!channel&gt; &amp; &lt;https://evil.example|click&gt;"
    assert escaped in message["attachments"][0]["fallback"]  # shown as text, as Slack unescapes it
    assert escaped in message["text"]
    assert injected in message["blocks"][0]["text"]["text"]  # plain_text: never parsed, so shown as is


DANGEROUS = st.sampled_from(["<!channel>", "<!here>", "<@U024BE7LH>", "<#C024BE7LH>", "<https://evil.example|click>",
                             "<script>alert(1)</script>", '"><img src=x onerror=1>', "&lt;!here&gt;", "&", "|",
                             "javascript:alert(1)", "<!subteam^S9|x>", "`", "*", "\n", "<", ">", "알림"])
VALUES = st.lists(st.one_of(DANGEROUS, st.text(max_size=8)), min_size=1, max_size=6).map("".join)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(label=VALUES, summary=VALUES, description=VALUES, runbook=VALUES)
def test_no_alert_value_becomes_a_mention_link_or_tag(label: str, summary: str, description: str,
                                                     runbook: str) -> None:
    group = with_alert(webhook_message("firing-higherrorrate"), labels={"pod": label, "instance": label},
                       annotations={"summary": summary, "description": description, "runbook_url": runbook},
                       generatorURL=runbook)
    group = group.model_copy(update={"groupLabels": {**group.groupLabels, "namespace": label}})
    n = notification(group)
    assert_slack_safe(build_message(n, TEMPLATES_, SLACK, now=NOW))
    parsed = parse_html(email_message(n, TEMPLATES_, EMAIL, now=NOW))
    text = " ".join("".join(parsed.text).split())
    for value in (label, summary, description):  # shown as text, exactly (up to line breaks and hidden characters)
        assert " ".join(visible(value).split()) in text


def test_links_are_only_made_from_http_urls() -> None:
    assert safe_url("javascript:alert(1)") == safe_url("data:text/html,x") == safe_url("/relative") == ""
    assert safe_url("https://x.example/a b|c<d>") == "https://x.example/a%20b%7Cc%3Cd%3E"
    assert safe_url("https://x.example/?a=1&b=2") == "https://x.example/?a=1&b=2"
    assert slack_link("https://x.example/?a=1&b=2", "Run|book") == "<https://x.example/?a=1&amp;b=2|Run¦book>"
    assert slack_link("ftp://x.example", "Runbook") == ""


def test_silence_link_matches_the_alert_exactly_even_with_quotes() -> None:
    url = silence_url("http://am:9093/", {"alertname": "X", "path": 'a"b\\c'})
    assert url.startswith("http://am:9093/#/silences/new?filter=")
    from urllib.parse import unquote

    assert unquote(url.split("filter=", 1)[1]) == '{alertname="X",path="a\\"b\\\\c"}'
    assert silence_url("", {"a": "b"}) == ""


def test_a_megabyte_label_gets_no_silence_link_and_costs_the_event_loop_little() -> None:
    """A 1 MB label of backslashes (or any character Python percent-encodes the slow way) took 0.6 s of event-loop
    CPU per alert and channel to encode into a Silence link no provider shows, and the huge link pushed PagerDuty's
    event over its limit, so the incident lost its labels. Past SILENCE_LINK_LIMIT there is no link; a shorter one
    would silence more than the alert."""
    labels = {"alertname": "X", "junk": "\\" * 1_000_000}
    started = time.thread_time()  # CPU of this thread: what the event loop would have lost
    assert silence_url("http://am:9093/", labels) == ""
    assert time.thread_time() - started < 0.05
    group = with_alert(webhook_message("firing-poddown"), labels={"junk": "\\" * 1_000_000})
    texts = every_channels_text(group)
    assert "silences/new" not in texts["slack"] and "silences/new" not in texts["email text/plain"]
    assert "too large for PagerDuty" not in texts["pagerduty"] and '"pod": "server-abc-123"' in texts["pagerduty"]
    assert silence_url("http://am:9093/", {"alertname": "X", "pod": "p" * 2000}).startswith("http://am:9093/#/")


_MATCHER = re.compile(r'\s*("(?:[^"\\]|\\.)*"|[A-Za-z_][A-Za-z0-9_]*)(=~|!~|!=|=)("(?:[^"\\]|\\.)*")\s*(?:,|$)')


def filter_matchers(url: str) -> list[tuple[str, str, str]]:
    """The matchers of a Silence link's filter, read as Alertmanager reads `{name="value",...}` (names may be
    quoted)."""
    from urllib.parse import unquote

    text = unquote(url.split("filter=", 1)[1])
    assert text.startswith("{") and text.endswith("}"), text
    body, found, at = text[1:-1], [], 0
    while at < len(body):
        match = _MATCHER.match(body, at)
        assert match, f"not a matcher list: {body[at:]!r}"
        name, op, value = match.groups()
        unquoted = [json.loads(part) if part.startswith('"') else part for part in (name, value)]
        found.append((unquoted[0], op, unquoted[1]))
        at = match.end()
    return found


@pytest.mark.parametrize("key", ['team",severity=~".*', 'x"}', "a b", "na\\me\n", "ünï", 'k="v"'])
def test_a_hostile_label_key_cannot_add_matchers_to_the_silence_link(key: str) -> None:
    """The link prefills a silence with the alert's labels; a key that closed the quote could add `severity=~".*"`
    and silence far more than this alert."""
    labels = {"alertname": "X", key: "v", "severity": "warning"}
    url = silence_url("http://am:9093/", labels)
    assert filter_matchers(url) == [(k, "=", v) for k, v in sorted(labels.items())]


HIDDEN = "\u202egpj.exe\u202c \u200bzero\u200d\u2060\ufeff \u2066iso\u2069 \u061c \x00nul\x1besc\x85"


def every_channels_text(group: WebhookMessage) -> dict[str, str]:
    """What each channel would send for `group`, as text: Slack's and PagerDuty's JSON, the email's subject, parts."""
    n = notification(group)
    slack = build_message(n, TEMPLATES_, SLACK, now=NOW)
    email = email_message(n, TEMPLATES_, EMAIL, now=NOW)
    events = build_events(n, TEMPLATES_, PAGERDUTY, now=NOW)
    return {"slack": json.dumps(slack, ensure_ascii=False), "pagerduty": json.dumps(events, ensure_ascii=False),
            "email subject": str(email["Subject"]),
            **{f"email {p.get_content_type()}": p.get_content() for p in email.walk() if not p.is_multipart()}}


def test_bidi_overrides_and_zero_width_characters_are_shown_in_every_channel() -> None:
    """`\u202egpj.exe` reads as `exe.jpg`; zero-width characters hide or split words. Each integration shows them as
    [U+XXXX], in keys as in values; the Silence link still carries the real value (percent-encoded)."""
    group = with_alert(webhook_message("firing-poddown"), labels={"pod": HIDDEN, f"k\u202e{HIDDEN}": "v"},
                       annotations={"summary": HIDDEN, "description": HIDDEN})
    group = group.model_copy(update={"groupLabels": {**group.groupLabels, "namespace": HIDDEN},
                                     "commonLabels": {**group.commonLabels, "pod": HIDDEN}})
    texts = every_channels_text(group)
    for where, text in texts.items():
        hidden = sorted({f"U+{ord(c):04X}" for c in text if visible(c) != c})
        assert hidden == [], where
        assert "[U+202E]gpj.exe[U+202C]" in text, where
    assert "%E2%80%AEgpj.exe" in texts["slack"]  # the link matches the alert's real labels


# Also invisible, or blank where a letter should be: Unicode tags (U+E0020-E007F spell ASCII no one sees),
# invisible operators, deprecated format controls, the soft hyphen, the Mongolian vowel separator, Hangul fillers
# (blank "letters"), interlinear annotation marks, musical formatting.
INVISIBLE = ("\U000e0001\U000e0041\U000e0042\U000e007f \u2061\u2062\u2063\u2064 \u206a\u206f \u00ad \u034f \u180e "
             "\u115f\u1160\u3164\uffa0 \ufff9\ufffb \U0001d173")


def test_unicode_tags_and_other_invisible_characters_are_shown_in_every_channel() -> None:
    """Not only bidi and zero-width: every character that renders as nothing (or as a blank letter) is shown as
    [U+XXXX], so no alert text can carry words a reader does not see."""
    group = with_alert(webhook_message("firing-poddown"), labels={"pod": f"api{INVISIBLE}"},
                       annotations={"summary": INVISIBLE, "description": INVISIBLE})
    group = group.model_copy(update={"groupLabels": {**group.groupLabels, "namespace": INVISIBLE}})
    texts = every_channels_text(group)
    for where, text in texts.items():
        assert sorted({f"U+{ord(c):04X}" for c in text if c in INVISIBLE and c != " "}) == [], where
        assert "[U+E0041][U+E0042]" in text and "[U+3164]" in text, where


def test_slack_shows_alert_text_verbatim() -> None:
    """Without `verbatim`, Slack turns a plain `@here`, `#general` or bare URL in alert text into a mention or a
    link; every mrkdwn object relay sends is verbatim, and the top-level text is not parsed (`parse: none`)."""
    message = build_message(notification("firing-highlatency-group2"), TEMPLATES_, SLACK, now=NOW)
    objects = [block["text"] for block in message["blocks"] if block["type"] == "section"]
    for attachment in message["attachments"]:
        for block in attachment["blocks"]:
            objects += [block["text"]] if block["type"] == "section" else block.get("elements", [])
    assert objects and all(o["verbatim"] is True for o in objects if o["type"] == "mrkdwn")
    assert message["parse"] == "none"


def test_html_parts_are_escaped_whatever_the_file_is_called(tmp_path: Path) -> None:
    directory = tmp_path / "templates"
    shutil.copytree(TEMPLATES, directory)
    (directory / "mine.j2").write_text("<p>{{ alerts[0].annotations.description }}</p>")
    receiver = EMAIL.model_copy(update={"templates": {"html": "mine.j2"}})
    message = email_message(notification("firing-higherrorrate"), Templates(directory), receiver, now=NOW)
    part = message.get_body(("html",))
    assert isinstance(part, EmailMessage)
    assert "&lt;!channel&gt;" in part.get_content() and "<https://evil" not in part.get_content()


# limits -------------------------------------------------------------------------------------------------------------

def test_cut_says_how_much_was_cut_and_never_splits_an_escape() -> None:
    assert cut("short", 10) == "short"
    long = cut("x" * 5000, 3000)
    assert len(long) <= 3000 and long.endswith("… and 2026 more characters")
    text = "a" * 2970 + "&amp;" + "b" * 100
    assert "&am…" not in cut(text, 3000, mrkdwn=True) and "&amp;…" not in cut(text, 3000, mrkdwn=True)
    link = "a" * 2960 + "<https://x.example|Runbook>" + "b" * 100
    assert cut(link, 3000, mrkdwn=True).count("<") == 0


def test_a_huge_group_fits_slack_and_says_what_was_left_out() -> None:
    group = webhook_message("firing-highlatency-group2")
    template = group.alerts[0]
    alerts = [template.model_copy(update={"fingerprint": f"{i:016x}", "labels": {**template.labels, "pod": f"p{i}"},
                                          "annotations": {"summary": "x" * 4000}}) for i in range(120)]
    group = group.model_copy(update={"alerts": alerts, "truncatedAlerts": 30,
                                     "groupLabels": {"alertname": "A" * 400}})
    message = build_message(notification(group), TEMPLATES_, SLACK, now=NOW)
    assert block_problems(message) == []
    blocks = message["blocks"] + message["attachments"][0]["blocks"]
    assert len(blocks) == BLOCK_LIMIT
    notes = [b["elements"][0]["text"] for b in blocks if b["type"] == "context"]
    assert "… and 75 more alerts" in notes  # 45 shown
    assert "+30 alerts not sent by Alertmanager" in notes
    assert len(message["blocks"][0]["text"]["text"]) <= 150
    assert all(len(t) <= 3000 for t in mrkdwn_texts(message))
    assert "more characters" in blocks[3]["text"]["text"]


def wire_size(event: dict[str, Any]) -> int:
    """Bytes on the wire with the routing key added, as the client encodes it (UTF-8, not \\u escapes)."""
    return len(json.dumps({"routing_key": "k" * 32, **event}, ensure_ascii=False).encode())


def test_pagerduty_event_stays_under_512_kb() -> None:
    group = with_alert(webhook_message("firing-poddown"),
                       annotations={f"note{i}": "y" * 100_000 for i in range(8)})
    [event] = build_events(notification(group), TEMPLATES_, PAGERDUTY, now=NOW)
    assert wire_size(event) < EVENT_LIMIT
    assert event["payload"]["custom_details"]["labels"]["pod"] == "server-abc-123"
    assert event["payload"]["custom_details"]["annotations"]["note0"].endswith("more characters")


def test_pagerduty_event_stays_under_512_kb_whatever_grows() -> None:
    huge = "가" * 70_000  # 9 bytes a character once percent-encoded into a link
    labels = {"alertname": huge, "instance": huge, "service": huge, "namespace": huge,
              **{f"label{i}": huge[:3000] for i in range(200)}}
    group = with_alert(webhook_message("firing-poddown"), labels=labels, generatorURL="https://prom.example/" + huge,
                       annotations={"runbook_url": "https://runbooks.example/" + huge, "summary": huge})
    receiver = ReceiverConfig.model_validate({"name": "p", "pagerduty": {
        "routing_key": "k", "client_url": "https://alertmanager.example/" + "a" * 600_000}})
    [event] = build_events(notification(group), TEMPLATES_, receiver, now=NOW)
    assert wire_size(event) < EVENT_LIMIT
    payload = event["payload"]
    assert all(len(payload[field]) <= 255 for field in ("source", "component", "group", "class"))
    assert len(payload["summary"]) <= 1024 and payload["severity"] == "critical"
    assert "too large" in payload["custom_details"]["note"]


def test_truncated_alerts_are_shown_everywhere() -> None:
    n = notification("firing-highmemory-group3-truncated")
    assert "+2 alerts not sent by Alertmanager" in json.dumps(build_message(n, TEMPLATES_, SLACK, now=NOW))
    message = email_message(n, TEMPLATES_, EMAIL, now=NOW)
    assert "+2 alerts not sent by Alertmanager" in "".join(parse_html(message).text)
    text = message.get_body(("plain",))
    assert isinstance(text, EmailMessage) and "+2 alerts not sent by Alertmanager" in text.get_content()


# Korean -------------------------------------------------------------------------------------------------------------

KOREAN = ("메모리 사용률 80% 초과 (server-7d9f-0)", "컨테이너 메모리 사용량이 limit의 80%를 넘었습니다.", "결제-서비스")


def korean_notification() -> Any:
    group = webhook_message("firing-highmemory-group3-truncated")
    return notification(group.model_copy(update={"groupLabels": {**group.groupLabels, "namespace": KOREAN[2]}}))


def test_korean_survives_slack_unchanged() -> None:
    message = build_message(korean_notification(), TEMPLATES_, SLACK, now=NOW)
    wire = json.loads(json.dumps(message, ensure_ascii=True))  # whatever the encoding on the way
    assert KOREAN[2] in wire["blocks"][0]["text"]["text"]
    body = json.dumps(wire, ensure_ascii=False)
    assert KOREAN[0] in body and KOREAN[1] in body


def test_korean_survives_pagerduty_unchanged() -> None:
    events = build_events(korean_notification(), TEMPLATES_, PAGERDUTY, now=NOW)
    assert KOREAN[0] in events[0]["payload"]["summary"]
    assert events[0]["payload"]["custom_details"]["annotations"]["description"] == KOREAN[1]


def test_korean_survives_email_unchanged() -> None:
    from email import message_from_bytes, policy

    sent = email_message(korean_notification(), TEMPLATES_, EMAIL, now=NOW)
    received = message_from_bytes(sent.as_bytes(policy=policy.SMTP), policy=policy.default)
    assert isinstance(received, EmailMessage)
    assert received["Subject"] == f"[FIRING:3] HighMemory {KOREAN[2]} (warning)"
    for part in (received.get_body(("plain",)), received.get_body(("html",))):
        assert isinstance(part, EmailMessage)
        assert KOREAN[0] in part.get_content() and KOREAN[1] in part.get_content()


# context and overrides ----------------------------------------------------------------------------------------------

def test_relative_time_and_duration() -> None:
    assert relative_time(NOW - timedelta(minutes=5, seconds=3), NOW) == "5m 3s ago"
    assert relative_time(NOW - timedelta(days=2, hours=3, minutes=1), NOW) == "2d 3h ago"
    assert relative_time(NOW + timedelta(seconds=30), NOW) == "30s from now"
    assert relative_time(None, NOW) == ""


def test_distinguishing_labels_leave_out_the_common_noise() -> None:
    message = build_message(notification("firing-highmemory-group3-truncated"), TEMPLATES_, SLACK, now=NOW)
    blocks = message["attachments"][0]["blocks"]
    assert blocks[0]["elements"][0]["text"] == "`container=server` `namespace=ojeomneo`"  # said once
    alert = blocks[1]["text"]["text"]
    assert "`pod=server-7d9f-0`" in alert
    assert "namespace=" not in alert and "severity=" not in alert and "alertname=" not in alert


def test_a_receiver_can_override_one_part(tmp_path: Path) -> None:
    directory = tmp_path / "templates"
    shutil.copytree(TEMPLATES, directory)
    (directory / "short.j2").write_text("{{ alert.labels.pod }} is {{ alert.status }}")
    receiver = SLACK.model_copy(update={"templates": {"alert": "short.j2"}})
    message = build_message(notification("firing-poddown"), Templates(directory), receiver, now=NOW)
    assert message["attachments"][0]["blocks"][0]["text"]["text"] == "server-abc-123 is firing"
    assert message["blocks"][0]["text"]["text"] == ":red_circle: [FIRING:1] PodDown (critical)"  # default title


def test_template_context_names_follow_alertmanager() -> None:
    directory = TEMPLATES
    ctx_template = ("{{ status }} {{ receiver }} {{ alerts | length }} {{ firing | length }} {{ resolved | length }} "
                    "{{ groupLabels.alertname }} {{ commonLabels.severity }} {{ commonAnnotations.summary }} "
                    "{{ externalURL }} {{ truncatedAlerts }} {{ alerts[0].fingerprint }} {{ alerts[0].generatorURL }} "
                    "{{ alerts[0].startsAt | clock }} {{ alerts[0].silenceURL != '' }}")
    from relay.templating import context

    env = Templates(directory)._envs["plain"]
    rendered = env.from_string(ctx_template).render(context(notification("firing-poddown", "r"), now=NOW))
    assert rendered == ("firing r 1 1 0 PodDown critical Pod down http://vm:19093 0 1080c9b07277e8d8  "
                        "2026-11-26 07:37 UTC True")



def test_a_template_failing_at_render_time_is_a_permanent_template_error(tmp_path: Path) -> None:
    from relay.errors import PermanentDeliveryError

    directory = tmp_path / "templates"
    shutil.copytree(TEMPLATES, directory)
    (directory / "bad.j2").write_text('{{ alerts | length + "x" }}')
    receiver = EMAIL.model_copy(update={"templates": {"subject": "bad.j2"}})
    with pytest.raises(PermanentDeliveryError) as caught:
        email_message(notification("firing-poddown"), Templates(directory), receiver, now=NOW)
    assert caught.value.reason == "template" and "bad.j2: TypeError" in caught.value.detail


# where templates come from ------------------------------------------------------------------------------------------

def test_a_templates_directory_overrides_only_the_files_it_has(tmp_path: Path) -> None:
    directory = tmp_path / "templates"
    (directory / "slack").mkdir(parents=True)
    (directory / "slack" / "title.j2").write_text("OURS {{ status }}")
    ctx = context(notification("firing-higherrorrate"), now=NOW)
    mine, packaged = Templates(directory), Templates()
    assert mine.render("slack", "title", {}, ctx) == "OURS firing"
    assert "OURS firing" in mine.render("slack", "text", {}, ctx)  # the packaged text.j2 includes the override
    assert "OURS" not in packaged.render("slack", "text", {}, ctx)
    for integration, part in [("email", "subject"), ("email", "html"), ("pagerduty", "summary")]:
        assert mine.render(integration, part, {}, ctx) == packaged.render(integration, part, {}, ctx) != ""
    mine.check("slack", {}, "receiver s")


def test_a_missing_override_says_where_it_was_looked_for(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=rf"'slack/nope.j2' not found in {re.escape(str(tmp_path))} or the packaged"):
        Templates(tmp_path).check("slack", {"title": "slack/nope.j2"}, "receiver s")
    with pytest.raises(ConfigError, match=r"'slack/nope.j2' not found in the packaged defaults"):
        Templates().check("slack", {"title": "slack/nope.j2"}, "receiver s")


@pytest.mark.parametrize("nested", ["{{ " + "(" * 500 + "1" + ")" * 500 + " }}",
                                    "{% if true %}" * 3000 + "x" + "{% endif %}" * 3000],
                         ids=["parentheses", "blocks"])
async def test_a_deeply_nested_template_is_refused_in_one_line(tmp_path: Path, nested: str) -> None:
    """Jinja parses and compiles recursively: a 1 KB template of nested parentheses raised RecursionError, and
    `relay routes check` (serve's start and routes diff alike) printed a 3,000-line traceback instead of the file
    and a reason (a reload was refused only by its catch-all)."""
    from tests.test_cli import run_relay

    templates = tmp_path / "templates"
    shutil.copytree(TEMPLATES, templates)
    (templates / "slack" / "title.j2").write_text(nested)
    with pytest.raises(ConfigError, match="nested deeper than relay compiles"):
        Templates(templates).check("slack", {}, "receiver s")
    routes = tmp_path / "routes.yaml"
    routes.write_text("receivers:\n  - name: s\n    slack: {webhook_url: 'http://127.0.0.1:9/x'}\n"
                      "routes:\n  - matchers: [team=\"web\"]\n    receivers: [s]\n")
    code, out = await run_relay("routes", "check", "--templates", str(templates), str(routes), cwd=tmp_path)
    assert code == 1 and "Traceback" not in out, out[:2000]
    assert [line for line in out.splitlines() if line.strip()] == [
        f"relay: {routes}:2: receiver 's': template 'slack/title.j2': nested deeper than relay compiles (a block, "
        "an expression or parentheses inside each other hundreds of times)"]


@pytest.mark.parametrize(("bomb", "says"), [
    ("{% for a in range(100000) %}{% for b in range(100000) %}{% endfor %}{% endfor %}", "loops count past"),
    ('{{ "x" * 1000000000 }}', "repeats a value"),
    ("{{ 1000000000 * [1] }}", "repeats a value"),
    ("{{ 2 ** 1000000000 }}", "raises a number"),
], ids=["nested-ranges", "string-repeat", "list-repeat", "power"])
async def test_a_template_bomb_is_refused_at_load_and_fails_a_render_instead_of_hanging(
        tmp_path: Path, bomb: str, says: str) -> None:
    """Jinja's sandbox caps one range() at 100,000, not two nested ones: a 90-byte slack/text.j2 held `relay routes
    check` (and a reload's trial render; at delivery, the event loop) for good; `"x" * 10**9` took a gigabyte. Each
    render has a budget (relay.templating.bounds): the check names the file and why, a send fails as `template`."""
    from tests.test_cli import run_relay

    templates = tmp_path / "templates"
    shutil.copytree(TEMPLATES, templates)
    text = templates / "slack" / "text.j2"
    text.write_text(bomb + "\n" + text.read_text())
    with pytest.raises(PermanentDeliveryError) as failed:
        Templates(templates).render("slack", "text", {}, context(notification("firing-poddown", "s"), now=NOW))
    assert failed.value.reason is Reason.TEMPLATE and says in failed.value.detail
    routes = tmp_path / "routes.yaml"
    routes.write_text("receivers:\n  - name: s\n    slack: {webhook_url: 'http://127.0.0.1:9/x'}\n"
                      "routes:\n  - matchers: [team=\"web\"]\n    receivers: [s]\n")
    code, out = await run_relay("routes", "check", "--templates", str(templates), str(routes), cwd=tmp_path)
    assert code == 1 and len(out.strip().splitlines()) == 1 and "slack/text.j2" in out and says in out, out


def test_loops_within_the_budget_still_render() -> None:
    env = Templates()._envs["plain"]
    assert env.from_string("{% for i in range(3) %}{{ i }}{% endfor %}{{ 'ab' * 2 }}{{ 2 ** 10 }}").render() == \
        "012abab1024"
