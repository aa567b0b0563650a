"""Input checks shared by every statistic: one place that says why an input is refused."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

#: A standard deviation at or below this fraction of the series' RMS level is "zero":
#: only rounding noise is left (e.g. an exact linear relation), so ratios are undefined.
ZERO_SD_RTOL = 1e-10


def as_series(name: str, values: object) -> np.ndarray:
    """Return ``values`` as a new 1-D float64 array, or raise ``ValueError`` naming ``name``.

    Accepts numpy arrays, lists and pandas Series (nullable dtypes: ``NA`` becomes ``NaN``,
    which :func:`check_finite` then refuses).
    """
    if isinstance(values, pd.Series | pd.Index):
        try:
            arr = values.to_numpy(dtype="float64", na_value=np.nan)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"{name} is not numeric: {exc}") from None
    else:
        try:
            arr = np.array(values, dtype=np.float64)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"{name} is not numeric: {exc}") from None
    if arr.ndim != 1:
        raise ValueError(f"{name} must be one-dimensional, got shape {arr.shape}")
    return arr


def check_finite(name: str, arr: np.ndarray) -> None:
    """Raise ``ValueError`` if ``arr`` holds NaN or ±inf, saying how many and where."""
    bad = ~np.isfinite(arr)
    if bad.any():
        first = int(np.flatnonzero(bad)[0])
        raise ValueError(
            f"{name} has {int(bad.sum())} non-finite value(s) (NaN or inf), first at index "
            f"{first}: forward-fill or drop them before computing statistics"
        )


def check_positive(name: str, arr: np.ndarray) -> None:
    """Raise ``ValueError`` unless every value is > 0 (log returns need positive prices)."""
    bad = arr <= 0
    if bad.any():
        first = int(np.flatnonzero(bad)[0])
        raise ValueError(
            f"{name} must be positive prices for log returns, got {arr[first]!r} at index {first}"
        )


def check_window(window: object, *, minimum: int = 2, name: str = "window") -> int:
    """Return ``window`` as an int ≥ ``minimum`` or raise ``ValueError``."""
    if isinstance(window, bool) or not isinstance(window, int | np.integer):
        raise ValueError(f"{name} must be an integer number of bars, got {window!r}")
    if window < minimum:
        raise ValueError(f"{name} must be at least {minimum} bars, got {window}")
    return int(window)


def check_not_constant(name: str, arr: np.ndarray) -> None:
    """Raise ``ValueError`` if ``arr`` (of length ≥ 2) never changes."""
    if arr.size >= 2 and arr.max() == arr.min():
        raise ValueError(
            f"{name} is constant ({arr[0]!r} on all {arr.size} bars): "
            "no hedge ratio, correlation or spread can be defined from it"
        )


def pair_arrays(
    x: object, y: object, *, positive: bool = False, min_len: int = 1
) -> tuple[np.ndarray, np.ndarray]:
    """Validate two legs: 1-D, equal length, at least ``min_len`` bars, finite (and > 0).

    Returns float64 copies, so callers may not alias the inputs.
    """
    xa = as_series("x", x)
    ya = as_series("y", y)
    if xa.size != ya.size:
        raise ValueError(f"x and y must have equal lengths, got {xa.size} and {ya.size}")
    if xa.size < min_len:
        raise ValueError(f"need at least {min_len} bars, got {xa.size}")
    check_finite("x", xa)
    check_finite("y", ya)
    if positive:
        check_positive("x", xa)
        check_positive("y", ya)
    return xa, ya


def window_pair(x: object, y: object, window: object) -> tuple[int, np.ndarray, np.ndarray]:
    """A rolling pair fit's inputs checked: the window, both legs (:func:`pair_arrays`) and,
    once the series fills a window, neither leg constant. Returns ``(window, x, y)``."""
    window = check_window(window)
    xa, ya = pair_arrays(x, y)
    if xa.size >= window:
        check_not_constant("x", xa)
        check_not_constant("y", ya)
    return window, xa, ya


def readonly(*arrays: np.ndarray) -> None:
    """Freeze numpy arrays in place so results (which may be cached and shared) stay immutable."""
    for arr in arrays:
        arr.flags.writeable = False


def check_choice(name: str, value: str, choices: Sequence[str]) -> str:
    """Raise ``ValueError`` unless ``value`` is one of ``choices``."""
    if value not in choices:
        raise ValueError(f"{name} must be one of {', '.join(choices)}; got {value!r}")
    return value
