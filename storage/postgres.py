"""PostgreSQL storage through psycopg 3: the same Writer/Reader API as :mod:`storage.sqlite`.

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
  :class:`Reader` is cheap, thread-safe, and its multi-query reads (``pair_frame``, ``info``)
  run in one ``REPEATABLE READ`` snapshot.
* **A dropped connection** raises :class:`~storage.errors.ConnectionLostError` (a
  :class:`~storage.errors.StorageError`); nothing of that write was committed (or, if the
  drop hit the COMMIT itself, writing the batch again is harmless). The writer reconnects on its
  next call; :func:`storage.backend.write_with_retry` wraps that with backoff.
* 1s bars live in ``bars_1s`` (see :mod:`storage.pg_schema`); TimescaleDB, where installed,
  makes ticks and 1s bars compressed hypertables with retention policies.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import logging
import re
import struct
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any

import numpy as np
import pandas as pd
import psycopg
import psycopg.errors
from psycopg_pool import ConnectionPool, PoolTimeout

from storage.bars import PartialBars, aggregate_ticks, merge_bars
from storage.errors import (
    ConnectionLostError,
    IdKindConflictError,
    StorageError,
)
from storage.outbox import Exec, OutboxWrites
from storage.pg_schema import (
    APPLICATION,
    LOCK_NAMESPACE,
    SCHEMA_VERSION,
    migrations,
    retention_policy_steps,
    timescale_steps,
)
from storage.readbase import Query, ReaderBase, pyformat
from storage.records import Gap, IdKind, Tick, timeframe_s
from storage.timefmt import now_ms
from storage.writebase import (
    WriterReads,
    check_gap_status,
    check_ticks,
    tick_arrays,
    tick_batches,
    traded_klines,
)

__all__ = ["Reader", "Writer", "close_pools", "redact_url"]

log = logging.getLogger(__name__)

_BAR_COLS = (
    "tf_s, open_time_ms, open, high, low, close, volume, quote_volume, trades, "
    "buy_volume, first_ts_ms, first_id, last_ts_ms, last_id, src"
)
_TABLES_OURS = (
    "qd_meta",
    "symbols",
    "ticks",
    "bars",
    "bars_1s",
    "gaps",
    "alert_rules",
    "alert_events",
    "feed_status",
)


def _bars_table(tf_s: int) -> str:
    return "bars_1s" if tf_s == 1 else "bars"


def _merge_sql(table: str) -> str:
    """Merge partial bars from ticks into stored ones (the rules of sqlite._UPSERT_TAIL)."""
    return f"""
INSERT INTO {table} AS b (sym_id, {_BAR_COLS})
SELECT %s, {_BAR_COLS} FROM _qd_stage_bars WHERE tf_s = %s ORDER BY open_time_ms
ON CONFLICT (sym_id, tf_s, open_time_ms) DO UPDATE SET
    open = CASE WHEN (excluded.first_ts_ms, excluded.first_id) < (b.first_ts_ms, b.first_id)
                THEN excluded.open ELSE b.open END,
    first_ts_ms = CASE WHEN (excluded.first_ts_ms, excluded.first_id) < (b.first_ts_ms, b.first_id)
                       THEN excluded.first_ts_ms ELSE b.first_ts_ms END,
    first_id = CASE WHEN (excluded.first_ts_ms, excluded.first_id) < (b.first_ts_ms, b.first_id)
                    THEN excluded.first_id ELSE b.first_id END,
    close = CASE WHEN (excluded.last_ts_ms, excluded.last_id) > (b.last_ts_ms, b.last_id)
                 THEN excluded.close ELSE b.close END,
    last_ts_ms = CASE WHEN (excluded.last_ts_ms, excluded.last_id) > (b.last_ts_ms, b.last_id)
                      THEN excluded.last_ts_ms ELSE b.last_ts_ms END,
    last_id = CASE WHEN (excluded.last_ts_ms, excluded.last_id) > (b.last_ts_ms, b.last_id)
                   THEN excluded.last_id ELSE b.last_id END,
    high = GREATEST(b.high, excluded.high),
    low = LEAST(b.low, excluded.low),
    volume = b.volume + excluded.volume,
    quote_volume = b.quote_volume + excluded.quote_volume,
    trades = b.trades + excluded.trades,
    buy_volume = b.buy_volume + excluded.buy_volume
