"""The periodic checks beside delivery: each runs on a beat of its own in every replica (`loop`).

Here are the escalations (`escalation`: timers armed at the webhook, fired when due) and retention (`retention`:
old history purged). The heartbeat switch (relay.heartbeat.switch), the storm stage (relay.storms.stage) and the
silence watch run on the same loop from their own feature packages.
"""
