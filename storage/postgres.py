"""PostgreSQL storage through psycopg 3: the same :class:`storage.Writer` / :class:`storage.Reader`
protocols as :mod:`storage.sqlite`.

What is the same: tables and columns, the bar convention, incremental bar maintenance with the
first/last ``(ts_ms, trade_id)`` merge, kline bars (``src = 1``) authoritative for their minute,
5m bars derived from 1m bars, gaps, alert rules and events, feed status, retention. Bars are
computed by the same numpy code (:mod:`storage.bars`) from the same ticks, so both backends
store bit-identical bars for the same input.

What differs, and why:

* **Many writers are allowed** (several collectors, a dashboard feed, imports). Safety comes
  from the database, not from a lock file: a write of one symbol holds
  ``pg_advisory_xact_lock(LOCK_NAMESPACE, sym_id)`` for its transaction, so two writers never
  interleave the read-merge-write of the same bars; ticks go in with
  ``INSERT ... ON CONFLICT DO NOTHING RETURNING trade_id`` and only the returned (truly new)
  ticks are aggregated into bars, in the same transaction. Two collectors sending the same
  trades therefore store each trade once and count it in its bars once.
* **Fast inserts**: a batch is sent with binary ``COPY`` (buffers built by numpy, no Python
  loop per row) into a session-private staging table, then moved with one
  ``INSERT ... SELECT``. Bars go the same way and are upserted with ``ON CONFLICT DO UPDATE``.
* **Readers share a connection pool** (``psycopg_pool``) per URL in the process; a
  :class:`PostgresReader` is cheap, thread-safe, and its multi-query reads (``pair_frame``,
  ``info``) run in one ``REPEATABLE READ`` snapshot.
* **A dropped connection** raises :class:`~storage.errors.ConnectionLostError` (a
  :class:`~storage.errors.StorageError`); nothing of that write was committed (or, if the
  drop hit the COMMIT itself, writing the batch again is harmless). The writer reconnects on its
  next call; :func:`storage.backend.write_with_retry` wraps that with backoff.
* 1s bars live in ``bars_1s`` (see :mod:`storage.pg_schema`); TimescaleDB, where installed,
  makes ticks and 1s bars compressed hypertables with retention policies.
"""

from __future__ import annotations

import contextlib
import json
import logging
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np
import pandas as pd
import psycopg
import psycopg.errors

from storage.bars import PartialBars, aggregate_ticks, merge_bars
from storage.errors import (
    StorageError,
)
from storage.funding import FundingWrites
from storage.outbox import OutboxWrites
from storage.pg_base import (
    _bars_table,
    _check_schema,
    _Conflict,
    _connect,
    _copy_buffer,
    _translated,
    redact_url,
)
from storage.pg_read import PostgresReader, close_pools  # re-exported: the engine's public API
from storage.pg_schema import (
    LOCK_NAMESPACE,
    retention_policy_steps,
)
from storage.readbase import pyformat
from storage.timefmt import now_ms
from storage.writebase import (
    BAR_WRITE_COLUMNS,
    WriterBase,
    bar_merge_set,
    check_ticks,
    derived_5m_columns,
    kline_bar_columns,
    traded_klines,
)

__all__ = ["PostgresReader", "PostgresWriter", "close_pools", "redact_url"]

log = logging.getLogger(__name__)

_BAR_COLS = (
    "tf_s, open_time_ms, open, high, low, close, volume, quote_volume, trades, "
    "buy_volume, first_ts_ms, first_id, last_ts_ms, last_id, src"
)


def _merge_sql(table: str) -> str:
    """Merge partial bars from ticks into stored ones (:func:`storage.writebase.bar_merge_set`)."""
    return f"""
INSERT INTO {table} AS b (sym_id, {_BAR_COLS})
SELECT %s, {_BAR_COLS} FROM _qd_stage_bars WHERE tf_s = %s ORDER BY open_time_ms
{bar_merge_set("b", "GREATEST", "LEAST")}
"""


