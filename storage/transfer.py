"""``python -m storage copy``: move everything from one database to another, either backend.

Rows are copied as stored, not recomputed: bars keep their values and ``src`` (so bars whose
ticks retention already deleted, and kline bars, survive the move), ticks keep their ids.
Each symbol is copied in one transaction, so a symbol is either wholly in the destination or
not at all; a symbol that already has ticks or bars there is skipped (never merged), which
makes an interrupted copy safe to run again. Alert rules (deduplicated by content), their
events, and gap records follow, and so do the watchlist (deduplicated by pair and settings),
the alert sinks (by name: a sink the destination already has keeps its target), the
outbox (each alert's delivery state per sink, as stored) and the settled funding events
(``funding_rates``, by symbol and time: an event the destination has is kept as it is; with
``symbols``, only theirs). Feed status and ``funding_now`` are not copied (they describe
live collectors).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import numpy as np

from storage.backend import describe, is_postgres, open_reader, open_writer
from storage.errors import StorageError

CHUNK_ROWS = 200_000
_BAR_FIELDS = (
    "open_time_ms, open, high, low, close, volume, quote_volume, trades, buy_volume, "
    "first_ts_ms, first_id, last_ts_ms, last_id, src"
)
_RULE_FIELDS = "name, x, y, tf, metric, op, threshold, cooldown_s, enabled, params, created_ts_ms"
_PAIR_FIELDS = "x, y, tf, window_bars, method, created_ts_ms"
_SINK_FIELDS = "name, kind, target, params, enabled, created_ts_ms"
_DELIVERY_FIELDS = (
    "status, attempts, last_error, next_attempt_ms, claimed_by, lease_until_ms, "
    "updated_ts_ms, delivered_ts_ms"
)


@dataclass
class CopyReport:
    """What a copy did, per symbol, for the summary lines."""

    copied: dict[str, dict[str, int]] = field(default_factory=dict)
    skipped: list[str] = field(default_factory=list)
    alert_rules: int = 0
    alert_events: int = 0
    watched_pairs: int = 0
    sinks: int = 0
    deliveries: int = 0
    funding_rates: int = 0


# ----------------------------------------------------------------------------- sources
class _Source:
    """Raw rows of a database, whichever backend, through its Reader's connection(s)."""

    def __init__(self, db: str):
        self.reader = open_reader(db)
        self.pg = is_postgres(db)

    def q(self, sql: str, params: tuple = ()) -> list[tuple]:
        return self.reader._q(sql, params)  # ``?`` placeholders on either backend

    def bars_table(self, tf_s: int) -> str:
        return "bars_1s" if self.pg and tf_s == 1 else "bars"

    def symbols(self) -> list[tuple[int, str, str]]:
        return [
            (int(a), b, c)
            for a, b, c in self.q("SELECT sym_id, symbol, id_kind FROM symbols ORDER BY symbol")
        ]

    def ticks(self, sym_id: int, chunk: int) -> Iterator[list[tuple]]:
        last = -(2**63)
        while True:
            rows = self.q(
                "SELECT trade_id, ts_ms, price, qty, is_buyer_maker FROM ticks "
                "WHERE sym_id = ? AND trade_id > ? ORDER BY trade_id LIMIT ?",
                (sym_id, last, chunk),
            )
            if not rows:
                return
            yield rows
            last = rows[-1][0]

    def bars(self, sym_id: int, tf_s: int, chunk: int) -> Iterator[list[tuple]]:
        last = -(2**63)
        table = self.bars_table(tf_s)
        while True:
            rows = self.q(
                f"SELECT {_BAR_FIELDS} FROM {table} WHERE sym_id = ? AND tf_s = ? "
                "AND open_time_ms > ? ORDER BY open_time_ms LIMIT ?",
                (sym_id, tf_s, last, chunk),
            )
            if not rows:
                return
            yield rows
            last = rows[-1][0]

    def close(self) -> None:
        self.reader.close()


