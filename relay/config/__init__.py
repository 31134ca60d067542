"""routes.yaml and what it configures: receivers, routes, matchers, durations, escalation, heartbeats, the live
configuration (runtime) and what a change moves (diff)."""
