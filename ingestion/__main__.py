"""Headless collector: ``python -m ingestion --symbols btcusdt,ethusdt --db PATH``.

Flags win over the environment (``BINANCE_WS_BASE``, ``BINANCE_REST_BASE``, ``DATABASE_URL``,
``DB_PATH``).
Prints one status line per symbol every ``--status-interval`` seconds. Each symbol's current
funding (REST ``premiumIndex``) is polled every ``--funding-poll`` seconds and stored
(``funding_now``), so a page that only reads the database shows it too. A fatal
configuration error prints one line on stderr and exits with status 2; SIGINT, SIGTERM
or the end of ``--duration`` stop cleanly (exit 0) after every queued tick is stored.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
import time
from dataclasses import dataclass
from typing import Any

from config import DB_FLAG_HELP, resolve_db
from formats.wire import StreamKind
from ingestion.config import ConfigError, FeedSettings, normalize_symbols
from ingestion.service import FeedService

EXIT_CONFIG = 2
EXIT_UNCLEAN = 1


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m ingestion",
        description="Stream Binance USD-M futures trades into the SQLite database.",
    )
    p.add_argument(
        "--symbols",
        default="",
        help="comma-separated, e.g. btcusdt,ethusdt (optional with --alerts: its pairs' legs)",
    )
    p.add_argument(
        "--db",
        default=None,
        help=DB_FLAG_HELP,
    )
    p.add_argument(
        "--stream",
        choices=[k.value for k in StreamKind],
        default=None,
        help="aggTrade (default, /market route) or trade (/public route)",
    )
    p.add_argument(
        "--ws-base",
        default=None,
        help="WebSocket root (default: $BINANCE_WS_BASE or wss://fstream.binance.com)",
    )
    p.add_argument(
        "--rest-base",
        default=None,
        help="REST root (default: $BINANCE_REST_BASE or https://fapi.binance.com)",
    )
    p.add_argument(
        "--duration",
        type=float,
        default=None,
        metavar="SECONDS",
        help="stop after this long (default: run until interrupted)",
    )
    p.add_argument(
        "--history",
        type=float,
        default=None,
        metavar="SECONDS",
        help="seconds of recent trades to load on start (0 = none)",
    )
    p.add_argument(
        "--history-klines",
        type=float,
        default=None,
        metavar="SECONDS",
        help="seconds of 1m klines to load on start (0 = none)",
    )
    p.add_argument("--status-interval", type=float, default=None, metavar="SECONDS")
    p.add_argument(
        "--alerts",
        default=None,
        metavar="FILE.toml",
        help="watchlist pairs, alert rules and sinks: evaluate and deliver alerts here too",
    )
    p.add_argument(
        "--funding-poll",
        type=float,
        default=None,
        metavar="SECONDS",
        help="poll and store each symbol's current funding this often (default 30; 0 = off)",
    )
    p.add_argument(
        "-v", "--verbose", action="count", default=0, help="log more (-v info, -vv debug)"
    )
    return p


@dataclass(frozen=True, slots=True)
class _Run:
    """A started collector: its feeds, the optional ``--alerts`` part and what it collects."""

    service: FeedService
    alerts: _Alerts | None
    symbols: list[str]
    db: str
    settings: FeedSettings
    funding: Any = None  # service.funding.FundingService, or None with --funding-poll 0


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    done = threading.Event()
    received: list[str] = []

    def on_signal(signum: int, _frame: object) -> None:
        received.append(signal.Signals(signum).name)
        done.set()

    # Before start-up: a SIGTERM while feeds start (history loading) stops cleanly too,
    # rather than killing the process with owed ranges unrecorded in the writer queue.
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, on_signal)
    level = [logging.WARNING, logging.INFO, logging.DEBUG][min(args.verbose, 2)]
    logging.basicConfig(
        level=level, stream=sys.stderr, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    try:
        run = _start(args)
    except (ConfigError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    print(
        f"collecting {', '.join(run.symbols)} ({run.settings.stream.value}) into {run.db} "
        f"from {run.settings.ws_base}",
        flush=True,
    )
    _report_until_done(run, done, args.duration)
    why = f"signal {received[0]}" if received else "duration reached"
    print(f"stopping ({why}) ...", flush=True)
    return _stop(run)


def _start(args: argparse.Namespace) -> _Run:
    """Check the flags, open the ``--alerts`` part and start the feeds (ConfigError if bad)."""
    alerts = None
    try:
        symbols = normalize_symbols(args.symbols) if args.symbols.strip() else []
        if args.alerts:
            alerts = _load_alerts(args.alerts)
            symbols += [s for s in alerts.symbols if s not in symbols]
        if not symbols:
            raise ConfigError("--symbols is empty")
        db = resolve_db(args.db)  # the one rule: --db, $DATABASE_URL, $DB_PATH, data.db
        if args.duration is not None and args.duration <= 0:
            raise ConfigError("--duration must be > 0 seconds")
        if args.funding_poll is not None and not args.funding_poll >= 0:
            raise ConfigError("--funding-poll must be >= 0 seconds (0 = off)")
        settings = FeedSettings.from_env(**_overrides(args))
        if alerts is not None:
            alerts.open(db)
        service = FeedService(db if alerts is None else alerts.writer, symbols, settings)
        # Before the feeds start: its import takes a moment, and a signal during start-up
        # must find this thread already waiting in _report_until_done, not importing.
        funding = _funding_poller(service, args.funding_poll)
        service.start()
        if funding is not None:
            funding.current(service.symbols)  # starts the poller
        if alerts is not None:
            alerts.start()
    except (ConfigError, ValueError):
        if alerts is not None:
            alerts.close()
        raise
    return _Run(service, alerts, symbols, db, settings, funding)


def _funding_poller(feeds: FeedService, poll_s: float | None) -> Any:
    """The page's funding poller (``service.funding``, imported only here: this entry point
    composes the layers) on the collector's symbols, storing each poll's readings through the
    feeds' one writer; ``current()`` starts it. Its own daemon thread: a hung REST never
    delays a trade."""
    if poll_s == 0:
        return None
    from service.funding import POLL_S, FundingService

    rest_base = feeds.settings.rest_base
    funding = FundingService(
        lambda: rest_base,
        lambda: None,
        poll_s=POLL_S if poll_s is None else poll_s,
        record=lambda marks, checked_ms: feeds.submit(
            lambda storage: storage.write_funding_now(marks, checked_ms)
        ),
    )
    return funding


def _funding_line(run: _Run) -> str | None:
    """``funding: 2 of 2 symbols read`` and each failing symbol's reason; keeps them polled."""
    if run.funding is None:
        return None
    states = run.funding.current(run.service.symbols)
    read = sum(1 for s in states.values() if s.mark is not None and not s.error)
    failed = [f"{sym}: {s.error}" for sym, s in states.items() if s.error]
    line = f"funding: {read} of {len(states)} symbols read (premiumIndex every "
    line += f"{run.funding.poll_s:g} s)"
    return line + ("; " + "; ".join(failed) if failed else "")


