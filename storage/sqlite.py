"""SQLite storage: one writer, batched transactions, WAL; readers on their own connections.

The single :class:`SQLiteWriter` holds an exclusive lock file beside the database, so a second
writer (in this process or another) fails at once with :class:`WriterBusyError` instead of meeting
"database is locked" later. :class:`SQLiteReader` objects are cheap; make one per thread.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import sqlite3
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from storage.bars import aggregate_ticks, merge_bars
from storage.errors import (
    StorageError,
    WriterBusyError,
)
from storage.funding import FundingWrites
from storage.outbox import OutboxWrites
from storage.readbase import BAR_COLUMNS as BAR_COLUMNS  # re-exported: storage, tests
from storage.readbase import PAIR_COLUMNS as PAIR_COLUMNS
from storage.readbase import ReaderBase
from storage.readbase import _check_range as _check_range
from storage.readbase import _empty_pair as _empty_pair
from storage.schema import APPLICATION_ID, MIGRATIONS, SCHEMA_VERSION
from storage.timefmt import now_ms
from storage.writebase import GAP_STATUSES as GAP_STATUSES  # re-exported
from storage.writebase import (
    WriterBase,
    bar_merge_set,
    check_ticks,
    derived_5m_columns,
    kline_bar_columns,
    traded_klines,
)

_UPSERT_HEAD = """
INSERT INTO bars (sym_id, tf_s, open_time_ms, open, high, low, close, volume, quote_volume,
                  trades, buy_volume, first_ts_ms, first_id, last_ts_ms, last_id, src)
VALUES """
_UPSERT_TAIL = "\n" + bar_merge_set("bars", "max", "min") + "\n"

_REPLACE_HEAD = """
INSERT OR REPLACE INTO bars (sym_id, tf_s, open_time_ms, open, high, low, close, volume,
                  quote_volume, trades, buy_volume, first_ts_ms, first_id, last_ts_ms, last_id, src)
