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
- the machine's load: the share of both cores busy over the window, and of each core (other
  engineers' work included), so a noisy window can be recognised and repeated.

``--thin N[,N...]`` measures with thin viewers instead of (or after) the tabs: clients of the
browser's protocol that load the server as tabs do, without rendering (``bench/thinviewer.py``;
trade-to-wire instead of trade-to-screen). ``--pin`` runs the server on core 0 and the viewers
(thin clients, or Playwright and Chromium) on core 1.

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
    python -m bench.viewers --thin 0,1,4,8,20 --modes shared,baseline --pin  # about 6 minutes
    python -m bench.viewers --soak 10 --soak-tabs 4  # memory soak
    python -m bench.viewers --inprocess 4            # CPU per refresh, AppTest sessions
"""

from __future__ import annotations

import argparse
import contextlib
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
from bench.harness import CHROMIUM, chart_selector, launch_chromium, start_streamlit
from bench.harness import StreamlitServer as Server
from bench.procstat import (
    cpu_s,
    machine_busy,
    machine_steal,
    pinned,
    repin_children,
    rss_mb,
    thread_cpus,
)

ROOT = Path(__file__).resolve().parents[1]

SAMPLE = ROOT / "samples" / "btcusdt_ethusdt_20240808_trades.txt.gz"
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
#: The default view's refresh interval (seconds).
REFRESH_S = 0.5
#: The query every viewer opens the page with: the default view (1s bars, window 60, 0.5 s).
DEFAULT_VIEW_QUERY = "refresh=0.5&window=60&tf=1s"
#: A viewer is open once the page shows this chart (ui/plot.js's grid cell ``data-chart``).
READY_KEY = "chart_zscore"
#: Counts redraws of the z-score chart (``data-rendered`` is bumped by ui/plot.js per draw).
CHART_RENDERS_JS = f"""() => {{
  const g = document.querySelector('{chart_selector(READY_KEY)}');
  return g ? Number(g.dataset.rendered || 0) : 0;
}}"""
#: With ``--pin``: the server on core 0, the viewers (thin clients or Chromium) on core 1.
SERVER_CORES, VIEWER_CORES = {0}, {1}
JS_HEAP_JS = "() => performance.memory ? performance.memory.usedJSHeapSize : null"
#: The soak's sample of one tab: the bars the view holds (the key figure *Bars*: the charts
#: fill until it reaches window + bars shown), then ``performance.memory`` after ``window.gc()``
#: (kept beside the soak's figure, :func:`live_heap_mb`, for comparison with earlier soaks). The
#: bench's own record of updates (``window.__seen``) is cut to its newest entry first, so the
#: measuring does not grow the heap it measures.
SOAK_SAMPLE_JS = """() => {
  if (window.__seen) window.__seen = window.__seen.slice(-1);
  const v = document.querySelector('.pd-kf[data-label="Bars"] .pd-kf-value');
  const bars = v ? Number(v.textContent.replace(/,/g, "")) : null;
  if (window.gc) window.gc();
  const heap = performance.memory ? performance.memory.usedJSHeapSize : null;
  return {bars, heap};
}"""


# ----------------------------------------------------------------------------- server
def start_server(mode: str, tmp: Path, speed: float) -> Server:
    """``streamlit run app.py -- --replay SAMPLE --speed X`` in ``mode``; waits for health."""
    env_extra, flags = MODES[mode]
    env = dict(os.environ, DB_PATH=str(tmp / f"{mode}.db"), PYTHONUNBUFFERED="1", **env_extra)
    env.pop("DATABASE_URL", None)
    app_args = ["--replay", str(SAMPLE), "--speed", f"{speed:g}"]
    return start_streamlit(tmp / f"{mode}.log", env, app_args=app_args, flags=flags, timeout_s=60)


# ----------------------------------------------------------------------------- tabs
class ChromiumTab:
    """A Chromium tab as a measurement window sees it (``bench.thinviewer`` viewers offer the
    same ``mark``, ``seen``, ``redraws``, ``js_heap_mb`` and ``close``)."""

    def __init__(self, page) -> None:
        self.page = page
        self._renders0 = 0

    def mark(self) -> None:
        """Start a window: keep only the newest update seen, count redraws from now."""
        self.page.evaluate("() => { window.__seen = window.__seen.slice(-1); }")
        self._renders0 = self.page.evaluate(CHART_RENDERS_JS)

    def seen(self) -> list[dict]:
        return self.page.evaluate("() => window.__seen")

    def redraws(self) -> int:
        return self.page.evaluate(CHART_RENDERS_JS) - self._renders0

    def js_heap_mb(self) -> float:
        return (self.page.evaluate(JS_HEAP_JS) or 0) / 1e6

    def close(self) -> None:
        self.page.context.close()


def open_tab(browser, url: str, on_page=None):
    """A tab of its own browser context on the default view, once its charts are drawn.

    ``on_page(page)`` is called before the page loads (e.g. to listen to its WebSocket).
    """
    ctx = browser.new_context(viewport={"width": 1600, "height": 1300}, color_scheme="dark")
    page = ctx.new_page()
    if on_page is not None:
        on_page(page)
    page.goto(f"{url}/?{DEFAULT_VIEW_QUERY}")
    chart = page.locator(f"{chart_selector(READY_KEY)}[data-rendered]").first
    chart.wait_for(state="attached", timeout=180_000)
    page.evaluate(OBSERVE_LAST_UPDATE_JS)
    return page


def measure(server: Server, viewers: list, seconds: float) -> dict:
    """One window: server CPU and RSS, each viewer's updates, redraws and trade-to-screen.

    ``viewers`` are :class:`ChromiumTab` or ``bench.thinviewer`` viewers (no redraws, no heap).
    """
    for v in viewers:
        v.mark()
    cpus = ["cpu", *(f"cpu{i}" for i in range(os.cpu_count() or 1))]
    busy0, steal0 = [machine_busy(c) for c in cpus], machine_steal()
    c0, own0, t0 = cpu_s(server.pid), time.process_time(), time.monotonic()
    time.sleep(seconds)  # a benchmark window, not a test wait: the load runs meanwhile
    c1, own1, t1 = cpu_s(server.pid), time.process_time(), time.monotonic()
    busy1, steal1 = [machine_busy(c) for c in cpus], machine_steal()
    wall = t1 - t0
    tabs = []
    for v in viewers:
        seen = v.seen()
        lat = trade_to_screen(seen)
        redraws = v.redraws()
        tabs.append(
            {
                "updates_per_s": (len(seen) - 1) / wall,
                "redraws_per_s": None if redraws is None else redraws / wall,
                "p95_s": lat.get("worst_case_s_p95"),
                "max_s": lat.get("worst_case_s_max"),
                "js_heap_mb": v.js_heap_mb(),
            }
        )
    p95 = [t["p95_s"] for t in tabs if t["p95_s"] is not None]
    redraws = [t["redraws_per_s"] for t in tabs if t["redraws_per_s"] is not None]
    updates = sum(t["updates_per_s"] for t in tabs) * wall
    busy = [(b1 - b0) / max(1, n1 - n0) for (b0, n0), (b1, n1) in zip(busy0, busy1, strict=True)]
    return {
        "tabs": len(viewers),
        "seconds": round(wall, 1),
        "server_cores": (c1 - c0) / wall,
        # Server CPU per refresh a tab received: unlike cores, it does not drop when the machine
        # is saturated and the tabs get fewer refreshes than asked (a shared 2-core machine).
        "server_cpu_ms_per_update": 1000 * (c1 - c0) / updates if updates else None,
        "server_rss_mb": rss_mb(server.pid),
        "server_cpus": thread_cpus(server.pid),
        "machine_busy": busy[0],
        "core_busy": busy[1:],
        # The hypervisor's share of the window (a noisy host: not comparable with a quiet one).
        "steal": (steal1[0] - steal0[0]) / max(1, steal1[1] - steal0[1]),
        # This process: the thin viewers' own CPU (with Chromium, only Playwright's side).
        "bench_process_cores": (own1 - own0) / wall,
        "updates_per_s_min": min((t["updates_per_s"] for t in tabs), default=None),
        "updates_per_s_mean": float(np.mean([t["updates_per_s"] for t in tabs])) if tabs else None,
        "redraws_per_s_mean": float(np.mean(redraws)) if redraws else None,
        "p95_s_worst_tab": max(p95) if p95 else None,
        "per_tab": tabs,
    }


@contextlib.contextmanager
def viewer_opener(kind: str, url: str):
    """Yield ``open_many(k)``: k more viewers of ``kind`` (``chromium`` or ``thin``), each
    showing the z-score chart; TimeoutError when they do not within the tabs' 180 s."""
    if kind == "thin":
        from bench.thinviewer import ThinViewers

        pool = ThinViewers(url, DEFAULT_VIEW_QUERY)

        def open_thin(k: int) -> list:
            new = [pool.add() for _ in range(k)]  # all at once, as tabs opened together
            pool.wait_until_shown(new, READY_KEY, timeout_s=180.0)
            return new

        try:
            yield open_thin
        finally:
            pool.close()
        return
    from playwright.sync_api import TimeoutError as PlaywrightTimeout
    from playwright.sync_api import sync_playwright

    def open_tabs(k: int) -> list:
        try:
            return [ChromiumTab(open_tab(browser, url)) for _ in range(k)]
        except PlaywrightTimeout as exc:
            raise TimeoutError(f"a tab did not draw its first chart: {exc}") from exc

    with sync_playwright() as pw:
        browser = launch_chromium(pw, CHROME_ARGS)
        try:
            yield open_tabs
        finally:
            browser.close()


