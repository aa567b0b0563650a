"""Checks and array building both backends' :class:`Writer` do before they touch the database.

Pure functions only: transactions, locking and the SQL stay with each backend.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from storage.records import IdKind, Tick

GAP_STATUSES = ("open", "repaired", "partial", "unrepairable", "failed")
KLINE_COLUMNS = [
    "open_time",
    "open",
    "high",
    "low",
    "close",
    "volume",
    "close_time",
    "quote_volume",
    "count",
    "taker_buy_volume",
]

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
