"""Watched pairs computed once per new bar: the snapshots the monitor and the Watchlist tab share.

A :class:`PairBoard` keeps one :class:`PairSnapshot` per watched pair (``x/y``, timeframe,
window, method). A snapshot is recomputed only when a leg gained a bar (each leg's newest
bar open time, two index lookups), never per rule, per viewer or per refresh; the
work of one recomputation reads a bounded number of bars (window + what is needed), so its
cost does not grow with the stored history. The statistics are
:func:`service.compute.compute_pair`'s, so an alert fires on exactly the z-score the page
shows. No Streamlit here.

The Watchlist's figures are those of the bar before the newest grid bar (the newest may
still be filling). Alerts use a stricter rule, :func:`closed_until_ms`: a bar is final for
them once both legs have traded past it.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable
from dataclasses import dataclass
from types import MappingProxyType

import numpy as np
import pandas as pd

from analytics import compute_pair as analytics_compute_pair
from analytics import half_life
from service.compute import METHODS, PairParams
from service.compute import _kalman_obs_var as kalman_obs_var  # the page's R: one definition
from service.viewcache import FRESH_S, ViewCache
from storage import Reader, UnknownSymbolError, timeframe_s

#: Closed bars of z-score kept for the Watchlist tab's sparkline.
SPARK_BARS = 120
#: A bar this many bars behind the pair's newest bar is closed even if one leg has not traded
#: since (see :func:`closed_until_ms`).
CLOSE_GRACE_BARS = 2
#: Most closed bars one recomputation covers (after a long pause only the newest count).
MAX_NEW_BARS = 500
#: Watched pairs whose snapshots a board keeps at most (each holds ≤ window + 121 bars).
MAX_WATCHED = 512


@dataclass(frozen=True, slots=True)
class PairKey:
    """One watched pair: legs, timeframe, window in bars, hedge-ratio method."""

    x: str
    y: str
    tf: str
    window: int = 60
    method: str = "ols"

    def __post_init__(self) -> None:
        timeframe_s(self.tf)
        if self.method not in METHODS:
            raise ValueError(f"unknown hedge method {self.method!r}")

    @property
    def label(self) -> str:
        return f"{self.x}/{self.y}"

    def describe(self) -> str:
        return f"{self.x}/{self.y} {self.tf} w{self.window} {self.method}"

    def params(self, closed_bars: int) -> PairParams:
        """Compute params covering ``closed_bars`` closed bars plus the filling one."""
        return PairParams(
            x=self.x,
            y=self.y,
            tf=self.tf,
            window=self.window,
            method=self.method,
            display_bars=closed_bars + 1,
        )


def watchlist_keys(df: pd.DataFrame) -> list[PairKey | None]:
    """``Reader.watchlist()`` rows → keys, row for row (None for a method this version lacks)."""
    out: list[PairKey | None] = []
    for row in df.itertuples(index=False):
        try:
            out.append(PairKey(row.x, row.y, row.tf, int(row.window_bars), row.method))
        except ValueError:
            out.append(None)
    return out


def keys_from_watchlist(df: pd.DataFrame) -> list[PairKey]:
    """``Reader.watchlist()`` rows → keys (rows with a method this version lacks are skipped)."""
    return [k for k in watchlist_keys(df) if k is not None]


@dataclass(frozen=True, slots=True)
class PairSnapshot:
    """A watched pair at its newest closed bar.

    ``ends_ms`` is each leg's newest bar when it was computed: the cache key (a bar can only
    become final for alerts when one of them moves, see :func:`closed_until_ms`).
    ``table`` holds the bars computed, oldest first, the filling bar last (empty without
    data): ``time_ms``, ``x``, ``y``, ``alpha``, ``beta``, ``spread``, ``zscore``, ``corr``,
    ``x_volume``, ``y_volume`` — the columns ``service.compute.metric_series`` reads, so an
    alert's metric has one definition. ``figures``: ``z``, ``beta``, ``corr``,
    ``half_life_bars`` and ``last_closed_ms`` of the newest closed bar, and ``bars`` (closed
    bars read, at most window + what was needed). ``error`` says why there is nothing to
    show (no data yet, a symbol unknown to storage, statistics undefined on this data).
    """

    key: PairKey
    ends_ms: tuple[int, int] | None
    closed_bars: int
    table: pd.DataFrame
    figures: MappingProxyType
    error: str | None = None

    @property
    def n_bars(self) -> int:
        return len(self.table)

    def closed_times_ms(self) -> np.ndarray:
        if self.n_bars < 2:
            return np.empty(0, dtype=np.int64)
        return self.table["time_ms"].to_numpy(dtype=np.int64)[:-1]

    def z_tail(self, n: int = SPARK_BARS) -> np.ndarray:
        """The z-score of the newest ``n`` closed bars (NaN while warming up)."""
        if self.n_bars < 2:
            return np.empty(0)
        return self.table["zscore"].to_numpy(dtype=np.float64)[:-1][-n:]


_NAN_FIGURES = MappingProxyType(
    {
        "z": math.nan,
        "beta": math.nan,
        "corr": math.nan,
        "half_life_bars": math.nan,
        "last_closed_ms": None,
        "bars": 0,
    }
)
_EMPTY = pd.DataFrame(columns=["time_ms", "x", "y", "zscore"])


def _empty(key: PairKey, ends: tuple[int, int] | None, why: str) -> PairSnapshot:
    return PairSnapshot(key, ends, 0, _EMPTY, _NAN_FIGURES, why)


def leg_ends_ms(reader: Reader, key: PairKey) -> tuple[int, int] | None:
    """Each leg's newest bar open time (two index lookups), or None if a leg has no bars."""
    rx = reader.bar_range(key.x, key.tf)
    ry = reader.bar_range(key.y, key.tf)
    if rx is None or ry is None:
        return None
    return rx[1], ry[1]


