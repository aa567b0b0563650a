"""The Feed health tab: per-symbol feed state, writer queue, REST weight, gaps and owed ranges.

Rendered only while its tab is open (lazy tabs), inside the panel error boundary.
"""

from __future__ import annotations

import time

import pandas as pd
import streamlit as st

from service.desk import DashboardService
from service.feeds import COLLECTOR_ID
from storage.timefmt import ms_to_iso
from ui.guard import (
    db_label,
    fmt_age,
    fmt_datetime,
    fmt_time,
    md_escape,
)
from ui.state import page_views

STATE_COLOR = {
    "live": "#16a34a",
    "quiet": "#ca8a04",
    "backfilling": "#2563eb",
    "connecting": "#64748b",
    "reconnecting": "#ea580c",
    "stale": "#ea580c",
    "stopped": "#475569",
    "error": "#dc2626",
}


def health_table(statuses: list) -> pd.DataFrame:
    """One row per symbol: the answer to "is it quiet or dead?"."""
    rows = []
    for s in statuses:
        d = s if isinstance(s, dict) else s.to_dict()
        rows.append(
            {
                "symbol": d.get("symbol"),
                "collector": d.get("collector", ""),
                "state": str(d.get("state", "")),
                "msg/s": round(float(d.get("messages_per_s") or 0.0), 1),
                "last trade age": fmt_age(d.get("last_trade_age_s")),
                "messages": d.get("messages"),
                "reconnects": d.get("reconnects"),
                "gaps found": d.get("gaps_found"),
                "gaps repaired": d.get("gaps_repaired"),
                "owed": owed_text(d),
                "ids backfilled": d.get("ids_backfilled"),
                "rejected": d.get("rejected"),
                "duplicates": d.get("duplicates"),
                "stored": d.get("stored"),
                "queue": f"{d.get('queue_depth', 0)}/{d.get('queue_capacity', 0)}",
                "last error": d.get("last_error") or "",
            }
        )
    return pd.DataFrame(rows)


def owed_text(d: dict) -> str:
    """Ranges recorded as owed and not stored yet (gaps, start-up history), e.g.
    ``4,707 ids in 1 range, retry in 3 s``; empty when nothing is owed."""
    ranges = int(d.get("owed_ranges") or 0)
    if not ranges:
        return ""
    text = f"{int(d.get('owed_ids') or 0):,} ids in {ranges} range{'s' if ranges > 1 else ''}"
    if d.get("owed_by_time"):
        text += f" ({d['owed_by_time']} by time, first id not known yet)"
    retry_s = d.get("repair_retry_in_s")
    if retry_s is not None:
        text += f", REST failed: retry in {float(retry_s):.0f} s"
    return text


def _state_style(value: str) -> str:
    color = STATE_COLOR.get(str(value))
    return f"color: {color}; font-weight: 600" if color else ""


def render_health(service: DashboardService) -> None:
    status = service.status()
    st.subheader("Feed health")
    st.caption(
        "**live**: trades flowing · **quiet**: no trades, and REST confirms the market "
        "did not trade either · **stale** / **reconnecting**: the socket is down or "
        "silent while the market trades (missed trades are repaired from REST) · "
        "**error** · **stopped**."
    )
    own = [dict(s.to_dict(), collector="this dashboard") for s in service.feed_status()]
    # Every other process that publishes into this database (a headless collector, another
    # dashboard on PostgreSQL): two collectors of one symbol show as two rows. Read once for
    # every open tab (PageViews.health), with the gaps below.
    health = page_views(service.views, service.settings.shared_views).health(
        status.db_path, status.generation
    )
    now_ms = time.time() * 1000
    statuses = own + _other_collectors(health.published, now_ms)
    if status.collected_elsewhere:
        st.info(
            "Collected by another process, so this page reads their data instead of starting "
            "its own feed: "
            + "; ".join(
                f"{sym} by {', '.join(ids)}" for sym, ids in status.collected_elsewhere.items()
            ),
            icon=":material/hub:",
        )
    _feed_table(statuses, now_ms)
    stats = service.feed_stats()
    if stats:
        _writer_metrics(stats)
    _gaps_table(health.gaps)
    st.caption(
        f"Database {md_escape(db_label(status.db_path))} · service up since "
        f"{fmt_datetime(status.started_ms)}"
    )


def _other_collectors(published: pd.DataFrame, now_ms: float) -> list[dict]:
    """Status dicts of the collectors other than this dashboard, ages as of ``now_ms``."""
    others = []
    for row in published.itertuples():
        if row.collector_id == COLLECTOR_ID:
            continue
        d = dict(row.status, symbol=row.symbol, collector=row.collector_id)
        if d.get("last_trade_ms"):  # age as of now, not as of the last publish
            d["last_trade_age_s"] = max(0.0, (now_ms - float(d["last_trade_ms"])) / 1000)
        d["published_age_s"] = max(0.0, (now_ms - row.updated_ts_ms) / 1000)
        others.append(d)
    return others


def _feed_table(statuses: list[dict], now_ms: float) -> None:
    if not statuses:
        st.info("No feed is running: press Start feed in the sidebar.")
        return
    table = health_table(statuses)
    styled = table.style.map(_state_style, subset=["state"]).format(precision=1)
    st.dataframe(styled, hide_index=True, width="stretch")
    st.caption(
        f"Refreshed {fmt_time(now_ms)} UTC. Rows of other collectors are as they "
        "last published (every few seconds)."
    )


def _writer_metrics(stats: dict) -> None:
    w, r = stats["writer"], stats["rest"]
    c = st.columns(6)
    c[0].metric(
        "Writer queue",
        f"{w.queued:,}/{w.capacity:,}",
        help=f"High water {w.high_water:,}; producers blocked {w.blocked_s:.1f} s",
    )
    c[1].metric("Ticks committed", f"{w.committed:,}")
    c[2].metric("Last batch", f"{w.last_batch_ms:.1f} ms", help=f"{w.batches:,} batches")
    c[3].metric("REST weight used", f"{r.used_weight_1m}/{r.weight_limit_1m}")
    c[4].metric(
        "REST requests",
        f"{r.requests:,}",
        help=f"{r.errors} errors, {r.rate_limited} rate-limited",
    )
    c[5].metric("Commit errors", f"{w.errors}", help=w.last_error or "none")


#: Columns of the gaps table, in order.
GAP_TABLE_COLUMNS = [
    "symbol",
    "first_missing_id",
    "last_missing_id",
    "missing",
    "status",
    "repaired_count",
    "found",
    "detail",
]


def _gaps_table(gaps: pd.DataFrame) -> None:
    st.markdown("**Gaps found in the id sequences**")
    if gaps.empty:
        st.caption("None found.")
        return
    g = gaps.copy()
    g["found"] = ms_to_iso(g["found_ts_ms"]).to_numpy()
    st.dataframe(g[GAP_TABLE_COLUMNS].tail(200), hide_index=True, width="stretch")


# ------------------------------------------------------------------------- exports
