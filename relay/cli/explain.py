"""`relay explain`: why an alert did or did not page, from a terminal, the same answer as the console's Explain.

It asks the running relay's admin API (POST /api/v1/explain, the question in the body), so it reads the store
relay serves from, SQLite or PostgreSQL alike, and needs RELAY_ADMIN_TOKEN where relay has one.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from relay.cli.admin import _call, _client, _url, _when
from relay.cli.common import ADMIN_ENVIRONMENT, command
from relay.config.settings import Settings
from relay.console.explain import as_text
from relay.errors import UsageError


def cmd_explain(args: argparse.Namespace, settings: Settings) -> int:
    query = ", ".join(args.alert)
    if not query.strip():
        raise UsageError("name the alert: a fingerprint, or its labels as name=value")
    with _client(args, settings) as client:
        answer = _call(client, "POST", "/api/v1/explain", json={"query": query})
    print(json.dumps(answer, indent=2, ensure_ascii=False) if args.json else as_text(answer, _when), end="")
    return 0


def add_commands(sub: Any) -> None:
    parser = command(
        sub, "explain", "why an alert did (or did not) page",
        "Everything relay recorded about one alert, step by step: when it was received and from which Alertmanager, "
        "each route of routes.yaml matched or not, what it was deduplicated against, the storm summary it was folded "
        "into, its escalation steps, every delivery with its outcome, and acknowledgements and silences. The same "
        "answer as the console's Explain page.",
        examples=["relay explain 1080c9b07277e8d8", "relay explain alertname=PodDown namespace=ojeomneo "
                  "pod=server-abc-123 service=server severity=critical", "relay explain 1080c9b07277e8d8 --json"],
        environment=ADMIN_ENVIRONMENT)
    parser.add_argument("alert", nargs="+", metavar="FINGERPRINT|NAME=VALUE",
                        help="the alert's fingerprint (16 hex digits), or all of its labels as name=value "
                             "(e.g. 1080c9b07277e8d8, or alertname=PodDown severity=critical ...)")
    _url(parser)
    parser.add_argument("--json", action="store_true", help="print the admin API's JSON instead of text (default: off)")
    parser.set_defaults(func=cmd_explain)
