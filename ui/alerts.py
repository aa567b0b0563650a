"""The Alerts tab: rules on the pair on screen (and any watched pair), the alert log, downloads.

Rendered only while its tab is open (lazy tabs), inside the panel error boundary.
"""

from __future__ import annotations

from dataclasses import replace
from functools import partial

import pandas as pd
import streamlit as st

from service import exports
from service.alerts import METRICS, OPS, rules_from_frame, validate_rule
from service.compute import METHODS, PairParams
from service.desk import DashboardService
from service.watch import PairKey, keys_from_watchlist
from storage import StorageError
from storage.timefmt import ms_to_iso
from ui.guard import (
    csv_download,
    fmt_time,
    md_escape,
    panel,
)
from ui.state import session_reader


def render_alerts(service: DashboardService, params: PairParams | None) -> None:
    status = service.status()
    st.subheader("Alert rules")
    st.caption(
        "Rules are evaluated by the background monitor on every closed bar, with or "
        "without a browser open. A rule fires when its condition becomes true (on "
        "crossing, not on every bar it stays true), then waits for its cooldown "
        "(in market time)."
    )
    if status.read_only:
        st.info("Read-only: rules cannot be added here while another process writes the database.")
    elif params is None:
        st.info("Choose a valid pair in the sidebar to add a rule for it.")
    else:
        with panel("New rule"):
            _rule_form(service, params)
    with session_reader(status.db_path, status.generation) as lease:
        rules_df = lease.reader.alert_rules()
        events = lease.reader.alert_events(limit=500)
    with panel("Rules"):
        _rules_table(service, rules_df, bool(status.read_only))
    st.subheader("Alert log")
    with panel("Alert log"):
        mon = service.monitor
        if mon is not None:
            st.caption(
                f"Monitor: {mon.stats.passes:,} passes, {mon.stats.fired:,} fired since "
                f"start, last pass {fmt_time(mon.stats.last_pass_ms)} UTC"
                + (
                    f" — last error: {md_escape(mon.stats.last_error)}"
                    if mon.stats.last_error
                    else ""
                )
            )
        if events.empty:
            st.info("No alert has fired yet.")
        else:
            log = events.copy()
            log.insert(0, "fired", ms_to_iso(log["fired_ts_ms"]).to_numpy())
            log.insert(1, "bar", ms_to_iso(log["bar_time_ms"]).to_numpy())
            with session_reader(status.db_path, status.generation) as lease:
                states = exports.delivery_states(lease.reader, log["event_id"].tolist())
            log["delivery"] = [states.get(int(i), "") for i in log["event_id"]]
            st.dataframe(
                log[["fired", "bar", "rule_id", "value", "message", "delivery"]],
                hide_index=True,
                width="stretch",
                height=min(400, 40 + 35 * len(log)),
            )
        csv_download(
            "Alert log (CSV)",
            partial(exports.alert_log_csv, status.db_path),
            "alert_log.csv",
            "dl_alerts_tab",
        )
        csv_download(
            "Deliveries (CSV)",
            partial(exports.deliveries_csv, status.db_path),
            "alert_deliveries.csv",
            "dl_deliveries_tab",
        )


def _rule_form(service: DashboardService, p: PairParams) -> None:
    status = service.status()
    with session_reader(status.db_path, status.generation) as lease:
        watched = keys_from_watchlist(lease.reader.watchlist())
    live = PairKey(p.x, p.y, p.tf, p.window, p.method)
    choices = [live, *[k for k in watched if k != live]]
    with st.form("new_rule", clear_on_submit=False, border=True):
        on = st.selectbox(
            "Pair",
            choices,
            key="rule_pair",
            format_func=lambda k: k.describe() + (" (Live panel)" if k == live else ""),
            help="The Live panel's pair, or any watched pair.",
        )
        p = replace(p, x=on.x, y=on.y, tf=on.tf, window=on.window, method=on.method)
        st.markdown(
            f"For **{p.x} / {p.y}**, {p.tf} bars, window {p.window}, "
            f"{METHODS[p.method]} hedge ratio."
        )
        c = st.columns([2, 2, 1, 1.3, 1.3])
        name = c[0].text_input(
            "Name", value="", placeholder="optional", key="rule_name", max_chars=80
        )
        metric = c[1].selectbox(
            "Metric",
            list(METRICS),
            key="rule_metric",
            format_func=lambda m: METRICS[m].replace("X", p.x).replace("Y", p.y),
        )
        op = c[2].selectbox("Operator", list(OPS), key="rule_op")
        threshold = c[3].number_input(
            "Threshold", value=float(p.z), key="rule_threshold", format="%.6g"
        )
        cooldown = c[4].number_input(
            "Cooldown (s)",
            min_value=0.0,
            max_value=86_400.0,
            value=60.0,
            step=10.0,
            key="rule_cooldown",
        )
        if st.form_submit_button("Add rule", type="primary"):
            try:
                validate_rule(metric, op, float(threshold), float(cooldown), p.window, p.method)
                rid = service.add_rule(
                    name=name.strip(),
                    x=p.x,
                    y=p.y,
                    tf=p.tf,
                    metric=metric,
                    op=op,
                    threshold=float(threshold),
                    cooldown_s=float(cooldown),
                    params={"window": p.window, "method": p.method},
                )
            except (ValueError, StorageError) as exc:
                st.error(f"Rule not added: {md_escape(str(exc))}")
            else:
                st.success(f"Rule {rid} added; it is evaluated from the next closed bar on.")


def _rules_table(service: DashboardService, rules_df: pd.DataFrame, read_only: bool) -> None:
    rules = rules_from_frame(rules_df)
    if not rules:
        st.info("No rules yet. Add one above, e.g. |z-score| ≥ 2.")
        return
    mon = service.monitor
    skipped = mon.stats.skipped_rules if mon is not None else {}
    table = pd.DataFrame(
        [
            {
                "id": r.rule_id,
                "name": r.name,
                "rule": r.describe(),
                "window": r.window,
                "method": METHODS.get(r.method, r.method),
                "cooldown_s": r.cooldown_s,
                "enabled": r.enabled,
                "note": skipped.get(r.rule_id, ""),
            }
            for r in rules
        ]
    )
    st.dataframe(table, hide_index=True, width="stretch")
    if read_only:
        return
    c1, c2, c3 = st.columns([2, 1, 1])
    labels = {r.rule_id: r.name or r.describe() for r in rules}
    rid = c1.selectbox(
        "Rule",
        [r.rule_id for r in rules],
        key="rule_pick",
        format_func=lambda i: f"{i}: {labels[i]}",
    )
    current = next(r for r in rules if r.rule_id == rid)
    # Callbacks: the change is made before the page reruns, so the table is already current.
    c2.button(
        "Disable" if current.enabled else "Enable",
        key="rule_toggle",
        width="stretch",
        on_click=service.set_rule_enabled,
        args=(rid, not current.enabled),
    )
    c3.button(
        "Delete", key="rule_delete", width="stretch", on_click=service.delete_rule, args=(rid,)
    )


# ------------------------------------------------------------------------- backtest
