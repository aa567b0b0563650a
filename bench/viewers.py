"""Many viewers, one server: what each extra browser tab costs the real ``streamlit run`` server.

Starts ``streamlit run app.py -- --replay samples/<sample> --speed 1`` on a free port (default
view: 1s bars, window 60, 0.5 s refresh), opens N headless Chromium tabs on the Live panel
(one browser context each, N = 0, 1, 2, 4, 8 by default), and for each N measures over a short
window:

- server CPU: user + system time of the server process from ``/proc/<pid>/stat`` per wall
  second (1.0 = one core), and its RSS;
- per tab: how often the newest-trade time on the page changed (updates/s), how often the
  z-score chart was redrawn (redraws/s), and trade-to-screen latency (the worst-case bound of
  ``bench/dashboard.py --latency``), p95 per tab;
- the machine's load: the share of both cores busy over the window (other engineers' work
  included), so a noisy window can be recognised and repeated.

Each mode is a server of its own, measured in the same run:

- ``baseline``: today's behaviour — Streamlit's forced ``gc.collect(2)`` after every script
  and fragment run (``--runner.postScriptGC true``) and per-session compute
  (``SHARED_VIEWS=0``);
- ``gc_off``: ``runner.postScriptGC = false`` (``.streamlit/config.toml``), per-session
  compute: the garbage-collection change alone;
- ``shared``: the project's configuration — ``runner.postScriptGC = false`` from
  ``.streamlit/config.toml`` and the process-wide view cache (``service/viewcache.py``).

``--soak MINUTES`` instead runs one server (``--soak-mode``) with ``--soak-tabs`` tabs and
samples server RSS and each tab's JS heap every 30 s: growth after warm-up is the figure.

    python -m bench.viewers                          # about 8 minutes
    python -m bench.viewers --tabs 1,4 --seconds 15  # quicker
    python -m bench.viewers --soak 10 --soak-tabs 4  # memory soak
    python -m bench.viewers --inprocess 4            # CPU per refresh, AppTest sessions
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

# Run as a module (python -m bench.viewers): run as a file, bench/ would come first on the path
# and bench/storage_bench.py would shadow the storage package.
from bench.dashboard import OBSERVE_LAST_UPDATE_JS, trade_to_screen
from bench.harness import CHROME_ARGS as BASE_CHROME_ARGS
from bench.harness import CHROMIUM, launch_chromium, start_streamlit
from bench.harness import StreamlitServer as Server

ROOT = Path(__file__).resolve().parents[1]

SAMPLE = ROOT / "samples" / "btcusdt_ethusdt_20240808_trades.txt.gz"
CLK_TCK = os.sysconf("SC_CLK_TCK")
PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")
CHROME_ARGS = [
    *BASE_CHROME_ARGS,
    # Every tab is a screen on a desk: none may be throttled as a background tab.
    "--disable-background-timer-throttling",
    "--disable-renderer-backgrounding",
    "--disable-backgrounding-occluded-windows",
    "--enable-precise-memory-info",
    "--js-flags=--expose-gc",  # the soak reads each tab's heap after a full collection
]
#: What each mode changes against the project's configuration.
MODES: dict[str, tuple[dict[str, str], list[str]]] = {
    "baseline": ({"SHARED_VIEWS": "0"}, ["--runner.postScriptGC", "true"]),
    "gc_off": ({"SHARED_VIEWS": "0"}, []),
    "shared": ({"SHARED_VIEWS": "1"}, []),
}
#: Counts redraws of the z-score chart (``data-rendered`` is bumped by ui/plot.js per draw).
CHART_RENDERS_JS = """() => {
  const g = document.querySelector('.st-key-chart_zscore .js-pd-plot');
  return g ? Number(g.dataset.rendered || 0) : 0;
}"""
#: The default view's refresh interval (seconds).
REFRESH_S = 0.5
JS_HEAP_JS = "() => performance.memory ? performance.memory.usedJSHeapSize : null"
#: The heap after a full collection: V8's heap saws between collections, so a raw sample
#: says little about growth.
JS_HEAP_AFTER_GC_JS = """() => { if (window.gc) window.gc();
  return performance.memory ? performance.memory.usedJSHeapSize : null; }"""


# ----------------------------------------------------------------------------- /proc
def cpu_s(pid: int) -> float:
    """User + system CPU seconds of ``pid`` (its threads included)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK  # utime, stime (fields 14, 15)


