"""Start-up id contiguity check: its cost with and without the check point, on one SQLite file.

A symbol with ``--ticks`` stored trade ids (default 2,000,000: about 8 h of BTCUSDT) and three
holes. Timed in the same run, each the median of ``--repeat`` calls:

* baseline: the window-function scan over every stored id (what a check without a check
  point, or with holes, reads);
* fast path: count/min/max over every id of a contiguous symbol (no window function);
* with the check point: only the ids stored since the last check (``--new`` of them).

    python -m bench.owed                 # from the repository root; about a minute on 2 cores
    python -m bench.owed --ticks 200000  # a quick look
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from storage import Writer, open_writer

T0_MS = 1_735_689_600_000


def _fill(w: Writer, symbol: str, ids: np.ndarray) -> None:
    n = len(ids)
    for lo in range(0, n, 200_000):
        part = ids[lo : lo + 200_000]
        w.write_tick_arrays(
            symbol,
            "agg",
            part,
            T0_MS + part * 10,
            np.full(len(part), 100.0),
            np.ones(len(part)),
            np.zeros(len(part), bool),
        )


def _median_s(fn, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--ticks", type=int, default=2_000_000)
    p.add_argument("--new", type=int, default=20_000, help="ids stored since the last check")
    p.add_argument("--repeat", type=int, default=5)
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp, open_writer(Path(tmp) / "bench.db") as w:
        ids = np.arange(1, args.ticks + 1, dtype=np.int64)
        holed = np.delete(ids, [10, 11, args.ticks // 2, args.ticks - args.new - 5])
        _fill(w, "HOLED", holed)
        _fill(w, "WHOLE", ids)
        scan_s = _median_s(lambda: w.unrecorded_holes("HOLED"), args.repeat)
        holes, _ = w.unrecorded_holes("HOLED")
        fast_s = _median_s(lambda: w.unrecorded_holes("WHOLE"), args.repeat)
        w.set_id_check("HOLED", int(holed[-args.new - 1]))
        point_s = _median_s(lambda: w.unrecorded_holes("HOLED"), args.repeat)
        after, _ = w.unrecorded_holes("HOLED")
    print(f"{args.ticks:,} stored ids, holes found {holes}")
    print(f"window scan of every id (baseline)   {scan_s * 1000:9.1f} ms   1.00x")
    print(f"count/min/max, contiguous            {fast_s * 1000:9.1f} ms   {fast_s / scan_s:.2f}x")
    print(
        f"since the check point ({args.new:,} new ids)  {point_s * 1000:7.1f} ms   "
        f"{point_s / scan_s:.3f}x   (holes found {after})"
    )


if __name__ == "__main__":
    main()
