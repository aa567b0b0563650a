"""SQLite schema, its version, and the migrations that bring an older file up to date."""

from __future__ import annotations

#: Stored in ``PRAGMA application_id`` so a foreign SQLite file is recognised as foreign.
APPLICATION_ID = 0x51444231  # "QDB1"

#: Each entry migrates from version ``i`` to ``i + 1``; ``PRAGMA user_version`` holds the version.
MIGRATIONS: list[str] = [
    # 0 -> 1: the first schema.
    """
    CREATE TABLE symbols (
        sym_id   INTEGER PRIMARY KEY,
        symbol   TEXT NOT NULL UNIQUE,
        id_kind  TEXT NOT NULL          -- 'agg' | 'trade' | 'synthetic': one id space per symbol
    );

    -- Every trade print. ts_ms is the exchange trade time (Binance T), UTC ms.
    CREATE TABLE ticks (
        sym_id          INTEGER NOT NULL,
        trade_id        INTEGER NOT NULL,
        ts_ms           INTEGER NOT NULL,
        price           REAL NOT NULL,
        qty             REAL NOT NULL,
        is_buyer_maker  INTEGER NOT NULL,
        PRIMARY KEY (sym_id, trade_id)
    ) WITHOUT ROWID;
    CREATE INDEX ticks_by_time ON ticks (sym_id, ts_ms);

    -- OHLCV bars. Interval [open_time_ms, open_time_ms + tf_s*1000), labelled by its open, UTC.
    -- first_*/last_* locate the opening and closing trade by (ts_ms, trade_id) so that a late
    -- tick updates open/close exactly. src: 0 = built from ticks, 1 = imported kline
    -- (authoritative for its interval: later ticks do not change it).
    CREATE TABLE bars (
        sym_id        INTEGER NOT NULL,
        tf_s          INTEGER NOT NULL,
        open_time_ms  INTEGER NOT NULL,
        open          REAL NOT NULL,
        high          REAL NOT NULL,
        low           REAL NOT NULL,
        close         REAL NOT NULL,
        volume        REAL NOT NULL,
        quote_volume  REAL NOT NULL,
        trades        INTEGER NOT NULL,
        buy_volume    REAL NOT NULL,
        first_ts_ms   INTEGER NOT NULL,
        first_id      INTEGER NOT NULL,
        last_ts_ms    INTEGER NOT NULL,
        last_id       INTEGER NOT NULL,
        src           INTEGER NOT NULL DEFAULT 0,
        PRIMARY KEY (sym_id, tf_s, open_time_ms)
    ) WITHOUT ROWID;

    CREATE TABLE gaps (
        gap_id            INTEGER PRIMARY KEY,
        sym_id            INTEGER NOT NULL,
        first_missing_id  INTEGER NOT NULL,
        last_missing_id   INTEGER NOT NULL,
        found_ts_ms       INTEGER NOT NULL,
        status            TEXT NOT NULL,
        repaired_count    INTEGER NOT NULL DEFAULT 0,
        detail            TEXT NOT NULL DEFAULT '',
        updated_ts_ms     INTEGER NOT NULL
    );
    CREATE INDEX gaps_by_symbol ON gaps (sym_id, found_ts_ms);

    CREATE TABLE alert_rules (
        rule_id        INTEGER PRIMARY KEY,
        name           TEXT NOT NULL,
        x              TEXT NOT NULL,
        y              TEXT NOT NULL,
        tf             TEXT NOT NULL,
        metric         TEXT NOT NULL,
        op             TEXT NOT NULL,
        threshold      REAL NOT NULL,
        cooldown_s     REAL NOT NULL,
        enabled        INTEGER NOT NULL DEFAULT 1,
        params         TEXT NOT NULL DEFAULT '{}',
        created_ts_ms  INTEGER NOT NULL
    );

    CREATE TABLE alert_events (
        event_id     INTEGER PRIMARY KEY,
        rule_id      INTEGER NOT NULL,
        fired_ts_ms  INTEGER NOT NULL,
        bar_time_ms  INTEGER NOT NULL,
        value        REAL NOT NULL,
        message      TEXT NOT NULL,
        UNIQUE (rule_id, bar_time_ms)
    );
    CREATE INDEX alert_events_by_time ON alert_events (fired_ts_ms);

    -- Feed health published by whoever collects (the dashboard's own feed or a collector).
    CREATE TABLE feed_status (
        collector_id   TEXT NOT NULL,
        symbol         TEXT NOT NULL,
        status         TEXT NOT NULL,     -- JSON object
        updated_ts_ms  INTEGER NOT NULL,
        PRIMARY KEY (collector_id, symbol)
    );
    """,
    # 1 -> 2: id ranges whose ticks retention deleted. A tick that falls in one may be a
    # re-delivery of a pruned tick already counted in the 1m/5m bars, so it is not counted
    # again (re-importing a file after retention changes nothing).
    """
    CREATE TABLE pruned_ranges (
        sym_id  INTEGER NOT NULL,
        lo_id   INTEGER NOT NULL,
        hi_id   INTEGER NOT NULL,
        PRIMARY KEY (sym_id, lo_id)
    ) WITHOUT ROWID;
    """,
    # 2 -> 3: owed ranges known by time only (start-up history before REST told its first
    # id: ``gaps.from_ts_ms``), and per symbol the highest trade id up to which the stored
    # ids were checked contiguous (holes below it are recorded as gaps): the start-up check
    # then reads only the ids above it.
    """
    ALTER TABLE gaps ADD COLUMN from_ts_ms INTEGER;
    CREATE TABLE id_checks (
        sym_id         INTEGER PRIMARY KEY,
        checked_to_id  INTEGER NOT NULL
    );
    """,
    # 3 -> 4: the watchlist, alert sinks and the alert outbox (storage/outbox.py). A sink's
    # target is a URL or "env:NAME" (the variable holding a secret URL): no secret is stored.
    """
    CREATE TABLE watchlist (
        pair_id        INTEGER PRIMARY KEY,
        x              TEXT NOT NULL,
        y              TEXT NOT NULL,
        tf             TEXT NOT NULL,
        window_bars    INTEGER NOT NULL,
        method         TEXT NOT NULL,
        created_ts_ms  INTEGER NOT NULL,
        UNIQUE (x, y, tf, window_bars, method)
    );
    CREATE TABLE alert_sinks (
        sink_id        INTEGER PRIMARY KEY,
        name           TEXT NOT NULL UNIQUE,
        kind           TEXT NOT NULL,     -- webhook | slack | discord | telegram
        target         TEXT NOT NULL,     -- URL, or env:NAME
        params         TEXT NOT NULL DEFAULT '{}',
        enabled        INTEGER NOT NULL DEFAULT 1,
        created_ts_ms  INTEGER NOT NULL
    );
    -- One row per fired alert and sink: pending | sending | delivered | failed.
    CREATE TABLE alert_deliveries (
        event_id         INTEGER NOT NULL,
        sink_id          INTEGER NOT NULL,
        status           TEXT NOT NULL,
        attempts         INTEGER NOT NULL DEFAULT 0,
        last_error       TEXT NOT NULL DEFAULT '',
        next_attempt_ms  INTEGER NOT NULL,
        claimed_by       TEXT NOT NULL DEFAULT '',
        lease_until_ms   INTEGER NOT NULL DEFAULT 0,
        updated_ts_ms    INTEGER NOT NULL,
        delivered_ts_ms  INTEGER,
        PRIMARY KEY (event_id, sink_id)
    );
    CREATE INDEX alert_deliveries_due ON alert_deliveries (sink_id, status, next_attempt_ms);
    """,
    # 4 -> 5: settled funding events per perpetual (GET /fapi/v1/fundingRate; storage/funding.py),
    # for the backtest's funding charge. mark is NULL when Binance did not say.
    """
    CREATE TABLE funding_rates (
        symbol           TEXT NOT NULL,
        funding_time_ms  INTEGER NOT NULL,
        rate             REAL NOT NULL,
        mark             REAL,
        PRIMARY KEY (symbol, funding_time_ms)
    ) WITHOUT ROWID;
    """,
    # 5 -> 6: each perpetual's last read current funding (premiumIndex; storage/funding.py),
    # written by a headless collector so that a page that only reads has it too.
    """
    CREATE TABLE funding_now (
        symbol           TEXT PRIMARY KEY,
        mark             REAL NOT NULL,
        index_price      REAL,
        rate             REAL,
        next_funding_ms  INTEGER,
        event_ms         INTEGER NOT NULL,
        checked_ms       INTEGER NOT NULL
    ) WITHOUT ROWID;
    """,
]

SCHEMA_VERSION = len(MIGRATIONS)
