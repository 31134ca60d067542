"""Run every bench in turn: `python -m bench --smoke` is CI's check that the benches themselves still work.

Without --smoke each bench runs at full size (about an hour in all); run them
one by one (`python -m bench.latency`, `bench.throughput`, `bench.store`,
`bench.email`, `bench.footprint`, `bench.storm`, `bench.console`) to choose their sizes. Timings never fail a run:
only a bench that breaks does.
"""

from __future__ import annotations

import argparse
import asyncio
import time

from bench import console, email, footprint, latency, store, storm, throughput


async def run_all(smoke: bool, require_postgres: bool) -> int:
    extra = (["--smoke"] if smoke else []) + (["--require-postgres"] if require_postgres else [])
    for module in (latency, throughput, store, email, footprint, storm, console):
        started = time.monotonic()
        print(f"== {module.__name__}", flush=True)
        await module.main(module.parse_args(extra))
        print(f"== {module.__name__} took {time.monotonic() - started:.0f} s\n", flush=True)
    return 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--smoke", action="store_true")
    parser.add_argument("--require-postgres", action="store_true", help="fail instead of skipping PostgreSQL")
    opts = parser.parse_args()
    raise SystemExit(asyncio.run(run_all(opts.smoke, opts.require_postgres)))
