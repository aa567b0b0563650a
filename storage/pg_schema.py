"""PostgreSQL schema, its version, and the migrations that bring an older database up to date.

The tables mirror :mod:`storage.schema` (SQLite) column for column, with two differences:

* 1s bars live in their own table ``bars_1s`` (same columns as ``bars``), so that retention
  can drop them by time alone and, with TimescaleDB, make them a hypertable of their own
  while 1m and 5m bars stay a plain table that is kept forever.
* ``qd_meta`` replaces SQLite's ``PRAGMA application_id``/``user_version``: it marks the
  database as ours, holds the schema version and whether TimescaleDB was found when the
  schema was created.

TimescaleDB is detected, never assumed: :func:`timescale_steps` runs only where the extension
is available *and* can be created. A hypertable's unique keys must contain its time column,
so there the ticks key is ``(sym_id, trade_id, ts_ms)`` instead of ``(sym_id, trade_id)``.
A trade id always comes with the same exchange time, so duplicates are still refused.
"""

from __future__ import annotations

#: Marks a PostgreSQL database (or schema) as ours, like SQLite's application_id "QDB1".
APPLICATION = "QDB1"

#: ``pg_advisory_xact_lock(LOCK_NAMESPACE, key)``: key 0 guards migrations, key sym_id guards
#: one symbol's writes (ticks, bars, klines) so concurrent writers never interleave a merge.
LOCK_NAMESPACE = 0x5144  # "QD"

#: Chunk width of the hypertables, in ms (TimescaleDB only).
CHUNK_MS = 86_400_000
#: Compress hypertable chunks once they are this old, in ms (TimescaleDB only).
COMPRESS_AFTER_MS = 2 * 86_400_000

_BAR_COLUMNS_SQL = """
        sym_id        INTEGER NOT NULL,
        tf_s          INTEGER NOT NULL,
        open_time_ms  BIGINT NOT NULL,
        open          DOUBLE PRECISION NOT NULL,
        high          DOUBLE PRECISION NOT NULL,
        low           DOUBLE PRECISION NOT NULL,
        close         DOUBLE PRECISION NOT NULL,
        volume        DOUBLE PRECISION NOT NULL,
        quote_volume  DOUBLE PRECISION NOT NULL,
        trades        BIGINT NOT NULL,
        buy_volume    DOUBLE PRECISION NOT NULL,
        first_ts_ms   BIGINT NOT NULL,
        first_id      BIGINT NOT NULL,
        last_ts_ms    BIGINT NOT NULL,
        last_id       BIGINT NOT NULL,
        src           SMALLINT NOT NULL DEFAULT 0,
        PRIMARY KEY (sym_id, tf_s, open_time_ms)"""


