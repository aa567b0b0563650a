"""Many symbols at once: the log-return correlation matrix and a cointegration pair scanner."""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import pandas as pd

from analytics._validate import as_series, check_finite, check_positive, check_window
from analytics.hedge import rolling_correlation, rolling_ols
from analytics.stationarity import MIN_BARS, stationarity


def _price_table(prices: pd.DataFrame | Mapping[str, object], min_symbols: int) -> pd.DataFrame:
    """Validate aligned close prices (one column per symbol) into a float DataFrame."""
    if isinstance(prices, pd.DataFrame):
        cols = {str(c): prices[c] for c in prices.columns}
    elif isinstance(prices, Mapping):
        cols = {str(k): v for k, v in prices.items()}
    else:
        raise ValueError("prices must be a DataFrame or a mapping of symbol -> close prices")
    if len(cols) < min_symbols:
        raise ValueError(f"need at least {min_symbols} symbols, got {len(cols)}")
    arrays = {}
    length = None
    for sym, values in cols.items():
        a = as_series(sym, values)
        if length is None:
            length = a.size
        elif a.size != length:
            raise ValueError(
                f"all symbols must share one bar grid: {sym} has {a.size} bars, expected {length}"
            )
        check_finite(sym, a)
        check_positive(sym, a)
        arrays[sym] = a
    return pd.DataFrame(arrays)


def align_closes(
    closes: Mapping[str, pd.Series], step_ms: int, *, last: int | None = None
) -> pd.DataFrame:
    """Several symbols' closes on one regular grid of ``step_ms`` bars (the pair-frame rule).

    ``closes`` maps each symbol to its bars' closes indexed by open time in ms, oldest first
    (bars with trades only). The grid starts at the first bar where every symbol has traded
    and ends at the last bar of any; a symbol without a trade in a grid bar carries its
    previous close forward. ``last`` keeps only the grid's last bars. Returns one column per
    symbol, indexed by the grid's open times in ms.
    """
    if not closes:
        raise ValueError("align_closes needs at least one symbol")
    if step_ms <= 0:
        raise ValueError(f"step_ms must be positive, got {step_ms}")
    if last is not None and last < 1:
        raise ValueError(f"last must be at least 1, got {last}")
    empty = [s for s, c in closes.items() if c.empty]
    if empty:
        raise ValueError(f"no bars for {', '.join(empty)}")
    first = max(int(c.index[0]) for c in closes.values())
    end = max(int(c.index[-1]) for c in closes.values())
    grid = np.arange(first, end + step_ms, step_ms, dtype=np.int64)
    if last is not None:
        grid = grid[-last:]
    return pd.DataFrame(
        {
            s: c.reindex(c.index.union(grid)).ffill().reindex(grid).to_numpy()
            for s, c in closes.items()
        },
        index=pd.Index(grid, name="open_time_ms"),
    )


@dataclass(frozen=True, slots=True)
class CorrelationMatrix:
    """Pearson correlations of log returns between symbols.

    Attributes
    ----------
    symbols : tuple[str, ...]
        Symbols, in input order.
    matrix : pandas.DataFrame
        Symmetric matrix indexed and labelled by symbol, 1 on the diagonal; NaN rows for
        a symbol whose price never moved in the sample.
    nobs : int
        Returns used.

    Notes
    -----
    Returns, not price levels: levels of any two trending coins correlate spuriously.
    """

    symbols: tuple[str, ...]
    matrix: pd.DataFrame
    nobs: int


def correlation_matrix(
    prices: pd.DataFrame | Mapping[str, object], *, last: int | None = None
) -> CorrelationMatrix:
    """Correlation matrix of log returns for N symbols on a common bar grid.

    Parameters
    ----------
    prices : DataFrame or mapping
        One column of close prices per symbol, aligned, positive, finite.
    last : int or None
        Use only the last ``last`` returns (≥ 2); None uses all.

    Returns
    -------
    CorrelationMatrix

    Raises
    ------
    ValueError
        Fewer than 2 symbols or 3 bars, unequal lengths, non-finite or non-positive prices.

    Notes
    -----
    A symbol that never moved is not an error here (one dead symbol should not blank a
    whole dashboard): its row and column are NaN except the diagonal.
    """
    table = _price_table(prices, 2)
    if len(table) < 3:
        raise ValueError(f"need at least 3 bars for a correlation, got {len(table)}")
    rets = np.diff(np.log(table.to_numpy()), axis=0)
    if last is not None:
        last = check_window(last, name="last")
        rets = rets[-last:]
    d = rets - rets.mean(axis=0)
    ss = np.einsum("ij,ij->j", d, d)
    with np.errstate(divide="ignore", invalid="ignore"):
        c = (d.T @ d) / np.sqrt(np.outer(ss, ss))
    c = np.clip(c, -1.0, 1.0)
    np.fill_diagonal(c, 1.0)
    dead = ss == 0
    c[dead, :] = np.nan
    c[:, dead] = np.nan
    c[dead, dead] = 1.0
    syms = tuple(table.columns)
    return CorrelationMatrix(
        symbols=syms, matrix=pd.DataFrame(c, index=list(syms), columns=list(syms)), nobs=len(rets)
    )


