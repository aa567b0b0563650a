"""The Scan tab: every ordered pair of the stored universe ranked; open a candidate in Live.

The scan runs in the process's :class:`service.scan.ScanJob` (a daemon thread), so leaving
the tab or reloading the page does not stop it, and the last result shows at once.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd
import streamlit as st

from analytics.scan import DEFAULT_LAGS, DEFAULT_OOS_P, DEFAULT_Q
from service.desk import DashboardService, Source
from service.scan import SPARK_BARS, FetchJob, LastScan, ScanJob
from service.universe import ScanRequest
from ui.guard import fmt_datetime, fragment_slot, md_escape, panel

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


@st.cache_resource
def fetch_job() -> FetchJob:
    """The process's one kline-fetch worker."""
    return FetchJob()


def _job_progress(job: FetchJob | ScanJob, slot: str, text: Callable[[Any], str]) -> None:
    """A progress bar redrawn every second while ``job`` runs (``text(status)`` its label);
    the whole page reruns once the job has ended."""

    @st.fragment(run_every=1.0)
    def progress() -> None:
        s = job.status()
        if s.state != "running":
            st.rerun(scope="app")
        share = s.done / s.total if s.total else 0.0
        st.progress(min(1.0, share), text=text(s))

    with fragment_slot(slot):  # alone in its slot: see ui.guard.fragment_slot
        progress()


def _fetch_text(f) -> str:
    eta = f", about {f.eta_s:.0f} s left" if f.eta_s else ""
    return f"Fetching: {f.done}/{f.total} symbols, {f.rows:,} rows{eta}"


def _scan_text(s) -> str:
    eta = f", about {s.eta_s:.0f} s left" if s.eta_s is not None else ""
    return f"Scanning: {s.stage} {s.done:,}/{s.total:,}{eta}"


def _fetch_panel(service: DashboardService) -> None:
    """Fetch the missing 1m klines of the universe through the page's own writer."""
    job = fetch_job()
    f = job.status()
    status = service.status()
    with st.expander("Fetch klines from the exchange", expanded=f.state == "running"):
        writer = service.writer
        if writer is None or status.read_only or status.source != Source.LIVE:
            st.info(
                "Fetching needs the live source with this page writing the database. "
                "Otherwise run `python -m ingestion.klines --db <DB>`."
            )
            return
        today = dt.datetime.now(dt.UTC).date()
        c = st.columns(3)
        raw = c[0].text_input("Symbols", value="all", key="fetch_syms", help="all or A,B,C")
        first = c[1].date_input("From (UTC)", today - dt.timedelta(days=28), key="fetch_from")
        last = c[2].date_input("To (UTC, inclusive)", today, key="fetch_to")
        running = f.state == "running"
        if st.button("Fetch klines", key="fetch_go", disabled=running or first > last):
            syms = None
            if raw.strip().lower() != "all":
                syms = tuple(s.strip().upper() for s in raw.split(",") if s.strip())
            start_ms = int(dt.datetime.combine(first, dt.time(), dt.UTC).timestamp() * 1000)
            end_ms = int(dt.datetime.combine(last, dt.time(23, 59), dt.UTC).timestamp() * 1000)
            now_ms = int(dt.datetime.now(dt.UTC).timestamp() * 1000)
            end_ms = min(end_ms, now_ms // 60_000 * 60_000 - 60_000)  # closed minutes only
            job.start(status.db_path, writer, service.settings.rest_base, start_ms, end_ms, syms)
            st.rerun()
        if running:
            _job_progress(job, "fetch_progress", _fetch_text)
        elif f.state in ("done", "stopped", "failed"):
            counts: dict[str, int] = {}
            for r in f.results:
                counts[r.status] = counts.get(r.status, 0) + 1
            summary = ", ".join(f"{n} {k}" for k, n in sorted(counts.items()))
            text = f"Fetch {f.state}: {f.rows:,} klines stored; symbols: {summary or 'none'}."
            (st.error if f.state == "failed" else st.caption)(
                text + (f" {f.error}" if f.error else "")
            )


def _open_in_live(x: str, y: str, tf: str) -> None:
    """Button callback (runs before the rerun, so the sidebar widgets may still change)."""
    st.session_state["x"] = x
    st.session_state["y"] = y
    st.session_state["tf"] = tf
    st.session_state["view"] = "Live"


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


def _watch(service: DashboardService, x: str, y: str, tf: str) -> None:
    """Add the pair to the watchlist (the background monitor then follows it)."""
    from service.watch import PairKey
    from service.watchlist import watch_on
    from storage import StorageError

    try:
        pid = watch_on(service, PairKey(x, y, tf))
    except (StorageError, ValueError) as exc:
        st.error(f"Not added to the watchlist: {md_escape(str(exc))}")
    else:
        st.success(f"{x} / {y} ({tf}) is on the watchlist (#{pid}).")


def _results(service: DashboardService, last: LastScan | None, limits: dict) -> None:
    if last is None:
        return
    st.caption(
        f"Last scan finished {fmt_datetime(last.finished_ms)} UTC: {last.symbols} symbols, "
        f"{last.pairs_tested:,} ordered pairs, {last.nobs:,} {last.tf} bars "
        f"(formation {last.formation_bars:,}, validation {last.validation_bars:,}), "
        f"K = {last.lags}, {last.seconds:.1f} s. The best {len(last.table):,} are kept."
    )
    t = last.table
    keep = (
        (t["qvalue"] <= limits["q_max"])
        & (t["oos_pvalue"] <= limits["p_max"])
        & (np.fmin(t["x_quote_volume"], t["y_quote_volume"]) >= limits["floor"])
    )
    cands = t[keep].head(50)
    if cands.empty:
        st.info("No pair passes the thresholds: loosen them or scan a longer lookback.")
    else:
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
        c1, c2, c3 = st.columns([3, 1, 1])
        pick = c1.selectbox("Candidate", labels, key="scan_pick")
        x, y = pick.split(" / ")
        c2.button(
            "Open in Live panel",
            key="scan_open",
            on_click=_open_in_live,
            args=(x, y, last.tf),
            width="stretch",
        )
        if c3.button("Add to watchlist", key="scan_watch", width="stretch"):
            _watch(service, x, y, last.tf)
    if last.skipped:
        with st.expander(f"Skipped symbols ({len(last.skipped)})"):
            st.dataframe(
                pd.DataFrame(list(last.skipped), columns=["symbol", "reason"]), hide_index=True
            )


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
    _fetch_panel(service)
    s = job.status()
    limits = _controls(job, db, s.state == "running")
    if s.state == "running":
        _job_progress(job, "scan_progress", _scan_text)
    elif s.state == "failed":
        st.error(f"Scan failed: {s.error}")
    elif s.state == "stopped":
        st.warning("Scan stopped.")
    with panel("Scan results"):
        _results(service, job.last(db), limits)
