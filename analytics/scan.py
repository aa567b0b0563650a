"""Universe scan: Engle–Granger on every ordered pair of N symbols, from a few moment matrices.

For every ordered pair (x on y) on one common bar grid this computes what
``statsmodels.tsa.stattools.coint(x, y, trend="c", maxlag=K, autolag=None)`` computes (the OLS
hedge, the no-constant ADF t-statistic of its residual with K lagged differences, MacKinnon's
two-variable p-value), plus half-life, log-return correlation, last z-score, Benjamini–Hochberg
q-values and an out-of-sample ADF of the spread on a validation period.

How, without a loop over pairs: with every symbol's levels centred over the lookback, a
pair's residual is ``e = x̃ − β ỹ``, so every column of its ADF regression (``e_{t−1}``,
``Δe_{t−k}``, ``Δe_t``) is ``A_x − β A_y`` for per-symbol feature columns ``A``. The pair's
normal equations are therefore ``G = M_xx − β (M_xy + M_yx) + β² M_yy`` where ``M`` is the
Gram matrix of all symbols' features, computed once for the universe (one BLAS product over
row chunks). The (K+1)×(K+1) systems are then solved in batches of pairs.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd

from analytics._validate import as_series, check_finite, check_positive
from analytics.multi import correlation_matrix
from analytics.scan_stats import bh_qvalues, mackinnon_p
from analytics.stationarity import _COLLINEAR_R2, MIN_BARS, adf_test, stationarity

#: Lagged differences in every ADF regression of the scan (the re-check uses AIC instead).
DEFAULT_LAGS = 1
#: Share of the lookback, at its end, held out to test the formation-period spread.
DEFAULT_VALIDATION_FRACTION = 0.3
#: Default ranking cut-offs: q-value (in sample) and out-of-sample p-value.
DEFAULT_Q = 0.05
DEFAULT_OOS_P = 0.05
#: Budget for the Gram matrices and the row chunks that build them, in bytes.
MOMENT_BUDGET_BYTES = 1 << 30
#: Elements of one row chunk of stacked features (32 MB).
_CHUNK_ELEMS = 1 << 22
#: Below 1 − r² = this, a pair is re-done from its residuals: forming ``e'e`` from moments
#: loses about log10(1 / (1 − r²)) digits, and the scan promises 1e-8 relative.
_TIGHT_FIT = 1e-5

SCAN_COLUMNS = [
    "x",
    "y",
    "beta",
    "alpha",
    "r2",
    "eg_stat",
    "eg_pvalue",
    "qvalue",
    "oos_beta",
    "oos_stat",
    "oos_pvalue",
    "half_life_bars",
    "corr",
    "zscore_last",
    "x_quote_volume",
    "y_quote_volume",
    "score",
]

#: ``progress(stage, done, total)``: stage is "moments" or "pairs".
Progress = Callable[[str, int, int], None]


@dataclass(frozen=True, slots=True)
class UniverseScan:
    """Every ordered pair of a universe, ranked.

    Attributes
    ----------
    table : pandas.DataFrame
        One row per ordered pair (x on y), best first, columns :data:`SCAN_COLUMNS`:
        ``beta, alpha, r2`` of the OLS ``x = alpha + beta y + e`` over the lookback;
        ``eg_stat, eg_pvalue`` the Engle–Granger statistic (ADF without constant on e, ``lags``
        lagged differences) and MacKinnon's two-variable p-value; ``qvalue`` its
        Benjamini–Hochberg adjustment over all pairs tested; ``oos_beta`` the hedge fitted on
        the formation period, ``oos_stat, oos_pvalue`` the ADF (constant, ``lags``) of that
        fixed-hedge spread on the validation period (one-variable p-value: the hedge is not
        estimated there); ``half_life_bars`` (NaN if the residual does not revert);
        ``corr`` of log returns; ``zscore_last`` = last residual / its sd (ddof 1);
        ``x_quote_volume, y_quote_volume`` median quote volume per bar (NaN if not given);
        ``score = max(qvalue, oos_pvalue)``, the ranking key.
    symbols : tuple[str, ...]
        Symbols scanned.
    skipped : tuple[tuple[str, str], ...]
        ``(symbol, reason)`` for symbols left out (e.g. a price that never moves).
    nobs, formation_bars, validation_bars : int
        Bars in the lookback, its formation and validation parts.
    lags : int
        K, lagged differences in every ADF regression.
    pairs_tested : int
        Ordered pairs with a p-value (the BH denominator).

    Notes
    -----
    The ranking rewards pairs that are cointegrated in sample *after* correcting for testing
    every pair, *and* whose formation hedge still gives a stationary spread later: a pair
    ranks high only if both numbers are small. A low score is a shortlist, not a proof.
    """

    table: pd.DataFrame
    symbols: tuple[str, ...]
    skipped: tuple[tuple[str, str], ...]
    nobs: int
    formation_bars: int
    validation_bars: int
    lags: int
    pairs_tested: int


def _validated(
    prices: pd.DataFrame, quote_volume: pd.DataFrame | None
) -> tuple[np.ndarray, np.ndarray | None, list[str]]:
    if not isinstance(prices, pd.DataFrame):
        raise ValueError("prices must be a DataFrame: one column of close prices per symbol")
    syms = [str(c) for c in prices.columns]
    if len(set(syms)) != len(syms):
        raise ValueError("prices has duplicate symbol columns")
    cols = []
    for s in syms:
        a = as_series(s, prices[s])
        check_finite(s, a)
        check_positive(s, a)
        cols.append(a)
    p = np.column_stack(cols) if cols else np.empty((len(prices), 0))
    qv = None
    if quote_volume is not None:
        if list(map(str, quote_volume.columns)) != syms or len(quote_volume) != len(prices):
            raise ValueError("quote_volume must have the same symbols and bars as prices")
        qv = quote_volume.to_numpy(dtype=np.float64)
        if not np.all(np.isfinite(qv)) or np.any(qv < 0):
            raise ValueError("quote_volume must be finite and non-negative")
    return p, qv, syms


def _check_lags(lags: object, n: int, n_val: int) -> int:
    if isinstance(lags, bool) or not isinstance(lags, int | np.integer) or lags < 0:
        raise ValueError(f"lags must be a non-negative integer, got {lags!r}")
    # adfuller's limits: maxlag ≤ nobs // 2 − ntrend − 1 (no constant in sample, constant OOS).
    top = min(n // 2 - 1, n_val // 2 - 2)
    if lags > top:
        raise ValueError(
            f"lags={lags} is too large for {n} bars ({n_val} in the validation period): "
            f"at most {max(top, 0)}"
        )
    return int(lags)


def _split(n: int, validation_fraction: float) -> int:
    if not 0.0 < float(validation_fraction) < 1.0:
        raise ValueError(f"validation_fraction must be in (0, 1), got {validation_fraction!r}")
    n_val = round(n * float(validation_fraction))
    if n_val < MIN_BARS or n - n_val < MIN_BARS:
        need = math.ceil(MIN_BARS / min(validation_fraction, 1.0 - validation_fraction))
        raise ValueError(
            f"{n} bars leave too few for a {validation_fraction:.0%} validation split: each "
            f"part needs at least {MIN_BARS} bars (a lookback of about {need} bars or more)"
        )
    return n_val


def _moving(p: np.ndarray, parts: list[tuple[int, int]]) -> np.ndarray:
    """True per column if the price moves within every ``[lo, hi)`` part."""
    ok = np.ones(p.shape[1], bool)
    for lo, hi in parts:
        seg = p[lo:hi]
        ok &= seg.max(axis=0) > seg.min(axis=0)
    return ok


def _gram(
    sources: list[tuple[np.ndarray, int]], m: int, center: bool, progress: Progress | None
) -> np.ndarray:
    """Gram matrix of the stacked feature blocks ``src[off : off + m]`` (N columns each).

    Built over row chunks so the stacked features never exist whole; with ``center`` each
    column is first centred on its mean over the m rows.
    """
    n_sym = sources[0][0].shape[1]
    width = n_sym * len(sources)
    means = [src[off : off + m].mean(axis=0) if center else 0.0 for src, off in sources]
    rows = max(64, _CHUNK_ELEMS // width)
    g = np.zeros((width, width))
    buf = np.empty((min(rows, m), width))
    for lo in range(0, m, rows):
        hi = min(m, lo + rows)
        f = buf[: hi - lo]
        for b, (src, off) in enumerate(sources):
            np.subtract(src[off + lo : off + hi], means[b], out=f[:, b * n_sym : (b + 1) * n_sym])
        g += f.T @ f
        if progress is not None:
            progress("moments", hi, m)
    return g


def _adf_sources(x: np.ndarray, dx: np.ndarray, start: int, lags: int) -> list:
    """Feature blocks of the ADF regressions whose first target is ``Δe_t``, ``t = start+lags+1``.

    Order: ``e_{t−1}``, ``Δe_{t−1} .. Δe_{t−K}``, then the target ``Δe_t``. ``dx[t−1]`` is
    ``x_t − x_{t−1}``.
    """
    src = [(x, start + lags)]
    src += [(dx, start + lags - k) for k in range(1, lags + 1)]
    return [*src, (dx, start + lags)]


def _adf_batch(
    g: np.ndarray, n_sym: int, lags: int, i: np.ndarray, j: np.ndarray, beta: np.ndarray, dof: int
) -> np.ndarray:
    """ADF t-statistics of ``e = A_i − β A_j`` for pairs (i, j) from the Gram matrix ``g``."""
    k = lags + 1
    types = np.arange(lags + 2) * n_sym
    ii = types + i[:, None]
    jj = types + j[:, None]
    b = g[ii[:, :, None], jj[:, None, :]]
    bt = beta[:, None, None]
    gp = g[ii[:, :, None], ii[:, None, :]] - bt * (b + b.transpose(0, 2, 1))
    gp += bt * bt * g[jj[:, :, None], jj[:, None, :]]
    xtx = gp[:, :k, :k]
    xty = gp[:, :k, k]
    bad = ~np.isfinite(beta) | ~(np.abs(np.linalg.det(xtx)) > 0)
    xtx[bad] = np.eye(k)
    rhs = np.zeros((len(i), k, 2))
    rhs[:, :, 0] = xty
    rhs[:, 0, 1] = 1.0
    sol = np.linalg.solve(xtx, rhs)
    coef = sol[:, :, 0]
    rss = gp[:, k, k] - np.einsum("pk,pk->p", coef, xty)
    with np.errstate(invalid="ignore", divide="ignore"):
        stat = coef[:, 0] / np.sqrt(rss / dof * sol[:, 0, 1])
    stat[bad] = np.nan
    return stat


@dataclass(frozen=True, slots=True)
class _Moments:
    beta: np.ndarray  # N×N, x = row, y = column, in scaled units
    r2: np.ndarray
    sse: np.ndarray
    g_in: np.ndarray
    g_oos: np.ndarray
    beta_f: np.ndarray
    hl_num: np.ndarray
    hl_den: np.ndarray


def _pairwise(cov: np.ndarray) -> np.ndarray:
    """β[i, j] of column i on column j from a (centred) cross-product matrix."""
    return cov / np.diag(cov)[None, :]


def _moments(x: np.ndarray, n_val: int, lags: int, progress: Progress | None) -> _Moments:
    n = x.shape[0]
    dx = np.diff(x, axis=0)
    s = x.T @ x
    d = np.diag(s)
    beta = _pairwise(s)
    r2 = s * s / np.outer(d, d)
    sse = d[:, None] - s * beta
    g_in = _gram(_adf_sources(x, dx, 0, lags), n - 1 - lags, False, progress)
    v0 = n - n_val
    g_oos = _gram(_adf_sources(x, dx, v0, lags), n_val - 1 - lags, True, progress)
    xf = x[:v0] - x[:v0].mean(axis=0)
    beta_f = _pairwise(xf.T @ xf)
    h = _gram([(x, 0), (dx, 0)], n - 1, True, None)
    n_sym = x.shape[1]
    hll, hld = h[:n_sym, :n_sym], h[:n_sym, n_sym:]
    dl, dd = np.diag(hll), np.diag(hld)
    hl_num = dd[:, None] - beta * (hld + hld.T) + beta * beta * dd[None, :]
    hl_den = dl[:, None] - 2 * beta * hll + beta * beta * dl[None, :]
    return _Moments(beta, r2, sse, g_in, g_oos, beta_f, hl_num, hl_den)


def _exact_pair(p: np.ndarray, i: int, j: int, lags: int) -> float:
    """The in-sample statistic of one pair from its residuals (tight fits; see _TIGHT_FIT)."""
    xi, yj = p[:, i], p[:, j]
    yc = yj - yj.mean()
    b = float(yc @ (xi - xi.mean()) / (yc @ yc))
    e = (xi - xi.mean()) - b * yc
    return adf_test(e, regression="n", maxlag=lags, autolag=None).stat


def _stats(
    p: np.ndarray, mo: _Moments, lags: int, n_val: int, chunk: int, progress: Progress | None
) -> dict[str, np.ndarray]:
    n, n_sym = p.shape
    i, j = np.nonzero(~np.eye(n_sym, dtype=bool))
    eg = np.empty(i.size)
    oos = np.empty(i.size)
    for lo in range(0, i.size, chunk):
        sl = slice(lo, lo + chunk)
        eg[sl] = _adf_batch(
            mo.g_in, n_sym, lags, i[sl], j[sl], mo.beta[i[sl], j[sl]], n - 1 - 2 * lags - 1
        )
        oos[sl] = _adf_batch(
            mo.g_oos, n_sym, lags, i[sl], j[sl], mo.beta_f[i[sl], j[sl]], n_val - 2 * lags - 3
        )
        if progress is not None:
            progress("pairs", min(i.size, lo + chunk), i.size)
    r2 = mo.r2[i, j]
    collinear = r2 >= _COLLINEAR_R2  # statsmodels coint: -inf, "perfectly collinear"
    for t in np.flatnonzero(~collinear & (1.0 - r2 < _TIGHT_FIT)):
        eg[t] = _exact_pair(p, int(i[t]), int(j[t]), lags)
    eg[collinear] = -np.inf
    with np.errstate(invalid="ignore", divide="ignore"):
        lam = mo.hl_num[i, j] / mo.hl_den[i, j]
        half = np.where(lam < 0, -math.log(2.0) / lam, np.nan)
    return {"i": i, "j": j, "eg": eg, "oos": oos, "half": half}


def _movers(
    p: np.ndarray, syms: list[str], n_val: int, lags: int
) -> tuple[np.ndarray, tuple[tuple[str, str], ...]]:
    """Which symbols move in both parts, the skipped ones with the reason; checks the budget."""
    n = p.shape[0]
    moving = _moving(p, [(0, n - n_val), (n - n_val, n)])
    skipped = tuple(
        (s, "price does not move in the formation or the validation period")
        for s, ok in zip(syms, moving, strict=True)
        if not ok
    )
    kept = int(moving.sum())
    if kept < 2:
        raise ValueError(
            f"need at least two symbols whose price moves, got {kept}"
            + (f" (skipped: {', '.join(s for s, _ in skipped)})" if skipped else "")
        )
    width = kept * (lags + 2)
    if 8 * width * width * 2 > MOMENT_BUDGET_BYTES:
        raise ValueError(
            f"lags={lags} with {kept} symbols needs {16 * width * width / 1e9:.1f} GB of "
            f"moment matrices (budget {MOMENT_BUDGET_BYTES / 1e9:.1f} GB): use fewer lags"
        )
    return moving, skipped


def scan_universe(
    prices: pd.DataFrame,
    quote_volume: pd.DataFrame | None = None,
    *,
    lags: int = DEFAULT_LAGS,
    validation_fraction: float = DEFAULT_VALIDATION_FRACTION,
    chunk_pairs: int = 50_000,
    progress: Progress | None = None,
) -> UniverseScan:
    """Engle–Granger scan of every ordered pair of the symbols in ``prices``.

    Parameters
    ----------
    prices : pandas.DataFrame
        Close prices, one column per symbol (named by it), on one common bar grid, finite and
        positive, at least ``2 · MIN_BARS`` bars (both split parts need ``MIN_BARS``).
    quote_volume : pandas.DataFrame or None
        Quote volume per bar, same shape (0 where a symbol did not trade); None leaves the
        volume columns NaN.
    lags : int
        K, lagged differences in every ADF regression (fixed, no lag search).
    validation_fraction : float
        Share of the bars, at the end, used only for the out-of-sample test.
    chunk_pairs : int
        Pairs solved per batch (bounds memory: about 600·(K+2)² bytes per pair).
    progress : callable or None
        ``progress(stage, done, total)`` after each chunk.

    Returns
    -------
    UniverseScan

    Raises
    ------
    ValueError
        Not a DataFrame, fewer than two symbols that move, bad prices or volumes, too few
        bars for the split, ``lags`` negative or too large.

    Notes
    -----
    ``eg_stat`` / ``eg_pvalue`` equal ``coint(x, y, trend="c", maxlag=lags, autolag=None)``
    (including ``-inf`` / 0 for legs collinear within statsmodels' cut-off). The Gram
    matrices cost ``O(n · (N (K+2))²)`` flops and ``8 (N (K+2))²`` bytes; the pairs
    ``O(N² K³)``.
    """
    p_all, qv_all, syms_all = _validated(prices, quote_volume)
    n = p_all.shape[0]
    n_val = _split(n, validation_fraction)
    lags = _check_lags(lags, n, n_val)
    moving, skipped = _movers(p_all, syms_all, n_val, lags)
    syms = [s for s, ok in zip(syms_all, moving, strict=True) if ok]
    p = p_all[:, moving]
    mean, sd = p.mean(axis=0), p.std(axis=0)
    x = (p - mean) / sd  # centred and scaled: the t-statistics do not depend on scale
    mo = _moments(x, n_val, lags, progress)
    st = _stats(p, mo, lags, n_val, int(chunk_pairs), progress)
    i, j = st["i"], st["j"]
    scale = sd[i] / sd[j]
    beta = mo.beta[i, j] * scale
    eg_p = mackinnon_p(st["eg"], regression="c", n_vars=2)
    q = bh_qvalues(eg_p)
    oos_p = mackinnon_p(st["oos"], regression="c", n_vars=1)
    resid_last = x[-1, i] - mo.beta[i, j] * x[-1, j]
    with np.errstate(invalid="ignore", divide="ignore"):
        z_last = resid_last / np.sqrt(np.maximum(mo.sse[i, j], 0.0) / (n - 1))
    corr = correlation_matrix(pd.DataFrame(p, columns=syms)).matrix.to_numpy()
    med = np.median(qv_all[:, moving], axis=0) if qv_all is not None else np.full(len(syms), np.nan)
    score = np.fmax(q, oos_p)
    table = pd.DataFrame(
        {
            "x": pd.Categorical.from_codes(i, syms),
            "y": pd.Categorical.from_codes(j, syms),
            "beta": beta,
            "alpha": mean[i] - beta * mean[j],
            "r2": mo.r2[i, j],
            "eg_stat": st["eg"],
            "eg_pvalue": eg_p,
            "qvalue": q,
            "oos_beta": mo.beta_f[i, j] * scale,
            "oos_stat": st["oos"],
            "oos_pvalue": oos_p,
            "half_life_bars": st["half"],
            "corr": corr[i, j],
            "zscore_last": z_last,
            "x_quote_volume": med[i],
            "y_quote_volume": med[j],
            "score": score,
        },
        columns=SCAN_COLUMNS,
    )
    order = np.lexsort((st["eg"], np.where(np.isnan(score), np.inf, score)))
    return UniverseScan(
        table=table.iloc[order].reset_index(drop=True),
        symbols=tuple(syms),
        skipped=skipped,
        nobs=n,
        formation_bars=n - n_val,
        validation_bars=n_val,
        lags=lags,
        pairs_tested=int(np.isfinite(eg_p).sum()),
    )


#: Top candidates re-tested exactly (AIC lag choice, Hurst) by :func:`recheck`.
DEFAULT_RECHECK = 50
RECHECK_COLUMNS = ["recheck_stat", "recheck_pvalue", "hurst", "recheck_error"]


def recheck(prices: pd.DataFrame, table: pd.DataFrame, top: int = DEFAULT_RECHECK) -> pd.DataFrame:
    """Re-test the first ``top`` rows of a scan table the way a user would by hand.

    Parameters
    ----------
    prices : pandas.DataFrame
        The closes the scan ran on (columns named by symbol).
    table : pandas.DataFrame
        :attr:`UniverseScan.table` (or any frame with ``x`` and ``y`` columns), best first.
    top : int
        Rows to re-test (≥ 0).

    Returns
    -------
    pandas.DataFrame
        The first ``top`` rows with :data:`RECHECK_COLUMNS` added: ``recheck_stat`` and
        ``recheck_pvalue`` of ``coint(x, y, trend="c", autolag="aic")`` (via
        :func:`analytics.stationarity.stationarity`, which reproduces it), ``hurst`` of the
        residual, and ``recheck_error`` (empty, or why a pair could not be re-tested).

    Raises
    ------
    ValueError
        ``top`` negative or not an integer.
    """
    if isinstance(top, bool) or not isinstance(top, int | np.integer) or top < 0:
        raise ValueError(f"top must be a non-negative integer, got {top!r}")
    head = table.head(int(top)).copy()
    out: dict[str, list] = {c: [] for c in RECHECK_COLUMNS}
    for x, y in zip(head["x"], head["y"], strict=True):
        try:
            s = stationarity(prices[str(x)], prices[str(y)], use_cache=False)
        except ValueError as exc:
            vals = [np.nan, np.nan, np.nan, str(exc)]
        else:
            vals = [s.coint_stat, s.coint_pvalue, s.hurst, ""]
        for c, v in zip(RECHECK_COLUMNS, vals, strict=True):
            out[c].append(v)
    for c in RECHECK_COLUMNS:
        head[c] = out[c]
    return head