@dataclass(frozen=True, slots=True)
class PairScan:
    """Every pair of symbols ranked by Engle–Granger p-value.

    Attributes
    ----------
    table : pandas.DataFrame
        One row per evaluated pair, best (lowest ``coint_pvalue``) first, with columns
        ``x, y, coint_pvalue, adf_pvalue, beta, r2, half_life_bars, hurst, zscore_last,
        corr_last, nobs``.
    skipped : tuple[tuple[str, str, str], ...]
        ``(x, y, reason)`` for pairs that could not be evaluated (e.g. a dead leg).
    window : int
        Rolling window used for ``zscore_last`` and ``corr_last``.

    Notes
    -----
    With many symbols, some pairs look cointegrated by chance (about 5 % of unrelated pairs
    at p < 0.05): treat the ranking as a shortlist to check out of sample.
    """

    table: pd.DataFrame
    skipped: tuple[tuple[str, str, str], ...]
    window: int


def scan_pairs(
    prices: pd.DataFrame | Mapping[str, object],
    window: int,
    *,
    both_orders: bool = False,
) -> PairScan:
    """Rank every pair of symbols by Engle–Granger cointegration p-value.

    Parameters
    ----------
    prices : DataFrame or mapping
        One column of close prices per symbol on a common bar grid (the lookback), at
        least ``MIN_BARS`` bars.
    window : int
        Rolling window for the current z-score and correlation.
    both_orders : bool
        Engle–Granger is not symmetric. False: each unordered pair once, x = the symbol
        that comes first in ``prices``. True: both (a, b) and (b, a).

    Returns
    -------
    PairScan

    Raises
    ------
    ValueError
        Fewer than 2 symbols or ``MIN_BARS`` bars, bad prices, ``window < 2``.

    Notes
    -----
    Per pair: :func:`analytics.stationarity.stationarity` over all bars (p-values, beta,
    half-life, Hurst) and the rolling OLS z-score and return correlation at the last bar.
    """
    window = check_window(window)
    table = _price_table(prices, 2)
    if len(table) < MIN_BARS:
        raise ValueError(f"need at least {MIN_BARS} bars to scan pairs, got {len(table)}")
    syms = list(table.columns)
    pairs = itertools.permutations(syms, 2) if both_orders else itertools.combinations(syms, 2)
    rows = []
    skipped = []
    for a, b in pairs:
        x = table[a].to_numpy()
        y = table[b].to_numpy()
        try:
            st = stationarity(x, y)
            z = rolling_ols(x, y, window).zscore[-1]
            c = rolling_correlation(x, y, window).corr[-1]
        except ValueError as exc:
            skipped.append((a, b, str(exc)))
            continue
        rows.append(
            {
                "x": a,
                "y": b,
                "coint_pvalue": st.coint_pvalue,
                "adf_pvalue": st.adf.pvalue,
                "beta": st.beta,
                "r2": st.r2,
                "half_life_bars": st.half_life.bars if st.half_life.bars is not None else np.nan,
                "hurst": st.hurst,
                "zscore_last": float(z),
                "corr_last": float(c),
                "nobs": st.nobs,
            }
        )
    columns = [
        "x",
        "y",
        "coint_pvalue",
        "adf_pvalue",
        "beta",
        "r2",
        "half_life_bars",
        "hurst",
        "zscore_last",
        "corr_last",
        "nobs",
    ]
    out = pd.DataFrame(rows, columns=columns)
    out = out.sort_values(["coint_pvalue", "x", "y"], kind="stable").reset_index(drop=True)
    return PairScan(table=out, skipped=tuple(skipped), window=window)
