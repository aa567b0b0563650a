"""Watchlist benchmark: evaluating rules on one new closed bar and refreshing the Watchlist tab.

5, 20 and 50 watched pairs (of 11 symbols, 1s bars, window 60, OLS, one |z| rule per pair)
with 1 h and then 24 h of stored history. Per pair count and history, in one run:

* **evaluate**: ``AlertMonitor.run_once`` right after one new bar closed on every pair (each
  pair computed once, every rule evaluated on it; the monitor's state is warm).
* **tab, new bar**: the Watchlist tab's rows (``service.watchlist.watch_rows``) right after
  the monitor's pass: the snapshots are already fresh, so only the freshness check runs.
* **tab, cold**: the same with an empty board (a page process without a monitor, or the first
  viewer): every pair computed once.
* **scratch** (the baseline): each pair computed from scratch as the Live panel computes one
  view (``pair_frame`` of window + 600 bars, ``compute_pair``), i.e. no sharing, no bounds.

Targets (issue 12): 20 pairs ≤ 100 ms per refresh; evaluation 24 h / 1 h ≤ 1.5.

    python bench/watchlist.py          # about 2 minutes (most of it writing 24 h of trades)
"""

from __future__ import annotations

import itertools
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from service.alerts import AlertMonitor  # noqa: E402 - after the path tweak
from service.compute import PairParams, compute_pair  # noqa: E402
from service.watch import PairBoard, board_for, keys_from_watchlist  # noqa: E402
from service.watchlist import watch_rows  # noqa: E402
from storage import IdKind, Reader, Writer  # noqa: E402

T0_MS = 1_735_689_600_000  # 2025-01-01T00:00:00Z
HOUR_S = 3600
N_SYMBOLS = 11
PAIR_COUNTS = (5, 20, 50)
REPEATS = 5
WINDOW = 60


def symbols() -> list[str]:
    return [f"S{i:02d}USDT" for i in range(N_SYMBOLS)]


def write_seconds(w: Writer, start_s: int, end_s: int, rng: np.random.Generator, st: dict) -> None:
    """One trade per symbol per second in [start_s, end_s): correlated random walks."""
    n = end_s - start_s
    common = rng.normal(0, 1, n)
    sec = np.arange(start_s, end_s)
    for sym in symbols():
        steps = (0.8 * common + 0.6 * rng.normal(0, 1, n)) * 2e-4
        path = st[sym] * np.exp(np.cumsum(steps))
        st[sym] = float(path[-1])
        ids = st[sym + "_id"] + np.arange(n)
        st[sym + "_id"] += n
        w.write_tick_arrays(
            sym,
            IdKind.AGG,
            ids,
            T0_MS + sec * 1000 + 500,
            np.round(path, 4),
            np.ones(n),
            np.zeros(n, dtype=bool),
        )


def median_ms(samples: list[float]) -> float:
    return statistics.median(samples) * 1000.0


def scratch_s(reader: Reader, keys: list) -> float:
    t = time.perf_counter()
    for k in keys:
        params = PairParams(x=k.x, y=k.y, tf=k.tf, window=k.window, method=k.method)
        compute_pair(reader.pair_frame(k.x, k.y, k.tf, limit=params.read_bars), params)
    return time.perf_counter() - t


def measure(db: str, w: Writer, n_pairs: int, now_s: list[int], rng, st: dict) -> dict:
    """One pair count: enable its rules and pairs only, then time the four cases."""
    with Reader(db) as r:
        wl = r.watchlist()
        rules = r.alert_rules()
    for pid in wl["pair_id"].tolist()[n_pairs:]:
        w.unwatch_pair(pid)
    for i, rid in enumerate(rules["rule_id"].tolist()):
        w.set_alert_rule_enabled(rid, i < n_pairs)
    board = board_for(db)
    board.clear()
    monitor = AlertMonitor(w, db, board=board)
    out: dict[str, list[float]] = {"evaluate": [], "tab_new_bar": [], "tab_cold": [], "scratch": []}
    with Reader(db) as reader:
        monitor.run_once(reader)  # warm: baselines set, snapshots fresh
        keys = keys_from_watchlist(reader.watchlist())
        for _ in range(REPEATS):
            write_seconds(w, now_s[0], now_s[0] + 1, rng, st)  # closes one bar on every pair
            now_s[0] += 1
            t = time.perf_counter()
            monitor.run_once(reader)
            out["evaluate"].append(time.perf_counter() - t)
            t = time.perf_counter()
            rows = watch_rows(db, reader)
            out["tab_new_bar"].append(time.perf_counter() - t)
            assert len(rows) == n_pairs
            cold = PairBoard()
            t = time.perf_counter()
            for k in keys:
                cold.get(reader, k)
            out["tab_cold"].append(time.perf_counter() - t)
            out["scratch"].append(scratch_s(reader, keys))
    # Re-watch everything for the next pair count.
    for k in ALL_KEYS:
        w.watch_pair(k.x, k.y, k.tf, k.window, k.method)
    return {name: median_ms(v) for name, v in out.items()}


ALL_KEYS: list = []


def setup(db: str) -> tuple[Writer, dict]:
    from service.watch import PairKey

    w = Writer(db)
    pairs = list(itertools.combinations(symbols(), 2))[: max(PAIR_COUNTS)]
    for x, y in pairs:
        ALL_KEYS.append(PairKey(x, y, "1s", WINDOW, "ols"))
        w.watch_pair(x, y, "1s", WINDOW, "ols")
        w.add_alert_rule(
            name="", x=x, y=y, tf="1s", metric="abs_zscore", op=">", threshold=2.0,
            cooldown_s=0.0, params={"window": WINDOW, "method": "ols"},
        )  # fmt: skip
    st = {s: 100.0 * (i + 1) for i, s in enumerate(symbols())}
    st |= {s + "_id": 1 for s in symbols()}
    return w, st


def main() -> int:
    rng = np.random.default_rng(7)
    results: dict[tuple[str, int], dict] = {}
    with tempfile.TemporaryDirectory() as tmp:
        db = str(Path(tmp) / "bench.db")
        w, st = setup(db)
        now_s = [0]
        for label, until_s in (("1h", HOUR_S), ("24h", 24 * HOUR_S)):
            t = time.perf_counter()
            for a in range(now_s[0], until_s, 3600):
                write_seconds(w, a, min(a + 3600, until_s), rng, st)
            now_s[0] = until_s
            print(f"history {label}: written in {time.perf_counter() - t:.0f} s", flush=True)
            for n in PAIR_COUNTS:
                results[(label, n)] = measure(db, w, n, now_s, rng, st)
        w.close()
    cols = ["evaluate", "tab_new_bar", "tab_cold", "scratch"]
    print("\nmedian ms per refresh (1s bars, window 60, OLS; 11 symbols)")
    print(f"{'history':>7} {'pairs':>5} " + " ".join(f"{c:>12}" for c in cols) + "  scratch/eval")
    for (label, n), r in results.items():
        ratio = r["scratch"] / r["evaluate"] if r["evaluate"] else float("nan")
        print(
            f"{label:>7} {n:>5} " + " ".join(f"{r[c]:>12.1f}" for c in cols) + f"  {ratio:>11.1f}×"
        )
    print("\n24h / 1h ratio")
    for n in PAIR_COUNTS:
        a, b = results[("1h", n)], results[("24h", n)]
        print(f"  {n:>2} pairs: " + ", ".join(f"{c} {b[c] / a[c]:.2f}" for c in cols))
    return 0


if __name__ == "__main__":
    sys.exit(main())
