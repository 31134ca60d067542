"""The plan's Database (postgres_exporter), Cache (redis_exporter) and Business (the API's own counters) dashboards.

Thresholds are the plan's alerts: DBConnectionExhausted at 90% of
max_connections, RedisCacheHitLow under a 70% hit ratio, RedisMemoryHigh at 80%
of maxmemory.
"""

from __future__ import annotations

from panels import (
    YELLOW,
    Board,
    Query,
    above,
    below,
    gauge_panel,
    stat_panel,
    state,
    steps,
    timeseries_panel,
)
from plan_service import NS, RATE, plan_board

DB_CONNECTIONS_RATIO = 0.9  # DBConnectionExhausted
HIT_RATIO = 0.7  # RedisCacheHitLow
REDIS_MEMORY_RATIO = 0.8  # RedisMemoryHigh

CONNECTIONS = f"sum(pg_stat_activity_count{{{NS}}})"
MAX_CONNECTIONS = f"max(pg_settings_max_connections{{{NS}}})"
# maxmemory 0 means "no limit": such an instance has no ratio rather than an infinite one.
REDIS_MEMORY = f"sum(redis_memory_used_bytes{{{NS}}}) / sum(redis_memory_max_bytes{{{NS}}} > 0)"


def hits(window: str = RATE) -> str:
    return f"sum(rate(redis_keyspace_hits_total{{{NS}}}[{window}]))"


def misses(window: str = RATE) -> str:
    return f"sum(rate(redis_keyspace_misses_total{{{NS}}}[{window}]))"


def hit_ratio(window: str = RATE) -> str:
    return f"{hits(window)} / ({hits(window)} + {misses(window)})"


def database() -> Board:
    board = plan_board("ojeomneo-database", "Database", "PostgreSQL through postgres_exporter: connections used "
                       "against max_connections, by state and by database.", "pg_up")
    board.row("Now")
    board.add(stat_panel("PostgreSQL", "Whether postgres_exporter can reach the server (pg_up).", "none",
                         [Query(f"min(pg_up{{{NS}}})")], mappings=state("down", "up"), thresholds=below(1),
                         graph=False), width=4, height=5)
    board.add(gauge_panel("Connections used", "Connections open over max_connections; DBConnectionExhausted fires "
                          "above 90%.", "percentunit", [Query(f"{CONNECTIONS} / {MAX_CONNECTIONS}")],
                          thresholds=steps((None, "green"), (0.75, YELLOW), (DB_CONNECTIONS_RATIO, "red"))),
              width=5, height=5)
    board.add(stat_panel("Connections", "Connections open, every state.", "short", [Query(CONNECTIONS)]),
              width=5, height=5)
    board.add(stat_panel("max_connections", "The server's max_connections setting.", "short",
                         [Query(MAX_CONNECTIONS)], graph=False), width=5, height=5)
    board.add(stat_panel("Idle in transaction", "Sessions holding a transaction open without working: they keep "
                         "locks and block vacuum.", "short",
                         [Query(f'sum(pg_stat_activity_count{{{NS}, state="idle in transaction"}})')],
                         thresholds=above(5, YELLOW)), width=5, height=5)

    board.row("Connections")
    board.add(timeseries_panel("Connections vs max", "Connections open and the max_connections limit.", "short",
                               [Query(CONNECTIONS, "open"), Query(MAX_CONNECTIONS, "max_connections")]), width=12)
    board.add(timeseries_panel("Connections used", "Connections over max_connections; the dashed line is "
                               "DBConnectionExhausted's 90%.", "percentunit",
                               [Query(f"{CONNECTIONS} / {MAX_CONNECTIONS}", "used")],
                               threshold=above(DB_CONNECTIONS_RATIO), maximum=1), width=12)
    board.add(timeseries_panel("By state", "Connections by state (active, idle, idle in transaction, ...).", "short",
                               [Query(f"sum by (state) (pg_stat_activity_count{{{NS}}})", "{{state}}")],
                               stacked=True), width=12)
    board.add(timeseries_panel("By database", "Connections per database.", "short",
                               [Query(f"sum by (datname) (pg_stat_activity_count{{{NS}}})", "{{datname}}")],
                               stacked=True), width=12)
    return board


