"""CSV exports: each a plain function from the database (and the view) to bytes.

The download buttons call these lazily (Streamlit runs a download's callable in its own thread
when it is clicked), so every function opens and closes its own ``Reader``. Column sets match
the command-line tools: bars as ``python -m storage export`` writes them, the analytics table
as ``python -m analytics --out`` writes it.
"""

from __future__ import annotations

import pandas as pd

from service.compute import PairParams, bar_stats_table, compute_pair, export_table
from storage import Reader, open_reader
from storage.readbase import bars_for_export
from storage.timefmt import iso_from_ms

#: Columns of the alert log export.
ALERT_EXPORT_COLUMNS = [
    "fired_at",
    "bar_time",
    "rule_id",
    "rule",
    "pair",
    "tf",
    "metric",
    "op",
    "threshold",
    "value",
    "message",
    "alert_id",
    "deliveries",
]
#: Columns of the deliveries export (one row per alert and sink; no secret: sinks by name).
DELIVERY_EXPORT_COLUMNS = [
    "alert_id",
    "sink",
    "kind",
    "status",
    "attempts",
    "last_error",
    "next_attempt",
    "delivered_at",
]
#: Most bars in one bars export (the newest); a week of 1s bars is 600k rows.
MAX_EXPORT_BARS = 200_000


def _csv(df: pd.DataFrame, **kw) -> bytes:
    return df.to_csv(index=False, na_rep="", **kw).encode("utf-8")


def bars_frame(reader: Reader, symbol: str, tf: str, limit: int = MAX_EXPORT_BARS) -> pd.DataFrame:
    return bars_for_export(reader.bars(symbol, tf, limit=limit))


def bars_csv(db_path: str, symbol: str, tf: str) -> bytes:
    """One leg's bars of ``tf`` (the newest :data:`MAX_EXPORT_BARS`)."""
    with open_reader(db_path) as reader:
        return _csv(bars_frame(reader, symbol, tf), float_format="%.12g")


def analytics_frame(reader: Reader, params: PairParams) -> pd.DataFrame:
    frame = reader.pair_frame(params.x, params.y, params.tf, limit=params.read_bars)
    return export_table(compute_pair(frame, params))


def analytics_csv(db_path: str, params: PairParams) -> bytes:
    """The per-bar analytics table of the current view (``time, x, y, alpha, beta, spread,
    zscore, corr`` and ``r2`` for OLS)."""
    with open_reader(db_path) as reader:
        return _csv(analytics_frame(reader, params))


def bar_stats_frame(reader: Reader, params: PairParams) -> pd.DataFrame:
    frame = reader.pair_frame(params.x, params.y, params.tf, limit=params.read_bars)
    return bar_stats_table(compute_pair(frame, params))


def bar_stats_csv(db_path: str, params: PairParams) -> bytes:
    """Per-bar statistics: the analytics columns plus r², each leg's volume and fill flag."""
    with open_reader(db_path) as reader:
        return _csv(bar_stats_frame(reader, params))


def alert_log_frame(reader: Reader, limit: int = 10_000) -> pd.DataFrame:
    """Fired alerts, newest first, with their rule's definition."""
    events = reader.alert_events(limit=limit)
    rules = reader.alert_rules().set_index("rule_id")
    states = delivery_states(reader, events["event_id"].tolist())
    rows = []
    for e in events.itertuples(index=False):
        r = rules.loc[e.rule_id] if e.rule_id in rules.index else None
        rows.append(
            {
                "fired_at": iso_from_ms(e.fired_ts_ms),
                "bar_time": iso_from_ms(e.bar_time_ms),
                "rule_id": int(e.rule_id),
                "rule": "" if r is None else r["name"],
                "pair": "" if r is None else f"{r['x']}/{r['y']}",
                "tf": "" if r is None else r["tf"],
                "metric": "" if r is None else r["metric"],
                "op": "" if r is None else r["op"],
                "threshold": None if r is None else float(r["threshold"]),
                "value": float(e.value),
                "message": e.message,
                "alert_id": int(e.event_id),
                "deliveries": states.get(int(e.event_id), ""),
            }
        )
    return pd.DataFrame(rows, columns=ALERT_EXPORT_COLUMNS)


def delivery_states(reader: Reader, event_ids: list[int]) -> dict[int, str]:
    """Per alert, one line of its delivery state per sink, e.g.
    ``hook: delivered; tg: pending (2 attempts, HTTP 500)``."""
    d = reader.deliveries(event_ids=[int(i) for i in event_ids])
    out: dict[int, list[str]] = {}
    for r in d.itertuples(index=False):
        text = f"{r.sink}: {r.status}"
        if r.status != "delivered" and (r.attempts or r.last_error):
            text += f" ({r.attempts} attempts" + (f", {r.last_error}" if r.last_error else "") + ")"
        out.setdefault(int(r.event_id), []).append(text)
    return {k: "; ".join(v) for k, v in out.items()}


def deliveries_frame(reader: Reader, limit: int = 10_000) -> pd.DataFrame:
    """Delivery state per alert and sink, newest alert first (errors carry no secret)."""
    d = reader.deliveries(limit=limit)
    out = pd.DataFrame(
        {
            "alert_id": d["event_id"],
            "sink": d["sink"],
            "kind": d["kind"],
            "status": d["status"],
            "attempts": d["attempts"],
            "last_error": d["last_error"],
            "next_attempt": _iso_or_blank(d["next_attempt_ms"].where(d["status"] == "pending")),
            "delivered_at": _iso_or_blank(d["delivered_ts_ms"]),
        }
    )
    return out[DELIVERY_EXPORT_COLUMNS]


def _iso_or_blank(ms: pd.Series) -> list[str]:
    return ["" if pd.isna(v) else iso_from_ms(int(v)) for v in ms]


def deliveries_csv(db_path: str) -> bytes:
    with open_reader(db_path) as reader:
        return _csv(deliveries_frame(reader))


def alert_log_csv(db_path: str) -> bytes:
    with open_reader(db_path) as reader:
        return _csv(alert_log_frame(reader))


def file_stem(params: PairParams) -> str:
    return f"{params.x}_{params.y}_{params.tf}"