WHERE b.src = 0
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


# ----------------------------------------------------------------------------- binary COPY
_COPY_HEADER = b"PGCOPY\n\xff\r\n\x00" + struct.pack(">ii", 0, 0)
_COPY_TRAILER = b"\xff\xff"
_PG_BINARY = {
    "i2": (">i2", 2),
    "i4": (">i4", 4),
    "i8": (">i8", 8),
    "f8": (">f8", 8),
    "bool": ("u1", 1),
}


def _copy_buffer(columns: Sequence[tuple[np.ndarray, str]]) -> bytes:
    """PostgreSQL binary COPY data for equal-length column arrays, built without a row loop.

    Each row is ``int16 field count`` then per field ``int32 length`` and the big-endian value
    (no NULLs here), which a numpy structured dtype lays out exactly.
    """
    fields: list[tuple[str, str]] = [("n", ">i2")]
    for i, (_, kind) in enumerate(columns):
        fields += [(f"l{i}", ">i4"), (f"v{i}", _PG_BINARY[kind][0])]
    n = len(columns[0][0])
    rows = np.empty(n, dtype=np.dtype(fields))
    rows["n"] = len(columns)
    for i, (values, kind) in enumerate(columns):
        rows[f"l{i}"] = _PG_BINARY[kind][1]
        rows[f"v{i}"] = values
    return _COPY_HEADER + rows.tobytes() + _COPY_TRAILER


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


# ----------------------------------------------------------------------------- errors
def redact_url(url: str) -> str:
    """The URL with its password replaced by ``***``: safe to print and log."""
    try:
        parts = urllib.parse.urlsplit(url)
    except ValueError:
        return re.sub(r"(password=)\S+", r"\1***", url)
    if parts.password is None:
        return re.sub(r"(password=)[^&\s]+", r"\1***", url)
    user = parts.username or ""
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    netloc = f"{user}:***@{host}" + (f":{parts.port}" if parts.port else "")
    query = re.sub(r"(password=)[^&]+", r"\1***", parts.query)
    return urllib.parse.urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


class _Conflict(StorageError):
    """A deadlock or serialization failure: the transaction was rolled back; run it again."""


def _is_connection_error(exc: BaseException, conn: psycopg.Connection | None) -> bool:
    if isinstance(exc, PoolTimeout):
        return True
    if not isinstance(exc, psycopg.OperationalError):
        return False
    if conn is not None and (conn.broken or conn.closed):
        return True
    state = getattr(exc, "sqlstate", None) or ""
    return state.startswith("08") or state in ("57P01", "57P02", "57P03")


def _describe(where: str, exc: BaseException, conn: psycopg.Connection | None) -> StorageError:
    msg = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    if _is_connection_error(exc, conn):
        return ConnectionLostError(f"{where}: connection to the database lost or refused ({msg})")
    if isinstance(exc, psycopg.errors.DiskFull):
        return StorageError(
            f"{where}: the database server's disk is full; the last batch was "
            "rolled back, everything committed before it is intact"
        )
    if isinstance(exc, psycopg.errors.DeadlockDetected | psycopg.errors.SerializationFailure):
        return _Conflict(f"{where}: concurrent writers collided ({msg}); rolled back")
    if isinstance(exc, psycopg.errors.ReadOnlySqlTransaction):
        return StorageError(f"{where}: the database is read-only for this connection ({msg})")
    return StorageError(f"{where}: {msg}")


@contextlib.contextmanager
def _translated(where: str, conn: psycopg.Connection | None = None) -> Iterator[None]:
    """Turn psycopg errors into :class:`StorageError` naming the database."""
    try:
        yield
    except (psycopg.Error, PoolTimeout) as exc:
        raise _describe(where, exc, conn) from exc


def _connect(url: str, where: str, connect_timeout_s: float, app: str) -> psycopg.Connection:
    try:
        return psycopg.connect(
            url,
            autocommit=True,
            connect_timeout=max(1, int(connect_timeout_s)),
            application_name=app,
        )
    except psycopg.OperationalError as exc:
        msg = str(exc).strip().splitlines()[0] if str(exc).strip() else "connection failed"
        if "authentication" in msg or "does not exist" in msg or "role" in msg:
            raise StorageError(f"{where}: {msg}") from None
        raise ConnectionLostError(f"{where}: cannot reach the database server ({msg})") from None
    except psycopg.Error as exc:
        raise StorageError(f"{where}: {exc}") from None