def _v1_first_schema(tick_key: str) -> list[str]:
    """0 -> 1: the first schema (the same content as SQLite's version 1); ``tick_key`` is
    the ticks' primary key, which a TimescaleDB hypertable must extend by its time column."""
    return [
        "CREATE TABLE qd_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
        """CREATE TABLE symbols (
            sym_id   SERIAL PRIMARY KEY,
            symbol   TEXT NOT NULL UNIQUE,
            id_kind  TEXT NOT NULL
        )""",
        f"""CREATE TABLE ticks (
            sym_id          INTEGER NOT NULL,
            trade_id        BIGINT NOT NULL,
            ts_ms           BIGINT NOT NULL,
            price           DOUBLE PRECISION NOT NULL,
            qty             DOUBLE PRECISION NOT NULL,
            is_buyer_maker  BOOLEAN NOT NULL,
            PRIMARY KEY ({tick_key})
        )""",
        "CREATE INDEX ticks_by_time ON ticks (sym_id, ts_ms)",
        # Interval [open_time_ms, open_time_ms + tf_s*1000), labelled by its open, UTC.
        # src: 0 = built from ticks, 1 = imported kline (authoritative for its interval).
        f"CREATE TABLE bars ({_BAR_COLUMNS_SQL},\n        CHECK (tf_s IN (60, 300)))",
        f"CREATE TABLE bars_1s ({_BAR_COLUMNS_SQL},\n        CHECK (tf_s = 1))",
        """CREATE TABLE gaps (
            gap_id            BIGSERIAL PRIMARY KEY,
            sym_id            INTEGER NOT NULL,
            first_missing_id  BIGINT NOT NULL,
            last_missing_id   BIGINT NOT NULL,
            found_ts_ms       BIGINT NOT NULL,
            status            TEXT NOT NULL,
            repaired_count    BIGINT NOT NULL DEFAULT 0,
            detail            TEXT NOT NULL DEFAULT '',
            updated_ts_ms     BIGINT NOT NULL
        )""",
        "CREATE INDEX gaps_by_symbol ON gaps (sym_id, found_ts_ms)",
        """CREATE TABLE alert_rules (
            rule_id        BIGSERIAL PRIMARY KEY,
            name           TEXT NOT NULL,
            x              TEXT NOT NULL,
            y              TEXT NOT NULL,
            tf             TEXT NOT NULL,
            metric         TEXT NOT NULL,
            op             TEXT NOT NULL,
            threshold      DOUBLE PRECISION NOT NULL,
            cooldown_s     DOUBLE PRECISION NOT NULL,
            enabled        INTEGER NOT NULL DEFAULT 1,
            params         TEXT NOT NULL DEFAULT '{}',
            created_ts_ms  BIGINT NOT NULL
        )""",
        """CREATE TABLE alert_events (
            event_id     BIGSERIAL PRIMARY KEY,
            rule_id      BIGINT NOT NULL,
            fired_ts_ms  BIGINT NOT NULL,
            bar_time_ms  BIGINT NOT NULL,
            value        DOUBLE PRECISION NOT NULL,
            message      TEXT NOT NULL,
            UNIQUE (rule_id, bar_time_ms)
        )""",
        "CREATE INDEX alert_events_by_time ON alert_events (fired_ts_ms)",
        # Feed health published by whoever collects (a dashboard's own feed or a collector).
        """CREATE TABLE feed_status (
            collector_id   TEXT NOT NULL,
            symbol         TEXT NOT NULL,
            status         TEXT NOT NULL,
            updated_ts_ms  BIGINT NOT NULL,
            PRIMARY KEY (collector_id, symbol)
        )""",
        # Bumped after every committed write: readers' cheap cache key (data_version()).
        "CREATE SEQUENCE qd_data_version",
    ]


# 1 -> 2: id ranges whose ticks retention deleted (see storage/schema.py, 1 -> 2).
_V2_PRUNED_RANGES: list[str] = [
    """CREATE TABLE pruned_ranges (
        sym_id  INTEGER NOT NULL,
        lo_id   BIGINT NOT NULL,
        hi_id   BIGINT NOT NULL,
        PRIMARY KEY (sym_id, lo_id)
    )""",
]

# 2 -> 3: ranges known by time only, and the id contiguity check point (see
# storage/schema.py, 2 -> 3).
_V3_ID_CHECKS: list[str] = [
    "ALTER TABLE gaps ADD COLUMN from_ts_ms BIGINT",
    """CREATE TABLE id_checks (
        sym_id         INTEGER PRIMARY KEY,
        checked_to_id  BIGINT NOT NULL
    )""",
]

# 3 -> 4: watchlist, alert sinks and the alert outbox (see storage/schema.py, 3 -> 4).
_V4_WATCHLIST_AND_OUTBOX: list[str] = [
    """CREATE TABLE watchlist (
        pair_id        BIGSERIAL PRIMARY KEY,
        x              TEXT NOT NULL,
        y              TEXT NOT NULL,
        tf             TEXT NOT NULL,
        window_bars    INTEGER NOT NULL,
        method         TEXT NOT NULL,
        created_ts_ms  BIGINT NOT NULL,
        UNIQUE (x, y, tf, window_bars, method)
    )""",
    """CREATE TABLE alert_sinks (
        sink_id        BIGSERIAL PRIMARY KEY,
        name           TEXT NOT NULL UNIQUE,
        kind           TEXT NOT NULL,
        target         TEXT NOT NULL,
        params         TEXT NOT NULL DEFAULT '{}',
        enabled        INTEGER NOT NULL DEFAULT 1,
        created_ts_ms  BIGINT NOT NULL
    )""",
    """CREATE TABLE alert_deliveries (
        event_id         BIGINT NOT NULL,
        sink_id          BIGINT NOT NULL,
        status           TEXT NOT NULL,
        attempts         INTEGER NOT NULL DEFAULT 0,
        last_error       TEXT NOT NULL DEFAULT '',
        next_attempt_ms  BIGINT NOT NULL,
        claimed_by       TEXT NOT NULL DEFAULT '',
        lease_until_ms   BIGINT NOT NULL DEFAULT 0,
        updated_ts_ms    BIGINT NOT NULL,
        delivered_ts_ms  BIGINT,
        PRIMARY KEY (event_id, sink_id)
    )""",
    "CREATE INDEX alert_deliveries_due ON alert_deliveries (sink_id, status, next_attempt_ms)",
]

