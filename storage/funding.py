"""Funding: settled events (``funding_rates``) and current readings (``funding_now``), the SQL
both backends share.

``funding_rates``: one row per symbol and settlement time, written from ``GET
/fapi/v1/fundingRate`` pages; a page fetched again replaces its rows (Binance's answer is the
truth). ``funding_now``: one row per symbol, the last ``premiumIndex`` reading a collector
made (a newer reading replaces it; an older one never does). SQL is written with ``?``
placeholders; the PostgreSQL backend turns them into ``%s``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import pandas as pd

from storage.records import FundingRate, MarkPrice

FUNDING_COLUMNS = ["symbol", "funding_time_ms", "rate", "mark"]
FUNDING_NOW_COLUMNS = [
    "symbol", "mark", "index_price", "rate", "next_funding_ms", "event_ms", "checked_ms"
]  # fmt: skip


def _checked(rec: FundingRate) -> tuple[str, int, float, float | None]:
    if not isinstance(rec, FundingRate):
        raise ValueError(f"expected a FundingRate, got {type(rec).__name__}")
    if not rec.symbol or not math.isfinite(rec.rate) or rec.funding_time_ms < 0:
        raise ValueError(f"not a funding event: {rec!r:.120}")
    return rec.symbol.upper(), int(rec.funding_time_ms), float(rec.rate), rec.mark


class FundingWrites:
    """Writer methods for funding events (``WriterBase`` provides ``_unit`` and ``_exec``)."""

    def _unit(self, fn: Callable[[Any], Any]) -> Any:  # pragma: no cover - WriterBase's
        raise NotImplementedError

    def _exec(self, conn: Any, sql: str, params: Sequence[Any] = ()) -> Any:  # pragma: no cover
        raise NotImplementedError

    def write_funding_rates(self, rates: Sequence[FundingRate]) -> int:
        """Store settled funding events (insert or replace by symbol and time); returns how many."""
        rows = [_checked(r) for r in rates]  # all checked before anything is written
        if not rows:
            return 0

        def work(conn: Any) -> int:
            for row in rows:
                self._exec(
                    conn,
                    "INSERT INTO funding_rates (symbol, funding_time_ms, rate, mark) "
                    "VALUES (?,?,?,?) ON CONFLICT (symbol, funding_time_ms) DO UPDATE SET "
                    "rate = excluded.rate, mark = excluded.mark",
                    row,
                )
            return len(rows)

        return self._unit(work)

    def write_funding_now(self, marks: Sequence[MarkPrice], checked_ms: int) -> int:
        """Store each symbol's current funding read at wall time ``checked_ms``; returns how
        many rows changed (a reading older than the stored one is ignored)."""
        rows = [_checked_mark(m, checked_ms) for m in marks]
        if not rows:
            return 0

        def work(conn: Any) -> int:
            n = 0
            for row in rows:
                cur = self._exec(
                    conn,
                    f"INSERT INTO funding_now ({', '.join(FUNDING_NOW_COLUMNS)}) "
                    "VALUES (?,?,?,?,?,?,?) ON CONFLICT (symbol) DO UPDATE SET "
                    "mark = excluded.mark, index_price = excluded.index_price, "
                    "rate = excluded.rate, next_funding_ms = excluded.next_funding_ms, "
                    "event_ms = excluded.event_ms, checked_ms = excluded.checked_ms "
                    "WHERE excluded.event_ms >= funding_now.event_ms",
                    row,
                )
                n += max(0, getattr(cur, "rowcount", 1))
            return n

        return self._unit(work)


def _checked_mark(m: MarkPrice, checked_ms: int) -> tuple:
    if not isinstance(m, MarkPrice):
        raise ValueError(f"expected a MarkPrice, got {type(m).__name__}")
    if not m.symbol or not math.isfinite(m.mark) or m.event_ms < 0 or int(checked_ms) < 0:
        raise ValueError(f"not a funding reading: {m!r:.120}")
    return (m.symbol.upper(), float(m.mark), m.index, m.rate, m.next_funding_ms,
            int(m.event_ms), int(checked_ms))  # fmt: skip


class FundingReads:
    """Reader methods for funding events (``ReaderBase`` provides ``_q``)."""

    def _q(self, sql: str, params: Sequence[Any] = ()) -> list[tuple]:  # pragma: no cover
        raise NotImplementedError

    def funding_rates(
        self, symbol: str, start_ms: int | None = None, end_ms: int | None = None
    ) -> pd.DataFrame:
        """Settled funding events of ``symbol`` with ``start_ms ≤ time ≤ end_ms``, oldest first."""
        lo = -1 if start_ms is None else int(start_ms)
        hi = 2**63 - 1 if end_ms is None else int(end_ms)
        rows = self._q(
            f"SELECT {', '.join(FUNDING_COLUMNS)} FROM funding_rates WHERE symbol = ? "
            "AND funding_time_ms >= ? AND funding_time_ms <= ? ORDER BY funding_time_ms",
            (symbol.upper(), lo, hi),
        )
        df = pd.DataFrame(rows, columns=FUNDING_COLUMNS)
        return df.astype({"funding_time_ms": "int64", "rate": "float64", "mark": "float64"})

    def funding_now(self, symbols: Sequence[str] | None = None) -> pd.DataFrame:
        """The last stored current funding of ``symbols`` (all when None), by symbol."""
        rows = self._q(f"SELECT {', '.join(FUNDING_NOW_COLUMNS)} FROM funding_now ORDER BY symbol")
        df = pd.DataFrame(rows, columns=FUNDING_NOW_COLUMNS)
        if symbols is not None:
            df = df[df["symbol"].isin([s.upper() for s in symbols])].reset_index(drop=True)
        return df
