"""The admin and health HTTP API: `admin` (history, replay, purge, reload, health, metrics) and `maintenance`
(maintenance windows). Imports nothing itself, so each part stays in its layer."""