def _replace_sql(table: str) -> str:
    """Replace stored bars (klines, derived 5m bars): SQLite's INSERT OR REPLACE."""
    sets = ", ".join(f"{c} = excluded.{c}" for c in _BAR_COLS.split(", ")[2:])
    return (
        f"INSERT INTO {table} (sym_id, {_BAR_COLS}) SELECT %s, {_BAR_COLS} "
        f"FROM _qd_stage_bars WHERE tf_s = %s ORDER BY open_time_ms "
        f"ON CONFLICT (sym_id, tf_s, open_time_ms) DO UPDATE SET {sets}"
    )


_MERGE_SQL = {tf: _merge_sql(_bars_table(tf)) for tf in (1, 60)}
_REPLACE_SQL = {tf: _replace_sql(_bars_table(tf)) for tf in (60, 300)}
_INSERT_TICKS_SQL = (
    "INSERT INTO ticks (sym_id, trade_id, ts_ms, price, qty, is_buyer_maker) "
    "SELECT %s, trade_id, ts_ms, price, qty, is_buyer_maker FROM _qd_stage_ticks "
    "ORDER BY trade_id ON CONFLICT DO NOTHING RETURNING trade_id"
)
_STAGING_DDL = (
    "CREATE TEMP TABLE IF NOT EXISTS _qd_stage_ticks (trade_id BIGINT, ts_ms BIGINT, "
    "price DOUBLE PRECISION, qty DOUBLE PRECISION, is_buyer_maker BOOLEAN) "
    "ON COMMIT DELETE ROWS",
    "CREATE TEMP TABLE IF NOT EXISTS _qd_stage_bars (tf_s INTEGER, open_time_ms BIGINT, "
    "open DOUBLE PRECISION, high DOUBLE PRECISION, low DOUBLE PRECISION, "
    "close DOUBLE PRECISION, volume DOUBLE PRECISION, quote_volume DOUBLE PRECISION, "
    "trades BIGINT, buy_volume DOUBLE PRECISION, first_ts_ms BIGINT, first_id BIGINT, "
    "last_ts_ms BIGINT, last_id BIGINT, src SMALLINT) ON COMMIT DELETE ROWS",
)


def _typed(cols: list[np.ndarray]) -> list[tuple[np.ndarray, str]]:
    """Bar columns (:data:`BAR_WRITE_COLUMNS`) with the COPY type of each."""
    return [(c, dtype) for c, (_, dtype) in zip(cols, BAR_WRITE_COLUMNS, strict=True)]


def _bar_columns(tf_s: int, p: PartialBars, src: int = 0) -> list[tuple[np.ndarray, str]]:
    n = len(p.open_time_ms)
    return [
        (np.full(n, tf_s), "i4"),
        (p.open_time_ms, "i8"),
        (p.open, "f8"),
        (p.high, "f8"),
        (p.low, "f8"),
        (p.close, "f8"),
        (p.volume, "f8"),
        (p.quote_volume, "f8"),
        (p.trades, "i8"),
        (p.buy_volume, "f8"),
        (p.first_ts_ms, "i8"),
        (p.first_id, "i8"),
        (p.last_ts_ms, "i8"),
        (p.last_id, "i8"),
        (np.full(n, src), "i2"),
    ]