# ----------------------------------------------------------------------------- schema
def _regclass(conn: psycopg.Connection, name: str) -> bool:
    return conn.execute("SELECT to_regclass(%s) IS NOT NULL", (name,)).fetchone()[0]


def _meta(conn: psycopg.Connection) -> dict[str, str]:
    return dict(conn.execute("SELECT key, value FROM qd_meta").fetchall())


def _check_schema(
    conn: psycopg.Connection,
    where: str,
    *,
    migrate: bool,
    timescale: bool | None = None,
    keep_ms: tuple[int | None, int | None] = (None, None),
) -> bool:
    """Recognise our schema, refuse foreign or newer ones, create or migrate (writer only).

    Returns whether the schema uses TimescaleDB hypertables. Concurrent writers starting at
    once serialise on an advisory lock, so the schema is created exactly once.
    """
    with _translated(where, conn), conn.transaction():
        if migrate:
            conn.execute("SELECT pg_advisory_xact_lock(%s, 0)", (LOCK_NAMESPACE,))
        if _regclass(conn, "qd_meta"):
            meta = _meta(conn)
            if meta.get("application") != APPLICATION:
                raise StorageError(
                    f"{where} has a table qd_meta of another application; "
                    "refusing to touch it — use another database or schema"
                )
            version = int(meta.get("schema_version", "0"))
        else:
            foreign = [t for t in _TABLES_OURS if _regclass(conn, t)]
            if foreign:
                raise StorageError(
                    f"{where} already has tables {', '.join(foreign)} that are not ours; "
                    "refusing to touch them — use another database, or a schema of its own "
                    "(?options=-csearch_path%3Dqd)"
                )
            if not migrate:
                raise StorageError(
                    f"no data in {where} yet: start a feed or a collector, "
                    "import a file or `python -m storage copy` first"
                )
            version, meta = 0, {}
        if version > SCHEMA_VERSION:
            raise StorageError(
                f"{where} has schema version {version}, newer than this "
                f"program's {SCHEMA_VERSION}; upgrade the program"
            )
        if version == SCHEMA_VERSION:
            return meta.get("timescale") == "1"
        if not migrate:
            raise StorageError(
                f"{where} has schema version {version}; open it once with a "
                "writer (a feed, the collector or `python -m storage info`) to "
                "migrate it"
            )
        use_ts = meta.get("timescale") == "1"
        if version == 0:
            use_ts = _enable_timescale(conn) if timescale is not False else False
        for step in migrations(use_ts)[version:]:
            for statement in step:
                conn.execute(statement)
        if version == 0 and use_ts:
            for statement in timescale_steps(*keep_ms):
                conn.execute(statement)
        for key, value in (
            ("application", APPLICATION),
            ("schema_version", str(SCHEMA_VERSION)),
            ("timescale", "1" if use_ts else "0"),
        ):
            conn.execute(
                "INSERT INTO qd_meta (key, value) VALUES (%s, %s) ON CONFLICT (key) "
                "DO UPDATE SET value = excluded.value",
                (key, value),
            )
        if version == 0 and use_ts:
            conn.execute(
                "INSERT INTO qd_meta (key, value) VALUES ('retention_ms', %s)",
                (json.dumps(list(keep_ms)),),
            )
        return use_ts


def timescale_available(conn: psycopg.Connection) -> bool:
    """Whether the server offers the TimescaleDB extension (installed or installable)."""
    return (
        conn.execute("SELECT 1 FROM pg_available_extensions WHERE name = 'timescaledb'").fetchone()
        is not None
    )


def _enable_timescale(conn: psycopg.Connection) -> bool:
    """Create the extension if the server offers it; False (plain tables) if it cannot."""
    if not timescale_available(conn):
        return False
    try:
        with conn.transaction():  # a savepoint: a failure leaves the outer transaction usable
            conn.execute("CREATE EXTENSION IF NOT EXISTS timescaledb")
    except psycopg.Error as exc:
        log.warning(
            "TimescaleDB is available but cannot be created (%s); using plain tables",
            str(exc).strip().splitlines()[0],
        )
        return False
    return True


