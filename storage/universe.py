"""Many symbols' bars on one grid: what the universe scan reads, and which symbols it must skip.

Grid convention (the pair frame's): bars are labelled by their open time; a bar in which a
symbol did not trade carries its previous close and has quote volume 0. A symbol enters the
scan only if it covers the whole lookback: its history must start at or before the first grid
bar (a close from before the lookback may open it), must not stop long before the end, and it
must have traded in enough of the bars. Every symbol left out is named with the reason.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import pandas as pd

from storage.records import timeframe_s
from storage.timefmt import iso_from_ms

#: A symbol must have traded in at least this share of the lookback's bars.
DEFAULT_MIN_TRADED = 0.5
#: A symbol whose last bar is more than this share of the lookback before its end is stale
#: (delisted, halted): carrying its last close forward would fake a flat price.
STALE_TAIL = 0.1


@dataclass(frozen=True, slots=True)
class UniverseBars:
    """Close prices and quote volumes of many symbols on one regular bar grid.

    Attributes
    ----------
    tf : str
        Timeframe of the bars.
    grid_ms : numpy.ndarray
        Bar open times, UTC ms, regular, oldest first.
    symbols : tuple[str, ...]
        Symbols kept, in the order of the matrices' columns.
    close : numpy.ndarray
        ``(len(grid_ms), len(symbols))`` closes, carried forward over bars without trades.
    quote_volume : numpy.ndarray
        Same shape; 0 where the symbol did not trade.
    skipped : tuple[tuple[str, str], ...]
        ``(symbol, reason)`` for every requested symbol left out.
    """

    tf: str
    grid_ms: np.ndarray
    symbols: tuple[str, ...]
    close: np.ndarray
    quote_volume: np.ndarray
    skipped: tuple[tuple[str, str], ...]


class UniverseReader(Protocol):
    """What :func:`read_universe` needs of a storage ``Reader`` (both backends have it)."""

    def symbols(self) -> list[str]: ...
    def bar_range(self, symbol: str, tf: str) -> tuple[int, int] | None: ...
    def bar_closes(
        self, symbol: str, tf: str, start_ms: int | None = None, end_ms: int | None = None
    ) -> np.ndarray: ...
    def bars(
        self,
        symbol: str,
        tf: str,
        start_ms: int | None = None,
        end_ms: int | None = None,
        limit: int | None = None,
    ) -> pd.DataFrame: ...


def _span(
    ranges: dict[str, tuple[int, int]],
    tf_ms: int,
    start_ms: int | None,
    end_ms: int | None,
    lookback_bars: int | None,
) -> tuple[int, int]:
    """First and last grid bar: the requested range clipped to the stored bars."""
    last = max(r[1] for r in ranges.values())
    if end_ms is not None:
        last = min(last, int(end_ms) - int(end_ms) % tf_ms)
    first = min(r[0] for r in ranges.values())
    if start_ms is not None:
        first = max(first, -(-int(start_ms) // tf_ms) * tf_ms)
    if lookback_bars is not None:
        first = max(first, last - (int(lookback_bars) - 1) * tf_ms)
    return first, last


def _leg(
    rows: np.ndarray, grid: np.ndarray, tf_ms: int, before: Callable[[], float | None]
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(close carried forward, quote volume, traded) of one symbol on the grid."""
    pos = ((rows[:, 0].astype(np.int64) - grid[0]) // tf_ms).astype(np.int64)
    close = np.full(grid.size, np.nan)
    qv = np.zeros(grid.size)
    traded = np.zeros(grid.size, bool)
    close[pos], qv[pos], traded[pos] = rows[:, 1], rows[:, 2], True
    if not traded[0]:
        prev = before()
        if prev is not None:
            close[0] = prev
    idx = np.where(np.isnan(close), 0, np.arange(grid.size))
    np.maximum.accumulate(idx, out=idx)
    return close[idx], qv, traded


def _close_before(reader: UniverseReader, symbol: str, tf: str, first_ms: int) -> float | None:
    """Close of the symbol's last bar before the grid (it opens the grid), or None."""
    prev = reader.bars(symbol, tf, end_ms=first_ms - 1, limit=1)
    return None if prev.empty else float(prev["close"].iloc[-1])


def _reason(traded: np.ndarray, close0: float, grid: np.ndarray, min_traded: float) -> str | None:
    n = grid.size
    hit = np.flatnonzero(traded)
    if hit.size == 0:
        return "no bars in the lookback"
    if np.isnan(close0):
        return (
            f"history starts at {iso_from_ms(int(grid[hit[0]]))}, inside the lookback "
            f"(from {iso_from_ms(int(grid[0]))}): it covers {n - hit[0]} of {n} bars"
        )
    if n - 1 - hit[-1] > STALE_TAIL * n:
        return f"no bar since {iso_from_ms(int(grid[hit[-1]]))} (stale or delisted)"
    share = hit.size / n
    if share < min_traded:
        return f"traded in only {share:.0%} of the lookback's bars (minimum {min_traded:.0%})"
    return None


def read_universe(
    reader: UniverseReader,
    tf: str,
    symbols: Sequence[str] | None = None,
    *,
    start_ms: int | None = None,
    end_ms: int | None = None,
    lookback_bars: int | None = None,
    min_traded: float = DEFAULT_MIN_TRADED,
    progress: Callable[[int, int], None] | None = None,
) -> UniverseBars:
    """Read the closes of ``symbols`` (default: every stored symbol) onto one grid.

    Parameters
    ----------
    reader : Reader
        A storage reader (SQLite or PostgreSQL).
    tf : str
        ``"1m"`` or ``"5m"`` (``"1s"`` works too).
    symbols : sequence of str or None
        Symbols to read; None reads every stored symbol. Unknown symbols raise.
    start_ms, end_ms : int or None
        First / last bar open time of the lookback (inclusive); None: the stored extent.
    lookback_bars : int or None
        At most this many bars, ending at the last grid bar.
    min_traded : float
        Share of the grid's bars a symbol must have traded in.
    progress : callable or None
        ``progress(done, total)`` after each symbol read.

    Returns
    -------
    UniverseBars
        Possibly with fewer than two symbols: the caller says why from ``skipped``.

    Raises
    ------
    ValueError
        ``lookback_bars < 2``, ``start_ms > end_ms``, or no stored bar in the range.
    storage.UnknownSymbolError
        A requested symbol is not in the database.
    """
    tf_ms = timeframe_s(tf) * 1000
    if lookback_bars is not None and (isinstance(lookback_bars, bool) or int(lookback_bars) < 2):
        raise ValueError(f"lookback must be at least 2 bars, got {lookback_bars!r}")
    if start_ms is not None and end_ms is not None and start_ms > end_ms:
        raise ValueError(f"start ({iso_from_ms(start_ms)}) is after end ({iso_from_ms(end_ms)})")
    names = list(dict.fromkeys(s.upper() for s in (symbols or reader.symbols())))
    ranges = {s: reader.bar_range(s, tf) for s in names}
    skipped = [(s, f"no {tf} bars stored") for s, r in ranges.items() if r is None]
    stored = {s: r for s, r in ranges.items() if r is not None}
    if not stored:
        raise ValueError(f"no {tf} bars stored for {', '.join(names) or 'any symbol'}")
    first, last = _span(stored, tf_ms, start_ms, end_ms, lookback_bars)
    if last < first:
        raise ValueError(
            f"no {tf} bars in the lookback {iso_from_ms(first)} .. {iso_from_ms(last)}"
        )
    grid = np.arange(first, last + tf_ms, tf_ms, dtype=np.int64)
    kept, closes, volumes = [], [], []
    for k, s in enumerate(stored):
        rows = reader.bar_closes(s, tf, first, last)
        c, qv, traded = _leg(rows, grid, tf_ms, lambda s=s: _close_before(reader, s, tf, first))
        why = _reason(traded, c[0], grid, min_traded)
        if why is None:
            kept.append(s)
            closes.append(c)
            volumes.append(qv)
        else:
            skipped.append((s, why))
        if progress is not None:
            progress(k + 1, len(stored))
    shape = (grid.size, len(kept))
    return UniverseBars(
        tf=tf,
        grid_ms=grid,
        symbols=tuple(kept),
        close=np.column_stack(closes) if kept else np.empty(shape),
        quote_volume=np.column_stack(volumes) if kept else np.empty(shape),
        skipped=tuple(skipped),
    )