def run_mode(
    mode: str,
    counts: list[int],
    seconds: float,
    warm_s: float,
    speed: float,
    *,
    kind: str = "chromium",
    pin: bool = False,
) -> list:
    """A fresh server in ``mode``; a window per viewer count, viewers of ``kind``.

    ``pin``: the server on core 0 and the viewers (this process's threads, or Playwright's
    driver and Chromium) on core 1, so neither can take the other's CPU.
    """
    tag = {"mode": mode, "kind": kind, "pinned": pin}
    with tempfile.TemporaryDirectory(prefix=f"bench-viewers-{mode}-") as tmp:
        with pinned(SERVER_CORES if pin else None):
            server = start_server(mode, Path(tmp), speed)
        try:
            with pinned(VIEWER_CORES if pin else None), viewer_opener(kind, server.url) as opener:
                return _windows(server, opener, counts, seconds, warm_s, tag)
        finally:
            server.stop()


def _windows(server: Server, open_many, counts: list[int], seconds, warm_s, tag: dict) -> list:
    """A measurement window per viewer count, opening and closing viewers between them."""
    rows: list[dict] = []
    viewers: list = []
    # The service starts with the first session, so "no tab" is measured last:
    # the feed, writer and alert monitor running after every tab has closed.
    for n in [*sorted(t for t in counts if t > 0), *[0 for t in counts if t == 0]]:
        try:
            viewers += open_many(max(0, n - len(viewers)))
        except TimeoutError as exc:  # a saturated server: say so and measure no more
            rows.append({**tag, "tabs": n, "error": str(exc)})
            print(f"{tag['mode']} {tag['kind']} n={n}: {exc}", file=sys.stderr, flush=True)
            break
        while len(viewers) > n:
            viewers.pop().close()
        time.sleep(warm_s)  # new sessions' first runs are not the steady state
        if tag["pinned"]:
            repin_children(VIEWER_CORES, skip=server.pid)
        row = {**measure(server, viewers, seconds), **tag}
        rows.append(row)
        _print_row(row)
    return rows


