"""Checks and array building both backends' :class:`Writer` do before they touch the database.

Pure functions only: transactions, locking and the SQL stay with each backend.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from storage.records import KLINE_FIELDS, Gap, IdKind, Tick

GAP_STATUSES = ("open", "repaired", "partial", "unrepairable", "failed")
#: Kline columns a write needs: Binance's, without the taker-buy quote volume and "ignore".
KLINE_COLUMNS = KLINE_FIELDS[:10]

#: One symbol's tick columns: trade_id, ts_ms (int64), price, qty (float64), is_buyer_maker.
TickArrays = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]


def check_gap_status(status: str) -> None:
    if status not in GAP_STATUSES:
        raise ValueError(f"gap status {status!r} not in {GAP_STATUSES}")


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
            "repaired_count, detail FROM gaps JOIN symbols USING (sym_id) "
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
            )
            for gap_id, first, last, found, status, count, detail in rows
        ]
