"""What both engines' writers share, written once: checks, array building, the bar-merge rule
and :class:`WriterBase`, the writer methods whose SQL is the same on SQLite and PostgreSQL.

An engine (``storage.sqlite.SQLiteWriter``, ``storage.postgres.PostgresWriter``) keeps only what
truly differs: its connection and transactions (``_unit``, ``_exec``, ``_fetch``), how ticks and
bars reach the tables (SQLite's multi-row INSERT, PostgreSQL's binary COPY) and retention.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import pandas as pd

from storage.errors import IdKindConflictError
from storage.records import KLINE_FIELDS, Gap, IdKind, Tick, timeframe_s
from storage.timefmt import now_ms

GAP_STATUSES = ("open", "repaired", "partial", "unrepairable", "failed")
#: Kline columns a write needs: Binance's, without the taker-buy quote volume and "ignore".
KLINE_COLUMNS = KLINE_FIELDS[:10]

#: One symbol's tick columns: trade_id, ts_ms (int64), price, qty (float64), is_buyer_maker.
TickArrays = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]


def check_gap_status(status: str) -> None:
    if status not in GAP_STATUSES:
        raise ValueError(f"gap status {status!r} not in {GAP_STATUSES}")


def gap_update_sql(
    gap_id: int, status: str, repaired_count: int, detail: str, first_missing_id: int | None
) -> tuple[str, tuple]:
    """``update_gap``'s ``?`` SQL and parameters, the same for both backends."""
    sets = "status = ?, repaired_count = ?, detail = ?, updated_ts_ms = ?"
    params: tuple = (status, int(repaired_count), detail, now_ms())
    if first_missing_id is not None:
        # The range known by time becomes a range of ids.
        sets += ", first_missing_id = ?, from_ts_ms = NULL"
        params += (int(first_missing_id),)
    return f"UPDATE gaps SET {sets} WHERE gap_id = ?", (*params, int(gap_id))


def uncovered(
    holes: list[tuple[int, int]], covered: list[tuple[int, int]]
) -> list[tuple[int, int]]:
    """The parts of id ranges ``holes`` outside every range of ``covered`` (all inclusive)."""
    out = []
    spans = sorted(covered)
    for lo, hi in holes:
        for a, b in spans:
            if b < lo or a > hi:
                continue
            if a > lo:
                out.append((lo, a - 1))
            lo = max(lo, b + 1)
            if lo > hi:
                break
        if lo <= hi:
            out.append((lo, hi))
    return out


def tick_batches(ticks: Sequence[Tick]) -> dict[tuple[str, str], TickArrays]:
    """Ticks grouped by (upper-case symbol, id kind), in first-seen order, as column arrays."""
    groups: dict[tuple[str, str], list[Tick]] = {}
    for t in ticks:
        groups.setdefault((t.symbol.upper(), str(t.id_kind)), []).append(t)
    return {
        key: (
            np.fromiter((t.trade_id for t in g), np.int64, len(g)),
            np.fromiter((t.ts_ms for t in g), np.int64, len(g)),
            np.fromiter((t.price for t in g), np.float64, len(g)),
            np.fromiter((t.qty for t in g), np.float64, len(g)),
            np.fromiter((t.is_buyer_maker for t in g), np.bool_, len(g)),
        )
        for key, g in groups.items()
    }


def tick_arrays(
    symbol: str,
    id_kind: IdKind | str,
    trade_id: np.ndarray,
    ts_ms: np.ndarray,
    price: np.ndarray,
    qty: np.ndarray,
    is_buyer_maker: np.ndarray,
) -> tuple[str, str, *TickArrays]:
    """``write_tick_arrays``'s arguments normalised: symbol, id kind and typed columns."""
    return (
        symbol.upper(),
        str(IdKind(id_kind)),
        np.asarray(trade_id, np.int64),
        np.asarray(ts_ms, np.int64),
        np.asarray(price, np.float64),
        np.asarray(qty, np.float64),
        np.asarray(is_buyer_maker, np.bool_),
    )


def check_ticks(
    symbol: str, ids: np.ndarray, ts: np.ndarray, px: np.ndarray, qty: np.ndarray, bm: np.ndarray
) -> None:
    """Equal-length columns, and every price and quantity finite and positive."""
    if not (len(ids) == len(ts) == len(px) == len(qty) == len(bm)):
        raise ValueError(f"{symbol}: tick columns differ in length")
    bad = ~(np.isfinite(px) & np.isfinite(qty) & (px > 0) & (qty > 0))
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise ValueError(
            f"{symbol}: tick {int(ids[i])} has price {px[i]!r} and quantity {qty[i]!r}; "
            "both must be finite and positive"
        )