def _print_row(r: dict) -> None:
    def f(v, fmt):
        return "-" if v is None else format(v, fmt)

    print(
        f"{r['mode']:>8} {r['kind']:>8} n={r['tabs']:>2}  server {r['server_cores']:.3f} cores  "
        f"{f(r['server_cpu_ms_per_update'], '.1f')} ms/update  "
        f"RSS {r['server_rss_mb']:.0f} MB  updates/s min {f(r['updates_per_s_min'], '.2f')}  "
        f"redraws/s {f(r['redraws_per_s_mean'], '.2f')}  "
        f"p95 worst tab {f(r['p95_s_worst_tab'], '.2f')} s  "
        f"machine busy {100 * r['machine_busy']:.0f} % "
        f"(cores {', '.join(f'{100 * b:.0f}' for b in r['core_busy'])} %, "
        f"steal {100 * r.get('steal', 0):.0f} %)  "
        f"viewer side {r['bench_process_cores']:.2f} cores",
        file=sys.stderr,
        flush=True,
    )


def summarise(rows: list[dict]) -> dict:
    """Per mode and viewer kind: cores of the first viewer and of each further one
    (``(cores(N) - cores(1)) / (N - 1)``), and shared/baseline.

    Keys are the mode (Chromium tabs, as before) or ``mode/thin``.
    """
    out: dict = {}
    for (mode, kind), group in _groups([r for r in rows if "error" not in r]).items():
        by_n = {r["tabs"]: r["server_cores"] for r in group}
        s: dict = {
            "cores_by_tabs": by_n,
            "cpu_ms_per_update_by_tabs": {
                r["tabs"]: r["server_cpu_ms_per_update"] for r in group if r["tabs"]
            },
        }
        if 0 in by_n and 1 in by_n:
            s["first_viewer_cores"] = by_n[1] - by_n[0]
        ns = sorted(n for n in by_n if n >= 1)
        if len(ns) >= 2:
            s["further_viewer_cores"] = (by_n[ns[-1]] - by_n[ns[0]]) / (ns[-1] - ns[0])
            s["further_viewer_cores_by_n"] = {
                n: (by_n[n] - by_n[ns[0]]) / (n - ns[0]) for n in ns[1:]
            }
        out[mode if kind == "chromium" else f"{mode}/{kind}"] = s
    for key in list(out):
        mode, _, kind = key.partition("/")
        base = "baseline" + (f"/{kind}" if kind else "")
        if mode in ("gc_off", "shared") and base in out:
            b, n = out[base]["cores_by_tabs"], out[key]["cores_by_tabs"]
            out[f"{key}_over_baseline"] = {k: n[k] / b[k] for k in n if k in b and b[k] > 0}
    return out


