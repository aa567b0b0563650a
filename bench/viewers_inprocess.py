"""CPU per live-panel refresh of N ``AppTest`` sessions in one process (``bench.viewers
--inprocess``): the page's script runs alone, without a server, WebSockets or browsers."""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from bench.viewers import MODES, REFRESH_S


def inprocess(sessions: int, rounds: int) -> dict:
    """CPU per live-panel refresh with ``sessions`` sessions of one view in one process.

    No browser and no server: ``AppTest`` sessions run ``bench/dashboard.py``'s live-panel
    script against 15 minutes of generated history; each round (one per 0.5 s) stores one new
    trade (a new data version) and refreshes every session once. CPU is
    ``time.process_time`` around each run, so a loaded machine slows it down but does not
    change it much. Per mode: the mean over all refreshes, and the median for the session that
    refreshes first after new data and for every further session.
    """
    import gc
    import statistics

    from streamlit.testing.v1 import AppTest

    from bench.dashboard import PANEL_SCRIPT, SYMBOLS, T0_MS, write_history
    from service import registry
    from service.desk import acquire_service
    from service.settings import AppSettings
    from storage import IdKind, Tick, open_writer

    out: dict = {"sessions": sessions, "rounds": rounds}
    with tempfile.TemporaryDirectory(prefix="bench-viewers-inproc-") as tmp:
        db = Path(tmp) / "inproc.db"
        script = Path(tmp) / "panel.py"
        script.write_text(PANEL_SCRIPT)
        os.environ.update(
            DB_PATH=str(db),
            FEED_AUTOSTART="0",
            BINANCE_REST_BASE="http://127.0.0.1:9",
            BINANCE_WS_BASE="ws://127.0.0.1:9",
            TICKS_KEEP_HOURS="forever",
            BARS_1S_KEEP_DAYS="forever",
            BENCH_WINDOW="60",
            BENCH_BARS="600",
        )
        os.environ.pop("DATABASE_URL", None)
        state = dict(SYMBOLS) | {f"{s}_id": 1 for s in SYMBOLS}
        with open_writer(db) as w:
            write_history(w, 0, 900, np.random.default_rng(7), state)
        now_s = 900
        for mode, (env, flags) in MODES.items():
            os.environ.update(env)
            # AppTest's runner skips Streamlit's post-run collection: do what the server does.
            post_gc = "true" in flags
            svc = acquire_service(AppSettings.load([]))
            apps = [AppTest.from_file(str(script), default_timeout=60) for _ in range(sessions)]
            for at in apps:
                at.run()  # warm: imports, first read
            first, further = [], []
            for _ in range(rounds):
                round_t0 = time.monotonic()
                state["BTCUSDT_id"] += 1
                svc.writer.write_ticks(
                    [
                        Tick(
                            "BTCUSDT",
                            state["BTCUSDT_id"],
                            T0_MS + now_s * 1000 + 500,
                            state["BTCUSDT"],
                            0.01,
                            False,
                            IdKind.AGG,
                        )
                    ]
                )
                now_s += 1
                for i, at in enumerate(apps):
                    t = time.process_time()
                    at.run()
                    if post_gc:
                        gc.collect(2)
                    (first if i == 0 else further).append(1000 * (time.process_time() - t))
                # Rounds at the default refresh interval, as the tabs would ask.
                time.sleep(max(0.0, REFRESH_S - (time.monotonic() - round_t0)))
            out[mode] = {
                "mean_cpu_ms_per_refresh": statistics.mean(first + further),
                "first_session_cpu_ms": statistics.median(first),
                "further_session_cpu_ms": statistics.median(further) if further else None,
            }
            print(mode, json.dumps(out[mode]), file=sys.stderr, flush=True)
        registry.SERVICE.close()
    return out
