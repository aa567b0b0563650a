"""Dashboard benchmark: one live-panel refresh with 1 h and with 24 h of stored history.

A refresh is the script run of the live panel (what ``st.fragment(run_every=...)`` reruns:
status line, toasts, key figures, six charts) measured with ``streamlit.testing.v1.AppTest``,
and the size of what it sends (every element's protobuf, i.e. the deltas the browser gets).
Two cases per history size: a *data* refresh (a new trade was committed since the last one, so
analytics are recomputed and every chart re-sent) and an *idle* refresh (nothing changed).

History is BTCUSDT and ETHUSDT with one 1s bar per second for 1 h, then extended to 24 h
(86,400 bars per symbol, 2 generated trades per second each; the panel reads bars, so trade
density does not matter). Targets (issue 5): ≤ 150 ms and ≤ 1 MB per refresh at 24 h, and a
24 h / 1 h ratio ≤ 1.5.

``--latency`` also measures, in headless Chromium against ``streamlit run app.py`` replaying
the bundled recording, how long after its exchange time a trade is on the screen at the default
refresh interval (target ≤ 1.5 s).

    python bench/dashboard.py                 # about 1 minute
    python bench/dashboard.py --latency       # + about 40 s in Chromium
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import statistics
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import numpy as np

from bench.harness import key_figures
from storage import IdKind, Tick, Writer, open_writer

ROOT = Path(__file__).resolve().parents[1]

#: The environment as started: the Chromium run must not inherit the panel run's settings.
START_ENV = dict(os.environ)
T0_MS = 1_735_689_600_000  # 2025-01-01T00:00:00Z
HOUR_S = 3600
SYMBOLS = {"BTCUSDT": 95_000.0, "ETHUSDT": 3_400.0}
TRADES_PER_S = 2

PANEL_SCRIPT = textwrap.dedent("""
    import os
    import streamlit as st
    from service.compute import PairParams
    from ui.live import render_live
    from service.desk import acquire_service
    from service.settings import AppSettings

    service = acquire_service(AppSettings.load([]))
    render_live(service, PairParams(window=int(os.environ["BENCH_WINDOW"]),
                                    display_bars=int(os.environ["BENCH_BARS"])), "normalised")