def _groups(rows: list[dict]) -> dict[tuple[str, str], list[dict]]:
    out: dict[tuple[str, str], list[dict]] = {}
    for r in rows:
        out.setdefault((r["mode"], r.get("kind", "chromium")), []).append(r)
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
                    cdps = [p.context.new_cdp_session(p) for p in pages]
                    t0, c0, steal0 = time.monotonic(), cpu_s(server.pid), machine_steal()
                    while (elapsed := time.monotonic() - t0) < minutes * 60:
                        tabs = [p.evaluate(SOAK_SAMPLE_JS) for p in pages]
                        samples.append(
                            {
                                "t_s": round(elapsed),
                                "rss_mb": rss_mb(server.pid),
                                "js_heap_mb": [live_heap_mb(c) for c in cdps],
                                "js_heap_after_window_gc_mb": [
                                    round((t["heap"] or 0) / 1e6, 2) for t in tabs
                                ],
                                "bars": tabs[0]["bars"],
                                "cores_so_far": (cpu_s(server.pid) - c0) / elapsed
                                if elapsed > 1
                                else None,
                            }
                        )
                        print(json.dumps(samples[-1]), file=sys.stderr, flush=True)
                        time.sleep(every_s)  # a soak's sampling period
                    steal1 = machine_steal()
                finally:
                    browser.close()
        finally:
            server.stop()
    steal = (steal1[0] - steal0[0]) / max(1, steal1[1] - steal0[1])
    return {"mode": mode, "minutes": minutes, "tabs": n_tabs, "steal": steal} | soak_growth(samples)


def live_heap_mb(cdp) -> float:
    """A tab's live JS heap in MB: the DevTools protocol's ``HeapProfiler.collectGarbage`` (what
    DevTools' "collect garbage" button does: full collections until nothing more is freed),
    then ``Runtime.getHeapUsage``. ``performance.memory`` read right after ``window.gc()``
    counted 5–20 MB more than the live objects, and by a different amount each time, on a
    loaded machine (docs/viewers.md): this is the figure a heap snapshot agrees with."""
    cdp.send("HeapProfiler.collectGarbage")
    return round(cdp.send("Runtime.getHeapUsage")["usedSize"] / 1e6, 2)


