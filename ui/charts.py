"""Figure builders: plain data in, ``go.Figure`` out; testable without a browser.

Every figure is built from dicts in one ``go.Figure`` call (``add_trace``/``update_layout``
validate on every call and cost 10+ ms a figure). Times travel as float64 milliseconds on a
``date`` axis, values as float32 where display precision allows, so Plotly sends compact
base64 arrays. ``uirevision`` is a stable string per chart, pair and timeframe, so a user's
zoom, pan and hidden legend items survive every refresh (Plotly keeps any UI state whose
``uirevision`` is unchanged), and resets when the pair or timeframe changes.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
import plotly.graph_objects as go

#: Most points sent per trace; longer series are decimated (see :func:`decimate`).
MAX_POINTS = 1000

X_COLOR = "#F0B90B"  # leg X
Y_COLOR = "#4C8DF6"  # leg Y
SPREAD_COLOR = "#22C1C3"
Z_COLOR = "#A78BFA"
BETA_COLOR = "#F97316"
CORR_COLOR = "#10B981"
BAND_COLOR = "rgba(239, 68, 68, 0.75)"
MEAN_COLOR = "rgba(148, 163, 184, 0.9)"
UP_COLOR = "#16A34A"
DOWN_COLOR = "#DC2626"

CHART_HEIGHT = 260


def uirevision(chart: str, x: str, y: str, tf: str) -> str:
    """The stable UI-state key of one chart: zoom survives refreshes, resets on a new pair."""
    return f"{chart}:{x}:{y}:{tf}"


def decimate(n: int, max_points: int = MAX_POINTS) -> np.ndarray | slice:
    """Indices of at most ``max_points`` of ``n`` evenly spaced points, always keeping the last.

    The last point is the live one, so it is never dropped.
    """
    if n <= max_points:
        return slice(None)
    idx = np.linspace(0, n - 1, max_points).round().astype(np.int64)
    return np.unique(idx)


def _t(ms: np.ndarray | pd.Series) -> np.ndarray:
    return np.asarray(ms, dtype=np.float64)


def _v(values: np.ndarray | pd.Series) -> np.ndarray:
    return np.asarray(values, dtype=np.float32)


def _layout(rev: str, title: str, *, height: int = CHART_HEIGHT, **extra) -> dict:
    layout = {
        "uirevision": rev,
        # No Plotly template: colours come from this module, fonts and grid from the page theme.
        "template": "none",
        "title": {"text": title, "x": 0.0, "xanchor": "left", "font": {"size": 14}},
        "height": height,
        "margin": {"l": 8, "r": 8, "t": 36, "b": 8},
        "hovermode": "x unified",
        "showlegend": True,
        "legend": {
            "orientation": "h",
            "yanchor": "bottom",
            "y": 1.0,
            "xanchor": "right",
            "x": 1.0,
            "font": {"size": 11},
        },
        "xaxis": {"type": "date", "showgrid": False},
        "yaxis": {"zeroline": False},
    }
    layout.update(extra)
    return layout


def _line(t, v, name, color, **kw) -> dict:
    trace = {
        "type": "scattergl" if kw.pop("gl", False) else "scatter",
        "mode": "lines",
        "x": t,
        "y": v,
        "name": name,
        "line": {"color": color, "width": 1.5},
    }
    trace.update(kw)
    return trace


def price_figure(
    frame: pd.DataFrame,
    x: str,
    y: str,
    tf: str,
    *,
    mode: str = "normalised",
    candles: Mapping[str, pd.DataFrame] | None = None,
) -> go.Figure:
    """Both legs' prices.

    ``frame`` has ``time_ms, x, y`` (closes on a common grid). ``mode``: ``"normalised"``
    (percent change from the first bar shown, one axis), ``"dual"`` (each leg on its own axis)
    or ``"candles"`` (OHLC candlesticks of each leg on its own axis; ``candles`` maps leg X and
    Y to frames with ``open_time_ms, open, high, low, close``).
    """
    rev = uirevision("price", x, y, tf)
    sl = decimate(len(frame))
    t = _t(frame["time_ms"].to_numpy()[sl])
    if mode == "candles" and candles is not None:
        layout = _layout(rev, f"Prices: {x} (left) and {y} (right), candles", **_two_axes(x, y))
        layout["xaxis"]["rangeslider"] = {"visible": False}
        return go.Figure(data=_candle_traces(candles, x, y), layout=layout)
    px_x = frame["x"].to_numpy(dtype=np.float64)
    px_y = frame["y"].to_numpy(dtype=np.float64)
    if mode == "dual":
        traces = [
            _line(t, px_x[sl], x, X_COLOR),
            _line(t, px_y[sl], y, Y_COLOR, yaxis="y2"),
        ]
        layout = _layout(rev, f"Prices: {x} (left) and {y} (right)", **_two_axes(x, y))
        return go.Figure(data=traces, layout=layout)
    traces = [
        _pct_line(t, px_x[sl], px_x[0], x, X_COLOR),
        _pct_line(t, px_y[sl], px_y[0], y, Y_COLOR),
    ]
    layout = _layout(
        rev,
        "Prices, % change from the first bar shown",
        yaxis={"ticksuffix": "%", "zeroline": True},
    )
    return go.Figure(data=traces, layout=layout)


def _two_axes(x: str, y: str) -> dict[str, dict]:
    """Leg X on the left axis, leg Y on an overlaid right axis."""
    return {
        "yaxis": {"title": {"text": x}, "zeroline": False},
        "yaxis2": {
            "title": {"text": y},
            "overlaying": "y",
            "side": "right",
            "showgrid": False,
            "zeroline": False,
        },
    }


def _candle_traces(candles: Mapping[str, pd.DataFrame], x: str, y: str) -> list[dict]:
    """Leg X: green/red candles on the left axis; leg Y: blue/pink, translucent, right axis."""
    traces = []
    styles = {"x": (UP_COLOR, DOWN_COLOR, 1.0), "y": ("#0EA5E9", "#F43F5E", 0.55)}
    for leg, sym, axis in (("x", x, "y"), ("y", y, "y2")):
        up, down, opacity = styles[leg]
        c = candles[leg]
        cs = decimate(len(c))
        traces.append(
            {
                "type": "candlestick",
                "name": sym,
                "yaxis": axis,
                "x": _t(c["open_time_ms"].to_numpy()[cs]),
                "open": c["open"].to_numpy()[cs],
                "high": c["high"].to_numpy()[cs],
                "low": c["low"].to_numpy()[cs],
                "close": c["close"].to_numpy()[cs],
                "increasing": {"line": {"color": up}},
                "decreasing": {"line": {"color": down}},
                "opacity": opacity,
            }
        )
    return traces


def _pct_line(t, prices: np.ndarray, base: float, name: str, color: str) -> dict:
    """Percent change from ``base``, the price itself in the hover."""
    return _line(
        t,
        _v((prices / base - 1.0) * 100.0),
        name,
        color,
        customdata=prices,
        hovertemplate="%{y:.3f}% (%{customdata:,.2f})",
    )


def spread_figure(frame: pd.DataFrame, x: str, y: str, tf: str) -> go.Figure:
    """Spread ``x − β·y`` with its rolling mean (α). ``frame``: time_ms, spread, alpha."""
    sl = decimate(len(frame))
    t = _t(frame["time_ms"].to_numpy()[sl])
    traces = [
        _line(t, frame["spread"].to_numpy()[sl], "spread", SPREAD_COLOR),
        _line(
            t,
            frame["alpha"].to_numpy()[sl],
            "rolling mean (α)",
            MEAN_COLOR,
            line={"color": MEAN_COLOR, "width": 1, "dash": "dot"},
        ),
    ]
    return go.Figure(
        data=traces, layout=_layout(uirevision("spread", x, y, tf), f"Spread: {x} − β·{y}")
    )


def zscore_figure(frame: pd.DataFrame, x: str, y: str, tf: str, threshold: float) -> go.Figure:
    """Z-score with ±threshold bands; bars beyond a band are marked. ``frame``: time_ms, zscore."""
    sl = decimate(len(frame))
    t = _t(frame["time_ms"].to_numpy()[sl])
    z = frame["zscore"].to_numpy(dtype=np.float64)[sl]
    with np.errstate(invalid="ignore"):
        hit = np.abs(z) >= threshold
    traces = [
        _line(t, _v(z), "z-score", Z_COLOR),
        {
            "type": "scatter",
            "mode": "markers",
            "x": t[hit],
            "y": _v(z[hit]),
            "name": f"|z| ≥ {threshold:g}",
            "marker": {"color": BAND_COLOR, "size": 5},
        },
    ]
    shapes = [
        {
            "type": "line",
            "xref": "paper",
            "x0": 0,
            "x1": 1,
            "yref": "y",
            "y0": v,
            "y1": v,
            "line": {
                "color": BAND_COLOR if v else MEAN_COLOR,
                "width": 1,
                "dash": "dash" if v else "dot",
            },
        }
        for v in (threshold, -threshold, 0.0)
    ]
    return go.Figure(
        data=traces,
        layout=_layout(
            uirevision("zscore", x, y, tf),
            f"Z-score of the spread (bands at ±{threshold:g})",
            shapes=shapes,
        ),
    )


def beta_figure(frame: pd.DataFrame, x: str, y: str, tf: str, method: str) -> go.Figure:
    """Hedge ratio β over time. ``frame``: time_ms, beta."""
    sl = decimate(len(frame))
    t = _t(frame["time_ms"].to_numpy()[sl])
    traces = [_line(t, frame["beta"].to_numpy()[sl], f"β ({method})", BETA_COLOR)]
    return go.Figure(
        data=traces,
        layout=_layout(
            uirevision("beta", x, y, tf), f"Hedge ratio β ({method}): units of {y} per {x}"
        ),
    )


def corr_figure(frame: pd.DataFrame, x: str, y: str, tf: str) -> go.Figure:
    """Rolling correlation of log returns. ``frame``: time_ms, corr."""
    sl = decimate(len(frame))
    t = _t(frame["time_ms"].to_numpy()[sl])
    traces = [_line(t, _v(frame["corr"].to_numpy()[sl]), "correlation", CORR_COLOR)]
    return go.Figure(
        data=traces,
        layout=_layout(
            uirevision("corr", x, y, tf),
            "Rolling correlation of log returns",
            yaxis={"range": [-1.05, 1.05], "zeroline": True},
        ),
    )


def volume_figure(frame: pd.DataFrame, x: str, y: str, tf: str) -> go.Figure:
    """Traded notional per bar of each leg (quantity × close, in quote currency).

    ``frame``: time_ms, x, y, x_volume, y_volume. Quantities of two coins are not comparable;
    their notional values are.
    """
    sl = decimate(len(frame))
    t = _t(frame["time_ms"].to_numpy()[sl])
    nx = frame["x_volume"].to_numpy()[sl] * frame["x"].to_numpy()[sl]
    ny = frame["y_volume"].to_numpy()[sl] * frame["y"].to_numpy()[sl]
    traces = [
        {"type": "bar", "x": t, "y": _v(nx), "name": x, "marker": {"color": X_COLOR}},
        {"type": "bar", "x": t, "y": _v(ny), "name": y, "marker": {"color": Y_COLOR}},
    ]
    return go.Figure(
        data=traces,
        layout=_layout(
            uirevision("volume", x, y, tf),
            "Traded notional per bar (qty × close)",
            barmode="group",
            bargap=0.1,
        ),
    )


def heatmap_figure(corr: pd.DataFrame, tf: str) -> go.Figure:
    """Correlation matrix of log returns as an annotated heatmap (symbols on both axes)."""
    labels = [str(c) for c in corr.columns]
    z = corr.to_numpy(dtype=np.float64)
    text = [[("" if not np.isfinite(v) else f"{v:.2f}") for v in row] for row in z]
    trace = {
        "type": "heatmap",
        "z": z,
        "x": labels,
        "y": labels,
        "zmin": -1,
        "zmax": 1,
        "colorscale": "RdBu",
        "reversescale": True,
        "text": text,
        "texttemplate": "%{text}",
        "hovertemplate": "%{y} / %{x}: %{z:.3f}<extra></extra>",
    }
    layout = _layout(
        f"heatmap:{tf}:{','.join(labels)}",
        f"Return correlation ({tf} bars)",
        height=max(300, 60 + 40 * len(labels)),
    )
    layout["xaxis"] = {"type": "category"}
    layout["yaxis"] = {"type": "category", "autorange": "reversed"}
    layout["showlegend"] = False
    return go.Figure(data=[trace], layout=layout)


def equity_figure(
    time_ms: Sequence[float] | np.ndarray,
    equity: np.ndarray,
    x: str,
    y: str,
    tf: str,
    trades: pd.DataFrame | None = None,
) -> go.Figure:
    """Backtest equity curve; entries and exits marked when ``trades`` (entry/exit ms) is given."""
    sl = decimate(len(equity))
    t = _t(np.asarray(time_ms)[sl])
    traces = [
        _line(
            t,
            np.asarray(equity, dtype=np.float64)[sl],
            "equity",
            CORR_COLOR,
            fill="tozeroy",
            fillcolor="rgba(16, 185, 129, 0.08)",
        )
    ]
    return go.Figure(
        data=traces,
        layout=_layout(
            uirevision("equity", x, y, tf), "Equity of the mean-reversion rule (after fees)"
        ),
    )