# ----------------------------------------------------------------------------- writer
class Writer(WriterReads, OutboxWrites):
    """A writer of a PostgreSQL database: the API of :class:`storage.sqlite.Writer`.

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

    def __enter__(self) -> Writer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

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

    def _outbox_tx(self, fn: Callable[[Exec], Any]) -> Any:
        """``storage.outbox``'s writes: ``fn(execute)`` in one transaction (rerun on conflict)."""
        return self._run(
            lambda conn: fn(lambda sql, params=(): conn.execute(pyformat(sql), tuple(params)))
        )

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

    # ----------------------------------------------------------------- symbols
    def _sym_id(self, conn: psycopg.Connection, symbol: str, kind: str) -> int:
        cached = self._sym_cache.get(symbol)
        if cached is None:
            row = conn.execute(
                "SELECT sym_id, id_kind FROM symbols WHERE symbol = %s", (symbol,)
            ).fetchone()
            if row is None:
                row = conn.execute(
                    "INSERT INTO symbols (symbol, id_kind) VALUES (%s, %s) "
                    "ON CONFLICT (symbol) DO NOTHING RETURNING sym_id, id_kind",
                    (symbol, kind),
                ).fetchone()
            if row is None:  # another writer created it since our SELECT
                row = conn.execute(
                    "SELECT sym_id, id_kind FROM symbols WHERE symbol = %s", (symbol,)
                ).fetchone()
            cached = (int(row[0]), str(row[1]))
            self._sym_cache[symbol] = cached
        sym_id, stored_kind = cached
        if stored_kind != kind and not self._has_tick_data(conn, sym_id):
            # Only klines so far (they carry no trade ids): the first ticks fix the id kind.
            conn.execute("UPDATE symbols SET id_kind = %s WHERE sym_id = %s", (kind, sym_id))
            self._sym_cache[symbol] = (sym_id, kind)
            return sym_id
        if stored_kind != kind:
            raise IdKindConflictError(
                f"{symbol} holds {stored_kind} ids; refusing to mix in {kind} ids "
                "(aggregate ids and trade ids are different id spaces)"
            )
        return sym_id

    @staticmethod
    def _has_tick_data(conn: psycopg.Connection, sym_id: int) -> bool:
        """True once the symbol has ticks or bars built from ticks (even if ticks were pruned)."""
        return conn.execute(
            "SELECT EXISTS (SELECT 1 FROM ticks WHERE sym_id = %(s)s) "
            "OR EXISTS (SELECT 1 FROM bars WHERE sym_id = %(s)s AND src = 0) "
            "OR EXISTS (SELECT 1 FROM bars_1s WHERE sym_id = %(s)s)",
            {"s": sym_id},
        ).fetchone()[0]

    def _sym_id_any(self, conn: psycopg.Connection, symbol: str) -> int:
        """The symbol's id whatever its id kind (klines and gaps carry no trade ids)."""
        cached = self._sym_cache.get(symbol)
        if cached is not None:
            return cached[0]
        row = conn.execute("SELECT sym_id FROM symbols WHERE symbol = %s", (symbol,)).fetchone()
        if row is not None:
            return int(row[0])
        return self._sym_id(conn, symbol, IdKind.AGG.value)

    # ----------------------------------------------------------------- ticks
    def write_ticks(self, ticks: Sequence[Tick]) -> int:
        """Store ticks and maintain their 1s/1m/5m bars in one transaction.

        Idempotent: a tick whose (symbol, trade_id) is stored already is ignored, and so are
        repeats inside the batch. Returns how many ticks were new.
        """
        if not ticks:
            return 0
        arrays = [
            (symbol, kind, *cols)  # sorted: one lock order for every writer
            for (symbol, kind), cols in sorted(
                tick_batches(ticks).items(), key=lambda item: item[0]
            )
        ]
        return self._run(lambda conn: sum(self._insert_arrays(conn, *a) for a in arrays))

    def write_tick_arrays(
        self,
        symbol: str,
        id_kind: IdKind | str,
        trade_id: np.ndarray,
        ts_ms: np.ndarray,
        price: np.ndarray,
        qty: np.ndarray,
        is_buyer_maker: np.ndarray,
    ) -> int:
        """Columnar twin of :meth:`write_ticks` for importers and benchmarks (one symbol)."""
        cols = tick_arrays(symbol, id_kind, trade_id, ts_ms, price, qty, is_buyer_maker)
        return self._run(lambda conn: self._insert_arrays(conn, *cols))

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
        m = merge_bars(np.asarray(rows, dtype=np.float64), 300_000)
        n = len(m[0])
        i8 = [c.astype(np.int64) for c in m]
        cols = [
            (np.full(n, 300), "i4"),
            (i8[0], "i8"),
            (m[1], "f8"),
            (m[2], "f8"),
            (m[3], "f8"),
            (m[4], "f8"),
            (m[5], "f8"),
            (m[6], "f8"),
            (i8[7], "i8"),
            (m[8], "f8"),
            (i8[9], "i8"),
            (i8[10], "i8"),
            (i8[11], "i8"),
            (i8[12], "i8"),
            (i8[13], "i2"),
        ]
        self._stage(conn, "_qd_stage_bars", _copy_buffer(cols))
        conn.execute(_REPLACE_SQL[300], (sym_id, 300))

    # ----------------------------------------------------------------- klines
    def write_klines(self, symbol: str, rows: pd.DataFrame) -> int:
        """Store exchange 1m klines as 1m bars (and the 5m bars they make).

        The rules of :meth:`storage.sqlite.Writer.write_klines`: a kline bar is authoritative
        for its minute; later ticks are stored but leave it alone. Minutes without trades
        (``count`` 0) store no bar. Idempotent. Returns the number of bars stored.
        """
        checked = traded_klines(symbol, rows)
        if checked is None:
            return 0
        symbol, rows, ot = checked
        n = len(rows)
        f = {
            c: rows[c].astype(float).to_numpy()
            for c in ("open", "high", "low", "close", "volume", "quote_volume", "taker_buy_volume")
        }
        cols = [
            (np.full(n, 60), "i4"),
            (ot, "i8"),
            (f["open"], "f8"),
            (f["high"], "f8"),
            (f["low"], "f8"),
            (f["close"], "f8"),
            (f["volume"], "f8"),
            (f["quote_volume"], "f8"),
            (rows["count"].to_numpy(np.int64), "i8"),
            (f["taker_buy_volume"], "f8"),
            (ot, "i8"),
            (np.full(n, -1), "i8"),
            (rows["close_time"].to_numpy(np.int64), "i8"),
            (np.full(n, -1), "i8"),
            (np.ones(n), "i2"),
        ]

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

    def record_gap(self, gap: Gap) -> int:
        """Record a hole in a symbol's id sequence; returns its ``gap_id``."""
        check_gap_status(gap.status)

        def work(conn: psycopg.Connection) -> int:
            sym_id = self._sym_id_any(conn, gap.symbol.upper())
            return int(
                conn.execute(
                    "INSERT INTO gaps (sym_id, first_missing_id, last_missing_id, found_ts_ms, "
                    "status, repaired_count, detail, updated_ts_ms) "
                    "VALUES (%s,%s,%s,%s,%s,%s,%s,%s) RETURNING gap_id",
                    (
                        sym_id,
                        gap.first_missing_id,
                        gap.last_missing_id,
                        gap.found_ts_ms,
                        gap.status,
                        gap.repaired_count,
                        gap.detail,
                        now_ms(),
                    ),
                ).fetchone()[0]
            )

        return self._run(work)

    def update_gap(
        self, gap_id: int, *, status: str, repaired_count: int, detail: str = ""
    ) -> None:
        check_gap_status(status)

        def work(conn: psycopg.Connection) -> None:
            cur = conn.execute(
                "UPDATE gaps SET status = %s, repaired_count = %s, detail = %s, "
                "updated_ts_ms = %s WHERE gap_id = %s",
                (status, repaired_count, detail, now_ms(), gap_id),
            )
            if cur.rowcount == 0:
                raise ValueError(f"no gap with id {gap_id}")

        self._run(work)

    def save_feed_status(self, collector_id: str, symbol: str, status: dict[str, Any]) -> None:
        """Publish one symbol's feed health for readers in any process (and on any machine)."""
        self._run(
            lambda conn: conn.execute(
                "INSERT INTO feed_status (collector_id, symbol, status, updated_ts_ms) "
                "VALUES (%s,%s,%s,%s) ON CONFLICT (collector_id, symbol) DO UPDATE SET "
                "status = excluded.status, updated_ts_ms = excluded.updated_ts_ms",
                (collector_id, symbol.upper(), json.dumps(status, default=str), now_ms()),
            )
        )

    # ----------------------------------------------------------------- alerts
    def add_alert_rule(
        self,
        *,
        name: str,
        x: str,
        y: str,
        tf: str,
        metric: str,
        op: str,
        threshold: float,
        cooldown_s: float,
        params: dict | None = None,
    ) -> int:
        timeframe_s(tf)
        return self._run(
            lambda conn: int(
                conn.execute(
                    "INSERT INTO alert_rules (name, x, y, tf, metric, op, threshold, cooldown_s, "
                    "enabled, params, created_ts_ms) VALUES (%s,%s,%s,%s,%s,%s,%s,%s,1,%s,%s) "
                    "RETURNING rule_id",
                    (
                        name,
                        x.upper(),
                        y.upper(),
                        tf,
                        metric,
                        op,
                        float(threshold),
                        float(cooldown_s),
                        json.dumps(params or {}),
                        now_ms(),
                    ),
                ).fetchone()[0]
            )
        )

    def set_alert_rule_enabled(self, rule_id: int, enabled: bool) -> None:
        self._run(
            lambda conn: conn.execute(
                "UPDATE alert_rules SET enabled = %s WHERE rule_id = %s", (int(enabled), rule_id)
            )
        )

    def delete_alert_rule(self, rule_id: int) -> None:
        self._run(
            lambda conn: conn.execute("DELETE FROM alert_rules WHERE rule_id = %s", (rule_id,))
        )

    def record_alert(
        self,
        *,
        rule_id: int,
        bar_time_ms: int,
        value: float,
        message: str,
        fired_ts_ms: int | None = None,
    ) -> bool:
        """Store a fired alert; False if this rule already fired for this bar."""
        return self._run(
            lambda conn: (
                conn.execute(
                    "INSERT INTO alert_events (rule_id, fired_ts_ms, bar_time_ms, value, message) "
                    "VALUES (%s,%s,%s,%s,%s) ON CONFLICT (rule_id, bar_time_ms) DO NOTHING",
                    (
                        rule_id,
                        fired_ts_ms if fired_ts_ms is not None else now_ms(),
                        bar_time_ms,
                        float(value),
                        message,
                    ),
                ).rowcount
                == 1
            )
        )

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

        The contract of :meth:`storage.sqlite.Writer.prune`. With TimescaleDB, whole chunks
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


