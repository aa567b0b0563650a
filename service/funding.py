"""Funding for the desk: each leg's current rate and next funding time, and the rate history.

*Current funding* comes from REST ``GET /fapi/v1/premiumIndex?symbol=`` polled by one daemon
thread every ``poll_s`` (30 s) for the symbols the page asked about in the last
``FORGET_AFTER_S``; the page only reads what is there (:meth:`FundingService.current`), so it
never waits for the network. Why REST and not the ``@markPrice`` stream: the rate changes
slowly and is shown, not traded on; one weight-1 request per symbol and half-minute costs
nothing, needs no second socket per symbol beside the trade feed, and works the same against
Binance and the replay server. Offline, a state says so (``error``) and the page shows
"no funding data".

*History* (``GET /fapi/v1/fundingRate``, paged by 1000 from ``startTime``) is fetched in the
background for the backtest's span (:meth:`FundingService.request_history`), stored in the
``funding_rates`` table through the service's writer (and kept in memory when the page is
read-only), and read back with :func:`rates_for`. No Streamlit here.

*The backtest's charge* is placed on bars by :func:`bar_funding`, the one path of the page's
Backtest tab and of ``python -m analytics backtest --funding`` (:func:`backtest_funding`,
which reads ``--db`` and can first fetch and store the history with ``--fetch-funding``).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import pandas as pd

from analytics.funding import funding_per_bar
from formats import ParseError, parse_funding_rates, parse_premium_index
from ingestion.rest import RestClient
from storage import open_reader, open_writer
from storage.funding import FUNDING_COLUMNS
from storage.records import FundingRate, MarkPrice
from storage.timefmt import iso_from_ms

log = logging.getLogger(__name__)

#: Seconds between two polls of premiumIndex for the symbols shown.
POLL_S = 30.0
#: A symbol the page has not asked about for this long is no longer polled (seconds).
FORGET_AFTER_S = 600.0
#: Timeout of one funding request, seconds (no retries: the next poll is the retry).
TIMEOUT_S = 5.0
#: Rows per fundingRate page (Binance's maximum) and the most pages fetched per request.
PAGE_LIMIT = 1000
MAX_PAGES = 50
#: Why nothing can be asked: a replay whose server is not up (the feed was never started).
NO_SOURCE = "no exchange to ask: the feed is not running"
#: A history already fetched up to within this many ms of a request's end is not re-fetched.
HISTORY_SLACK_MS = 60_000
#: The longest settlement period of a USD-M perpetual (8 h), ms: a leg whose history is stored
#: has a settlement at most this long before any time inside it.
MAX_FUNDING_INTERVAL_MS = 8 * 3_600_000


@dataclass(frozen=True, slots=True)
class FundingNow:
    """What is known of a symbol's current funding: the last reading, and the last failure.

    ``mark`` None: nothing yet (``error`` says why if a request failed). ``checked_ms``: wall
    time of the last request, ms (None before the first).
    """

    symbol: str
    mark: MarkPrice | None = None
    error: str = ""
    checked_ms: int | None = None


def fetch_current(client: RestClient, symbol: str) -> MarkPrice:
    """One symbol's mark price and current funding (``premiumIndex``), parsed at the edge."""
    body = client.premium_index(symbol)
    mark = parse_premium_index(body)
    if mark.symbol != symbol.upper():
        raise ParseError("bad_field", f"premiumIndex answered {mark.symbol} for {symbol}")
    return mark


def fetch_history(
    client: RestClient, symbol: str, start_ms: int, end_ms: int, *, page: int = PAGE_LIMIT
) -> list[FundingRate]:
    """Settled funding of ``symbol`` in ``[start_ms, end_ms]``, oldest first, every page read."""
    if not 0 <= start_ms <= end_ms:
        raise ValueError(f"bad span {start_ms}..{end_ms}")
    out: list[FundingRate] = []
    cursor = start_ms
    for _ in range(MAX_PAGES):
        rows = parse_funding_rates(
            client.funding_rates(symbol, start_ms=cursor, end_ms=end_ms, limit=page), symbol
        )
        rows = [r for r in rows if cursor <= r.funding_time_ms <= end_ms]
        out += rows
        if len(rows) < page:
            return out
        cursor = rows[-1].funding_time_ms + 1
    raise ValueError(f"{symbol}: more than {MAX_PAGES * page} funding events asked at once")


