"""1m klines for a whole universe, fetched incrementally into storage for the universe scan.

    python -m ingestion.klines --db DB [--symbols all|A,B,...] [--days 28 | --start ISO]
                               [--end ISO] [--rest-base URL] [--weight-share 0.5] [--quiet]

Which symbols: every ``TRADING`` ``PERPETUAL`` symbol quoted and margined in USDT in
``exchangeInfo`` (or the given list). Which minutes: only those not stored yet, per symbol,
before its first and after its last stored 1m bar, up to the last *closed* minute (an open
minute's kline would change). Storage derives the 5m bars. Gaps inside the stored span are
the live feed's to repair, not this command's.

Resumable: every page (≤ 1,500 minutes) is committed before the next is asked for, so after
Ctrl-C, a kill or a crash the next run starts after the last committed page; at most the page
in flight is fetched again. Within limits: the shared :class:`ingestion.rest.RestClient`
adopts ``exchangeInfo.rateLimits``, reads ``X-MBX-USED-WEIGHT-1M`` (the IP's total, so the
live feed's use counts) and uses only ``--weight-share`` of the budget; a 429 or 418 pauses
until ``Retry-After`` has passed, then resumes.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import pandas as pd

from formats.wire import KLINE_COLUMNS, ParseError, parse_rest_kline
from ingestion.config import FeedSettings
from ingestion.rest import RestClient, RestError

MINUTE_MS = 60_000
PAGE_LIMIT = 1500  # Binance's most klines per request (weight 10)
#: Binance's "Invalid symbol." error code: the symbol is gone (delisted).
INVALID_SYMBOL = -1121


def universe_symbols(info: dict) -> list[str]:
    """Every trading USDT-margined perpetual in an ``exchangeInfo`` reply, sorted.

    One entry of ``info["symbols"]`` (fields used)::

        {"symbol": "BTCUSDT", "contractType": "PERPETUAL", "status": "TRADING",
         "quoteAsset": "USDT", "marginAsset": "USDT", ...}
    """
    out = []
    for s in info.get("symbols") or []:
        if not isinstance(s, dict) or not isinstance(s.get("symbol"), str):
            continue
        if (
            s.get("status") == "TRADING"
            and s.get("contractType") == "PERPETUAL"
            and s.get("quoteAsset") == "USDT"
            and s.get("marginAsset", "USDT") == "USDT"
        ):
            out.append(s["symbol"].upper())
    return sorted(set(out))


def missing_spans(
    stored: tuple[int, int] | None, start_ms: int, end_ms: int
) -> list[tuple[int, int]]:
    """Minute open-time spans ``[lo, hi]`` (inclusive) of ``[start_ms, end_ms]`` not stored.

    ``stored`` is the symbol's (first, last) stored 1m bar, or None.
    """
    lo = -(-start_ms // MINUTE_MS) * MINUTE_MS
    hi = end_ms - end_ms % MINUTE_MS
    if hi < lo:
        return []
    if stored is None:
        return [(lo, hi)]
    spans = []
    if lo < stored[0]:
        spans.append((lo, min(hi, stored[0] - MINUTE_MS)))
    if stored[1] < hi:
        spans.append((max(lo, stored[1] + MINUTE_MS), hi))
    return [(a, b) for a, b in spans if a <= b]


@dataclass(frozen=True, slots=True)
class SymbolFetch:
    """What one symbol's fetch did. ``status``: ok, up to date, delisted, error, stopped."""

    symbol: str
    status: str
    rows: int
    requests: int
    detail: str = ""


@dataclass(frozen=True, slots=True)
class FetchProgress:
    """After each symbol: ``done`` of ``total`` symbols, the ETA in seconds (None at first)."""

    done: int
    total: int
    eta_s: float | None
    last: SymbolFetch


class KlineFetcher:
    """Fetch the missing 1m klines of many symbols into one database, page by page.

    ``stop`` (an Event) ends the run after the page in flight; ``clock`` (seconds) is for
    the ETA; ``progress`` is called after each symbol with a :class:`FetchProgress`.
    """

    def __init__(
        self,
        rest: RestClient,
        db: str,
        *,
        stop: threading.Event | None = None,
        clock: Callable[[], float] = time.monotonic,
        progress: Callable[[FetchProgress], None] | None = None,
    ) -> None:
        self.rest, self.db = rest, db
        self._stop = stop or threading.Event()
        self._clock, self._progress = clock, progress

    def run(
        self, symbols: Sequence[str], start_ms: int, end_ms: int, *, writer: Any = None
    ) -> list[SymbolFetch]:
        """Fetch ``[start_ms, end_ms]`` (clipped to closed minutes by the caller).

        ``writer``: a storage writer already open on ``db`` (the page's, which holds SQLite's
        one-writer lock); None opens one for the run.
        """
        from storage import open_writer

        if writer is not None:
            return self._run(writer, symbols, start_ms, end_ms)
        with open_writer(self.db) as own:
            return self._run(own, symbols, start_ms, end_ms)

    def _run(
        self, writer: Any, symbols: Sequence[str], start_ms: int, end_ms: int
    ) -> list[SymbolFetch]:
        from storage import UnknownSymbolError, open_reader

        results: list[SymbolFetch] = []
        t0 = self._clock()
        with open_reader(self.db) as reader:
            for k, sym in enumerate(symbols):
                if self._stop.is_set():
                    break
                try:
                    stored = reader.bar_range(sym, "1m")
                except UnknownSymbolError:
                    stored = None
                res = self._symbol(writer, sym, missing_spans(stored, start_ms, end_ms))
                results.append(res)
                if self._progress is not None:
                    spent = self._clock() - t0
                    eta = spent / (k + 1) * (len(symbols) - k - 1) if k + 1 < len(symbols) else 0.0
                    self._progress(FetchProgress(k + 1, len(symbols), eta, res))
        return results

    def _symbol(self, writer, sym: str, spans: list[tuple[int, int]]) -> SymbolFetch:
        if not spans:
            return SymbolFetch(sym, "up to date", 0, 0)
        rows = requests = 0
        try:
            for lo, hi in spans:
                cursor = lo
                while cursor <= hi:
                    if self._stop.is_set():
                        return SymbolFetch(sym, "stopped", rows, requests)
                    page = self.rest.klines(
                        sym, interval="1m", start_ms=cursor, end_ms=hi, limit=PAGE_LIMIT
                    )
                    requests += 1
                    parsed = [parse_rest_kline(r) for r in page]
                    parsed = [r for r in parsed if cursor <= r["open_time"] <= hi]
                    if not parsed:
                        break  # nothing listed yet in this span (history starts later)
                    frame = pd.DataFrame(parsed, columns=list(KLINE_COLUMNS))
                    writer.write_klines(sym, frame)  # committed before the next request
                    rows += len(frame)
                    cursor = int(parsed[-1]["open_time"]) + MINUTE_MS
        except RestError as exc:
            if exc.code == INVALID_SYMBOL:
                return SymbolFetch(sym, "delisted", rows, requests, str(exc))
            if exc.status == 0 and self._stop.is_set():
                return SymbolFetch(sym, "stopped", rows, requests)
            return SymbolFetch(sym, "error", rows, requests, str(exc))
        except ParseError as exc:
            return SymbolFetch(sym, "error", rows, requests, f"bad kline row: {exc}")
        return SymbolFetch(sym, "ok", rows, requests)