# ----------------------------------------------------------------------------- reader pools
_POOLS: dict[tuple[str, int], ConnectionPool] = {}
_POOLS_LOCK = threading.Lock()


def _configure_reader(conn: psycopg.Connection) -> None:
    conn.execute("SET default_transaction_read_only = on")


def _pool(url: str, max_size: int, timeout_s: float, where: str) -> ConnectionPool:
    """The process's pool of reader connections to ``url`` (made on first use)."""
    key = (url, max_size)
    with _POOLS_LOCK:
        pool = _POOLS.get(key)
        if pool is not None and not pool.closed:
            return pool
        # One direct attempt first: it fails at once with the real cause (refused, password,
        # no such database) where the pool would retry in the background until its timeout.
        _connect(url, where, timeout_s, "qd-reader").close()
        pool = ConnectionPool(
            url,
            min_size=1,
            max_size=max_size,
            open=False,
            timeout=timeout_s,
            kwargs={
                "autocommit": True,
                "application_name": "qd-reader",
                "connect_timeout": max(1, int(timeout_s)),
            },
            configure=_configure_reader,
            name=f"qd-readers-{len(_POOLS)}",
            reconnect_timeout=timeout_s * 6,
        )
        try:
            pool.open(wait=True, timeout=timeout_s)
        except PoolTimeout:
            pool.close(timeout=0)
            raise ConnectionLostError(f"{where}: cannot reach the database server") from None
        _POOLS[key] = pool
        return pool