def rates_for(
    reader: Any, service: FundingService | None, symbol: str, start_ms: int, end_ms: int
) -> pd.DataFrame:
    """Stored funding events of ``symbol`` in the span, with any the service holds in memory."""
    df = reader.funding_rates(symbol, start_ms, end_ms)
    held = service.held(symbol, start_ms, end_ms) if service is not None else []
    if held:
        extra = pd.DataFrame([(r.symbol, r.funding_time_ms, r.rate, r.mark) for r in held],
                             columns=FUNDING_COLUMNS)  # fmt: skip
        df = pd.concat([df, extra]) if not df.empty else extra
        df = df.drop_duplicates("funding_time_ms", keep="last").sort_values("funding_time_ms")
    return df.reset_index(drop=True)


@dataclass(frozen=True, slots=True)
class BarFunding:
    """Both legs' funding placed on a backtest's bars (:func:`funding_per_bar`).

    ``x``/``y``: per-bar rates (``backtest(funding_x=, funding_y=)``); ``settled_x``/
    ``settled_y``: how many settlements of each leg fall inside the span and are charged.
    """

    x: np.ndarray
    y: np.ndarray
    settled_x: int
    settled_y: int


def charged_span(open_ms: np.ndarray, bar_ms: int) -> tuple[int, int]:
    """``(first close, last close)`` of the bars, ms: the settlements a backtest charges are
    at or after the first and before the last (:func:`analytics.funding.funding_per_bar`)."""
    return int(open_ms[0]) + bar_ms, int(open_ms[-1]) + bar_ms


def bar_funding(
    reader: Any, service: FundingService | None, legs: Sequence[str], open_ms: Any, bar_ms: int
) -> BarFunding:
    """Each leg's stored (and held) settlements placed on the bars opening at ``open_ms``."""
    opens = np.asarray(open_ms, dtype="int64")
    start, end = charged_span(opens, bar_ms)
    found = [rates_for(reader, service, s, start, end - 1) for s in legs]
    fx, fy = (
        funding_per_bar(opens, bar_ms, f["funding_time_ms"].to_numpy(), f["rate"].to_numpy())
        for f in found
    )
    return BarFunding(fx, fy, len(found[0]), len(found[1]))


def backtest_funding(
    db: str, legs: Sequence[str], open_ms: Any, bar_ms: int, *, fetch_from: str | None = None
) -> BarFunding:
    """The command line's funding for a backtest over ``db``'s bars (``ValueError`` if none).

    With ``fetch_from`` (a REST root), each leg's history from one settlement period before
    the span to its end is first fetched (``GET /fapi/v1/fundingRate``) and stored in ``db``.
    A leg with no settlement stored in that stretch has no history there: refused, rather
    than charged nothing (a span shorter than a period has none *inside*, but one before).
    """
    opens = np.asarray(open_ms, dtype="int64")
    start, end = charged_span(opens, bar_ms)
    lo = max(0, start - MAX_FUNDING_INTERVAL_MS)
    if fetch_from is not None:
        client = RestClient(fetch_from, timeout_s=TIMEOUT_S, max_retries=2)
        with open_writer(db) as writer:
            for sym in legs:
                try:
                    rows = fetch_history(client, sym, lo, end)
                except Exception as exc:  # broad on purpose: one line naming leg and source
                    raise ValueError(
                        f"funding history of {sym} not fetched from {fetch_from}: {_short(exc)}"
                    ) from None
                writer.write_funding_rates(rows)
    with open_reader(db) as reader:
        for sym in legs:
            if reader.funding_rates(sym, lo, end).empty:
                raise ValueError(
                    f"no funding stored for {sym.upper()} from {iso_from_ms(lo)} to "
                    f"{iso_from_ms(end)}: fetch it with --fetch-funding (GET /fapi/v1/fundingRate)"
                )
        return bar_funding(reader, None, legs, opens, bar_ms)


def stored_readings(reader: Any, symbols: Sequence[str]) -> dict[str, FundingNow]:
    """The current funding a collector stored (``funding_now``) for ``symbols``, by symbol."""
    df = reader.funding_now(symbols)
    out = {}
    for row in df.itertuples(index=False):
        mark = MarkPrice(
            row.symbol, float(row.mark), _opt(row.index_price, float), _opt(row.rate, float),
            _opt(row.next_funding_ms, int), int(row.event_ms),
        )  # fmt: skip
        out[row.symbol] = FundingNow(row.symbol, mark, "", int(row.checked_ms))
    return out


def stored_in(db: Callable[[], str]) -> Callable[[list[str]], dict[str, FundingNow]]:
    """``FundingService(stored=)`` reading the database ``db()`` names at each poll."""

    def read(symbols: list[str]) -> dict[str, FundingNow]:
        with open_reader(db()) as reader:
            return stored_readings(reader, symbols)

    return read


def _opt(value: Any, kind: type) -> Any:
    return None if value is None or pd.isna(value) else kind(value)