def closed_until_ms(ends_ms: tuple[int, int], tf_ms: int) -> int:
    """Open time of the newest bar that is closed for alerts, given each leg's newest bar.

    Each leg's trades arrive in time order, so a bar is final once *both* legs have a later
    bar; a leg that stopped trading would hold every alert back, so a bar
    :data:`CLOSE_GRACE_BARS` behind the newest grid bar counts as closed too (a trade later
    than that for it is a repair, not a live print).
    """
    both = min(ends_ms) - tf_ms
    grace = max(ends_ms) - (CLOSE_GRACE_BARS + 1) * tf_ms
    return max(both, grace)


def compute_snapshot(reader: Reader, key: PairKey, closed_bars: int = SPARK_BARS) -> PairSnapshot:
    """One pair from scratch: read window + ``closed_bars`` + 1 bars, compute, summarise.

    The statistics are ``analytics.compute_pair``'s with the page's settings (the Kalman
    observation variance of ``service.compute``); only numpy arrays are built here, not the
    page's display table, so one pair costs a few milliseconds. Raises
    ``UnknownSymbolError`` when a leg has never been stored.
    """
    closed_bars = max(1, min(int(closed_bars), MAX_NEW_BARS))
    ends = leg_ends_ms(reader, key)
    read = key.window + closed_bars + 1
    if key.method == "kalman":  # a filter's value depends on where it starts: read as the page
        read = max(read, PairParams(window=key.window).read_bars)
    frame = reader.pair_frame(key.x, key.y, key.tf, limit=read)
    if len(frame) < 2:
        return _empty(key, ends, "no closed bar yet")
    x = frame["x"].to_numpy(dtype=np.float64)
    y = frame["y"].to_numpy(dtype=np.float64)
    cols = {
        "time_ms": frame["open_time_ms"].to_numpy(dtype=np.int64),
        "x": x,
        "y": y,
        "x_volume": frame["x_volume"].to_numpy(dtype=np.float64),
        "y_volume": frame["y_volume"].to_numpy(dtype=np.float64),
    }
    nan = np.full(len(x), np.nan)
    error = None
    try:
        res = analytics_compute_pair(
            x,
            y,
            key.window,
            method=key.method,
            kalman_obs_var=kalman_obs_var(x),
            fit_last=closed_bars + 1,
        )
        for c in ("alpha", "beta", "spread", "zscore", "corr"):
            cols[c] = res.frame[c].to_numpy(dtype=np.float64)
    except ValueError as exc:  # e.g. a leg that never moved: prices only
        error = str(exc)
        cols |= {c: nan for c in ("alpha", "beta", "spread", "zscore", "corr")}
    figures = {
        "z": float(cols["zscore"][-2]),
        "beta": float(cols["beta"][-2]),
        "corr": float(cols["corr"][-2]),
        "half_life_bars": _half_life_closed(x[:-1], y[:-1], float(cols["beta"][-2]), key.window),
        "last_closed_ms": int(cols["time_ms"][-2]),
        "bars": len(x) - 1,
    }
    return PairSnapshot(
        key, ends, closed_bars, pd.DataFrame(cols), MappingProxyType(figures), error
    )