VALUES """

#: SQLite's default limit on bound variables per statement (SQLITE_MAX_VARIABLE_NUMBER).
_MAX_VARIABLES = 32_766


def _insert_rows(conn: sqlite3.Connection, head: str, tail: str, rows: list[tuple]) -> None:
    """Insert ``rows`` with multi-row ``VALUES`` statements.

    Why not ``executemany``: it releases and retakes the GIL for every row, so next to a busy
    thread (the WebSocket readers) a 100,000-row insert took 2.5 s instead of 0.2 s here;
    a few large statements took 0.4 s. ``tail`` follows the VALUES (an ON CONFLICT clause).
    """
    if not rows:
        return
    width = len(rows[0])
    per = _MAX_VARIABLES // width
    for i in range(0, len(rows), per):
        chunk = rows[i : i + per]
        group = "(" + ",".join("?" * width) + ")"
        conn.execute(head + ",".join([group] * len(chunk)) + tail, [v for r in chunk for v in r])


_BAR_MERGE_COLUMNS = (
    "open_time_ms, open, high, low, close, volume, quote_volume, trades, "
    "buy_volume, first_ts_ms, first_id, last_ts_ms, last_id, src"
)


def _rows(sym_id: int, cols: list[np.ndarray]) -> list[tuple]:
    """Bar columns (:data:`BAR_WRITE_COLUMNS`) as rows for a multi-row INSERT."""
    return list(zip([sym_id] * len(cols[0]), *(c.tolist() for c in cols), strict=True))


def _describe(path: Path, exc: sqlite3.Error) -> str:
    msg = str(exc)
    if "disk is full" in msg or "database or disk is full" in msg:
        return (
            f"disk full while writing {path}: the last batch was rolled back; "
            "everything committed before it is intact"
        )
    if "not a database" in msg:
        return f"{path} is not a SQLite database (or is encrypted/corrupt)"
    if "malformed" in msg:
        return f"{path} is corrupt ({msg}); restore it from a backup or start a new file"
    if "locked" in msg or "busy" in msg:
        return f"{path} is busy: another process holds a long transaction ({msg})"
    if "readonly" in msg or "read-only" in msg:
        return f"{path} is read-only for this process ({msg})"
    return f"{path}: {msg}"


@contextlib.contextmanager
def _translated(path: Path) -> Iterator[None]:
    """Turn sqlite3 errors into :class:`StorageError` naming the file."""
    try:
        yield
    except sqlite3.Error as exc:
        raise StorageError(_describe(path, exc)) from exc


def _connect(path: Path, busy_timeout_s: float) -> sqlite3.Connection:
    with _translated(path):
        conn = sqlite3.connect(
            path, timeout=busy_timeout_s, isolation_level=None, check_same_thread=False
        )
        conn.execute(f"PRAGMA busy_timeout = {int(busy_timeout_s * 1000)}")
        return conn


def _check_schema(conn: sqlite3.Connection, path: Path, *, migrate: bool) -> None:
    """Recognise our file, refuse foreign or newer ones, migrate older ones (writer only)."""
    with _translated(path):
        app_id = conn.execute("PRAGMA application_id").fetchone()[0]
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        n_tables = conn.execute(
            "SELECT count(*) FROM sqlite_master WHERE type = 'table'"
        ).fetchone()[0]
    if app_id == 0 and n_tables == 0:
        version = 0  # a new, empty file
    elif app_id != APPLICATION_ID:
        raise StorageError(
            f"{path} is a SQLite database of another application (application_id {app_id:#x}); "
            "refusing to touch it — choose another DB_PATH"
        )
    if version > SCHEMA_VERSION:
        raise StorageError(
            f"{path} has schema version {version}, newer than this program's {SCHEMA_VERSION}; "
            "upgrade the program"
        )
    if version == SCHEMA_VERSION:
        return
    if not migrate:
        raise StorageError(
            f"{path} has schema version {version}; open it once with a writer "
            "(the dashboard feed, the collector or `python -m storage info`) to migrate it"
        )
    with _translated(path):
        conn.execute("BEGIN IMMEDIATE")
        try:
            for step in range(version, SCHEMA_VERSION):
                for statement in _split_sql(MIGRATIONS[step]):
                    conn.execute(statement)
            conn.execute(f"PRAGMA application_id = {APPLICATION_ID}")
            conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise


def _split_sql(script: str) -> list[str]:
    """Split a migration script into statements (ours never has ';' inside a literal)."""
    lines = [ln.split("--", 1)[0] for ln in script.splitlines()]
    return [s.strip() for s in "\n".join(lines).split(";") if s.strip()]


@dataclass(frozen=True, slots=True)
class WriteResult:
    inserted: int
    duplicates: int


class SQLiteWriter(WriterBase, OutboxWrites, FundingWrites):
    """The one writer of a database file.

    Thread-safe: an internal lock serialises calls, so the ingestion writer thread, the alert
    monitor and the retention job can share it. Every public method is one short transaction.

    Parameters
    ----------
    path : database file; created with the current schema if missing.
    busy_timeout_s : how long a statement waits for a reader's checkpoint, in seconds.
    """

    def __init__(self, path: str | os.PathLike[str], *, busy_timeout_s: float = 10.0):
        self.path = Path(path)
        if self.path.is_dir():
            raise StorageError(f"{self.path} is a directory, not a database file")
        if not self.path.parent.exists():
            raise StorageError(f"folder {self.path.parent} does not exist (database {self.path})")
        self._lock_file = self._acquire_writer_lock()
        try:
            self._conn = _connect(self.path, busy_timeout_s)
            _check_schema(self._conn, self.path, migrate=True)
            with _translated(self.path):
                mode = self._conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
                self._conn.execute("PRAGMA synchronous = NORMAL")
                self._conn.execute("PRAGMA foreign_keys = OFF")
            if mode.lower() != "wal":
                raise StorageError(f"{self.path}: could not switch to WAL mode (got {mode})")
        except BaseException:
            conn = getattr(self, "_conn", None)
            if conn is not None:
                conn.close()
            self._release_writer_lock()
            raise
        self._lock = threading.RLock()
        self._sym_cache: dict[str, tuple[int, str]] = {}
        self._depth = 0
        self.closed = False

    # ----------------------------------------------------------------- lifecycle
    def _acquire_writer_lock(self):
        lock_path = self.path.with_name(self.path.name + ".writer.lock")
        try:
            fh = open(lock_path, "a+")  # noqa: SIM115 - held open for the writer's lifetime
        except OSError as exc:
            raise StorageError(f"cannot create lock file {lock_path}: {exc.strerror}") from exc
        try:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            fh.seek(0)
            holder = fh.read().strip() or "unknown"
            fh.close()
            raise WriterBusyError(
                f"{self.path} already has a writer ({holder}); only one process may write. "
                "Point the dashboard at it read-only, or stop the other writer."
            ) from None
        fh.seek(0)
        fh.truncate()
        fh.write(f"pid {os.getpid()}")
        fh.flush()
        return fh

    def _release_writer_lock(self) -> None:
        fh = getattr(self, "_lock_file", None)
        if fh is not None and not fh.closed:
            with contextlib.suppress(OSError):
                fcntl.flock(fh.fileno(), fcntl.LOCK_UN)
            fh.close()

    def close(self) -> None:
        if self.closed:
            return
        with self._lock:
            with contextlib.suppress(sqlite3.Error):
                self._conn.execute("PRAGMA optimize")
            self._conn.close()
            self._release_writer_lock()
            self.closed = True

    @contextlib.contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        """One write transaction: all or nothing."""
        if self.closed:
            raise StorageError(f"{self.path}: writer is closed")
        with self._lock, _translated(self.path):
            if self._depth:  # nested inside transaction(): the outer one commits
                yield self._conn
                return
            self._conn.execute("BEGIN IMMEDIATE")
            self._depth += 1
            try:
                yield self._conn
            except BaseException:
                if self._conn.in_transaction:  # SQLite may have rolled back already (disk full)
                    self._conn.execute("ROLLBACK")
                self._sym_cache.clear()  # a symbol created in this transaction is gone again
                raise
            else:
                self._conn.execute("COMMIT")
            finally:
                self._depth -= 1

    @contextlib.contextmanager
    def transaction(self) -> Iterator[None]:
        """Group several writes into one all-or-nothing transaction (an import, per file).

        Other threads' writes wait until it ends, so keep it to bulk jobs.
        """
        with self._tx():
            yield

    # ----------------------------------------------------------------- engine hooks
    def _unit(self, fn: Callable[[sqlite3.Connection], Any]) -> Any:
        """Run ``fn(conn)`` in one write transaction (:class:`WriterBase`'s hook)."""
        with self._tx() as conn:
            return fn(conn)

    @staticmethod
    def _exec(conn: sqlite3.Connection, sql: str, params: Sequence[Any] = ()) -> sqlite3.Cursor:
        return conn.execute(sql, params)

    @staticmethod
    def _has_tick_data(conn: sqlite3.Connection, sym_id: int) -> bool:
        """True once the symbol has ticks or bars built from ticks (even if ticks were pruned)."""
        return (
            conn.execute(
                "SELECT EXISTS (SELECT 1 FROM ticks WHERE sym_id = ?1) "
                "OR EXISTS (SELECT 1 FROM bars WHERE sym_id = ?1 AND src = 0)",
                (sym_id,),
            ).fetchone()[0]
            == 1
        )

    # ----------------------------------------------------------------- ticks
    def _insert_arrays(self, conn, symbol, kind, ids, ts, px, qty, bm) -> int:
        check_ticks(symbol, ids, ts, px, qty, bm)
        sym_id = self._sym_id(conn, symbol, kind)
        # Keep the first of any repeated id in the batch, then drop ids already stored.
        _, first = np.unique(ids, return_index=True)
        keep = np.zeros(len(ids), bool)
        keep[first] = True
        lo, hi = int(ids.min()), int(ids.max())
        if hi - lo < 4 * len(ids) + 1024:
            # Dense ids (a live stream, a dump): one range scan of the batch's span.
            cur = conn.execute(
                "SELECT trade_id FROM ticks WHERE sym_id = ? AND trade_id BETWEEN ? AND ?",
                (sym_id, lo, hi),
            )
        else:
            # Sparse ids (an old backfilled id beside current ones): one lookup per id, so
            # the cost stays that of the batch, not of the history between its ids.
            cur = conn.execute(
                "SELECT trade_id FROM ticks WHERE sym_id = ? AND trade_id IN "
                "(SELECT value FROM json_each(?))",
                (sym_id, json.dumps(ids.tolist())),
            )
        stored = np.fromiter((r[0] for r in cur), np.int64)
        if len(stored):
            keep &= ~np.isin(ids, stored)
        for r_lo, r_hi in conn.execute(
            "SELECT lo_id, hi_id FROM pruned_ranges WHERE sym_id = ? AND hi_id >= ? AND lo_id <= ?",
            (sym_id, lo, hi),
        ):
            keep &= ~((ids >= r_lo) & (ids <= r_hi))
        if not keep.all():
            ids, ts, px, qty, bm = ids[keep], ts[keep], px[keep], qty[keep], bm[keep]
        n = len(ids)
        if n == 0:
            return 0
        _insert_rows(
            conn,
            "INSERT INTO ticks (sym_id, trade_id, ts_ms, price, qty, is_buyer_maker) VALUES ",
            "",
            list(
                zip(
                    [sym_id] * n,
                    ids.tolist(),
                    ts.tolist(),
                    px.tolist(),
                    qty.tolist(),
                    bm.astype(np.int8).tolist(),
                    strict=True,
                )
            ),
        )
        for tf_s in (1, 60):
            partial = aggregate_ticks(ts, ids, px, qty, bm, tf_s * 1000)
            _insert_rows(
                conn, _UPSERT_HEAD, _UPSERT_TAIL, [(*r, 0) for r in partial.rows(sym_id, tf_s)]
            )
        self._derive_5m(conn, sym_id, int(ts.min()), int(ts.max()))
        return n

    def _derive_5m(self, conn: sqlite3.Connection, sym_id: int, lo_ms: int, hi_ms: int) -> None:
        """Recompute the 5m bars covering [lo_ms, hi_ms] as the merge of their 1m bars."""
        lo = lo_ms - lo_ms % 300_000
        hi = hi_ms - hi_ms % 300_000 + 300_000
        rows = conn.execute(
            f"SELECT {_BAR_MERGE_COLUMNS} FROM bars WHERE sym_id = ? AND tf_s = 60 "
            "AND open_time_ms >= ? AND open_time_ms < ? ORDER BY open_time_ms",
            (sym_id, lo, hi),
        ).fetchall()
        if not rows:
            return
        merged = merge_bars(np.asarray(rows, dtype=np.float64), 300_000)
        _insert_rows(conn, _REPLACE_HEAD, "", _rows(sym_id, derived_5m_columns(merged)))

    # ----------------------------------------------------------------- klines
    def write_klines(self, symbol: str, rows: pd.DataFrame) -> int:
        """Store exchange 1m klines as 1m bars (and the 5m bars they make).

        ``rows`` has Binance's kline columns: ``open_time, open, high, low, close, volume,
        close_time, quote_volume, count, taker_buy_volume``. A kline bar is authoritative for
        its minute: it replaces a bar built from ticks, and later ticks for that minute are
        stored as ticks but leave the bar alone. Minutes without trades (``count`` 0, which
        Binance dumps carry) are empty intervals and store no bar. Idempotent. Returns the
        number of bars stored.
        """
        checked = traded_klines(symbol, rows)
        if checked is None:
            return 0
        symbol, rows, ot = checked
        cols = kline_bar_columns(rows, ot)
        with self._tx() as conn:
            sym_id = self._sym_id_any(conn, symbol)
            _insert_rows(conn, _REPLACE_HEAD, "", _rows(sym_id, cols))
            self._derive_5m(conn, sym_id, int(ot.min()), int(ot.max()))
        return len(rows)

    # ----------------------------------------------------------------- gaps
    def _fetch(self, sql: str, params: tuple) -> list[tuple]:
        """Run ``?`` SQL for :class:`WriterReads` (last_trade_id, trade_time_ms, id_kind,
        open_gaps)."""
        with self._lock, _translated(self.path):
            return self._conn.execute(sql, params).fetchall()

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

        Each chunk of ``chunk_rows`` rows is its own transaction, so the writer is never held
        for long; ``None`` keeps forever. 1m and 5m bars are always kept. Returns rows deleted.
        """
        now = now_ms() if now_ms_ is None else now_ms_
        deleted = {"ticks": 0, "bars_1s": 0}
        with self._lock, _translated(self.path):
            sym_ids = [r[0] for r in self._conn.execute("SELECT sym_id FROM symbols")]
        if ticks_keep_s is not None:
            cutoff = now - int(ticks_keep_s * 1000)
            for sym_id in sym_ids:
                while not should_stop():
                    with self._tx() as conn:
                        n = self._prune_ticks_chunk(conn, sym_id, cutoff, chunk_rows)
                    deleted["ticks"] += n
                    if n < chunk_rows:
                        break
        if bars_1s_keep_s is not None:
            cutoff = now - int(bars_1s_keep_s * 1000)
            sql = (
                "DELETE FROM bars WHERE sym_id = ? AND tf_s = 1 AND open_time_ms IN "
                "(SELECT open_time_ms FROM bars WHERE sym_id = ? AND tf_s = 1 "
                "AND open_time_ms < ? LIMIT ?)"
            )
            for sym_id in sym_ids:
                while not should_stop():
                    with self._tx() as conn:
                        n = conn.execute(sql, (sym_id, sym_id, cutoff, chunk_rows)).rowcount
                    deleted["bars_1s"] += n
                    if n < chunk_rows:
                        break
        return deleted

    @staticmethod
    def _prune_ticks_chunk(
        conn: sqlite3.Connection, sym_id: int, cutoff: int, chunk_rows: int
    ) -> int:
        """Delete up to ``chunk_rows`` of the oldest ticks before ``cutoff``; remember their ids.

        The id range deleted joins ``pruned_ranges`` (merged with ranges it touches), so a
        later write of one of those ids is recognised as already counted in the bars.
        """
        ids = [
            r[0]
            for r in conn.execute(
                "SELECT trade_id FROM ticks WHERE sym_id = ? AND ts_ms < ? ORDER BY ts_ms LIMIT ?",
                (sym_id, cutoff, chunk_rows),
            )
        ]
        if not ids:
            return 0
        lo, hi = min(ids), max(ids)
        n = conn.execute(
            "DELETE FROM ticks WHERE sym_id = ? AND trade_id IN (SELECT value FROM json_each(?))",
            (sym_id, json.dumps(ids)),
        ).rowcount
        touching = conn.execute(
            "SELECT lo_id, hi_id FROM pruned_ranges WHERE sym_id = ? AND hi_id >= ? - 1 "
            "AND lo_id <= ? + 1",
            (sym_id, lo, hi),
        ).fetchall()
        for r_lo, r_hi in touching:
            lo, hi = min(lo, r_lo), max(hi, r_hi)
        conn.execute(
            "DELETE FROM pruned_ranges WHERE sym_id = ? AND hi_id >= ? AND lo_id <= ?",
            (sym_id, lo, hi),
        )
        conn.execute(
            "INSERT INTO pruned_ranges (sym_id, lo_id, hi_id) VALUES (?, ?, ?)", (sym_id, lo, hi)
        )
        return n


class SQLiteReader(ReaderBase):
    """Read-only access on a connection of its own. Not shared between threads: make one each.

    Every method's cost is proportional to the rows it returns (index range scans).
    """

    def __init__(self, path: str | os.PathLike[str], *, busy_timeout_s: float = 10.0):
        self.path = Path(path)
        if not self.path.exists():
            raise StorageError(f"no database at {self.path}: start a feed or import a file first")
        if self.path.is_dir():
            raise StorageError(f"{self.path} is a directory, not a database file")
        self._conn = _connect(self.path, busy_timeout_s)
        try:
            _check_schema(self._conn, self.path, migrate=False)
            with _translated(self.path):
                self._conn.execute("PRAGMA query_only = 1")
        except BaseException:
            self._conn.close()
            raise
        self._sym_ids: dict[str, int] = {}

    def close(self) -> None:
        self._conn.close()

    def __enter__(self) -> SQLiteReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _q(self, sql: str, params: Iterable[Any] = ()) -> list[tuple]:
        with _translated(self.path):
            return self._conn.execute(sql, tuple(params)).fetchall()

    @contextlib.contextmanager
    def _snapshot(self) -> Iterator[None]:
        """One read transaction, so several queries see the same committed state."""
        if self._conn.in_transaction:
            yield
            return
        with _translated(self.path):
            self._conn.execute("BEGIN")
        try:
            yield
        finally:
            if self._conn.in_transaction:
                self._conn.execute("COMMIT")

    def data_version(self) -> int:
        """Changes whenever another connection commits: a cheap cache key for readers."""
        return int(self._q("PRAGMA data_version")[0][0])

    # ----------------------------------------------------------------- bars
    def pair_frame(
        self,
        x: str,
        y: str,
        tf: str,
        start_ms: int | None = None,
        end_ms: int | None = None,
        limit: int | None = None,
    ) -> pd.DataFrame:
        """Two legs on one regular grid of ``tf`` bars.

        The grid starts at the first bar where both legs have traded (and not before
        ``start_ms``) and ends at the last bar of either leg (not after ``end_ms``); with
        ``limit`` only its last ``limit`` points. A leg with no trade in a grid bar carries its
        previous close forward, with zero volume and trades, and ``<leg>_filled`` true.
        Columns: ``open_time_ms, x, y, x_filled, y_filled, x_volume, y_volume, x_trades,
        y_trades``.
        """
        with self._snapshot():
            sx, sy, tf_s = self._pair_legs(x, y, tf, start_ms, end_ms, limit)
            return self._pair_frame(self._q, sx, sy, tf_s, start_ms, end_ms, limit)

    # ----------------------------------------------------------------- info
    def info(self) -> dict[str, Any]:
        """Everything ``python -m storage info`` prints, as plain data."""
        with self._snapshot():
            return self._info()

    def _info(self) -> dict[str, Any]:
        symbols = self._symbol_info(self._q)
        size = sum(
            p.stat().st_size
            for p in (self.path, self.path.with_name(self.path.name + "-wal"))
            if p.exists()
        )
        return {
            "path": str(self.path),
            "size_bytes": size,
            "schema_version": SCHEMA_VERSION,
            "symbols": symbols,
        }