class FundingService:
    """The poller of current funding and the fetcher of history; daemon threads, no ``st.*``.

    ``base`` returns the REST root to ask now (None when there is none, e.g. a replay not yet
    started); ``writer`` returns the writer to store history with (None when read-only).
    ``record(marks, checked_ms)``, when given, is handed every poll's fresh readings (a
    headless collector stores them: ``funding_now``); ``stored(symbols)``, when given, gives
    the readings stored by a collector (:func:`stored_readings`), used for a symbol this
    process could not read itself when they are newer and at most ``FORGET_AFTER_S`` old.
    ``clock`` is wall time in seconds.
    """

    def __init__(
        self,
        base: Callable[[], str | None],
        writer: Callable[[], Any],
        *,
        poll_s: float = POLL_S,
        timeout_s: float = TIMEOUT_S,
        clock: Callable[[], float] = time.time,
        record: Callable[[list[MarkPrice], int], Any] | None = None,
        stored: Callable[[list[str]], dict[str, FundingNow]] | None = None,
    ) -> None:
        self._base, self._writer = base, writer
        self.poll_s, self.timeout_s, self._clock = poll_s, timeout_s, clock
        self._record, self._stored = record, stored
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._asked: dict[str, float] = {}  # symbol -> when the page last asked
        self._now: dict[str, FundingNow] = {}
        self._logged: dict[str, str] = {}  # symbol -> the failure last logged
        self._state_base: str | None = None
        self._thread: threading.Thread | None = None
        self._covered: dict[tuple[str, str], tuple[int, int]] = {}  # (base, sym) -> span
        self._held: dict[tuple[str, str], dict[int, FundingRate]] = {}
        self._history_errors: dict[str, str] = {}
        self._fetching: threading.Thread | None = None

    # ------------------------------------------------------------------ current funding
    def current(self, symbols: Iterable[str]) -> dict[str, FundingNow]:
        """The last known funding of each symbol (never waits; starts the poller if needed)."""
        syms = [s.upper() for s in symbols]
        now = self._clock()
        with self._lock:
            new = [s for s in syms if s not in self._asked]
            for s in syms:
                self._asked[s] = now
            base = self._base()
            if base != self._state_base:
                self._now = {}
            idle = FundingNow("", error=NO_SOURCE) if base is None else FundingNow("")
            out = {s: self._now.get(s, replace(idle, symbol=s)) for s in syms}
            start = self._thread is None and not self._stop.is_set()
            if start:
                self._thread = threading.Thread(target=self._run, name="funding-poll", daemon=True)
        if start:
            self._thread.start()
        elif new:
            self._wake.set()
        return out

    def _client(self, base: str) -> RestClient:
        return RestClient(base, timeout_s=self.timeout_s, max_retries=0, stop=self._stop)

    def _run(self) -> None:
        while not self._stop.is_set():
            self._poll_once()
            self._wake.wait(self.poll_s)
            self._wake.clear()

    def _poll_once(self) -> None:
        base = self._base()
        now = self._clock()
        with self._lock:
            for s in [s for s, t in self._asked.items() if now - t > FORGET_AFTER_S]:
                del self._asked[s]
            if base != self._state_base:
                self._now, self._state_base = {}, base
            symbols = list(self._asked)
        fresh: list[MarkPrice] = []
        if base is not None:
            client = self._client(base)
            for sym in symbols:
                if self._stop.is_set():
                    return
                state = self._read(client, base, sym)
                if not state.error and state.mark is not None:
                    fresh.append(state.mark)
                with self._lock:
                    if self._state_base == base:
                        self._now[sym] = state
        if self._record is not None and fresh and not self._stop.is_set():
            try:
                self._record(fresh, int(self._clock() * 1000))
            except Exception as exc:  # broad on purpose: the poller lives on
                log.warning("funding readings not stored: %s", _short(exc))
        if self._stored is not None and not self._stop.is_set():
            self._use_stored(base, symbols)

    def _read(self, client: RestClient, base: str, sym: str) -> FundingNow:
        """One symbol's premiumIndex as a state; a failure keeps the last reading and is logged
        once per new reason (a hang is a timeout after ``timeout_s``)."""
        checked = int(self._clock() * 1000)
        try:
            state = FundingNow(sym, fetch_current(client, sym), "", checked)
        except Exception as exc:  # broad on purpose: shown per symbol; the poller lives on
            with self._lock:  # the page's threads replace _now under the lock
                old = self._now.get(sym, FundingNow(sym))
            state = FundingNow(sym, old.mark, _short(exc), checked)
        if self._stop.is_set():
            return state  # interrupted by stop(): not a failure worth a line
        if state.error and self._logged.get(sym) != state.error:
            log.warning("funding of %s not read from %s: %s", sym, base, state.error)
        elif not state.error and self._logged.get(sym):
            log.warning("funding of %s read from %s again", sym, base)
        self._logged[sym] = state.error
        return state

    def _use_stored(self, base: str | None, symbols: list[str]) -> None:
        """Fill symbols this process could not read with a collector's stored readings."""
        with self._lock:
            want = [s for s in symbols if (st := self._now.get(s)) is None or st.error]
        if not want:
            return
        try:
            stored = self._stored(want)
        except Exception as exc:  # broad on purpose: the database may be busy or gone
            log.info("stored funding readings not read: %s", _short(exc))
            return
        oldest_ms = (self._clock() - FORGET_AFTER_S) * 1000
        with self._lock:
            if self._state_base != base:
                return
            for sym, got in stored.items():
                own = self._now.get(sym)
                if got.mark is None or got.checked_ms is None or got.checked_ms < oldest_ms:
                    continue
                if own is None or own.mark is None or got.mark.event_ms > own.mark.event_ms:
                    self._now[sym] = got

    # ------------------------------------------------------------------ history
    def request_history(self, symbols: Sequence[str], start_ms: int, end_ms: int) -> str:
        """Make sure the funding history of ``symbols`` over the span is fetched.

        Returns ``"ready"`` (fetched: read it with :func:`rates_for`), ``"fetching"`` (a
        background fetch runs; ask again) or ``"failed: <reason>"`` (what is stored is all
        there is). Never waits for the network.
        """
        base = self._base()
        if base is None:
            return f"failed: {NO_SOURCE}"
        syms = [s.upper() for s in symbols]
        with self._lock:
            if self._fetching is not None and self._fetching.is_alive():
                return "fetching"
            todo = [s for s in syms if self._missing(base, s, start_ms, end_ms)]
            errors = [f"{s}: {self._history_errors[s]}" for s in syms if s in self._history_errors]
            if not todo:
                return "ready"
            if errors:
                self._history_errors.clear()  # said once; the next request tries again
                return "failed: " + "; ".join(errors)
            self._fetching = threading.Thread(
                target=self._fetch, args=(base, todo, start_ms, end_ms),
                name="funding-history", daemon=True,
            )  # fmt: skip
            self._fetching.start()
        return "fetching"

    def _missing(self, base: str, sym: str, start_ms: int, end_ms: int) -> list[tuple[int, int]]:
        lo_hi = self._covered.get((base, sym))
        if lo_hi is None:
            return [(start_ms, end_ms)]
        lo, hi = lo_hi
        spans = []
        if start_ms < lo:
            spans.append((start_ms, lo))
        if end_ms > hi + HISTORY_SLACK_MS:
            spans.append((hi, end_ms))
        return spans

    def _fetch(self, base: str, symbols: list[str], start_ms: int, end_ms: int) -> None:
        client = self._client(base)
        for sym in symbols:
            with self._lock:
                spans = self._missing(base, sym, start_ms, end_ms)
            try:
                rows = [r for lo, hi in spans for r in fetch_history(client, sym, lo, hi)]
                self._keep(base, sym, rows)
            except Exception as exc:  # broad on purpose: the page shows the reason, never a crash
                log.info("funding history of %s not fetched: %s", sym, exc)
                with self._lock:
                    self._history_errors[sym] = _short(exc)
                continue
            with self._lock:
                lo, hi = self._covered.get((base, sym), (start_ms, end_ms))
                self._covered[(base, sym)] = (min(lo, start_ms), max(hi, end_ms))
                self._history_errors.pop(sym, None)

    def _keep(self, base: str, sym: str, rows: list[FundingRate]) -> None:
        writer = self._writer()
        if writer is not None:
            writer.write_funding_rates(rows)
            return
        with self._lock:  # read-only here: keep them for this process
            self._held.setdefault((base, sym), {}).update({r.funding_time_ms: r for r in rows})

    def held(self, symbol: str, start_ms: int, end_ms: int) -> list[FundingRate]:
        """Funding events kept in memory (read-only pages) for ``symbol`` within the span."""
        with self._lock:
            rows = self._held.get((self._base() or "", symbol.upper()), {})
            return [rows[t] for t in sorted(rows) if start_ms <= t <= end_ms]

    # ------------------------------------------------------------------ life
    def stop(self, timeout_s: float | None = None) -> None:
        """Stop the poller (and interrupt any request in flight), waiting for it at most
        ``timeout_s`` (default: one request's timeout and a second; 0: not at all, a request
        in flight is abandoned and nothing it read is recorded)."""
        self._stop.set()
        self._wake.set()
        thread = self._thread
        if thread is not None and thread.is_alive():
            thread.join(self.timeout_s + 1.0 if timeout_s is None else timeout_s)


def _short(exc: BaseException) -> str:
    text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return text if len(text) <= 160 else text[:157] + "…"