def soak_growth(samples: list[dict], warm_fraction: float = 0.2) -> dict:
    """Growth from the end of warm-up to the end, in %: the median and the envelope.

    Warm-up lasts the first 20 % of samples, and at least until the view is full: the charts
    hold more bars (more points, more SVG) until the key figure *Bars* reaches window + bars
    shown — about nine minutes of a fresh replay at 1× on the default view — and a heap that
    grows with them is filling, not leaking.

    ``*_growth_pct`` compares the median of the first post-warm-up quarter with the median of
    the last quarter, so one sample taken just before a collection does not decide it. A heap
    that saws with a period of minutes (Plotly's text-size cache in each tab fills to 10,000
    entries, about 4 MB, then is emptied: docs/viewers.md) can still put the two quarters at
    different phases of the saw, so ``*_floor_growth_pct`` and ``*_peak_growth_pct`` also
    compare the lowest and the highest sample of the first half after warm-up with those of
    the second half. A leak raises the floor (what is retained at every sample); the peak is
    one sample and also holds whatever was in flight at that moment.
    """
    bars = [s.get("bars") or 0 for s in samples]
    full = bars.index(max(bars)) if bars else 0
    warm = max(int(len(samples) * warm_fraction), full)
    rest = samples[warm:]
    if len(rest) < 8:
        return {"samples": samples, "note": "too few samples after warm-up for a growth figure"}
    q = max(1, len(rest) // 4)
    head, tail = rest[:q], rest[-q:]
    first, second = rest[: len(rest) // 2], rest[len(rest) // 2 :]

    def pct(a: float, b: float) -> float:
        return 100.0 * (b - a) / a

    def growth(values) -> float:
        return pct(float(np.median(values(head))), float(np.median(values(tail))))

    def floor(values) -> float:
        return pct(min(values(first)), min(values(second)))

    def peak(values) -> float:
        return pct(max(values(first)), max(values(second)))

    def rss(part):
        return [s["rss_mb"] for s in part]

    def heaps(i):
        return lambda part: [s["js_heap_mb"][i] for s in part]

    tabs = range(len(samples[0]["js_heap_mb"]))
    return {
        "warm_until_s": rest[0]["t_s"],
        "rss_mb_start": samples[0]["rss_mb"],
        "rss_mb_after_warmup": float(np.median(rss(head))),
        "rss_mb_end": float(np.median(rss(tail))),
        "rss_growth_pct": growth(rss),
        "rss_floor_growth_pct": floor(rss),
        "rss_peak_growth_pct": peak(rss),
        "js_heap_growth_pct": [growth(heaps(i)) for i in tabs],
        "js_heap_floor_growth_pct": [floor(heaps(i)) for i in tabs],
        "js_heap_peak_growth_pct": [peak(heaps(i)) for i in tabs],
        "js_heap_mb_range_after_warmup": [[min(heaps(i)(rest)), max(heaps(i)(rest))] for i in tabs],
        "cores_mean": samples[-1]["cores_so_far"],
        "samples": samples,
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--tabs",
        help="Chromium tab counts, increasing (0 = no tab); default 0,1,2,4,8 unless --thin",
    )
    ap.add_argument(
        "--thin",
        metavar="N[,N...]",
        help="thin viewer counts (bench/thinviewer.py: the browser protocol, no rendering)",
    )
    ap.add_argument(
        "--pin",
        action="store_true",
        help="server on core 0, viewers (thin clients or Chromium) on core 1",
    )
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
    tabs = _counts(ap, "--tabs", args.tabs or ("" if args.thin else "0,1,2,4,8"))
    thin = _counts(ap, "--thin", args.thin or "")
    if args.inprocess is not None and args.inprocess < 1:
        ap.error(f"--inprocess takes a number of sessions of at least 1, not {args.inprocess}")
    needs_chromium = bool(args.soak or (tabs and args.inprocess is None))
    if needs_chromium and not Path(CHROMIUM).exists():
        print(f"cannot run: {CHROMIUM} is not installed", file=sys.stderr)
        return 2
    if args.pin and len(os.sched_getaffinity(0)) < 2:
        ap.error("--pin needs two cores to run on (server on core 0, viewers on core 1)")
    loadavg_before = Path("/proc/loadavg").read_text().split()[:3]
    if args.inprocess is not None:
        from bench.viewers_inprocess import inprocess

        result = inprocess(args.inprocess, args.rounds)
    elif args.soak:
        result = soak(args.soak, args.soak_tabs, args.soak_mode, args.speed)
    else:
        modes = args.modes.split(",")
        for mode in modes:
            if mode not in MODES:
                ap.error(f"unknown mode {mode!r}: expected one of {', '.join(MODES)}")
        rows = []
        for mode in modes:
            for kind, counts in (("chromium", tabs), ("thin", thin)):
                if counts:
                    rows += run_mode(
                        mode, counts, args.seconds, args.warm, args.speed, kind=kind, pin=args.pin
                    )
        result = {
            "rows": rows,
            "summary": summarise(rows),
            "cpus": os.cpu_count(),
            "loadavg_before": loadavg_before,
            "loadavg": Path("/proc/loadavg").read_text().split()[:3],
        }
    text = json.dumps(result, indent=2)
    print(text)
    if args.out:
        Path(args.out).write_text(text)
    return 0


def _counts(ap: argparse.ArgumentParser, flag: str, text: str) -> list[int]:
    """``"1,4,8"`` -> [1, 4, 8]; a clear one-line error for anything else."""
    try:
        counts = [int(t) for t in text.split(",") if t.strip()]
    except ValueError:
        ap.error(f"{flag} takes comma-separated viewer counts such as 1,4,8, not {text!r}")
    if any(n < 0 for n in counts):
        ap.error(f"{flag}: viewer counts cannot be negative ({text!r})")
    return counts


if __name__ == "__main__":
    sys.exit(main())
