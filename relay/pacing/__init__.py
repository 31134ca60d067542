"""How fast and when relay sends: token buckets per destination, worker slots, retry backoff.

Pure policy: the dispatcher and the store apply it (a bucket lives in the store for PostgreSQL), so it imports
nothing above relay.config.
"""
