"""Command line: pair summary, backtest and pair scanner over bars stored by ``storage``.

This is the app layer of ``analytics``: the only module here that imports ``storage``.

    python -m analytics --db PATH --x SYM --y SYM --tf 1m --window 500 [--method ols]
                        [--start ISO] [--end ISO] [--out FILE.csv]
    python -m analytics backtest --db PATH --x SYM --y SYM --tf 1m --window 500
                        [--entry 2] [--exit 0] [--stop 4] [--fee 0.0005] [--out FILE.csv]
                        [--funding | --fetch-funding [--rest-base URL]]
    python -m analytics scan --db PATH --symbols A B C --tf 1m --window 500 [--out FILE.csv]
    python -m analytics universe --db PATH --tf 5m [--symbols all|A,B,...] [--lookback BARS]
                        [--lags K] [--top N] [--out FILE.csv]   (see service/universe.py)

Each prints a JSON summary on stdout; ``--out`` writes the per-bar (or per-pair) table as
CSV with ISO-8601 UTC times and empty cells where a value is undefined. Any error is one
line on stderr and exit status 2.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any, NoReturn

import numpy as np
import pandas as pd

from analytics.backtest import BacktestResult, backtest
from analytics.multi import align_closes, correlation_matrix, scan_pairs
from analytics.pairs import METHODS, PairAnalytics, compute_pair_frame
from analytics.stationarity import stationarity
from config import DB_FLAG_HELP, resolve_db


class _UsageError(Exception):
    """Bad command-line usage (reported like any other error: one line, exit 2)."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise _UsageError(f"{message} (see --help)")


def _iso_ms(text: str) -> int:
    """ISO-8601 date/time → UTC milliseconds; a time without zone is UTC."""
    from storage.timefmt import parse_iso_ms

    try:
        return parse_iso_ms(text)
    except ValueError as exc:
        raise _UsageError(str(exc)) from None


def _ms_iso(ms: int) -> str:
    from storage.timefmt import iso_from_ms

    return iso_from_ms(ms)


def _times_iso(ms: np.ndarray) -> np.ndarray:
    from storage.timefmt import iso_seconds  # bar open times: whole seconds

    return iso_seconds(ms)


def _num(v: Any) -> Any:
    """JSON-safe value: NaN/inf → null, numpy scalars → Python."""
    if v is None:
        return None
    if isinstance(v, np.generic):
        v = v.item()
    if isinstance(v, float) and not math.isfinite(v):
        return None
    return v


