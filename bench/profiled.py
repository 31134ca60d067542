"""`relay serve` under cProfile (the event-loop thread), for BENCH_CPROFILE=DIR: `python -m bench.profiled OUT ARGS`.

uvicorn re-raises SIGTERM after its graceful shutdown; here that signal ends the
process as SystemExit instead, so the profile is written on the way out.
"""

from __future__ import annotations

import cProfile
import signal
import sys

from relay.cli.main import main

if __name__ == "__main__":
    out, args = sys.argv[1], sys.argv[2:]
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    profile = cProfile.Profile()
    try:
        profile.runcall(main, args)
    except SystemExit:
        pass
    finally:
        profile.dump_stats(out)
