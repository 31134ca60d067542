"""Write the Grafana dashboards of deploy/grafana/ from their Python definitions (grafana-foundation-sdk).

The JSON files are committed so Grafana and kustomize read them as they are;
`--check` fails when they differ from what this script writes, and the test
suite runs it, so a hand edit of the JSON or a forgotten regeneration cannot
go unnoticed.

    python deploy/grafana/generate.py            # rewrite the JSON files
    python deploy/grafana/generate.py --check    # exit 1 if any is stale
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path

import plan_backends
import plan_service
import relay_board
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from panels import Board

HERE = Path(__file__).resolve().parent
# file stem (also the dashboard uid) -> definition
DASHBOARDS: dict[str, Callable[[], Board]] = {
    "relay": relay_board.build,
    "ojeomneo-overview": plan_service.overview,
    "ojeomneo-api": plan_service.api,
    "ojeomneo-database": plan_backends.database,
    "ojeomneo-cache": plan_backends.cache,
    "ojeomneo-business": plan_backends.business,
}


def render(build: Callable[[], Board]) -> str:
    """A dashboard as stable JSON text: sorted keys, two-space indent, one trailing newline."""
    return json.dumps(build().build(), cls=JSONEncoder, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="change nothing; exit 1 if a file is stale")
    parser.add_argument("--out", type=Path, default=HERE, help="directory to write to (default: beside this file)")
    args = parser.parse_args(argv)
    stale = []
    for stem, build in DASHBOARDS.items():
        path = args.out / f"{stem}.json"
        text = render(build)
        if args.check:
            if not path.is_file() or path.read_text(encoding="utf-8") != text:
                stale.append(path.name)
        else:
            path.write_text(text, encoding="utf-8")
    if stale:
        print(f"stale, run {Path(__file__).name}: {', '.join(stale)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