def traded_klines(symbol: str, rows: pd.DataFrame) -> tuple[str, pd.DataFrame, np.ndarray] | None:
    """Check kline rows and keep the minutes with trades: (symbol, rows, open times) or None.

    Raises ``ValueError`` for missing columns or open times off minute boundaries; None when
    no row has a trade (``count`` 0 rows are empty intervals and store no bar).
    """
    missing = [c for c in KLINE_COLUMNS if c not in rows.columns]
    if missing:
        raise ValueError(f"kline rows for {symbol} lack columns {missing}")
    if rows.empty:
        return None
    symbol = symbol.upper()
    ot = rows["open_time"].to_numpy(np.int64)
    if (ot % 60_000).any():
        raise ValueError(
            f"{symbol}: kline open times are not on minute boundaries (only 1m klines are stored)"
        )
    traded = rows["count"].to_numpy(np.int64) > 0
    if not traded.all():
        rows, ot = rows[traded], ot[traded]
    if rows.empty:
        return None
    return symbol, rows, ot


def bar_merge_set(bars: str, greatest: str, least: str) -> str:
    """The one rule that merges a partial bar (``excluded``) into a stored one (``bars``).

    The earliest trade gives open, the latest close (ordered by time, then id), high and low
    are the extremes, volumes and counts add up; kline bars (``src`` 1) are authoritative for
    their minute and are left alone. ``greatest``/``least`` name the engine's two-argument
    max/min (SQLite ``max``/``min``, PostgreSQL ``GREATEST``/``LEAST``). The same rule merges
    1m bars into 5m bars in :func:`storage.bars.merge_bars`.
    """
    first = f"(excluded.first_ts_ms, excluded.first_id) < ({bars}.first_ts_ms, {bars}.first_id)"
    last = f"(excluded.last_ts_ms, excluded.last_id) > ({bars}.last_ts_ms, {bars}.last_id)"
    pick = [
        (first, ("open", "first_ts_ms", "first_id")),
        (last, ("close", "last_ts_ms", "last_id")),
    ]
    sets = [
        f"{c} = CASE WHEN {cond} THEN excluded.{c} ELSE {bars}.{c} END"
        for cond, cols in pick
        for c in cols
    ]
    sets += [
        f"high = {greatest}({bars}.high, excluded.high)",
        f"low = {least}({bars}.low, excluded.low)",
    ]
    sets += [
        f"{c} = {bars}.{c} + excluded.{c}"
        for c in ("volume", "quote_volume", "trades", "buy_volume")
    ]
    return (
        "ON CONFLICT (sym_id, tf_s, open_time_ms) DO UPDATE SET\n    "
        + ",\n    ".join(sets)
        + f"\nWHERE {bars}.src = 0"
    )


#: Columns of a stored bar after ``sym_id`` (and the dtype each engine writes it with).
BAR_WRITE_COLUMNS = (
    ("tf_s", "i4"),
    ("open_time_ms", "i8"),
    ("open", "f8"),
    ("high", "f8"),
    ("low", "f8"),
    ("close", "f8"),
    ("volume", "f8"),
    ("quote_volume", "f8"),
    ("trades", "i8"),
    ("buy_volume", "f8"),
    ("first_ts_ms", "i8"),
    ("first_id", "i8"),
    ("last_ts_ms", "i8"),
    ("last_id", "i8"),
    ("src", "i2"),
)


def kline_bar_columns(rows: pd.DataFrame, ot: np.ndarray) -> list[np.ndarray]:
    """Checked 1m klines (:func:`traded_klines`) as the columns of :data:`BAR_WRITE_COLUMNS`.

    A kline bar has no trade ids (``first_id``/``last_id`` -1), spans its minute
    (``first_ts_ms`` = open time, ``last_ts_ms`` = Binance's close time) and ``src`` 1.
    """
    n = len(rows)
    f = {
        c: rows[c].astype(float).to_numpy()
        for c in ("open", "high", "low", "close", "volume", "quote_volume", "taker_buy_volume")
    }
    minus_one = np.full(n, -1, np.int64)
    return [
        np.full(n, 60, np.int64),
        ot.astype(np.int64),
        f["open"],
        f["high"],
        f["low"],
        f["close"],
        f["volume"],
        f["quote_volume"],
        rows["count"].to_numpy(np.int64),
        f["taker_buy_volume"],
        ot.astype(np.int64),
        minus_one,
        rows["close_time"].to_numpy(np.int64),
        minus_one,
        np.ones(n, np.int64),
    ]


