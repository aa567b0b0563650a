"""The Scan tab: every ordered pair of the stored universe ranked; open a candidate in Live.

The scan runs in the process's :class:`service.scan.ScanJob` (a daemon thread), so leaving
the tab or reloading the page does not stop it, and the last result shows at once.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import streamlit as st

from analytics.scan import DEFAULT_LAGS, DEFAULT_OOS_P, DEFAULT_Q
from analytics.universe import ScanRequest, ScanRun
from service.desk import DashboardService
from service.scan import ScanJob, ScanStatus
from ui.guard import fmt_datetime, fragment_slot, panel

SPARK_BARS = 120
SHOWN_COLUMNS = [
    "x",
    "y",
    "zscore",
    "score",
    "qvalue",
    "oos_pvalue",
    "eg_pvalue",
    "recheck_pvalue",
    "hurst",
    "half_life_bars",
    "zscore_last",
    "corr",
    "beta",
    "x_quote_volume",
    "y_quote_volume",
]


@st.cache_resource
def scan_job() -> ScanJob:
    """The process's one scan worker (shared by every session)."""
    return ScanJob()


def _open_in_live(x: str, y: str, tf: str) -> None:
    """Button callback (runs before the rerun, so the sidebar widgets may still change)."""
    st.session_state["x"] = x
    st.session_state["y"] = y
    st.session_state["tf"] = tf
    st.session_state["view"] = "Live"


def _sparklines(run: ScanRun, table: pd.DataFrame) -> list[list[float]]:
    """Each row's residual z-score over the last ``SPARK_BARS`` bars of the lookback."""
    out = []
    for x, y, a, b in zip(table["x"], table["y"], table["alpha"], table["beta"], strict=True):
        e = run.prices[str(x)].to_numpy() - a - b * run.prices[str(y)].to_numpy()
        sd = e.std(ddof=1)
        z = e[-SPARK_BARS:] / sd if sd > 0 else np.zeros(min(SPARK_BARS, e.size))
        out.append([round(float(v), 3) for v in z])
    return out


def _controls(job: ScanJob, db: str, running: bool) -> dict:
    c = st.columns(6)
    tf = c[0].segmented_control("Timeframe", ["5m", "1m"], default="5m", key="scan_tf")
    lookback = c[1].number_input(
        "Lookback (bars)", min_value=100, max_value=100_000, value=8064, step=100,
        key="scan_lookback", help="8,064 five-minute bars = 28 days.",
    )  # fmt: skip
    lags = c[2].number_input(
        "ADF lags K", min_value=0, max_value=24, value=DEFAULT_LAGS, key="scan_lags"
    )
    floor = c[3].number_input(
        "Liquidity floor (USDT / bar)", min_value=0.0, value=0.0, step=1000.0,
        key="scan_floor", help="Both legs' median quote volume per bar must reach this.",
    )  # fmt: skip
    q_max = c[4].number_input("Max q-value", 0.0, 1.0, DEFAULT_Q, 0.01, key="scan_q")
    p_max = c[5].number_input("Max out-of-sample p", 0.0, 1.0, DEFAULT_OOS_P, 0.01, key="scan_p")
    b1, b2, _ = st.columns([1, 1, 4])
    if b1.button("Run scan", key="scan_run", type="primary", disabled=running):
        req = ScanRequest(tf=tf or "5m", lookback_bars=int(lookback), lags=int(lags))
        job.start(db, req)
        st.rerun()
    if b2.button("Stop", key="scan_stop", disabled=not running):
        job.stop()
    return {"floor": floor, "q_max": q_max, "p_max": p_max}


def _progress(job: ScanJob) -> None:
    @st.fragment(run_every=1.0)
    def progress() -> None:
        s = job.status()
        if s.state != "running":
            st.rerun(scope="app")
        share = s.done / s.total if s.total else 0.0
        eta = f", about {s.eta_s:.0f} s left" if s.eta_s is not None else ""
        st.progress(min(1.0, share), text=f"Scanning: {s.stage} {s.done:,}/{s.total:,}{eta}")

    with fragment_slot("scan_progress"):  # alone in its slot: see ui.guard.fragment_slot
        progress()


def _results(s: ScanStatus, limits: dict) -> None:
    run = s.result
    if run is None:
        return
    res = run.scan
    req = s.request
    st.caption(
        f"Last scan finished {fmt_datetime(s.finished_ms)} UTC: {len(res.symbols)} symbols, "
        f"{res.pairs_tested:,} ordered pairs, {res.nobs:,} {req.tf if req else ''} bars "
        f"(formation {res.formation_bars:,}, validation {res.validation_bars:,}), "
        f"K = {res.lags}, {run.seconds['total']:.1f} s."
    )
    t = run.table
    keep = (
        (t["qvalue"] <= limits["q_max"])
        & (t["oos_pvalue"] <= limits["p_max"])
        & (np.fmin(t["x_quote_volume"], t["y_quote_volume"]) >= limits["floor"])
    )
    cands = t[keep].head(50).copy()
    cands["x"], cands["y"] = cands["x"].astype(str), cands["y"].astype(str)
    if cands.empty:
        st.info("No pair passes the thresholds: loosen them or scan a longer lookback.")
    else:
        cands["zscore"] = _sparklines(run, cands)
        st.dataframe(
            cands[SHOWN_COLUMNS],
            key="scan_table",
            hide_index=True,
            width="stretch",
            column_config={
                "zscore": st.column_config.LineChartColumn(
                    f"z (last {SPARK_BARS} bars)", y_min=-4, y_max=4
                )
            },
        )
        labels = [f"{x} / {y}" for x, y in zip(cands["x"], cands["y"], strict=True)]
        c1, c2 = st.columns([3, 1])
        pick = c1.selectbox("Candidate", labels, key="scan_pick")
        x, y = pick.split(" / ")
        c2.button(
            "Open in Live panel",
            key="scan_open",
            on_click=_open_in_live,
            args=(x, y, req.tf if req else "5m"),
            width="stretch",
        )
    if run.skipped:
        with st.expander(f"Skipped symbols ({len(run.skipped)})"):
            st.dataframe(pd.DataFrame(run.skipped, columns=["symbol", "reason"]), hide_index=True)


def render_scan(service: DashboardService) -> None:
    """The whole tab: controls, progress of the running scan, the last result."""
    db = service.status().db_path
    job = scan_job()
    st.subheader("Universe scan")
    st.caption(
        "Engle–Granger on every ordered pair of the stored symbols (fixed ADF lags), ranked by "
        "max(q-value, out-of-sample p): the q-value corrects for testing every pair "
        "(Benjamini–Hochberg), the out-of-sample p tests the formation-period hedge on the "
        "last 30 % of the lookback. The top 50 are re-tested exactly (AIC lags) with Hurst. "
        "Fill the database with `python -m ingestion.klines` or `python -m storage import`."
    )
    s = job.status()
    limits = _controls(job, db, s.state == "running")
    if s.state == "running":
        _progress(job)
    elif s.state == "failed":
        st.error(f"Scan failed: {s.error}")
    elif s.state == "stopped":
        st.warning("Scan stopped.")
    with panel("Scan results"):
        _results(s, limits)