class PostgresWriter(WriterBase, OutboxWrites, FundingWrites):
    """A writer of a PostgreSQL database: the API of :class:`storage.sqlite.SQLiteWriter`.

    Thread-safe: an internal lock serialises calls on its one connection. Several writers (in
    this or other processes) may write the same database at once; see the module docstring for
    why that is safe. Every public method is one short transaction, retried once by itself if
    it collided with another writer (deadlock).

    Parameters
    ----------
    url : ``postgresql://user:password@host:port/dbname``; the schema is created if missing.
    connect_timeout_s : how long to wait for the server when (re)connecting, in seconds.
    timescale : None detects TimescaleDB when the schema is created; False never uses it.
    ticks_keep_s, bars_1s_keep_s : retention written into TimescaleDB policies when the schema
        is created there (``prune`` updates them); unused on plain PostgreSQL.
    """

    def __init__(
        self,
        url: str,
        *,
        connect_timeout_s: float = 10.0,
        timescale: bool | None = None,
        ticks_keep_s: float | None = 48 * 3600.0,
        bars_1s_keep_s: float | None = 7 * 86400.0,
        busy_timeout_s: float | None = None,
    ):
        del busy_timeout_s  # SQLite's option; accepted so callers can pass either backend's
        self.url = url
        self.path = redact_url(url)  # what messages name, like the SQLite writer's path
        self._connect_timeout_s = connect_timeout_s
        self._conn = self._open_connection()
        try:
            keep = (
                None if ticks_keep_s is None else int(ticks_keep_s * 1000),
                None if bars_1s_keep_s is None else int(bars_1s_keep_s * 1000),
            )
            self.timescale = _check_schema(
                self._conn, self.path, migrate=True, timescale=timescale, keep_ms=keep
            )
        except BaseException:
            self._conn.close()
            raise
        self._lock = threading.RLock()
        self._sym_cache: dict[str, tuple[int, str]] = {}
        self._tx_locked: set[int] = set()
        self._stage_dirty = False
        self._depth = 0
        self.closed = False

    # ----------------------------------------------------------------- lifecycle
    def _open_connection(self) -> psycopg.Connection:
        conn = _connect(self.url, self.path, self._connect_timeout_s, "qd-writer")
        try:
            with _translated(self.path, conn):
                for ddl in _STAGING_DDL:
                    conn.execute(ddl)
        except BaseException:
            conn.close()
            raise
        return conn

    def reconnect(self) -> None:
        """Drop the connection and open a new one (raises ConnectionLostError if unreachable).

        Called by itself at the start of a write when the connection is broken; callers that
        retry with backoff need not call it.
        """
        with self._lock:
            if self._depth:
                raise StorageError(f"{self.path}: cannot reconnect inside a transaction")
            with contextlib.suppress(Exception):
                self._conn.close()
            self._sym_cache.clear()
            self._conn = self._open_connection()

    def close(self) -> None:
        if self.closed:
            return
        with self._lock:
            with contextlib.suppress(Exception):
                self._conn.close()
            self.closed = True

    @contextlib.contextmanager
    def _tx(self) -> Iterator[psycopg.Connection]:
        """One write transaction: all or nothing. Readers' data_version moves after COMMIT."""
        if self.closed:
            raise StorageError(f"{self.path}: writer is closed")
        with self._lock:
            if self._depth:  # nested inside transaction(): the outer one commits
                yield self._conn
                return
            if self._conn.closed or self._conn.broken:
                self.reconnect()
            conn = self._conn
            try:
                with _translated(self.path, conn), conn.transaction():
                    self._depth += 1
                    try:
                        yield conn
                    finally:
                        self._depth -= 1
            except BaseException:
                self._sym_cache.clear()  # a symbol created in this transaction is gone again
                raise
            finally:
                self._tx_locked.clear()
                self._stage_dirty = False
            with _translated(self.path, conn):
                conn.execute("SELECT nextval('qd_data_version')")

    def _run(self, fn: Callable[[psycopg.Connection], Any]) -> Any:
        """Run ``fn`` in a transaction; rerun once if it collided with another writer."""
        for attempt in range(3):
            try:
                with self._tx() as conn:
                    return fn(conn)
            except _Conflict:
                if self._depth or attempt == 2:
                    raise
                time.sleep(0.05 * (attempt + 1))
        raise AssertionError("unreachable")

    def _read(self, fn: Callable[[psycopg.Connection], Any]) -> Any:
        """Run a query that writes nothing: no transaction of its own, data_version unmoved."""
        if self.closed:
            raise StorageError(f"{self.path}: writer is closed")
        with self._lock:
            if not self._depth and (self._conn.closed or self._conn.broken):
                self.reconnect()
            with _translated(self.path, self._conn):
                return fn(self._conn)

    @contextlib.contextmanager
    def transaction(self) -> Iterator[None]:
        """Group several writes into one all-or-nothing transaction (an import, per file).

        This writer's other threads wait until it ends, and other writers of the same symbols
        wait on its advisory locks, so keep it to bulk jobs.
        """
        with self._tx():
            yield

    def _lock_symbol(self, conn: psycopg.Connection, sym_id: int) -> None:
        if sym_id not in self._tx_locked:
            conn.execute("SELECT pg_advisory_xact_lock(%s, %s)", (LOCK_NAMESPACE, sym_id))
            self._tx_locked.add(sym_id)

    def _begin_unit(self, conn: psycopg.Connection) -> None:
        """Empty the staging tables if an earlier write of this transaction used them.

        Within one write, staged bars are told apart by ``tf_s``; COMMIT empties the tables
        (ON COMMIT DELETE ROWS), so only writes grouped by transaction() pay for a TRUNCATE.
        """
        if self._stage_dirty:
            conn.execute("TRUNCATE _qd_stage_ticks, _qd_stage_bars")
        self._stage_dirty = True

    @staticmethod
    def _stage(conn: psycopg.Connection, table: str, buf: bytes) -> None:
        with conn.cursor().copy(f"COPY {table} FROM STDIN (FORMAT BINARY)") as copy:
            copy.write(buf)

    # ----------------------------------------------------------------- engine hooks
    def _unit(self, fn: Callable[[psycopg.Connection], Any]) -> Any:
        """Run ``fn(conn)`` in one write transaction (:class:`WriterBase`'s hook), retried."""
        return self._run(fn)

    @staticmethod
    def _exec(conn: psycopg.Connection, sql: str, params: Sequence[Any] = ()) -> Any:
        return conn.execute(pyformat(sql), params)

    @staticmethod
    def _has_tick_data(conn: psycopg.Connection, sym_id: int) -> bool:
        """True once the symbol has ticks or bars built from ticks (even if ticks were pruned)."""
        return conn.execute(
            "SELECT EXISTS (SELECT 1 FROM ticks WHERE sym_id = %(s)s) "
            "OR EXISTS (SELECT 1 FROM bars WHERE sym_id = %(s)s AND src = 0) "
            "OR EXISTS (SELECT 1 FROM bars_1s WHERE sym_id = %(s)s)",
            {"s": sym_id},
        ).fetchone()[0]

    # ----------------------------------------------------------------- ticks
    def _insert_arrays(self, conn, symbol, kind, ids, ts, px, qty, bm) -> int:
        check_ticks(symbol, ids, ts, px, qty, bm)
        if len(ids) == 0:
            return 0
        sym_id = self._sym_id(conn, symbol, kind)
        # Keep the first of any repeated id in the batch (as SQLite does); the database drops
        # the ids stored already and returns the rest.
        _, first = np.unique(ids, return_index=True)
        if len(first) < len(ids):
            first.sort()
            ids, ts, px, qty, bm = ids[first], ts[first], px[first], qty[first], bm[first]
        self._lock_symbol(conn, sym_id)
        # Ids whose ticks retention deleted are counted in the bars already: skip them.
        for r_lo, r_hi in conn.execute(
            "SELECT lo_id, hi_id FROM pruned_ranges WHERE sym_id = %s AND hi_id >= %s "
            "AND lo_id <= %s",
            (sym_id, int(ids.min()), int(ids.max())),
        ).fetchall():
            keep = ~((ids >= r_lo) & (ids <= r_hi))
            ids, ts, px, qty, bm = ids[keep], ts[keep], px[keep], qty[keep], bm[keep]
        if len(ids) == 0:
            return 0
        self._begin_unit(conn)
        self._stage(
            conn,
            "_qd_stage_ticks",
            _copy_buffer([(ids, "i8"), (ts, "i8"), (px, "f8"), (qty, "f8"), (bm, "bool")]),
        )
        cur = conn.execute(_INSERT_TICKS_SQL, (sym_id,), binary=True)
        new = np.fromiter((r[0] for r in cur.fetchall()), np.int64)
        if len(new) == 0:
            return 0
        if len(new) < len(ids):
            keep = np.isin(ids, new)
            ids, ts, px, qty, bm = ids[keep], ts[keep], px[keep], qty[keep], bm[keep]
        partials = {tf_s: aggregate_ticks(ts, ids, px, qty, bm, tf_s * 1000) for tf_s in (1, 60)}
        self._stage(
            conn,
            "_qd_stage_bars",
            _copy_buffer(
                _concat_columns(_bar_columns(1, partials[1]), _bar_columns(60, partials[60]))
            ),
        )
        for tf_s in (1, 60):
            conn.execute(_MERGE_SQL[tf_s], (sym_id, tf_s))
        self._derive_5m(conn, sym_id, int(ts.min()), int(ts.max()))
        return len(ids)

    def _derive_5m(self, conn: psycopg.Connection, sym_id: int, lo_ms: int, hi_ms: int) -> None:
        """Recompute the 5m bars covering [lo_ms, hi_ms] as the merge of their 1m bars."""
        lo = lo_ms - lo_ms % 300_000
        hi = hi_ms - hi_ms % 300_000 + 300_000
        rows = conn.execute(
            "SELECT open_time_ms, open, high, low, close, volume, quote_volume, trades, "
            "buy_volume, first_ts_ms, first_id, last_ts_ms, last_id, src FROM bars "
            "WHERE sym_id = %s AND tf_s = 60 AND open_time_ms >= %s AND open_time_ms < %s "
            "ORDER BY open_time_ms",
            (sym_id, lo, hi),
            binary=True,
        ).fetchall()
        if not rows:
            return
        cols = _typed(derived_5m_columns(merge_bars(np.asarray(rows, dtype=np.float64), 300_000)))
        self._stage(conn, "_qd_stage_bars", _copy_buffer(cols))
        conn.execute(_REPLACE_SQL[300], (sym_id, 300))

    # ----------------------------------------------------------------- klines
    def write_klines(self, symbol: str, rows: pd.DataFrame) -> int:
        """Store exchange 1m klines as 1m bars (and the 5m bars they make).

        The rules of :meth:`storage.sqlite.SQLiteWriter.write_klines`: a kline bar is authoritative
        for its minute; later ticks are stored but leave it alone. Minutes without trades
        (``count`` 0) store no bar. Idempotent. Returns the number of bars stored.
        """
        checked = traded_klines(symbol, rows)
        if checked is None:
            return 0
        symbol, rows, ot = checked
        n = len(rows)
        cols = _typed(kline_bar_columns(rows, ot))

        def work(conn: psycopg.Connection) -> int:
            sym_id = self._sym_id_any(conn, symbol)
            self._lock_symbol(conn, sym_id)
            self._begin_unit(conn)
            self._stage(conn, "_qd_stage_bars", _copy_buffer(cols))
            conn.execute(_REPLACE_SQL[60], (sym_id, 60))
            self._derive_5m(conn, sym_id, int(ot.min()), int(ot.max()))
            return n

        return self._run(work)

    # ----------------------------------------------------------------- gaps
    def _fetch(self, sql: str, params: tuple) -> list[tuple]:
        """Run ``?`` SQL for :class:`WriterReads` (last_trade_id, trade_time_ms, id_kind,
        open_gaps)."""
        return self._read(lambda conn: conn.execute(pyformat(sql), params).fetchall())

    # ----------------------------------------------------------------- retention
    def prune(
        self,
        *,
        now_ms_: int | None = None,
        ticks_keep_s: float | None = 48 * 3600,
        bars_1s_keep_s: float | None = 7 * 86400,
        chunk_rows: int = 20_000,
        should_stop: Callable[[], bool] = lambda: False,
    ) -> dict[str, int]:
        """Delete ticks and 1s bars older than their retention, in short transactions.

        The contract of :meth:`storage.sqlite.SQLiteWriter.prune`. With TimescaleDB, whole chunks
        older than the cutoff are dropped first (and the background retention policies are
        set to the same windows), then the rows left before the cutoff are deleted.
        """
        now = now_ms() if now_ms_ is None else now_ms_
        deleted = {"ticks": 0, "bars_1s": 0}
        sym_ids = self._read(
            lambda conn: [r[0] for r in conn.execute("SELECT sym_id FROM symbols ORDER BY 1")]
        )
        jobs = []
        if ticks_keep_s is not None:
            jobs.append(("ticks", "ticks", "trade_id", "ts_ms", now - int(ticks_keep_s * 1000)))
        if bars_1s_keep_s is not None:
            jobs.append(
                (
                    "bars_1s",
                    "bars_1s",
                    "open_time_ms",
                    "open_time_ms",
                    now - int(bars_1s_keep_s * 1000),
                )
            )
        if self.timescale:
            self._timescale_retention(ticks_keep_s, bars_1s_keep_s, jobs)
        for key, table, pk, col, cutoff in jobs:
            sql = (
                f"DELETE FROM {table} WHERE sym_id = %s AND {pk} IN (SELECT {pk} FROM {table} "
                f"WHERE sym_id = %s AND {col} < %s ORDER BY {col} LIMIT %s) "
                f"RETURNING {pk}"
            )
            for sym_id in sym_ids:
                while not should_stop():
                    n = self._run(
                        lambda conn, sql=sql, sym_id=sym_id, cutoff=cutoff, key=key: (
                            self._prune_chunk(conn, sql, key, sym_id, cutoff, chunk_rows)
                        )
                    )
                    deleted[key] += n
                    if n < chunk_rows:
                        break
        return deleted

    @staticmethod
    def _prune_chunk(
        conn: psycopg.Connection, sql: str, key: str, sym_id: int, cutoff: int, chunk_rows: int
    ) -> int:
        """Delete one chunk; for ticks, remember the deleted id range (merged with neighbours)."""
        ids = [r[0] for r in conn.execute(sql, (sym_id, sym_id, cutoff, chunk_rows)).fetchall()]
        if ids and key == "ticks":
            _add_pruned_range(conn, sym_id, min(ids), max(ids))
        return len(ids)

    def _timescale_retention(self, ticks_keep_s, bars_1s_keep_s, jobs) -> None:
        """Keep the policies in step with the settings and drop whole old chunks now.

        Only runs where TimescaleDB is installed; this project's CI has no TimescaleDB.
        """
        keep = [
            None if ticks_keep_s is None else int(ticks_keep_s * 1000),
            None if bars_1s_keep_s is None else int(bars_1s_keep_s * 1000),
        ]

        def policies(conn: psycopg.Connection) -> None:
            row = conn.execute("SELECT value FROM qd_meta WHERE key = 'retention_ms'").fetchone()
            if row is None or json.loads(row[0]) != keep:
                for statement in retention_policy_steps(*keep):
                    conn.execute(statement)
                conn.execute(
                    "INSERT INTO qd_meta (key, value) VALUES ('retention_ms', %s) "
                    "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                    (json.dumps(keep),),
                )
            for key, table, _, _, cutoff in jobs:
                if key == "ticks":  # remember what the dropped chunks held (see pruned_ranges)
                    for sym_id, lo, hi in conn.execute(
                        "SELECT sym_id, min(trade_id), max(trade_id) FROM ticks "
                        "WHERE ts_ms < %s GROUP BY sym_id",
                        (cutoff,),
                    ).fetchall():
                        _add_pruned_range(conn, sym_id, lo, hi)
                conn.execute("SELECT drop_chunks(%s, older_than => %s::BIGINT)", (table, cutoff))

        self._run(policies)


def _add_pruned_range(conn: psycopg.Connection, sym_id: int, lo: int, hi: int) -> None:
    """Add ``[lo, hi]`` to the symbol's pruned id ranges, merging ranges it touches."""
    for r_lo, r_hi in conn.execute(
        "SELECT lo_id, hi_id FROM pruned_ranges WHERE sym_id = %s AND hi_id >= %s AND lo_id <= %s",
        (sym_id, lo - 1, hi + 1),
    ).fetchall():
        lo, hi = min(lo, r_lo), max(hi, r_hi)
    conn.execute(
        "DELETE FROM pruned_ranges WHERE sym_id = %s AND hi_id >= %s AND lo_id <= %s",
        (sym_id, lo, hi),
    )
    conn.execute(
        "INSERT INTO pruned_ranges (sym_id, lo_id, hi_id) VALUES (%s, %s, %s)", (sym_id, lo, hi)
    )


def _concat_columns(
    a: list[tuple[np.ndarray, str]], b: list[tuple[np.ndarray, str]]
) -> list[tuple[np.ndarray, str]]:
    return [(np.concatenate([x, y]), kind) for (x, kind), (y, _) in zip(a, b, strict=True)]