""")


def write_history(
    writer: Writer, start_s: int, end_s: int, rng: np.random.Generator, state: dict
) -> int:
    """Correlated random-walk trades, TRADES_PER_S per symbol per second, in [start_s, end_s)."""
    n_s = end_s - start_s
    common = rng.normal(0, 1, n_s)
    total = 0
    for sym in SYMBOLS:
        steps = (0.8 * common + 0.6 * rng.normal(0, 1, n_s)) * 2e-4
        path = state[sym] * np.exp(np.cumsum(steps))
        state[sym] = float(path[-1])
        sec = np.repeat(np.arange(start_s, end_s), TRADES_PER_S)
        n = sec.size
        ts = T0_MS + sec * 1000 + rng.integers(0, 1000, n)
        ts.sort()
        ids = state[sym + "_id"] + np.arange(n)
        state[sym + "_id"] += n
        px = np.round(path[sec - start_s] * (1 + rng.normal(0, 2e-5, n)), 2)
        for i in range(0, n, 50_000):
            sl = slice(i, i + 50_000)
            total += writer.write_tick_arrays(
                sym,
                IdKind.AGG,
                ids[sl],
                ts[sl],
                px[sl],
                np.full(ts[sl].size, 0.01),
                rng.random(ts[sl].size) < 0.5,
            )
    return total


def element_bytes(node) -> int:
    """Bytes of every element under ``node`` as protobuf: what the browser is sent."""
    total = 0
    proto = getattr(node, "proto", None)
    if proto is not None and hasattr(proto, "ByteSize"):
        total += proto.ByteSize()
    children = getattr(node, "children", None) or {}
    for child in children.values() if isinstance(children, dict) else children:
        total += element_bytes(child)
    return total


def measure_panel(script: Path, writer: Writer, state: dict, now_s: int, repeat: int) -> dict:
    """Median/p95 ms and bytes of data refreshes and idle refreshes of the live panel."""
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_file(str(script), default_timeout=60)
    at.run()  # warm: imports, service, first read
    assert not at.exception, [e.value for e in at.exception]
    data_ms, idle_ms, sizes = [], [], []
    for k in range(repeat):
        sym_id = state["BTCUSDT_id"]
        state["BTCUSDT_id"] += 1
        writer.write_ticks(
            [
                Tick(
                    "BTCUSDT",
                    sym_id,
                    T0_MS + (now_s + k) * 1000 + 500,
                    state["BTCUSDT"],
                    0.01,
                    False,
                    IdKind.AGG,
                )
            ]
        )
        t = time.perf_counter()
        at.run()
        data_ms.append((time.perf_counter() - t) * 1000)
        sizes.append(element_bytes(at._tree))
        t = time.perf_counter()
        at.run()
        idle_ms.append((time.perf_counter() - t) * 1000)
    assert not at.exception, [e.value for e in at.exception]
    bars = int(key_figures(at)["Bars"].replace(",", ""))

    def q(xs, p):
        return float(np.percentile(xs, p))

    return {
        "data_ms_median": statistics.median(data_ms),
        "data_ms_p95": q(data_ms, 95),
        "idle_ms_median": statistics.median(idle_ms),
        "idle_ms_p95": q(idle_ms, 95),
        "bytes_median": int(statistics.median(sizes)),
        "bars_read": bars,
    }


#: Records, in the page, each change of the newest-trade time shown (with the wall clock).
OBSERVE_LAST_UPDATE_JS = """() => {
    window.__seen = [];
    const grab = () => {
      const c = document.querySelector('.st-key-last_update code');
      const t = c ? c.textContent : '';
      const last = window.__seen[window.__seen.length - 1];
      if (t && (!last || last.text !== t))
        window.__seen.push({text: t, at: Date.now()});
    };
    new MutationObserver(grab).observe(document.body,
      {subtree: true, childList: true, characterData: true});
    grab();
}"""


def trade_to_screen(seen: list[dict]) -> dict:
    """Trade-to-screen latency from ``window.__seen`` of :data:`OBSERVE_LAST_UPDATE_JS`."""
    shown = []
    for s in seen:
        text = s["text"].strip()  # "HH:MM:SS.mmm" UTC, the newest trade's exchange time
        if len(text) != 12:
            continue
        h, m, rest = text.split(":")
        of_day = ((int(h) * 60 + int(m)) * 60) * 1000 + round(float(rest) * 1000)
        day0 = s["at"] - s["at"] % 86_400_000
        # The day is the one that puts the trade nearest to when it was seen (midnight-safe).
        t_ms = min(
            (day0 + d * 86_400_000 + of_day for d in (-1, 0, 1)),
            key=lambda t, at=s["at"]: abs(at - t),
        )
        shown.append((t_ms, s["at"]))
    # A trade first appears at the refresh after it happened; the oldest trade shown first by
    # update k happened just after the newest trade of update k-1: its delay is bounded by
    # (display time of k) - (trade time shown at k-1).
    worst = [(b_at - a_t) / 1000 for (a_t, _), (_, b_at) in itertools.pairwise(shown)]
    newest = [(at - t) / 1000 for t, at in shown]
    worst = [w for w in worst if 0 <= w < 60]
    if not worst:
        return {"skipped": "no updates observed"}
    return {
        "updates": len(shown),
        "worst_case_s_max": max(worst),
        "worst_case_s_p95": float(np.percentile(worst, 95)),
        "newest_trade_age_s_median": statistics.median(newest),
    }


def measure_latency(seconds: float, screenshot: str | None = None) -> dict:
    """Trade-to-screen latency in Chromium, default refresh interval, replayed recording."""
    from playwright.sync_api import sync_playwright

    from bench.harness import CHROMIUM, launch_chromium, start_streamlit

    if not Path(CHROMIUM).exists():
        return {"skipped": f"{CHROMIUM} not installed"}
    tmp = Path(tempfile.mkdtemp(prefix="bench-dash-"))
    env = dict(START_ENV, DB_PATH=str(tmp / "live.db"))
    env.pop("DATABASE_URL", None)
    app_args = ["--replay", str(ROOT / "samples" / "btcusdt_ethusdt_20240808_trades.txt.gz")]
    server = start_streamlit(tmp / "streamlit.log", env, app_args=app_args)
    try:
        with sync_playwright() as p:
            b = launch_chromium(p)
            page = b.new_page(viewport={"width": 1600, "height": 1400}, color_scheme="dark")
            page.goto(f"{server.url}/")
            page.locator(".st-key-last_update code").first.wait_for(timeout=30_000)
            page.wait_for_timeout(5_000)  # let the feed connect and the first charts draw
            # Record, in the page, when the newest-trade time shown changes (wall clock).
            page.evaluate(OBSERVE_LAST_UPDATE_JS)
            time.sleep(seconds)
            seen = page.evaluate("() => window.__seen")
            if screenshot:
                page.get_by_role("button", name="Run ADF / Engle–Granger").click()
                page.get_by_text("Engle–Granger p").first.wait_for(timeout=30_000)
                page.mouse.move(5, 5)  # no tooltip in the picture
                # Streamlit scrolls inside its own container: make the window the page's size.
                page.set_viewport_size({"width": 1600, "height": 1900})
                page.wait_for_timeout(1_500)
                page.screenshot(path=screenshot)
            b.close()
    finally:
        server.stop()
    return trade_to_screen(seen)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=30, help="refreshes measured per case")
    ap.add_argument("--window", type=int, default=60)
    ap.add_argument("--bars", type=int, default=600, help="bars shown (the default view)")
    ap.add_argument("--latency", action="store_true", help="also measure in Chromium")
    ap.add_argument("--latency-seconds", type=float, default=40.0)
    ap.add_argument(
        "--screenshot",
        metavar="PNG",
        help="with --latency: save the page at the "
        "end (the README's ui/screenshot.png comes from --latency-seconds 150)",
    )
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        db = Path(tmp) / "bench.db"
        script = Path(tmp) / "panel.py"
        script.write_text(PANEL_SCRIPT)
        os.environ.update(
            {
                "DB_PATH": str(db),
                "FEED_AUTOSTART": "0",
                "BINANCE_REST_BASE": "http://127.0.0.1:9",
                "BINANCE_WS_BASE": "ws://127.0.0.1:9",
                "TICKS_KEEP_HOURS": "forever",
                "BARS_1S_KEEP_DAYS": "forever",
                "BENCH_WINDOW": str(args.window),
                "BENCH_BARS": str(args.bars),
            }
        )
        os.environ.pop("DATABASE_URL", None)
        rng = np.random.default_rng(7)
        state = {s: p for s, p in SYMBOLS.items()} | {f"{s}_id": 1 for s in SYMBOLS}
        results: dict = {"window": args.window, "bars_shown": args.bars, "repeat": args.repeat}
        writer = open_writer(db)
        t = time.perf_counter()
        write_history(writer, 0, HOUR_S, rng, state)
        results["build_1h_s"] = time.perf_counter() - t
        writer.close()  # the panel's service opens the database's one writer

        from service import registry
        from service.desk import acquire_service
        from service.settings import AppSettings

        svc = acquire_service(AppSettings.load([]))
        results["1h"] = measure_panel(script, svc.writer, state, HOUR_S, args.repeat)
        t = time.perf_counter()
        write_history(svc.writer, HOUR_S + args.repeat + 1, 24 * HOUR_S, rng, state)
        results["build_24h_s"] = time.perf_counter() - t
        results["24h"] = measure_panel(script, svc.writer, state, 24 * HOUR_S, args.repeat)
        registry.SERVICE.close()
        results["db_mb_24h"] = sum(p.stat().st_size for p in Path(tmp).glob("bench.db*")) / 1e6
    results["ratio_24h_1h_data_ms"] = (
        results["24h"]["data_ms_median"] / results["1h"]["data_ms_median"]
    )
    if args.latency:
        results["latency"] = measure_latency(args.latency_seconds, args.screenshot)
    print(json.dumps(results, indent=2))
    h24 = results["24h"]
    ok = (
        h24["data_ms_median"] <= 150
        and h24["bytes_median"] <= 1_000_000
        and results["ratio_24h_1h_data_ms"] <= 1.5
    )
    print(
        f"\nlive-panel refresh at 24 h: {h24['data_ms_median']:.0f} ms median "
        f"(p95 {h24['data_ms_p95']:.0f} ms), idle {h24['idle_ms_median']:.0f} ms, "
        f"{h24['bytes_median'] / 1e3:.0f} kB sent; 24 h / 1 h = "
        f"{results['ratio_24h_1h_data_ms']:.2f} -> {'OK' if ok else 'MISSED'}",
        file=sys.stderr,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