def rss_mb(pid: int) -> float:
    return int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * PAGE_SIZE / 1e6


def machine_busy() -> tuple[float, float]:
    """(busy, total) jiffies of all cores since boot, from ``/proc/stat``."""
    v = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = v[3] + v[4]
    total = sum(v[:8])
    return total - idle, total


# ----------------------------------------------------------------------------- server
def start_server(mode: str, tmp: Path, speed: float) -> Server:
    """``streamlit run app.py -- --replay SAMPLE --speed X`` in ``mode``; waits for health."""
    env_extra, flags = MODES[mode]
    env = dict(os.environ, DB_PATH=str(tmp / f"{mode}.db"), PYTHONUNBUFFERED="1", **env_extra)
    env.pop("DATABASE_URL", None)
    app_args = ["--replay", str(SAMPLE), "--speed", f"{speed:g}"]
    return start_streamlit(tmp / f"{mode}.log", env, app_args=app_args, flags=flags, timeout_s=60)


# ----------------------------------------------------------------------------- tabs
def open_tab(browser, url: str):
    """A tab of its own browser context on the default view, once its charts are drawn."""
    ctx = browser.new_context(viewport={"width": 1600, "height": 1300}, color_scheme="dark")
    page = ctx.new_page()
    page.goto(f"{url}/?refresh=0.5&window=60&tf=1s")
    chart = page.locator(".st-key-chart_zscore .js-pd-plot[data-rendered]").first
    chart.wait_for(state="attached", timeout=180_000)
    page.evaluate(OBSERVE_LAST_UPDATE_JS)
    return page


def measure(server: Server, pages: list, seconds: float) -> dict:
    """One window: server CPU and RSS, each tab's updates, redraws and trade-to-screen."""
    for p in pages:
        p.evaluate("() => { window.__seen = window.__seen.slice(-1); }")
    renders0 = [p.evaluate(CHART_RENDERS_JS) for p in pages]
    busy0, total0 = machine_busy()
    c0, t0 = cpu_s(server.pid), time.monotonic()
    time.sleep(seconds)  # a benchmark window, not a test wait: the load runs meanwhile
    c1, t1 = cpu_s(server.pid), time.monotonic()
    busy1, total1 = machine_busy()
    wall = t1 - t0
    tabs = []
    for p, r0 in zip(pages, renders0, strict=True):
        seen = p.evaluate("() => window.__seen")
        lat = trade_to_screen(seen)
        tabs.append(
            {
                "updates_per_s": (len(seen) - 1) / wall,
                "redraws_per_s": (p.evaluate(CHART_RENDERS_JS) - r0) / wall,
                "p95_s": lat.get("worst_case_s_p95"),
                "max_s": lat.get("worst_case_s_max"),
                "js_heap_mb": (p.evaluate(JS_HEAP_JS) or 0) / 1e6,
            }
        )
    p95 = [t["p95_s"] for t in tabs if t["p95_s"] is not None]
    updates = sum(t["updates_per_s"] for t in tabs) * wall
    return {
        "tabs": len(pages),
        "seconds": round(wall, 1),
        "server_cores": (c1 - c0) / wall,
        # Server CPU per refresh a tab received: unlike cores, it does not drop when the machine
        # is saturated and the tabs get fewer refreshes than asked (a shared 2-core machine).
        "server_cpu_ms_per_update": 1000 * (c1 - c0) / updates if updates else None,
        "server_rss_mb": rss_mb(server.pid),
        "machine_busy": (busy1 - busy0) / max(1, total1 - total0),
        "updates_per_s_min": min((t["updates_per_s"] for t in tabs), default=None),
        "updates_per_s_mean": float(np.mean([t["updates_per_s"] for t in tabs])) if tabs else None,
        "redraws_per_s_mean": float(np.mean([t["redraws_per_s"] for t in tabs])) if tabs else None,
        "p95_s_worst_tab": max(p95) if p95 else None,
        "per_tab": tabs,
    }