def close_pools() -> None:
    """Close every reader pool of this process (at exit, or in tests)."""
    with _POOLS_LOCK:
        pools = list(_POOLS.values())
        _POOLS.clear()
    for pool in pools:
        with contextlib.suppress(Exception):
            pool.close(timeout=1.0)


atexit.register(close_pools)


# ----------------------------------------------------------------------------- reader
class Reader(ReaderBase):
    """Read-only access through the process's pool for this URL: the API of sqlite.Reader.

    Cheap to make, and (unlike the SQLite reader) safe to share between threads: each call
    borrows a pooled connection. A call that meets a dropped connection is retried once on a
    fresh one.

    Parameters
    ----------
    url : the database; its schema must exist (a writer creates it).
    pool_max_size : connections the process's pool for this URL may open.
    connect_timeout_s : how long to wait for the server or a free pooled connection, seconds.
    """

    def __init__(
        self,
        url: str,
        *,
        pool_max_size: int = 8,
        connect_timeout_s: float = 10.0,
        busy_timeout_s: float | None = None,
    ):
        del busy_timeout_s  # SQLite's option
        self.url = url
        self.path = redact_url(url)
        self._pool = _pool(url, pool_max_size, connect_timeout_s, self.path)
        self._sym_ids: dict[str, int] = {}
        self.timescale = self._call(self._check)

    def _check(self, conn: psycopg.Connection) -> bool:
        return _check_schema(conn, self.path, migrate=False)

    def close(self) -> None:
        """Nothing to release: the pool is shared by the process (see :func:`close_pools`)."""

    def __enter__(self) -> Reader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _call(self, fn: Callable[[psycopg.Connection], Any], snapshot: bool = False) -> Any:
        """Run ``fn`` on a pooled connection (in one read-only snapshot if asked)."""
        for attempt in (0, 1):
            conn = None
            try:
                with self._pool.connection() as conn:
                    if not snapshot:
                        return fn(conn)
                    with conn.transaction():
                        conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
                        return fn(conn)
            except (psycopg.Error, PoolTimeout) as exc:
                err = _describe(self.path, exc, conn)
                if isinstance(err, ConnectionLostError) and attempt == 0:
                    continue  # the pool drops the broken connection; try a fresh one
                raise err from exc
        raise AssertionError("unreachable")

    def _q(self, sql: str, params: Iterable[Any] = ()) -> list[tuple]:
        """One query, ``?`` placeholders (see :mod:`storage.readbase`), on a pooled connection."""
        params = tuple(params)
        return self._call(lambda conn: _query_on(conn)(sql, params))

    def _bars_table(self, tf_s: int) -> str:
        return _bars_table(tf_s)

    def data_version(self) -> int:
        """Changes after every committed write by any writer: a cheap cache key for readers."""
        return int(
            self._q("SELECT CASE WHEN is_called THEN last_value ELSE 0 END FROM qd_data_version")[
                0
            ][0]
        )

    def pair_frame(
        self,
        x: str,
        y: str,
        tf: str,
        start_ms: int | None = None,
        end_ms: int | None = None,
        limit: int | None = None,
    ) -> pd.DataFrame:
        """Two legs on one regular grid of ``tf`` bars: :meth:`storage.sqlite.Reader.pair_frame`.

        Read in one snapshot, so both legs are of the same moment even while a writer commits.
        """
        sx, sy, tf_s = self._pair_legs(x, y, tf, start_ms, end_ms, limit)
        return self._call(
            lambda conn: self._pair_frame(_query_on(conn), sx, sy, tf_s, start_ms, end_ms, limit),
            snapshot=True,
        )

    def info(self) -> dict[str, Any]:
        """Everything ``python -m storage info`` prints, as plain data (one snapshot)."""

        def read(conn: psycopg.Connection) -> dict[str, Any]:
            symbols = self._symbol_info(_query_on(conn))
            size = conn.execute("SELECT pg_database_size(current_database())").fetchone()[0]
            return {
                "path": self.path,
                "size_bytes": int(size),
                "schema_version": SCHEMA_VERSION,
                "backend": "postgresql",
                "timescale": self.timescale,
                "symbols": symbols,
            }

        return self._call(read, snapshot=True)


def _query_on(conn: psycopg.Connection) -> Query:
    """A :data:`storage.readbase.Query` on ``conn``: ``?`` placeholders, binary results."""

    def q(sql: str, params: Iterable[Any] = ()) -> list[tuple]:
        return conn.execute(pyformat(sql), tuple(params), binary=True).fetchall()

    return q
