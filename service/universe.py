"""The universe scan over stored klines, for ``python -m analytics universe`` and the page.

It reads ``storage`` and calls the pure statistics of ``analytics.scan``, so it lives in the
service layer; the command line and the page's background scan both run :func:`run_scan`.

    python -m analytics universe --db DB --tf 1m|5m [--symbols all|A,B,...] [--start ISO]
        [--end ISO] [--lookback BARS] [--lags K] [--validation 0.3] [--min-traded 0.5]
        [--top 20] [--recheck 50] [--out pairs.csv] [--quiet]

Prints a JSON summary (symbols, pairs tested, bars, seconds, skipped symbols with the reason,
the top pairs with their exact re-check) and writes one CSV row per ordered pair with ``--out``.
Progress (stage, done/total, ETA) goes to stderr.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn, TextIO

import numpy as np
import pandas as pd

from analytics.scan import (
    DEFAULT_LAGS,
    DEFAULT_RECHECK,
    DEFAULT_VALIDATION_FRACTION,
    RECHECK_COLUMNS,
    UniverseScan,
    recheck,
    scan_universe,
)

#: ``progress(stage, done, total)``: "read" (symbols), "moments" (rows), "pairs", "recheck".
Progress = Callable[[str, int, int], None]


@dataclass(frozen=True, slots=True)
class ScanRequest:
    """What to scan. Times are UTC ms (None: the stored extent); fractions in (0, 1)."""

    tf: str = "5m"
    symbols: tuple[str, ...] | None = None
    start_ms: int | None = None
    end_ms: int | None = None
    lookback_bars: int | None = None
    lags: int = DEFAULT_LAGS
    validation_fraction: float = DEFAULT_VALIDATION_FRACTION
    min_traded: float = 0.5
    recheck_top: int = DEFAULT_RECHECK


@dataclass(frozen=True, slots=True)
class ScanRun:
    """A finished scan: the result, its re-checked head, the grid and the time each stage took.

    ``table`` is every ordered pair, best first, with :data:`RECHECK_COLUMNS` filled for the
    re-checked head and empty elsewhere; ``skipped`` joins symbols left out while reading
    (no bars, short history, stale) and by the scan (flat price). ``seconds`` is wall time
    per stage, ``cpu_seconds`` this process's CPU time (what the work costs on a busy
    machine, where wall time mostly measures the wait for a core).
    """

    scan: UniverseScan
    table: pd.DataFrame
    grid_ms: np.ndarray
    prices: pd.DataFrame
    skipped: tuple[tuple[str, str], ...]
    seconds: dict[str, float]
    cpu_seconds: dict[str, float]


def run_scan(
    db: str,
    req: ScanRequest,
    *,
    progress: Progress | None = None,
    clock: Callable[[], float] = time.perf_counter,
) -> ScanRun:
    """Read the universe from the database at ``db`` and scan it (see the module docstring).

    Raises
    ------
    ValueError
        No bars in the lookback, fewer than two symbols with enough data (the message lists
        the reasons), or bad scan options.
    storage.UnknownSymbolError
        A requested symbol is not stored.
    """
    from storage import open_reader
    from storage.universe import read_universe

    t0, c0 = clock(), time.process_time()
    with open_reader(db) as r:
        bars = read_universe(
            r,
            req.tf,
            req.symbols,
            start_ms=req.start_ms,
            end_ms=req.end_ms,
            lookback_bars=req.lookback_bars,
            min_traded=req.min_traded,
            progress=None if progress is None else lambda d, n: progress("read", d, n),
        )
    t1, c1 = clock(), time.process_time()
    if len(bars.symbols) < 2:
        why = "; ".join(f"{s}: {r}" for s, r in bars.skipped[:5])
        more = f" (+{len(bars.skipped) - 5} more)" if len(bars.skipped) > 5 else ""
        raise ValueError(
            f"fewer than two symbols with enough {req.tf} data in the lookback "
            f"({len(bars.symbols)} usable){': ' + why + more if why else ''}"
        )
    prices = pd.DataFrame(bars.close, columns=list(bars.symbols))
    qv = pd.DataFrame(bars.quote_volume, columns=list(bars.symbols))
    res = scan_universe(
        prices,
        qv,
        lags=req.lags,
        validation_fraction=req.validation_fraction,
        progress=progress,
    )
    t2, c2 = clock(), time.process_time()
    head = recheck(prices, res.table, req.recheck_top)
    if progress is not None:
        progress("recheck", len(head), len(head))
    table = res.table.copy()
    for c in RECHECK_COLUMNS:
        table[c] = head[c].reindex(table.index)
    t3, c3 = clock(), time.process_time()
    return ScanRun(
        scan=res,
        table=table,
        grid_ms=bars.grid_ms,
        prices=prices,
        skipped=bars.skipped + res.skipped,
        seconds={"read": t1 - t0, "scan": t2 - t1, "recheck": t3 - t2, "total": t3 - t0},
        cpu_seconds={"read": c1 - c0, "scan": c2 - c1, "recheck": c3 - c2, "total": c3 - c0},
    )


class ProgressLine:
    """Progress on a terminal: stage, done/total, ETA; at most one line per ``every_s``."""

    def __init__(
        self,
        out: TextIO | None = None,
        *,
        every_s: float = 0.5,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._out = sys.stderr if out is None else out
        self._every_s, self._clock = every_s, clock
        self._stage = ""
        self._started = self._shown = 0.0

    def __call__(self, stage: str, done: int, total: int) -> None:
        now = self._clock()
        if stage != self._stage:
            self._stage, self._started, self._shown = stage, now, -1e18
        if now - self._shown < self._every_s and done < total:
            return
        self._shown = now
        rate = done / (now - self._started) if now > self._started else 0.0
        eta = f", ETA {(total - done) / rate:.0f} s" if 0 < done < total and rate > 0 else ""
        unit = {"read": " symbols", "moments": " rows", "pairs": " pairs"}.get(stage, "")
        self._out.write(f"universe: {stage} {done:,}/{total:,}{unit}{eta}\n")
        self._out.flush()


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise ValueError(f"{message} (see --help)")


def _parse(argv: Sequence[str]) -> argparse.Namespace:
    p = _Parser(
        prog="python -m analytics universe",
        description="Engle-Granger scan of every ordered pair of the stored symbols; JSON.",
    )
    p.add_argument("--db", required=True, help="SQLite file or postgresql:// URL")
    p.add_argument("--tf", default="5m", choices=("1m", "5m"), help="bar timeframe")
    p.add_argument("--symbols", default="all", help="'all' (every stored symbol) or A,B,C")
    p.add_argument("--start", help="first bar open time, ISO-8601 (UTC if no zone)")
    p.add_argument("--end", help="last bar open time, ISO-8601 (UTC if no zone)")
    p.add_argument("--lookback", type=int, help="at most this many bars, ending at --end")
    p.add_argument("--lags", type=int, default=DEFAULT_LAGS, help="ADF lagged differences K")
    p.add_argument(
        "--validation",
        type=float,
        default=DEFAULT_VALIDATION_FRACTION,
        help="share of the lookback held out for the out-of-sample test",
    )
    p.add_argument(
        "--min-traded", type=float, default=0.5, help="share of bars a symbol must trade in"
    )
    p.add_argument("--top", type=int, default=20, help="pairs shown in the JSON summary")
    p.add_argument(
        "--recheck", type=int, default=DEFAULT_RECHECK, help="top pairs re-tested exactly"
    )
    p.add_argument("--out", help="write every ordered pair to this CSV file")
    p.add_argument("--quiet", action="store_true", help="no progress on stderr")
    args = p.parse_args(argv)
    for name in ("lags", "top", "recheck"):
        if getattr(args, name) < 0:
            raise ValueError(f"--{name} must be 0 or more, got {getattr(args, name)}")
    if args.lookback is not None and args.lookback < 2:
        raise ValueError(f"--lookback must be at least 2 bars, got {args.lookback}")
    if args.out and not Path(args.out).resolve().parent.is_dir():
        raise ValueError(f"cannot write {args.out}: its folder does not exist")
    return args


def _request(args: argparse.Namespace) -> ScanRequest:
    from storage.timefmt import parse_iso_ms

    syms = None
    if args.symbols.strip().lower() != "all":
        syms = tuple(dict.fromkeys(s.strip().upper() for s in args.symbols.split(",")))
        syms = tuple(s for s in syms if s)
        if len(syms) < 2:
            raise ValueError("--symbols needs 'all' or at least two different symbols")
    start = parse_iso_ms(args.start) if args.start else None
    end = parse_iso_ms(args.end) if args.end else None
    return ScanRequest(
        tf=args.tf,
        symbols=syms,
        start_ms=start,
        end_ms=end,
        lookback_bars=args.lookback,
        lags=args.lags,
        validation_fraction=args.validation,
        min_traded=args.min_traded,
        recheck_top=args.recheck,
    )


def write_csv(table: pd.DataFrame, path: str) -> None:
    """One row per ordered pair; empty cells where a value is undefined (NaN).

    Through pyarrow's C++ writer: pandas' ``to_csv`` spends ~9 s formatting 250,000 rows of
    floats, pyarrow under 1 s, and its shortest round-trip floats read back exactly.
    """
    import pyarrow as pa
    import pyarrow.csv as pacsv

    text = {c: table[c].astype(str) for c in table.columns if table[c].dtype.kind not in "fiub"}
    frame = table.assign(**text)
    pacsv.write_csv(pa.Table.from_pandas(frame, preserve_index=False), path)


def universe_command(argv: Sequence[str]) -> dict[str, Any]:
    """``python -m analytics universe``: run the scan, write the CSV, return the summary."""
    from storage.timefmt import iso_from_ms

    args = _parse(argv)
    run = run_scan(args.db, _request(args), progress=None if args.quiet else ProgressLine())
    if args.out:
        write_csv(run.table, args.out)
    res = run.scan
    top = run.table.head(args.top).astype({"x": str, "y": str})
    return {
        "tf": args.tf,
        "symbols": len(res.symbols),
        "pairs_tested": res.pairs_tested,
        "bars": res.nobs,
        "formation_bars": res.formation_bars,
        "validation_bars": res.validation_bars,
        "lags": res.lags,
        "start": iso_from_ms(int(run.grid_ms[0])),
        "end": iso_from_ms(int(run.grid_ms[-1])),
        "seconds": {k: round(v, 3) for k, v in run.seconds.items()},
        "cpu_seconds": {k: round(v, 3) for k, v in run.cpu_seconds.items()},
        "skipped": [{"symbol": s, "reason": r} for s, r in run.skipped],
        "top": top.to_dict(orient="records"),
    }