def derived_5m_columns(merged: Sequence[np.ndarray]) -> list[np.ndarray]:
    """The output of :func:`storage.bars.merge_bars` (5m) as :data:`BAR_WRITE_COLUMNS`."""
    n = len(merged[0])
    out: list[np.ndarray] = [np.full(n, 300, np.int64)]
    for (_, dtype), col in zip(BAR_WRITE_COLUMNS[1:], merged, strict=True):
        out.append(col.astype(np.int64) if dtype != "f8" else np.asarray(col, np.float64))
    return out


class WriterBase:
    """Writer methods written once for both engines.

    An engine provides:

    * ``_unit(fn)``: run ``fn(conn)`` in one all-or-nothing write transaction, return its value;
    * ``_exec(conn, sql, params)``: run ``?``-placeholder SQL on ``conn``, return the cursor;
    * ``_fetch(sql, params)``: run ``?`` SQL on the writer's own connection outside a write;
    * ``_has_tick_data(conn, sym_id)`` and ``_insert_arrays(conn, symbol, kind, *arrays)``;
    * ``_sym_cache``, a dict ``symbol -> (sym_id, id_kind)`` cleared when a transaction fails.

    All SQL here is portable between SQLite (≥ 3.35, for ``RETURNING``) and PostgreSQL.
    """

    _sym_cache: dict[str, tuple[int, str]]

    def close(self) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    def __enter__(self):
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _unit(self, fn: Callable[[Any], Any]) -> Any:  # pragma: no cover - abstract
        raise NotImplementedError

    def _exec(self, conn: Any, sql: str, params: Sequence[Any] = ()) -> Any:  # pragma: no cover
        raise NotImplementedError

    def _fetch(self, sql: str, params: tuple) -> list[tuple]:  # pragma: no cover - abstract
        raise NotImplementedError

    def _has_tick_data(self, conn: Any, sym_id: int) -> bool:  # pragma: no cover - abstract
        raise NotImplementedError

    def _insert_arrays(self, conn, symbol, kind, ids, ts, px, qty, bm) -> int:  # pragma: no cover
        raise NotImplementedError

    # ----------------------------------------------------------------- symbols
    def _sym_id(self, conn: Any, symbol: str, kind: str) -> int:
        """The symbol's id, created with id kind ``kind`` if new; refuses to mix id kinds."""
        cached = self._sym_cache.get(symbol)
        if cached is None:
            select = "SELECT sym_id, id_kind FROM symbols WHERE symbol = ?"
            row = self._exec(conn, select, (symbol,)).fetchone()
            if row is None:
                row = self._exec(
                    conn,
                    "INSERT INTO symbols (symbol, id_kind) VALUES (?, ?) "
                    "ON CONFLICT (symbol) DO NOTHING RETURNING sym_id, id_kind",
                    (symbol, kind),
                ).fetchone()
            if row is None:  # another writer created it since our SELECT
                row = self._exec(conn, select, (symbol,)).fetchone()
            cached = (int(row[0]), str(row[1]))
            self._sym_cache[symbol] = cached
        sym_id, stored_kind = cached
        if stored_kind != kind and not self._has_tick_data(conn, sym_id):
            # Only klines so far (they carry no trade ids): the first ticks fix the id kind.
            self._exec(conn, "UPDATE symbols SET id_kind = ? WHERE sym_id = ?", (kind, sym_id))
            self._sym_cache[symbol] = (sym_id, kind)
            return sym_id
        if stored_kind != kind:
            raise IdKindConflictError(
                f"{symbol} holds {stored_kind} ids; refusing to mix in {kind} ids "
                "(aggregate ids and trade ids are different id spaces)"
            )
        return sym_id

    def _sym_id_any(self, conn: Any, symbol: str) -> int:
        """The symbol's id whatever its id kind (klines and gaps carry no trade ids)."""
        cached = self._sym_cache.get(symbol)
        if cached is not None:
            return cached[0]
        row = self._exec(conn, "SELECT sym_id FROM symbols WHERE symbol = ?", (symbol,)).fetchone()
        if row is not None:
            return int(row[0])
        return self._sym_id(conn, symbol, IdKind.AGG.value)

    # ----------------------------------------------------------------- ticks
    def write_ticks(self, ticks: Sequence[Tick]) -> int:
        """Store ticks and maintain their 1s/1m/5m bars in one transaction.

        Idempotent: a tick whose (symbol, trade_id) is stored already is ignored, and so are
        repeats inside the batch. Returns how many ticks were new. Symbols are written in
        sorted order, so concurrent writers lock them in one order.
        """
        if not ticks:
            return 0
        arrays = [
            (symbol, kind, *cols) for (symbol, kind), cols in sorted(tick_batches(ticks).items())
        ]
        return self._unit(lambda conn: sum(self._insert_arrays(conn, *a) for a in arrays))

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
        return self._unit(lambda conn: self._insert_arrays(conn, *cols))

    # ----------------------------------------------------------------- gaps
    def record_gap(self, gap: Gap) -> int:
        """Record a hole in a symbol's id sequence; returns its ``gap_id``."""
        check_gap_status(gap.status)

        def work(conn: Any) -> int:
            sym_id = self._sym_id_any(conn, gap.symbol.upper())
            row = self._exec(
                conn,
                "INSERT INTO gaps (sym_id, first_missing_id, last_missing_id, found_ts_ms, "
                "status, repaired_count, detail, updated_ts_ms, from_ts_ms) "
                "VALUES (?,?,?,?,?,?,?,?,?) RETURNING gap_id",
                (
                    sym_id,
                    gap.first_missing_id,
                    gap.last_missing_id,
                    gap.found_ts_ms,
                    gap.status,
                    gap.repaired_count,
                    gap.detail,
                    now_ms(),
                    gap.from_ts_ms,
                ),
            ).fetchone()
            return int(row[0])

        return self._unit(work)

    def update_gap(
        self,
        gap_id: int,
        *,
        status: str,
        repaired_count: int,
        detail: str = "",
        first_missing_id: int | None = None,
    ) -> None:
        """Set a gap's outcome; ``first_missing_id`` resolves a range known by time only
        (``Gap.from_ts_ms``) to ids."""
        check_gap_status(status)
        sql, params = gap_update_sql(gap_id, status, repaired_count, detail, first_missing_id)

        def work(conn: Any) -> None:
            if self._exec(conn, sql, params).rowcount == 0:
                raise ValueError(f"no gap with id {gap_id}")

        self._unit(work)

    def set_id_check(self, symbol: str, checked_to_id: int) -> None:
        """Remember that ``symbol``'s stored ids up to ``checked_to_id`` were checked
        contiguous (every hole below it is recorded as a gap): see ``unrecorded_holes``."""

        def work(conn: Any) -> None:
            sym_id = self._sym_id_any(conn, symbol.upper())
            self._exec(
                conn,
                "INSERT INTO id_checks (sym_id, checked_to_id) VALUES (?, ?) ON CONFLICT "
                "(sym_id) DO UPDATE SET checked_to_id = excluded.checked_to_id",
                (sym_id, int(checked_to_id)),
            )

        self._unit(work)

    def save_feed_status(self, collector_id: str, symbol: str, status: dict[str, Any]) -> None:
        """Publish one symbol's feed health for readers in any process (and on any machine)."""
        self._unit(
            lambda conn: self._exec(
                conn,
                "INSERT INTO feed_status (collector_id, symbol, status, updated_ts_ms) "
                "VALUES (?,?,?,?) ON CONFLICT (collector_id, symbol) DO UPDATE SET "
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
        values = (
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
        )
        sql = (
            "INSERT INTO alert_rules (name, x, y, tf, metric, op, threshold, cooldown_s, "
            "enabled, params, created_ts_ms) VALUES (?,?,?,?,?,?,?,?,1,?,?) RETURNING rule_id"
        )
        return self._unit(lambda conn: int(self._exec(conn, sql, values).fetchone()[0]))

    def set_alert_rule_enabled(self, rule_id: int, enabled: bool) -> None:
        sql = "UPDATE alert_rules SET enabled = ? WHERE rule_id = ?"
        self._unit(lambda conn: self._exec(conn, sql, (int(enabled), rule_id)))

    def delete_alert_rule(self, rule_id: int) -> None:
        sql = "DELETE FROM alert_rules WHERE rule_id = ?"
        self._unit(lambda conn: self._exec(conn, sql, (rule_id,)))

    # ----------------------------------------------------------------- reads for the feed
    # (on the writer's own connection: SQLite under its lock, PostgreSQL outside a transaction)
    def _one(self, sql: str, params: tuple) -> Any:
        rows = self._fetch(sql, params)
        return None if not rows else rows[0][0]

    def last_trade_id(self, symbol: str) -> int | None:
        """The highest stored trade id of ``symbol``; None if it has no ticks."""
        v = self._one(
            "SELECT max(trade_id) FROM ticks WHERE sym_id = "
            "(SELECT sym_id FROM symbols WHERE symbol = ?)",
            (symbol.upper(),),
        )
        return None if v is None else int(v)

    def trade_time_ms(self, symbol: str, trade_id: int) -> int | None:
        """The stored tick ``trade_id``'s trade time (``ts_ms``); None if it is not stored
        (never was, or pruned). For a feed starting up: the time before a gap."""
        v = self._one(
            "SELECT ts_ms FROM ticks WHERE sym_id = "
            "(SELECT sym_id FROM symbols WHERE symbol = ?) AND trade_id = ? LIMIT 1",
            (symbol.upper(), int(trade_id)),
        )
        return None if v is None else int(v)

    def id_kind(self, symbol: str) -> str | None:
        """The id space a symbol's ticks use (``agg``/``trade``/``synthetic``), None if unknown."""
        v = self._one("SELECT id_kind FROM symbols WHERE symbol = ?", (symbol.upper(),))
        return None if v is None else str(v)

    def open_gaps(self, symbol: str) -> list[Gap]:
        """``symbol``'s gaps still to repair (status ``open`` or ``failed``), oldest ids first.

        For a feed starting up: gaps an earlier run found but could not finish (it stopped,
        or REST errored) are retried and updated in place (``update_gap(gap.gap_id, ...)``).
        """
        rows = self._fetch(
            "SELECT gap_id, first_missing_id, last_missing_id, found_ts_ms, status, "
            "repaired_count, detail, from_ts_ms FROM gaps JOIN symbols USING (sym_id) "
            "WHERE symbol = ? AND status IN ('open', 'failed') "
            "ORDER BY first_missing_id, gap_id",
            (symbol.upper(),),
        )
        sym = symbol.upper()
        return [
            Gap(
                sym,
                int(first),
                int(last),
                int(found),
                str(status),
                int(count),
                str(detail),
                int(gap_id),
                None if from_ms is None else int(from_ms),
            )
            for gap_id, first, last, found, status, count, detail, from_ms in rows
        ]

    def unrecorded_holes(self, symbol: str) -> tuple[list[tuple[int, int]], int | None]:
        """Holes in ``symbol``'s stored ids that no gap record covers, and the highest stored id.

        Cheap: only ids above the last check point (``set_id_check``) are read, first as
        count/min/max from the primary key (contiguous: no hole, done), and only when the
        count is short by a window function over those ids. A hole between ids stored by
        different runs (a stop during start-up history, say) shows here even when no run
        recorded it. Ids below the lowest stored id (never stored, or pruned) are no hole.
        """
        sym = symbol.upper()
        row = self._fetch(
            "SELECT s.sym_id, c.checked_to_id FROM symbols s "
            "LEFT JOIN id_checks c ON c.sym_id = s.sym_id WHERE s.symbol = ?",
            (sym,),
        )
        if not row:
            return [], None
        sym_id, since = int(row[0][0]), row[0][1]
        since = -(1 << 62) if since is None else int(since)
        n, lo, hi = self._fetch(
            "SELECT count(*), min(trade_id), max(trade_id) FROM ticks "
            "WHERE sym_id = ? AND trade_id >= ?",
            (sym_id, since),
        )[0]
        if not n or int(n) == int(hi) - int(lo) + 1:
            return [], None if hi is None else int(hi)
        holes = [
            (int(a) + 1, int(b) - 1)
            for a, b in self._fetch(
                "SELECT prev_id, trade_id FROM (SELECT trade_id, LAG(trade_id) OVER "
                "(ORDER BY trade_id) AS prev_id FROM ticks WHERE sym_id = ? AND trade_id >= ?) "
                "AS w WHERE trade_id > prev_id + 1 ORDER BY trade_id",
                (sym_id, since),
            )
        ]
        covered = [
            (int(a), int(b))
            for a, b in self._fetch(
                "SELECT first_missing_id, last_missing_id FROM gaps WHERE sym_id = ? "
                "AND last_missing_id >= ?",
                (sym_id, int(lo)),
            )
        ]
        return uncovered(holes, covered), int(hi)


#: The former name of :class:`WriterBase` (it held only the reads).
WriterReads = WriterBase