# ----------------------------------------------------------------------------- sinks
class _Sink:
    """Raw inserts into a destination writer (inside its transaction), ignoring duplicates."""

    def __init__(self, db: str):
        self.writer = open_writer(db)
        self.pg = is_postgres(db)

    def _conn(self):
        # Only called inside writer.transaction(): _tx() then yields the open connection.
        return self.writer._tx()

    def q(self, sql: str, params: tuple = ()) -> list[tuple]:
        with self._conn() as conn:
            if self.pg:
                cur = conn.execute(sql.replace("?", "%s"), params)
                return cur.fetchall() if cur.description else []
            return conn.execute(sql, params).fetchall()

    def has_data(self, symbol: str) -> bool:
        row = self.q("SELECT sym_id FROM symbols WHERE symbol = ?", (symbol,))
        if not row:
            return False
        sid = row[0][0]
        bars_1s = "bars_1s" if self.pg else "bars"
        return bool(
            self.q("SELECT 1 FROM ticks WHERE sym_id = ? LIMIT 1", (sid,))
            or self.q("SELECT 1 FROM bars WHERE sym_id = ? LIMIT 1", (sid,))
            or self.q(f"SELECT 1 FROM {bars_1s} WHERE sym_id = ? LIMIT 1", (sid,))
        )

    def sym_id(self, symbol: str, kind: str) -> int:
        with self._conn() as conn:
            sid = self.writer._sym_id(conn, symbol, kind)
            if self.pg:
                self.writer._lock_symbol(conn, sid)
            return sid

    def put_ticks(self, sid: int, rows: list[tuple]) -> int:
        cols = list(zip(*rows, strict=True))
        with self._conn() as conn:
            if not self.pg:
                cur = conn.executemany(
                    "INSERT OR IGNORE INTO ticks (sym_id, trade_id, ts_ms, price, qty, "
                    "is_buyer_maker) VALUES (?,?,?,?,?,?)",
                    [(sid, *r[:4], int(bool(r[4]))) for r in rows],
                )
                return cur.rowcount
            from storage.pg_base import _copy_buffer

            self.writer._begin_unit(conn)
            self.writer._stage(
                conn,
                "_qd_stage_ticks",
                _copy_buffer(
                    [
                        (np.asarray(cols[0], np.int64), "i8"),
                        (np.asarray(cols[1], np.int64), "i8"),
                        (np.asarray(cols[2], np.float64), "f8"),
                        (np.asarray(cols[3], np.float64), "f8"),
                        (np.asarray(cols[4], np.bool_), "bool"),
                    ]
                ),
            )
            return conn.execute(
                "INSERT INTO ticks (sym_id, trade_id, ts_ms, price, qty, is_buyer_maker) "
                "SELECT %s, trade_id, ts_ms, price, qty, is_buyer_maker FROM _qd_stage_ticks "
                "ON CONFLICT DO NOTHING",
                (sid,),
            ).rowcount

    def put_bars(self, sid: int, tf_s: int, rows: list[tuple]) -> int:
        with self._conn() as conn:
            if not self.pg:
                cur = conn.executemany(
                    f"INSERT OR IGNORE INTO bars (sym_id, tf_s, {_BAR_FIELDS}) "
                    "VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                    [(sid, tf_s, *r) for r in rows],
                )
                return cur.rowcount
            from storage.pg_base import _copy_buffer

            c = list(zip(*rows, strict=True))
            kinds = [
                "i8",
                "f8",
                "f8",
                "f8",
                "f8",
                "f8",
                "f8",
                "i8",
                "f8",
                "i8",
                "i8",
                "i8",
                "i8",
                "i2",
            ]
            arrays = [(np.full(len(rows), tf_s), "i4")] + [
                (np.asarray(col, np.int64 if k != "f8" else np.float64), k)
                for col, k in zip(c, kinds, strict=True)
            ]
            self.writer._begin_unit(conn)
            self.writer._stage(conn, "_qd_stage_bars", _copy_buffer(arrays))
            table = "bars_1s" if tf_s == 1 else "bars"
            return conn.execute(
                f"INSERT INTO {table} (sym_id, tf_s, {_BAR_FIELDS}) SELECT %s, tf_s, "
                f"{_BAR_FIELDS} FROM _qd_stage_bars ON CONFLICT DO NOTHING",
                (sid,),
            ).rowcount

    def close(self) -> None:
        self.writer.close()


