"""Funding on the page: each leg's rate and next funding time (Live, Watchlist), and the
backtest's funding history.

Everything here reads what the service already holds (``service.funding``); a fetch runs in
the service's background threads, never in the script. Rates are shown in percent per
settlement (``+0.0100 %`` is Binance's usual 0.0001).
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence

import numpy as np
import pandas as pd
import streamlit as st

from service.compute import PairParams
from service.desk import DashboardService
from service.funding import FundingNow, bar_funding, charged_span
from storage import timeframe_s
from ui.guard import WAIT_ICON, fmt_age, fmt_time, fragment_slot, md_escape
from ui.state import session_reader

NO_DATA = "no funding data"


def fmt_rate(rate: float | None) -> str:
    """A funding rate per settlement in percent: ``+0.0100 %``; ``–`` when unknown."""
    if rate is None or not math.isfinite(rate):
        return "–"
    return f"{100.0 * rate:+.4f} %"


def fmt_next(next_ms: int | None, now_ms: float) -> str:
    """``08:00:00 UTC (in 2.2 h)``; ``–`` when unknown."""
    if next_ms is None:
        return "–"
    return f"{fmt_time(next_ms)} UTC (in {fmt_age(max(0.0, (next_ms - now_ms) / 1000.0))})"


def leg_text(state: FundingNow, now_ms: float) -> str:
    """One leg's funding in words (plain text: escape before Markdown)."""
    mark = state.mark
    if mark is None:
        why = state.error or ("fetching…" if state.checked_ms is None else "")
        return f"{state.symbol}: {NO_DATA}" + (f" ({why})" if why else "")
    if mark.rate is None:
        return f"{state.symbol}: no funding on this contract"
    text = f"{state.symbol} {fmt_rate(mark.rate)}, next {fmt_next(mark.next_funding_ms, now_ms)}"
    return text + (f" (last update failed: {state.error})" if state.error else "")


def show_funding_line(service: DashboardService, params: PairParams) -> None:
    """The Live panel's funding line under the key figures: both legs, never blocking."""
    states = service.funding.current([params.x, params.y])
    now_ms = time.time() * 1000
    legs = " · ".join(md_escape(leg_text(states[s], now_ms)) for s in (params.x, params.y))
    with st.container(key="funding_line"):
        st.markdown(
            f"**Funding** {legs}",
            help="Current funding rate per settlement (premiumIndex, polled every "
            f"{service.funding.poll_s:g} s) and the next funding time. At each funding time "
            "longs pay shorts position × mark × rate when the rate is positive; shorts pay "
            "longs when it is negative.",
        )


def with_funding(service: DashboardService, rows: pd.DataFrame) -> pd.DataFrame:
    """Watchlist rows with each leg's current funding (% per settlement) and next funding."""
    rows = rows.copy()
    legs = [str(p).split("/") for p in rows.get("pair", pd.Series(dtype=str))]
    states = service.funding.current({s for leg in legs for s in leg})
    now_ms = time.time() * 1000

    def pct(sym: str) -> float:
        mark = states[sym].mark
        return float("nan") if mark is None or mark.rate is None else 100.0 * mark.rate

    def next_text(x: str, y: str) -> str:
        times = [states[s].mark.next_funding_ms for s in (x, y) if states[s].mark is not None]
        times = [t for t in times if t is not None]
        return fmt_next(min(times), now_ms) if times else NO_DATA

    rows["funding_x"] = [pct(x) for x, _ in legs]
    rows["funding_y"] = [pct(y) for _, y in legs]
    rows["next_funding"] = [next_text(x, y) for x, y in legs]
    return rows


# ------------------------------------------------------------------------- backtest
def backtest_funding(
    service: DashboardService, params: PairParams, table: pd.DataFrame
) -> tuple[np.ndarray, np.ndarray, str] | None:
    """Per-bar funding rates of both legs over the backtest's bars, or None while fetching.

    Returns ``(funding_x, funding_y, note)``; the note says how many settlements were found
    and, if the history could not be fetched, why (the stored rows are then used). The
    charge is placed by :func:`service.funding.bar_funding`, as on the command line.
    """
    bar_ms = timeframe_s(params.tf) * 1000
    opens = table["time_ms"].to_numpy(dtype="int64")
    start, end = charged_span(opens, bar_ms)
    state = service.funding.request_history([params.x, params.y], start, end)
    if state == "fetching":
        _wait_for_history(service, (params.x, params.y), start, end)
        return None
    status = service.status()
    with session_reader(status.db_path, status.generation) as lease:
        found = bar_funding(lease.reader, service.funding, (params.x, params.y), opens, bar_ms)
    note = (
        f"Funding settlements charged in the span: {found.settled_x} of {params.x}, "
        f"{found.settled_y} of {params.y}."
    )
    if state.startswith("failed"):
        note += f" History not fetched ({state[len('failed: ') :]}); stored rows used."
    return found.x, found.y, note


def _wait_for_history(service: DashboardService, symbols: Sequence[str], start: int, end: int):
    st.info(
        f"Fetching the funding history of {' and '.join(symbols)} for this span… the "
        "backtest appears when it is in.",
        icon=WAIT_ICON,
    )

    @st.fragment(run_every=1.0)
    def poll() -> None:  # reruns the page once the background fetch is done
        if service.funding.request_history(list(symbols), start, end) != "fetching":
            st.rerun()

    with fragment_slot("funding_wait"):
        poll()