def _half_life_closed(x: np.ndarray, y: np.ndarray, beta: float, window: int) -> float:
    """Half-life over the window ending at the newest closed bar (NaN if undefined)."""
    if len(x) < window or not math.isfinite(beta):
        return math.nan
    try:
        h = half_life(x[-window:] - beta * y[-window:])
    except ValueError:
        return math.nan
    return math.inf if h.bars is None else float(h.bars)


class PairBoard:
    """Snapshots of watched pairs, computed once per new bar for every reader. Thread-safe.

    A client of the process's one caching mechanism, :class:`service.viewcache.ViewCache`:
    a pair's *version* is each leg's newest bar open time (two index lookups), its value the
    :class:`PairSnapshot` of the newest ``SPARK_BARS`` closed bars. So whoever asks first after
    a bar closed (the alert monitor, or any session's Watchlist tab) computes it, exactly once
    (single flight: the others wait for that result), and every other request is served that
    snapshot. Sessions may be served a snapshot checked within ``fresh_s`` without a version
    read; the monitor asks with ``fresh_s=0`` so that it sees every bar at once. A monitor
    catching up on more than ``SPARK_BARS`` closed bars (after a pause) computes them itself,
    outside the cache (counted in ``computed`` too).

    One board per database (``PageViews.board``): the caller's reader is used for the version
    read and the computation.
    """

    def __init__(
        self,
        *,
        fresh_s: float = FRESH_S,
        max_entries: int = MAX_WATCHED,
        clock: Callable[[], float] | None = None,
    ) -> None:
        kwargs: dict = {"fresh_s": fresh_s, "max_entries": max_entries}
        if clock is not None:
            kwargs["clock"] = clock
        self.cache = ViewCache(**kwargs)
        self._lock = threading.Lock()
        self._wide = 0

    @property
    def computed(self) -> int:
        """Snapshots computed so far (tests and the benchmark read it)."""
        return self.cache.stats.computations + self._wide

    def get(
        self,
        reader: Reader,
        key: PairKey,
        closed_bars: int = SPARK_BARS,
        *,
        fresh_s: float | None = None,
    ) -> PairSnapshot:
        """The pair's snapshot covering at least ``closed_bars`` closed bars, fresh for its
        newest bar; computed only if the pair gained a bar since (or by whoever asks first)."""
        try:
            if closed_bars > SPARK_BARS:  # a monitor catching up after a pause: rare
                with self._lock:
                    self._wide += 1
                return compute_snapshot(reader, key, closed_bars)
            return self.cache.get(
                key,
                lambda: leg_ends_ms(reader, key),
                lambda: compute_snapshot(reader, key, SPARK_BARS),
                fresh_s=fresh_s,
            ).value
        except UnknownSymbolError as exc:  # a leg never stored: nothing to cache yet
            return _empty(key, None, str(exc))

    def forget(self, keep: set[PairKey]) -> None:
        """Drop snapshots of pairs no longer watched."""
        self.cache.retain(lambda k: k in keep)

    def clear(self) -> None:
        self.cache.clear()
