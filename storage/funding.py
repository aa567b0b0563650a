"""Settled funding events (``funding_rates``): the SQL both backends share.

One row per symbol and settlement time, written from ``GET /fapi/v1/fundingRate`` pages; a
page fetched again replaces its rows (Binance's answer is the truth). SQL is written with ``?``
placeholders; the PostgreSQL backend turns them into ``%s``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import pandas as pd

from storage.records import FundingRate

FUNDING_COLUMNS = ["symbol", "funding_time_ms", "rate", "mark"]


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