def run_mode(mode: str, tabs: list[int], seconds: float, warm_s: float, speed: float) -> list:
    from playwright.sync_api import sync_playwright

    rows = []
    with tempfile.TemporaryDirectory(prefix=f"bench-viewers-{mode}-") as tmp:
        server = start_server(mode, Path(tmp), speed)
        try:
            with sync_playwright() as pw:
                browser = launch_chromium(pw, CHROME_ARGS)
                try:
                    pages: list = []
                    # The service starts with the first session, so "no tab" is measured last:
                    # the feed, writer and alert monitor running after every tab has closed.
                    for n in [*sorted(t for t in tabs if t > 0), *[0 for t in tabs if t == 0]]:
                        while len(pages) < n:
                            pages.append(open_tab(browser, server.url))
                        while len(pages) > n:
                            pages.pop().context.close()
                        time.sleep(warm_s)  # new sessions' first runs are not the steady state
                        row = measure(server, pages, seconds)
                        row["mode"] = mode
                        rows.append(row)
                        _print_row(row)
                finally:
                    browser.close()
        finally:
            server.stop()
    return rows


def _print_row(r: dict) -> None:
    def f(v, fmt):
        return "-" if v is None else format(v, fmt)

    print(
        f"{r['mode']:>8} tabs={r['tabs']:>2}  server {r['server_cores']:.3f} cores  "
        f"{f(r['server_cpu_ms_per_update'], '.1f')} ms/update  "
        f"RSS {r['server_rss_mb']:.0f} MB  updates/s min {f(r['updates_per_s_min'], '.2f')}  "
        f"redraws/s {f(r['redraws_per_s_mean'], '.2f')}  "
        f"p95 worst tab {f(r['p95_s_worst_tab'], '.2f')} s  "
        f"machine busy {100 * r['machine_busy']:.0f} %",
        file=sys.stderr,
        flush=True,
    )


def summarise(rows: list[dict]) -> dict:
    """Cores of the first viewer and of each further one, per mode, and shared/baseline."""
    out: dict = {}
    for mode in MODES:
        by_n = {r["tabs"]: r["server_cores"] for r in rows if r["mode"] == mode}
        if not by_n:
            continue
        s: dict = {
            "cores_by_tabs": by_n,
            "cpu_ms_per_update_by_tabs": {
                r["tabs"]: r["server_cpu_ms_per_update"]
                for r in rows
                if r["mode"] == mode and r["tabs"]
            },
        }
        if 0 in by_n and 1 in by_n:
            s["first_viewer_cores"] = by_n[1] - by_n[0]
        ns = sorted(n for n in by_n if n >= 1)
        if len(ns) >= 2:
            s["further_viewer_cores"] = (by_n[ns[-1]] - by_n[ns[0]]) / (ns[-1] - ns[0])
        out[mode] = s
    for mode in ("gc_off", "shared"):
        if "baseline" in out and mode in out:
            b, n = out["baseline"]["cores_by_tabs"], out[mode]["cores_by_tabs"]
            out[f"{mode}_over_baseline"] = {k: n[k] / b[k] for k in n if k in b and b[k] > 0}
    return out


# ----------------------------------------------------------------------------- soak
def soak(minutes: float, n_tabs: int, mode: str, speed: float, every_s: float = 30.0) -> dict:
    """Server RSS and each tab's JS heap every ``every_s`` for ``minutes``, ``n_tabs`` tabs."""
    from playwright.sync_api import sync_playwright

    samples = []
    with tempfile.TemporaryDirectory(prefix="bench-soak-") as tmp:
        server = start_server(mode, Path(tmp), speed)
        try:
            with sync_playwright() as pw:
                browser = launch_chromium(pw, CHROME_ARGS)
                try:
                    pages = [open_tab(browser, server.url) for _ in range(n_tabs)]
                    t0, c0 = time.monotonic(), cpu_s(server.pid)
                    while (elapsed := time.monotonic() - t0) < minutes * 60:
                        heaps = [p.evaluate(JS_HEAP_AFTER_GC_JS) or 0 for p in pages]
                        samples.append(
                            {
                                "t_s": round(elapsed),
                                "rss_mb": rss_mb(server.pid),
                                "js_heap_mb": [round(h / 1e6, 2) for h in heaps],
                                "cores_so_far": (cpu_s(server.pid) - c0) / elapsed
                                if elapsed > 1
                                else None,
                            }
                        )
                        print(json.dumps(samples[-1]), file=sys.stderr, flush=True)
                        time.sleep(every_s)  # a soak's sampling period
                finally:
                    browser.close()
        finally:
            server.stop()
    return {"mode": mode, "minutes": minutes, "tabs": n_tabs, **soak_growth(samples)}


