"""The pair analytics the page shows, from a storage pair frame to one frozen result.

No Streamlit here: the alert monitor's thread uses the same functions as the page, so an alert
fires on exactly the z-score the user sees. The statistics themselves are ``analytics``'; this
module only chooses the inputs (which bars) and names the outputs (the per-bar table).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from types import MappingProxyType

import numpy as np
import pandas as pd

from analytics import compute_pair as analytics_compute_pair
from analytics import half_life, rolling_ols
from analytics.warmup import Warmup, warmup_status
from storage.timefmt import iso_seconds

#: Hedge-ratio methods (``analytics.METHODS``): key (in URLs and alert rules) → label.
METHODS: dict[str, str] = {
    "ols": "OLS",
    "kalman": "Kalman",
    "huber": "Huber",
    "theilsen": "Theil–Sen",
}

#: Columns of the per-bar analytics table (the analytics CLI writes the same ones).
TABLE_COLUMNS = ["time", "x", "y", "alpha", "beta", "spread", "zscore", "corr"]

#: Most bars read for one view: the window plus what is displayed, capped.
MAX_READ_BARS = 2_000


@dataclass(frozen=True, slots=True)
class PairParams:
    """What the user asked to see. ``window`` is in bars of ``tf``; ``z`` is the alert band."""

    x: str = "BTCUSDT"
    y: str = "ETHUSDT"
    tf: str = "1s"
    window: int = 60
    method: str = "ols"
    z: float = 2.0
    display_bars: int = 600

    @property
    def read_bars(self) -> int:
        """Bars to read: enough to fill the window before the first displayed bar."""
        return min(MAX_READ_BARS, self.window + self.display_bars)


@dataclass(frozen=True, slots=True)
class PairView:
    """Everything the live panel draws, for one pair, timeframe, window and method.

    ``table`` has one row per bar: ``time_ms`` and the :data:`TABLE_COLUMNS` (``time`` as
    ISO-8601 UTC) plus ``r2``, ``x_volume``, ``y_volume``, ``x_trades``, ``y_trades``,
    ``x_filled``, ``y_filled``.
    ``hedge`` and ``corr`` are the warm-up states of the hedge ratio/z-score and of the
    correlation. ``figures`` are the key numbers of the last bar (NaN while warming up).
    ``error`` is a one-line reason when the statistics could not be computed at all
    (e.g. a leg that never moved); the table then holds prices only.
    """

    params: PairParams
    table: pd.DataFrame
    hedge: Warmup
    corr: Warmup
    figures: MappingProxyType = field(default_factory=lambda: MappingProxyType({}))
    error: str | None = None

    @property
    def n_bars(self) -> int:
        return len(self.table)


#: Robust methods fit at most this many of the newest bars per refresh (Huber costs ~0.3 ms
#: per bar at window 60); older bars of the chart are left blank.
ROBUST_FIT_BARS = 600


def _kalman_obs_var(x: np.ndarray) -> float:
    """Observation variance R for the Kalman filter, scaled to x's price level.

    R is in x's price units squared, so one fixed number behaves differently at BTC and at
    altcoin prices; (1 bp of x's level)² keeps the filter's responsiveness comparable.
    """
    level = float(np.mean(x)) if x.size else 1.0
    return (1e-4 * level) ** 2


def _last(a: np.ndarray) -> float:
    return float(a[-1]) if a.size else math.nan


def compute_pair(frame: pd.DataFrame, params: PairParams) -> PairView:
    """Rolling hedge ratio, spread, z-score and correlation over a storage pair frame.

    ``frame`` is ``Reader.pair_frame(x, y, tf, limit=params.read_bars)``. Fewer bars than the
    window is warm-up, not an error: the statistics are NaN and ``hedge``/``corr`` say how
    many bars are still missing. The statistics are ``analytics.compute_pair``'s.
    """
    n = len(frame)
    x = frame["x"].to_numpy(dtype=np.float64)
    y = frame["y"].to_numpy(dtype=np.float64)
    table = pd.DataFrame(
        {
            "time_ms": frame["open_time_ms"].to_numpy(dtype=np.int64),
            "time": iso_seconds(frame["open_time_ms"].to_numpy()),  # as the analytics CLI
            "x": x,
            "y": y,
        }
    )
    nan = np.full(n, np.nan)
    cols = {k: nan for k in ("alpha", "beta", "spread", "zscore", "corr", "r2")}
    error = None
    # analytics: the z-score and the correlation at the latest bar need window + 1 bars.
    hedge_w = warmup_status(n, params.window, returns=True)
    corr_w = warmup_status(n, params.window, returns=True)
    if n >= 1:
        try:
            res = analytics_compute_pair(
                x,
                y,
                params.window,
                method=params.method,
                kalman_obs_var=_kalman_obs_var(x),
                fit_last=min(ROBUST_FIT_BARS, params.display_bars),
            )
            for k in ("alpha", "beta", "spread", "zscore", "corr"):
                cols[k] = res.frame[k].to_numpy()
            if "r2" in res.frame.columns:
                cols["r2"] = res.frame["r2"].to_numpy()
            elif n >= params.window:
                cols["r2"] = rolling_ols(x, y, params.window).r2
        except ValueError as exc:
            error = str(exc)
    for col in ("alpha", "beta", "spread", "zscore", "corr", "r2"):
        table[col] = np.asarray(cols[col], dtype=np.float64)
    for col in ("x_volume", "y_volume", "x_trades", "y_trades", "x_filled", "y_filled"):
        table[col] = frame[col].to_numpy()
    hl = math.nan
    beta_last = _last(table["beta"].to_numpy())
    if n >= params.window and np.isfinite(beta_last):
        e = x[-params.window :] - beta_last * y[-params.window :]
        try:
            h = half_life(e)
            hl = math.inf if h.bars is None else float(h.bars)
        except ValueError:
            hl = math.nan
    figures = {
        "x": _last(x),
        "y": _last(y),
        "beta": beta_last,
        "alpha": _last(table["alpha"].to_numpy()),
        "r2": _last(table["r2"].to_numpy()),
        "zscore": _last(table["zscore"].to_numpy()),
        "corr": _last(table["corr"].to_numpy()),
        "spread": _last(table["spread"].to_numpy()),
        "half_life_bars": hl,
        "bars": n,
        "last_bar_ms": int(table["time_ms"].iloc[-1]) if n else None,
    }
    return PairView(
        params=params,
        table=table,
        hedge=hedge_w,
        corr=corr_w,
        figures=MappingProxyType(figures),
        error=error,
    )


def export_table(result: PairView) -> pd.DataFrame:
    """The analytics table as ``python -m analytics --out`` writes it: :data:`TABLE_COLUMNS`,
    plus ``r2`` for OLS."""
    cols = [*TABLE_COLUMNS, "r2"] if result.params.method == "ols" else TABLE_COLUMNS
    return result.table[cols].copy()


def bar_stats_table(result: PairView) -> pd.DataFrame:
    """Per-bar statistics for export: the analytics columns plus r², volumes and fill flags."""
    cols = [*TABLE_COLUMNS, "r2", "x_volume", "y_volume", "x_filled", "y_filled"]
    out = result.table[cols].copy()
    return out.rename(
        columns={
            "x_volume": f"{result.params.x}_volume",
            "y_volume": f"{result.params.y}_volume",
            "x_filled": f"{result.params.x}_filled",
            "y_filled": f"{result.params.y}_filled",
        }
    )


def metric_series(result: PairView, metric: str) -> np.ndarray:
    """One alert metric per bar (see ``service.alerts.METRICS``)."""
    t = result.table
    if metric == "zscore":
        return t["zscore"].to_numpy()
    if metric == "abs_zscore":
        return np.abs(t["zscore"].to_numpy())
    if metric in ("spread", "corr", "beta"):
        return t[metric].to_numpy()
    if metric == "price_x":
        return t["x"].to_numpy()
    if metric == "price_y":
        return t["y"].to_numpy()
    if metric == "volume_x":
        return t["x_volume"].to_numpy(dtype=np.float64)
    if metric == "volume_y":
        return t["y_volume"].to_numpy(dtype=np.float64)
    raise ValueError(f"unknown alert metric {metric!r}")