# 4 -> 5: settled funding events per perpetual (see storage/schema.py, 4 -> 5).
_V5_FUNDING_RATES: list[str] = [
    """CREATE TABLE funding_rates (
        symbol           TEXT NOT NULL,
        funding_time_ms  BIGINT NOT NULL,
        rate             DOUBLE PRECISION NOT NULL,
        mark             DOUBLE PRECISION,
        PRIMARY KEY (symbol, funding_time_ms)
    )""",
]

# 5 -> 6: each perpetual's last read current funding (see storage/schema.py, 5 -> 6).
_V6_FUNDING_NOW: list[str] = [
    """CREATE TABLE funding_now (
        symbol           TEXT PRIMARY KEY,
        mark             DOUBLE PRECISION NOT NULL,
        index_price      DOUBLE PRECISION,
        rate             DOUBLE PRECISION,
        next_funding_ms  BIGINT,
        event_ms         BIGINT NOT NULL,
        checked_ms       BIGINT NOT NULL
    )""",
]


def migrations(timescale: bool) -> list[list[str]]:
    """Statements of each migration; entry ``i`` migrates from version ``i`` to ``i + 1``.

    One step per schema version, each a function or constant above; append new ones here.
    """
    tick_key = "sym_id, trade_id, ts_ms" if timescale else "sym_id, trade_id"
    return [
        _v1_first_schema(tick_key),
        _V2_PRUNED_RANGES,
        _V3_ID_CHECKS,
        _V4_WATCHLIST_AND_OUTBOX,
        _V5_FUNDING_RATES,
        _V6_FUNDING_NOW,
    ]


SCHEMA_VERSION = len(migrations(False))


def timescale_steps(ticks_keep_ms: int | None, bars_1s_keep_ms: int | None) -> list[str]:
    """Turn ticks and 1s bars into compressed hypertables (run once, on an empty schema).

    Exercised only where the extension is installed; CI's PostgreSQL has none.
    Retention policies are (re)set separately by :func:`retention_policy_steps`.
    """
    steps = [
        # Integer (ms) time columns need a "now" in the same unit for policies.
        "CREATE OR REPLACE FUNCTION qd_now_ms() RETURNS BIGINT LANGUAGE SQL STABLE AS "
        "$$ SELECT (extract(epoch FROM now()) * 1000)::BIGINT $$",
    ]
    for table, time_col, order_by in (
        ("ticks", "ts_ms", "ts_ms, trade_id"),
        ("bars_1s", "open_time_ms", "open_time_ms"),
    ):
        steps += [
            f"SELECT create_hypertable('{table}', '{time_col}', "
            f"chunk_time_interval => {CHUNK_MS}::BIGINT, migrate_data => true)",
            f"SELECT set_integer_now_func('{table}', 'qd_now_ms')",
            f"ALTER TABLE {table} SET (timescaledb.compress, "
            f"timescaledb.compress_segmentby = 'sym_id', "
            f"timescaledb.compress_orderby = '{order_by}')",
            f"SELECT add_compression_policy('{table}', compress_after => "
            f"{COMPRESS_AFTER_MS}::BIGINT, if_not_exists => true)",
        ]
    return steps + retention_policy_steps(ticks_keep_ms, bars_1s_keep_ms)


def retention_policy_steps(ticks_keep_ms: int | None, bars_1s_keep_ms: int | None) -> list[str]:
    """(Re)set TimescaleDB retention policies; None keeps forever (no policy)."""
    steps = []
    for table, keep in (("ticks", ticks_keep_ms), ("bars_1s", bars_1s_keep_ms)):
        steps.append(f"SELECT remove_retention_policy('{table}', if_exists => true)")
        if keep is not None:
            steps.append(
                f"SELECT add_retention_policy('{table}', drop_after => {int(keep)}::BIGINT)"
            )
    return steps