def _clean(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {k: _clean(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_clean(v) for v in obj]
    return _num(obj)


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--db",
        type=resolve_db,
        default=resolve_db(None),
        help=DB_FLAG_HELP,
    )
    p.add_argument("--tf", required=True, choices=("1s", "1m", "5m"), help="bar timeframe")
    p.add_argument("--window", required=True, type=int, help="rolling window, in bars")
    p.add_argument("--start", help="first bar open time, ISO-8601 (UTC if no zone)")
    p.add_argument("--end", help="last bar open time, ISO-8601 (UTC if no zone)")
    p.add_argument("--out", help="write the table to this CSV file")


def _pair_args(p: argparse.ArgumentParser) -> None:
    _common(p)
    p.add_argument("--x", required=True, help="dependent leg: x = alpha + beta·y + spread")
    p.add_argument("--y", required=True, help="hedge leg")
    p.add_argument("--method", default="ols", choices=METHODS, help="hedge-ratio method")
    p.add_argument(
        "--fit-last",
        type=int,
        default=None,
        help="robust methods: fit only the last N bars (default: all)",
    )


def _range(args: argparse.Namespace) -> tuple[int | None, int | None]:
    start = _iso_ms(args.start) if args.start else None
    end = _iso_ms(args.end) if args.end else None
    if start is not None and end is not None and start > end:
        raise _UsageError(f"--start {args.start} is after --end {args.end}")
    return start, end


def _load_pair(args: argparse.Namespace) -> pd.DataFrame:
    from storage import open_reader  # the app layer reads bars; analytics proper never does

    start, end = _range(args)
    with open_reader(args.db) as r:
        frame = r.pair_frame(args.x, args.y, args.tf, start_ms=start, end_ms=end)
    if frame.empty:
        raise ValueError(
            f"no {args.tf} bars where both {args.x.upper()} and {args.y.upper()} traded "
            "in the selected range"
        )
    return frame


def _pair(args: argparse.Namespace, frame: pd.DataFrame) -> PairAnalytics:
    kwargs: dict[str, Any] = {"method": args.method}
    if args.method in ("huber", "theilsen"):
        kwargs["fit_last"] = args.fit_last
    return compute_pair_frame(frame, args.window, **kwargs)


def _write_csv(df: pd.DataFrame, path: str) -> None:
    out = Path(path)
    if out.parent and not out.parent.exists():
        raise ValueError(f"cannot write {out}: folder {out.parent} does not exist")
    df.to_csv(out, index=False, na_rep="")


def _summary(argv: Sequence[str]) -> dict[str, Any]:
    p = _Parser(prog="python -m analytics", description="Pair analytics summary as JSON.")
    _pair_args(p)
    args = p.parse_args(argv)
    frame = _load_pair(args)
    pa = _pair(args, frame)
    ms = frame["open_time_ms"].to_numpy()
    out: dict[str, Any] = {
        "x": args.x.upper(),
        "y": args.y.upper(),
        "tf": args.tf,
        "method": pa.method,
        "window": pa.window,
        "start": _ms_iso(int(ms[0])),
        "end": _ms_iso(int(ms[-1])),
        "nobs": pa.n_bars,
        "beta": None,
        "alpha": None,
        "r2": None,
        "resid_sd": None,
        "adf": None,
        "coint_stat": None,
        "coint_pvalue": None,
        "half_life_bars": None,
        "hurst": None,
        "stationarity_error": None,
        "beta_last": pa.beta_last,
        "alpha_last": pa.alpha_last,
        "spread_last": pa.spread_last,
        "zscore_last": pa.zscore_last,
        "corr_last": pa.corr_last,
        "bars_needed": pa.bars_needed,
        "fitted_from": pa.fitted_from,
    }
    try:
        st = stationarity(frame["x"], frame["y"])
    except ValueError as exc:
        out["stationarity_error"] = str(exc)  # e.g. too few bars yet: warm-up, not a failure
    else:
        out |= {
            "beta": st.beta,
            "alpha": st.alpha,
            "r2": st.r2,
            "resid_sd": st.resid_sd,
            "adf": {
                "stat": st.adf.stat,
                "pvalue": st.adf.pvalue,
                "lags": st.adf.lags,
                "nobs": st.adf.nobs,
                "critical": dict(st.adf.critical),
            },
            "coint_stat": st.coint_stat,
            "coint_pvalue": st.coint_pvalue,
            "half_life_bars": st.half_life.bars,
            "hurst": st.hurst,
        }
    if args.out:
        table = pa.frame.reset_index(drop=True)
        table.insert(0, "time", _times_iso(ms))
        cols = ["time", "x", "y", "alpha", "beta", "spread", "zscore", "corr"]
        if "r2" in table:
            cols.append("r2")
        _write_csv(table[cols], args.out)
    return out


def _backtest_parser() -> _Parser:
    p = _Parser(
        prog="python -m analytics backtest",
        description="Backtest the z-score mean-reversion rule; JSON summary.",
    )
    _pair_args(p)
    p.add_argument("--entry", type=float, default=2.0, help="enter at |z| > ENTRY")
    p.add_argument("--exit", type=float, default=0.0, help="exit when z crosses ±EXIT")
    p.add_argument("--stop", type=float, default=None, help="stop out at |z| > STOP")
    p.add_argument("--fee", type=float, default=0.0005, help="taker fee per leg per side")
    p.add_argument(
        "--min-quote-volume",
        type=float,
        default=None,
        help="skip entries when a leg traded less quote volume on the signal bar",
    )
    p.add_argument(
        "--min-trades",
        type=int,
        default=None,
        help="skip entries when a leg had fewer trades on the signal bar",
    )
    p.add_argument(
        "--funding",
        action="store_true",
        help="charge each leg's settled funding stored in --db (as the page's backtest does)",
    )
    p.add_argument(
        "--fetch-funding",
        action="store_true",
        help="first fetch and store the span's funding history (GET /fapi/v1/fundingRate "
        "from --rest-base); implies --funding",
    )
    p.add_argument(
        "--rest-base",
        default=None,
        help="REST root for --fetch-funding (default: $BINANCE_REST_BASE or "
        "https://fapi.binance.com)",
    )
    return p


def _funding(args: argparse.Namespace, frame: pd.DataFrame, bar_ms: int) -> Any:
    """Both legs' funding on the bars (service.funding, the page's path), or None if off."""
    if not (args.funding or args.fetch_funding):
        if args.rest_base:
            raise _UsageError("--rest-base is only used with --fetch-funding")
        return None
    from config import binance_roots
    from service.funding import backtest_funding

    base = (args.rest_base or binance_roots()[1]).rstrip("/") if args.fetch_funding else None
    legs = (args.x.upper(), args.y.upper())
    opens = frame["open_time_ms"].to_numpy()
    return backtest_funding(args.db, legs, opens, bar_ms, fetch_from=base)


def _backtest(argv: Sequence[str]) -> dict[str, Any]:
    args = _backtest_parser().parse_args(argv)
    from storage import timeframe_s

    frame = _load_pair(args)
    funding = _funding(args, frame, timeframe_s(args.tf) * 1000)
    pa = _pair(args, frame)
    res = backtest(
        frame["x"],
        frame["y"],
        pa.frame["zscore"],
        pa.frame["beta"],
        entry_z=args.entry,
        exit_z=args.exit,
        stop_z=args.stop,
        fee_rate=args.fee,
        volume_x=frame["x_volume"],
        volume_y=frame["y_volume"],
        trades_x=frame["x_trades"],
        trades_y=frame["y_trades"],
        min_quote_volume=args.min_quote_volume,
        min_trades=args.min_trades,
        bar_seconds=timeframe_s(args.tf),
        funding_x=None if funding is None else funding.x,
        funding_y=None if funding is None else funding.y,
    )
    ms = frame["open_time_ms"].to_numpy()
    if args.out:
        curve = res.equity_frame(
            _times_iso(ms), frame["x"], frame["y"], pa.frame["beta"], pa.frame["zscore"]
        )
        _write_csv(curve, args.out)
    out = _backtest_summary(args, pa, res, ms)
    if funding is not None:
        out["funding"] = {
            "settlements_x": funding.settled_x,
            "settlements_y": funding.settled_y,
            "funding_pnl_x": res.funding_pnl_x,
            "funding_pnl_y": res.funding_pnl_y,
            "funding_pnl": res.funding_pnl,
        }
    return out


def _backtest_summary(
    args: argparse.Namespace, pa: PairAnalytics, res: BacktestResult, ms: np.ndarray
) -> dict[str, Any]:
    """The JSON summary: the run's settings, the result's figures, every trade with times."""
    trades = []
    for t in res.trades:
        d = asdict(t)
        d["entry_time"] = _ms_iso(int(ms[t.entry_bar]))
        d["exit_time"] = None if t.exit_bar is None else _ms_iso(int(ms[t.exit_bar]))
        trades.append(d)
    return {
        "x": args.x.upper(),
        "y": args.y.upper(),
        "tf": args.tf,
        "method": pa.method,
        "window": pa.window,
        "nobs": pa.n_bars,
        "entry": args.entry,
        "exit": args.exit,
        "stop": args.stop,
        "fee": args.fee,
        "total_pnl": res.total_pnl,
        "n_trades": res.n_trades,
        "win_rate": res.win_rate,
        "max_drawdown": res.max_drawdown,
        "sharpe": res.sharpe,
        "sharpe_annualised": res.sharpe_annualised,
        "fees_paid": res.fees_paid,
        "skipped_entries": res.skipped_entries,
        "trades": trades,
    }


def _scan(argv: Sequence[str]) -> dict[str, Any]:
    p = _Parser(
        prog="python -m analytics scan",
        description="Rank every pair of symbols by Engle-Granger p-value; JSON.",
    )
    _common(p)
    p.add_argument(
        "--symbols",
        required=True,
        nargs="+",
        help="symbols, space- or comma-separated (at least 2)",
    )
    p.add_argument(
        "--both-orders",
        action="store_true",
        help="test (a, b) and (b, a): Engle-Granger is not symmetric",
    )
    args = p.parse_args(argv)
    syms = [s.upper() for part in args.symbols for s in part.split(",") if s.strip()]
    if len(set(syms)) < 2:
        raise _UsageError("--symbols needs at least two different symbols")
    syms = list(dict.fromkeys(syms))
    from storage import open_reader, timeframe_s

    start, end = _range(args)
    step = timeframe_s(args.tf) * 1000
    closes = {}
    with open_reader(args.db) as r:
        for s in syms:
            bars = r.bars(s, args.tf, start_ms=start, end_ms=end)
            if bars.empty:
                raise ValueError(f"no {args.tf} bars for {s} in the selected range")
            closes[s] = pd.Series(bars["close"].to_numpy(), index=bars["open_time_ms"].to_numpy())
    table = align_closes(closes, step)
    first, last = int(table.index[0]), int(table.index[-1])
    res = scan_pairs(table, args.window, both_orders=args.both_orders)
    corr = correlation_matrix(table)
    if args.out:
        _write_csv(res.table, args.out)
    return {
        "symbols": syms,
        "tf": args.tf,
        "window": args.window,
        "nobs": len(table),
        "start": _ms_iso(first),
        "end": _ms_iso(last),
        "pairs": res.table.to_dict(orient="records"),
        "skipped": [{"x": a, "y": b, "reason": why} for a, b, why in res.skipped],
        "correlation": {a: dict(corr.matrix.loc[a]) for a in corr.symbols},
    }


def _storage_errors() -> tuple[type[BaseException], ...]:
    try:
        from storage import StorageError
    except ImportError:  # storage missing or broken: its import error is then the message
        return ()
    return (StorageError,)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; returns the exit status (0 ok, 2 error)."""
    args = list(sys.argv[1:] if argv is None else argv)
    from service.universe import universe_command

    commands = {"backtest": _backtest, "scan": _scan, "universe": universe_command}
    try:
        command = commands.get(args[0]) if args else None
        out = command(args[1:]) if command else _summary(args)
        json.dump(_clean(out), sys.stdout, indent=2, allow_nan=False)
        sys.stdout.write("\n")
        return 0
    except Exception as exc:  # the CLI contract: one line, never a traceback
        message = " ".join(str(exc).split()) or type(exc).__name__
        expected = (ValueError, OSError, _UsageError, *_storage_errors())
        if not isinstance(exc, expected):
            message = f"internal error ({type(exc).__name__}): {message}"
        print(f"analytics: error: {message}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