# ----------------------------------------------------------------------------- the copy
def copy_database(
    src: str,
    dst: str,
    *,
    symbols: list[str] | None = None,
    chunk_rows: int = CHUNK_ROWS,
    progress: Callable[[str], None] | None = None,
) -> CopyReport:
    """Copy ``src`` into ``dst`` (paths or URLs; the destination is created if missing)."""
    if describe(src) == describe(dst) or src == dst:
        raise StorageError(f"source and destination are the same database ({describe(src)})")
    say = progress or (lambda _msg: None)
    source = _Source(src)
    try:
        sink = _Sink(dst)
    except BaseException:
        source.close()
        raise
    report = CopyReport()
    try:
        wanted = {s.upper() for s in symbols} if symbols else None
        src_symbols = source.symbols()
        if wanted:
            unknown = wanted - {s for _, s, _ in src_symbols}
            if unknown:
                raise StorageError(f"{describe(src)} has no symbols {', '.join(sorted(unknown))}")
        sym_map: dict[int, int] = {}
        for src_id, symbol, kind in src_symbols:
            if wanted and symbol not in wanted:
                continue
            with sink.writer.transaction():
                if sink.has_data(symbol):
                    report.skipped.append(symbol)
                    say(f"{symbol}: already in {describe(dst)}; skipped")
                    continue
                dst_id = sink.sym_id(symbol, kind)
                counts = {"ticks": 0, "bars_1s": 0, "bars_1m": 0, "bars_5m": 0, "gaps": 0}
                for rows in source.ticks(src_id, chunk_rows):
                    counts["ticks"] += sink.put_ticks(dst_id, rows)
                    say(f"{symbol}: {counts['ticks']:,} ticks")
                for tf, tf_s in (("1s", 1), ("1m", 60), ("5m", 300)):
                    for rows in source.bars(src_id, tf_s, chunk_rows):
                        counts[f"bars_{tf}"] += sink.put_bars(dst_id, tf_s, rows)
                counts["gaps"] = _copy_gaps(source, sink, src_id, dst_id)
            sym_map[src_id] = dst_id
            report.copied[symbol] = counts
            say(f"{symbol}: copied " + ", ".join(f"{v:,} {k}" for k, v in counts.items()))
        if not wanted:
            with sink.writer.transaction():
                report.alert_rules, report.alert_events, events = _copy_alerts(source, sink)
                report.watched_pairs = _copy_watchlist(source, sink)
                sinks, report.sinks = _copy_sinks(source, sink)
                report.deliveries = _copy_deliveries(source, sink, events, sinks)
        with sink.writer.transaction():
            report.funding_rates = _copy_funding(source, sink, wanted)
    finally:
        sink.close()
        source.close()
    return report


def _copy_gaps(source: _Source, sink: _Sink, src_id: int, dst_id: int) -> int:
    n = 0
    for row in source.q(
        "SELECT first_missing_id, last_missing_id, found_ts_ms, status, "
        "repaired_count, detail, updated_ts_ms FROM gaps WHERE sym_id = ? "
        "ORDER BY gap_id",
        (src_id,),
    ):
        if sink.q(
            "SELECT 1 FROM gaps WHERE sym_id = ? AND first_missing_id = ? AND "
            "last_missing_id = ? AND found_ts_ms = ?",
            (dst_id, *row[:3]),
        ):
            continue
        sink.q(
            "INSERT INTO gaps (sym_id, first_missing_id, last_missing_id, found_ts_ms, "
            "status, repaired_count, detail, updated_ts_ms) VALUES (?,?,?,?,?,?,?,?)",
            (dst_id, *row),
        )
        n += 1
    return n