def _overrides(args: argparse.Namespace) -> dict[str, object]:
    """The feed settings the flags set (None: the environment's or the default)."""
    overrides: dict[str, object] = {
        "ws_base": args.ws_base,
        "rest_base": args.rest_base,
        "stream": args.stream,
        "status_interval_s": args.status_interval,
        "history_klines_s": args.history_klines,
    }
    if args.history is not None:
        overrides["history_trades_s"] = args.history
    return overrides


def _report_until_done(run: _Run, done: threading.Event, duration_s: float | None) -> None:
    """Print status lines every ``status_interval_s`` until a signal or ``duration_s``."""
    deadline = None if duration_s is None else time.monotonic() + duration_s
    interval = run.settings.status_interval_s
    while True:
        wait_s = interval if deadline is None else min(interval, deadline - time.monotonic())
        if done.wait(max(0.0, wait_s)):
            break
        for status in run.service.status().values():
            print(status.line(), flush=True)
        funding = _funding_line(run)
        if funding is not None:
            print(funding, flush=True)
        if run.alerts is not None:
            run.alerts.follow_watchlist(run.service)
            print(run.alerts.status_line(), flush=True)
        if deadline is not None and time.monotonic() >= deadline:
            break


def _stop(run: _Run) -> int:
    """Stop the feeds (draining the writer queue), say what was stored and what is owed."""
    service, alerts = run.service, run.alerts
    if run.funding is not None:
        run.funding.stop(timeout_s=0.0)  # first (it records through the feeds' writer);
        # a premiumIndex request in flight (a hung REST) is abandoned, never waited for
    clean = service.stop(timeout_s=30.0)
    if alerts is not None:
        print(alerts.status_line(), flush=True)
        alerts.close()
    for status in service.status().values():
        print(status.line(), flush=True)
    writer = service.writer_status()
    if writer is not None:
        print(
            f"stored {writer.committed} new ticks in {writer.batches} batches; "
            f"{writer.queued} left queued",
            flush=True,
        )
    for symbol, ranges in service.owed().items():
        # Recorded in the gap ledger (open/failed): the next start resumes each of them.
        print(f"{symbol}: not stored, owed to the next start: {'; '.join(ranges)}", flush=True)
    if not clean:
        detail = f": {writer.unstored}" if writer is not None and writer.unstored else ""
        print(f"error: stopped before every queued tick was stored{detail}", file=sys.stderr)
        return EXIT_UNCLEAN
    return 0


