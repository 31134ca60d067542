"""Heartbeats (a dead man's switch): alerts that must keep arriving, and relay's own notice when one stops.

`relay.config.heartbeat` is the `heartbeats:` section of routes.yaml and which alerts are heartbeats (the
webhook consumes them); `notice` is the alert relay raises when one goes missing and resolves when it returns;
`switch` is the periodic check that finds both.
"""