def _copy_alerts(source: _Source, sink: _Sink) -> tuple[int, int, dict[int, int]]:
    """Rules (matched by content, so a second copy adds none) and their events; returns the
    new rules, the new events and every copied event's id in the destination."""
    rule_map: dict[int, int] = {}
    new_rules = 0
    for rule_id, *rule in source.q(
        f"SELECT rule_id, {_RULE_FIELDS} FROM alert_rules ORDER BY rule_id"
    ):
        where = " AND ".join(f"{c} = ?" for c in _RULE_FIELDS.split(", "))
        found = sink.q(f"SELECT rule_id FROM alert_rules WHERE {where}", tuple(rule))
        if found:
            rule_map[rule_id] = int(found[0][0])
            continue
        values = ", ".join("?" for _ in rule)
        new_id = sink.q(
            f"INSERT INTO alert_rules ({_RULE_FIELDS}) VALUES ({values}) RETURNING rule_id",
            tuple(rule),
        )[0][0]
        rule_map[rule_id] = int(new_id)
        new_rules += 1
    new_events = 0
    event_map: dict[int, int] = {}
    for event_id, rule_id, fired, bar_time, value, message in source.q(
        "SELECT event_id, rule_id, fired_ts_ms, bar_time_ms, value, message FROM alert_events "
        "ORDER BY event_id"
    ):
        if rule_id not in rule_map:  # the event of a deleted rule
            continue
        got = sink.q(
            "INSERT INTO alert_events (rule_id, fired_ts_ms, bar_time_ms, value, message) "
            "VALUES (?,?,?,?,?) ON CONFLICT (rule_id, bar_time_ms) DO NOTHING "
            "RETURNING event_id",
            (rule_map[rule_id], fired, bar_time, value, message),
        )
        new_events += len(got)
        if not got:  # copied before: the same rule and bar
            got = sink.q(
                "SELECT event_id FROM alert_events WHERE rule_id = ? AND bar_time_ms = ?",
                (rule_map[rule_id], bar_time),
            )
        event_map[int(event_id)] = int(got[0][0])
    return new_rules, new_events, event_map


def _copy_watchlist(source: _Source, sink: _Sink) -> int:
    """Watched pairs the destination lacks (same legs and settings: already there)."""
    n = 0
    for row in source.q(f"SELECT {_PAIR_FIELDS} FROM watchlist ORDER BY pair_id"):
        n += len(
            sink.q(
                f"INSERT INTO watchlist ({_PAIR_FIELDS}) VALUES (?,?,?,?,?,?) "
                "ON CONFLICT (x, y, tf, window_bars, method) DO NOTHING RETURNING pair_id",
                tuple(row),
            )
        )
    return n


def _copy_sinks(source: _Source, sink: _Sink) -> tuple[dict[int, int], int]:
    """Sinks by name (the destination's sink of that name is kept as it is); returns every
    source sink's id in the destination, and how many were new."""
    sink_map: dict[int, int] = {}
    new = 0
    for sink_id, *row in source.q(
        f"SELECT sink_id, {_SINK_FIELDS} FROM alert_sinks ORDER BY sink_id"
    ):
        got = sink.q(
            f"INSERT INTO alert_sinks ({_SINK_FIELDS}) VALUES (?,?,?,?,?,?) "
            "ON CONFLICT (name) DO NOTHING RETURNING sink_id",
            tuple(row),
        )
        new += len(got)
        if not got:
            got = sink.q("SELECT sink_id FROM alert_sinks WHERE name = ?", (row[0],))
        sink_map[int(sink_id)] = int(got[0][0])
    return sink_map, new


def _copy_deliveries(
    source: _Source, sink: _Sink, events: dict[int, int], sinks: dict[int, int]
) -> int:
    """The outbox: each copied alert's delivery state per sink, as stored (a pending row is
    sent by whichever process delivers from the destination)."""
    n = 0
    for event_id, sink_id, *row in source.q(
        f"SELECT event_id, sink_id, {_DELIVERY_FIELDS} FROM alert_deliveries "
        "ORDER BY event_id, sink_id"
    ):
        if event_id not in events or sink_id not in sinks:
            continue
        n += len(
            sink.q(
                f"INSERT INTO alert_deliveries (event_id, sink_id, {_DELIVERY_FIELDS}) "
                "VALUES (?,?,?,?,?,?,?,?,?,?) ON CONFLICT (event_id, sink_id) DO NOTHING "
                "RETURNING event_id",
                (events[event_id], sinks[sink_id], *row),
            )
        )
    return n


def _copy_funding(source: _Source, sink: _Sink, wanted: set[str] | None) -> int:
    """Settled funding events the destination lacks (same symbol and time: kept as it is)."""
    n = 0
    for row in source.q(
        "SELECT symbol, funding_time_ms, rate, mark FROM funding_rates "
        "ORDER BY symbol, funding_time_ms"
    ):
        if wanted and row[0] not in wanted:
            continue
        n += len(
            sink.q(
                "INSERT INTO funding_rates (symbol, funding_time_ms, rate, mark) VALUES "
                "(?,?,?,?) ON CONFLICT (symbol, funding_time_ms) DO NOTHING RETURNING symbol",
                tuple(row),
            )
        )
    return n
