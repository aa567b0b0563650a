"""Checks and array building both backends' :class:`Writer` do before they touch the database.

Pure functions only: transactions, locking and the SQL stay with each backend.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from storage.formats import KLINE_COLUMNS as DUMP_KLINE_COLUMNS
from storage.records import Gap, IdKind, Tick
from storage.timefmt import now_ms

GAP_STATUSES = ("open", "repaired", "partial", "unrepairable", "failed")
#: Kline columns a write needs: Binance's, without the taker-buy quote volume and "ignore".
KLINE_COLUMNS = DUMP_KLINE_COLUMNS[:10]

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


class WriterReads:
    """The few reads a writer answers for the feed, written once for both backends.

    A backend provides ``_fetch(sql, params) -> list[tuple]`` running ``?``-placeholder SQL on
    the writer's own connection (SQLite under its lock; PostgreSQL outside a transaction).
    """

    def _fetch(self, sql: str, params: tuple) -> list[tuple]:  # pragma: no cover - abstract
        raise NotImplementedError

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
