"""Vectorised helpers of the universe scan: MacKinnon p-values and Benjamini–Hochberg q-values.

Both work on whole arrays (hundreds of thousands of tests at once) and give exactly what the
scalar reference gives: :func:`mackinnon_p` reproduces
``statsmodels.tsa.adfvalues.mackinnonp`` element by element (same tables, same polynomial,
same cut-offs); :func:`bh_qvalues` reproduces
``statsmodels.stats.multitest.multipletests(p, method="fdr_bh")[1]``.
"""

from __future__ import annotations

import numpy as np
from scipy.stats import norm

# statsmodels keeps MacKinnon's (1994) response-surface tables in private module attributes;
# reading them (instead of copying ~200 numbers) keeps one source for the coefficients, and the
# oracle test against ``mackinnonp`` catches any change of their layout.
from statsmodels.tsa.adfvalues import (
    _tau_largeps,
    _tau_maxs,
    _tau_mins,
    _tau_smallps,
    _tau_stars,
)

from analytics._validate import check_choice


def mackinnon_p(stat: object, *, regression: str = "c", n_vars: int = 1) -> np.ndarray:
    """MacKinnon's approximate asymptotic p-values of unit-root statistics, element-wise.

    Parameters
    ----------
    stat : array_like
        ADF / Engle–Granger t-statistics; ``-inf`` gives 0, NaN gives NaN.
    regression : {"c", "n", "ct", "ctt"}
        Deterministic terms of the test regression (MacKinnon's notation).
    n_vars : int
        Number of I(1) series: 1 for an ADF test, 2 for Engle–Granger on a pair.

    Returns
    -------
    numpy.ndarray
        p-values of the null "unit root", same shape as ``stat``.

    Raises
    ------
    ValueError
        Unknown ``regression`` or ``n_vars`` outside the tables (1..6).
    """
    check_choice("regression", regression, ("c", "n", "ct", "ctt"))
    if isinstance(n_vars, bool) or not isinstance(n_vars, int) or not 1 <= n_vars <= 6:
        raise ValueError(f"n_vars must be an integer in 1..6, got {n_vars!r}")
    s = np.asarray(stat, dtype=np.float64)
    k = n_vars - 1
    small = np.asarray(_tau_smallps[regression][k], dtype=np.float64)[::-1]
    large = np.asarray(_tau_largeps[regression][k], dtype=np.float64)[::-1]
    with np.errstate(invalid="ignore", over="ignore"):  # ±inf: the cut-offs below decide
        z = np.where(s <= _tau_stars[regression][k], np.polyval(small, s), np.polyval(large, s))
    p = norm.cdf(z)
    p = np.where(s > _tau_maxs[regression][k], 1.0, p)
    p = np.where(s < _tau_mins[regression][k], 0.0, p)
    return np.where(np.isnan(s), np.nan, p)


def bh_qvalues(pvalues: object) -> np.ndarray:
    """Benjamini–Hochberg adjusted p-values (q-values) over every finite p-value given.

    Parameters
    ----------
    pvalues : array_like
        One p-value per test, in [0, 1]; NaN marks a test that was not run (it gets NaN and
        does not count in the number of tests).

    Returns
    -------
    numpy.ndarray
        ``q_(i) = min_{k ≥ i} p_(k) · m / k`` (sorted order, capped at 1), same shape.

    Raises
    ------
    ValueError
        A p-value outside [0, 1] or ±inf.

    Notes
    -----
    Declaring every test with ``q ≤ Q`` a discovery keeps the expected share of false
    discoveries among them at or below ``Q`` when the tests are independent or positively
    dependent (PRDS), which pairs sharing a leg only approximately are: read ``Q`` as a guide,
    not a guarantee.
    """
    p = np.asarray(pvalues, dtype=np.float64)
    shape = p.shape
    p = p.ravel()
    ok = ~np.isnan(p)
    if np.any(~np.isfinite(p[ok])) or np.any((p[ok] < 0) | (p[ok] > 1)):
        raise ValueError("p-values must lie in [0, 1] (NaN marks a test not run)")
    q = np.full(p.shape, np.nan)
    pv = p[ok]
    m = pv.size
    if m == 0:
        return q.reshape(shape)
    order = np.argsort(pv, kind="stable")
    scaled = pv[order] * m / np.arange(1, m + 1)
    adj = np.minimum.accumulate(scaled[::-1])[::-1]
    out = np.empty(m)
    out[order] = np.minimum(adj, 1.0)
    q[ok] = out
    return q.reshape(shape)