def _parse(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m ingestion.klines",
        description="Fetch the missing 1m klines of the USD-M universe into the database.",
    )
    p.add_argument("--db", default=None, help="SQLite file or postgresql:// URL")
    p.add_argument("--symbols", default="all", help="'all' (exchangeInfo) or A,B,C")
    p.add_argument("--days", type=float, default=28.0, help="history to hold, in days")
    p.add_argument("--start", help="first minute, ISO-8601 (instead of --days)")
    p.add_argument("--end", help="last minute, ISO-8601 (default: the last closed minute)")
    p.add_argument("--rest-base", default=None, help="REST root (default: $BINANCE_REST_BASE)")
    p.add_argument(
        "--weight-share",
        type=float,
        default=0.5,
        help="share of the IP's request-weight budget this command may use (0..1]",
    )
    p.add_argument("--quiet", action="store_true", help="no progress lines")
    p.add_argument("-v", "--verbose", action="store_true", help="log retries and rate limits")
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the fetch; exit 0 when every symbol is done, 1 if any failed, 2 on bad input."""
    from storage.timefmt import now_ms, parse_iso_ms

    stop = threading.Event()
    try:
        args = _parse(argv)
        # Retries and rate-limit pauses are logged only with -v: the progress lines and the
        # final one-line error say what matters.
        logging.basicConfig(
            level=logging.INFO if args.verbose else logging.ERROR,
            stream=sys.stderr,
            format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        )
        db = args.db or os.environ.get("DATABASE_URL") or os.environ.get("DB_PATH")
        if not db:
            raise ValueError("no database: pass --db PATH|postgresql://... or set DB_PATH")
        if not 0.0 < args.weight_share <= 1.0:
            raise ValueError(f"--weight-share must be in (0, 1], got {args.weight_share}")
        if args.days <= 0:
            raise ValueError(f"--days must be > 0, got {args.days}")
        last_closed = now_ms() // MINUTE_MS * MINUTE_MS - MINUTE_MS
        end = min(parse_iso_ms(args.end), last_closed) if args.end else last_closed
        start = parse_iso_ms(args.start) if args.start else end - int(args.days * 86_400_000)
        if start > end:
            raise ValueError("--start is after --end (or after the last closed minute)")
        base = args.rest_base or FeedSettings.from_env().rest_base
        rest = RestClient(base, headroom=args.weight_share, stop=stop)
        info = rest.exchange_info()  # adopts the weight limit
        if args.symbols.strip().lower() == "all":
            symbols = universe_symbols(info)
        else:
            symbols = sorted({s.strip().upper() for s in args.symbols.split(",") if s.strip()})
        if not symbols:
            raise ValueError("no symbols to fetch")
    except (ValueError, RestError) as exc:
        print(f"ingestion.klines: error: {exc}", file=sys.stderr)
        return 2

    def on_signal(signum: int, _frame: object) -> None:
        stop.set()

    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, on_signal)

    def show(p: FetchProgress) -> None:
        if args.quiet:
            return
        eta = "" if p.eta_s is None else f", ETA {p.eta_s:.0f} s"
        r = p.last
        note = f" ({r.detail})" if r.detail else ""
        print(f"klines: {p.done}/{p.total} symbols{eta}: {r.symbol} {r.status}, "
              f"{r.rows} rows{note}", file=sys.stderr, flush=True)  # fmt: skip

    results = KlineFetcher(rest, db, stop=stop, progress=show).run(symbols, start, end)
    bad = [r for r in results if r.status in ("error", "stopped")]
    print(
        f"fetched {sum(r.rows for r in results):,} klines for {len(results)} of "
        f"{len(symbols)} symbols in {sum(r.requests for r in results)} requests; "
        f"{len(bad)} failed or stopped",
        flush=True,
    )
    return 1 if bad or stop.is_set() else 0


if __name__ == "__main__":
    sys.exit(main())