class _Alerts:
    """``--alerts``: the file, then the writer, the monitor and the delivery worker.

    ``service`` (above ``ingestion``) is imported only here, when asked for: this entry
    point is the collector's composition root, the ingestion package itself never needs it.
    """

    def __init__(self, path: str) -> None:
        from service import headless

        self._headless = headless
        try:
            self.config = headless.load_config(path)
        except headless.AlertFileError as exc:
            raise ConfigError(str(exc)) from None
        self.symbols = self.config.symbols
        self.writer = None
        self.runtime = None
        self._db = ""
        self._refused: set[str] = set()  # symbols the exchange refused: not asked again
        self._followed: set[str] = set()  # symbols added for the watchlist after the start

    def open(self, db: str) -> None:
        from storage import StorageError, open_writer

        try:
            self.writer = open_writer(db)
        except StorageError as exc:
            raise ConfigError(str(exc).splitlines()[0]) from None
        self._db = db
        self._headless.AlertRuntime.apply(self.writer, db, self.config)

    def start(self) -> None:
        environ = self.config.environ()  # the environment, then the secrets file
        self.runtime = self._headless.AlertRuntime(self.writer, self._db, environ=environ).start()

    def follow_watchlist(self, service: FeedService) -> None:
        """Collect symbols of pairs added to the watchlist since (page, CLI); stop those it
        added for pairs removed since (what ``--symbols`` and the file name stays)."""
        try:
            wanted = self._headless.wanted_symbols(self._db)
        except Exception as exc:  # broad on purpose: a status tick must not end the collector
            logging.getLogger(__name__).warning("cannot read the watchlist: %s", exc)
            return
        for sym in wanted:
            if sym not in service.symbols and sym not in self._refused:
                try:
                    service.add_symbol(sym)
                    self._followed.add(sym)
                except ConfigError as exc:
                    self._refused.add(sym)
                    print(f"watchlist: cannot collect {sym}: {exc}", flush=True)
        for sym in sorted(self._followed - set(wanted)):
            service.remove_symbol(sym)
            self._followed.discard(sym)
            print(f"watchlist: {sym} no longer watched; not collected any more", flush=True)

    def status_line(self) -> str:
        return self.runtime.status_line() if self.runtime is not None else "alerts: not started"

    def close(self) -> None:
        if self.runtime is not None:
            self.runtime.stop()
        if self.writer is not None:
            self.writer.close()


def _load_alerts(path: str) -> _Alerts:
    return _Alerts(path)


if __name__ == "__main__":
    sys.exit(main())