def cache() -> Board:
    board = plan_board("ojeomneo-cache", "Cache", "Redis through redis_exporter: hit ratio, memory against "
                       "maxmemory, commands, clients and keys.", "redis_up")
    board.row("Now")
    board.add(stat_panel("Redis", "Whether redis_exporter can reach Redis (redis_up).", "none",
                         [Query(f"min(redis_up{{{NS}}})")], mappings=state("down", "up"), thresholds=below(1),
                         graph=False), width=4, height=5)
    board.add(stat_panel("Hit ratio (5m)", "Keyspace hits over lookups in the last 5 minutes; RedisCacheHitLow "
                         "fires under 70%.", "percentunit", [Query(hit_ratio("5m"))], thresholds=below(HIT_RATIO)),
              width=5, height=5)
    board.add(gauge_panel("Memory used", "Used memory over maxmemory; RedisMemoryHigh fires above 80%. Empty when "
                          "maxmemory is 0 (no limit).", "percentunit", [Query(REDIS_MEMORY)],
                          thresholds=steps((None, "green"), (0.7, YELLOW), (REDIS_MEMORY_RATIO, "red"))),
              width=5, height=5)
    board.add(stat_panel("Clients", "Connected clients.", "short",
                         [Query(f"sum(redis_connected_clients{{{NS}}})")]), width=5, height=5)
    board.add(stat_panel("Keys", "Keys in every database.", "short", [Query(f"sum(redis_db_keys{{{NS}}})")]),
              width=5, height=5)

    board.row("Cache")
    board.add(timeseries_panel("Hit ratio", "Keyspace hits over lookups; the dashed line is RedisCacheHitLow's 70%.",
                               "percentunit", [Query(hit_ratio(), "hit ratio")], threshold=below(HIT_RATIO),
                               maximum=1), width=12)
    board.add(timeseries_panel("Hits and misses", "Keyspace lookups per second that found (hits) or missed their "
                               "key.", "ops", [Query(hits(), "hits"), Query(misses(), "misses")]), width=12)

    board.row("Memory and load")
    board.add(timeseries_panel("Memory vs maxmemory", "Used memory and the maxmemory limit (0: no limit).", "bytes",
                               [Query(f"sum(redis_memory_used_bytes{{{NS}}})", "used"),
                                Query(f"sum(redis_memory_max_bytes{{{NS}}})", "maxmemory")]), width=12)
    board.add(timeseries_panel("Memory used", "Used memory over maxmemory; the dashed line is RedisMemoryHigh's "
                               "80%.", "percentunit", [Query(REDIS_MEMORY, "used")],
                               threshold=above(REDIS_MEMORY_RATIO), maximum=1), width=12)
    board.add(timeseries_panel("Commands", "Commands processed per second.", "ops",
                               [Query(f"sum(rate(redis_commands_processed_total{{{NS}}}[{RATE}]))", "commands")]),
              width=8)
    board.add(timeseries_panel("Clients", "Connected clients.", "short",
                               [Query(f"sum(redis_connected_clients{{{NS}}})", "clients")]), width=8)
    board.add(timeseries_panel("Keys by database", "Keys per Redis database.", "short",
                               [Query(f"sum by (db) (redis_db_keys{{{NS}}})", "{{db}}")]), width=8)
    return board


ORDERS = "ojeomneo_orders_total"
RECOMMENDATIONS = "ojeomneo_recommendations_total"


def share(metric: str, label: str, value: str, window: str = RATE) -> str:
    """Share of a counter's increase carrying `label="value"` (cancelled orders, accepted recommendations)."""
    return (f'sum(rate({metric}{{{NS}, {label}="{value}"}}[{window}])) / '
            f"sum(rate({metric}{{{NS}}}[{window}]))")


def business() -> Board:
    board = plan_board("ojeomneo-business", "Business", "What the service is for: orders, cancellations, signups, "
                       "active users and recommendations accepted.", ORDERS)
    board.row("Now")
    board.add(stat_panel("Orders /min", "Completed orders per minute over the last 5 minutes.", "short",
                         [Query(f'sum(rate({ORDERS}{{{NS}, status="completed"}}[5m])) * 60')]), width=5, height=5)
    board.add(stat_panel("Cancelled (1h)", "Share of orders cancelled in the last hour.", "percentunit",
                         [Query(share(ORDERS, "status", "cancelled", "1h"))], thresholds=above(0.1, YELLOW)),
              width=5, height=5)
    board.add(stat_panel("Signups (24h)", "New accounts in the last 24 hours.", "short",
                         [Query(f"sum(increase(ojeomneo_signups_total{{{NS}}}[24h]))")], decimals=0), width=4,
              height=5)
    board.add(stat_panel("Active users", "Users with a session in the last 5 minutes.", "short",
                         [Query(f"sum(ojeomneo_active_users{{{NS}}})")]), width=5, height=5)
    board.add(stat_panel("Recommendations accepted (1h)", "Share of recommendations the user took in the last "
                         "hour.", "percentunit", [Query(share(RECOMMENDATIONS, "result", "accepted", "1h"))]),
              width=5, height=5)

    board.row("Orders and users")
    board.add(timeseries_panel("Orders by status", "Orders per minute, completed and cancelled.", "short",
                               [Query(f"sum by (status) (rate({ORDERS}{{{NS}}}[{RATE}])) * 60", "{{status}}")],
                               stacked=True), width=12)
    board.add(timeseries_panel("Cancellation ratio", "Share of orders cancelled.", "percentunit",
                               [Query(share(ORDERS, "status", "cancelled"), "cancelled")], maximum=1), width=12)
    board.add(timeseries_panel("Active users", "Users with a session in the last 5 minutes.", "short",
                               [Query(f"sum(ojeomneo_active_users{{{NS}}})", "active users")]), width=8)
    board.add(timeseries_panel("Signups", "New accounts per hour.", "short",
                               [Query(f"sum(rate(ojeomneo_signups_total{{{NS}}}[{RATE}])) * 3600", "signups/h")]),
              width=8)
    board.add(timeseries_panel("Recommendations", "Recommendations shown per second, by the user's answer.", "ops",
                               [Query(f"sum by (result) (rate({RECOMMENDATIONS}{{{NS}}}[{RATE}]))", "{{result}}")],
                               stacked=True), width=8)
    return board