def soak_growth(samples: list[dict], warm_fraction: float = 0.2) -> dict:
    """Growth from the end of warm-up (first 20 % of samples) to the end, in %.

    Compares the median of the first post-warm-up quarter with the median of the last quarter
    of samples, so one sample taken just before a collection does not decide it.
    """
    if len(samples) < 8:
        return {"samples": samples, "note": "too few samples for a growth figure"}
    rest = samples[int(len(samples) * warm_fraction) :]
    q = max(1, len(rest) // 4)
    head, tail = rest[:q], rest[-q:]

    def growth(values_head, values_tail) -> float:
        a, b = float(np.median(values_head)), float(np.median(values_tail))
        return 100.0 * (b - a) / a

    n_tabs = len(samples[0]["js_heap_mb"])
    return {
        "rss_mb_start": samples[0]["rss_mb"],
        "rss_mb_after_warmup": float(np.median([s["rss_mb"] for s in head])),
        "rss_mb_end": float(np.median([s["rss_mb"] for s in tail])),
        "rss_growth_pct": growth([s["rss_mb"] for s in head], [s["rss_mb"] for s in tail]),
        "js_heap_growth_pct": [
            growth([s["js_heap_mb"][i] for s in head], [s["js_heap_mb"][i] for s in tail])
            for i in range(n_tabs)
        ],
        "cores_mean": samples[-1]["cores_so_far"],
        "samples": samples,
    }


# ----------------------------------------------------------------------------- in process
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


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tabs", default="0,1,2,4,8", help="tab counts, increasing (0 = no tab)")
    ap.add_argument("--seconds", type=float, default=20.0, help="measurement window per count")
    ap.add_argument("--warm", type=float, default=8.0, help="seconds before each window")
    ap.add_argument("--modes", default="baseline,gc_off,shared", help=f"of {', '.join(MODES)}")
    ap.add_argument("--speed", type=float, default=1.0, help="replay speed")
    ap.add_argument("--soak", type=float, metavar="MINUTES", help="run the memory soak instead")
    ap.add_argument("--soak-tabs", type=int, default=4)
    ap.add_argument("--soak-mode", default="shared", choices=list(MODES))
    ap.add_argument(
        "--inprocess",
        type=int,
        metavar="SESSIONS",
        help="instead: CPU per refresh of SESSIONS AppTest sessions in one process, per mode",
    )
    ap.add_argument("--rounds", type=int, default=20, help="with --inprocess: new versions")
    ap.add_argument("--out", help="also write the JSON results to this file")
    args = ap.parse_args(argv)
    if not Path(CHROMIUM).exists():
        print(f"cannot run: {CHROMIUM} is not installed", file=sys.stderr)
        return 2
    if args.inprocess:
        result = inprocess(args.inprocess, args.rounds)
    elif args.soak:
        result = soak(args.soak, args.soak_tabs, args.soak_mode, args.speed)
    else:
        tabs = [int(t) for t in args.tabs.split(",")]
        rows = []
        for mode in args.modes.split(","):
            if mode not in MODES:
                ap.error(f"unknown mode {mode!r}: expected one of {', '.join(MODES)}")
            rows += run_mode(mode, tabs, args.seconds, args.warm, args.speed)
        result = {
            "rows": rows,
            "summary": summarise(rows),
            "cpus": os.cpu_count(),
            "loadavg": Path("/proc/loadavg").read_text().split()[:3],
        }
    text = json.dumps(result, indent=2)
    print(text)
    if args.out:
        Path(args.out).write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
