"""``FeedService``: validates symbols, owns the writer and the feeds, reports status.

Start it once per process (the dashboard keeps one in ``st.cache_resource``; the collector
CLI makes one). Every thread it starts is a daemon with one way to stop: ``stop()`` sets
the feeds' events, closes their sockets, joins them, and then lets the writer commit every
queued tick before it returns.

``stop()`` may be called at any moment, also while ``start()`` is still running in another
thread (validating symbols over a slow network, say): it tears down whatever has been
started so far and returns at once; the running ``start()`` notices, starts nothing more
and returns without error. ``start()`` does its network and storage I/O outside the lock
that ``stop()`` and ``status()`` take, so neither waits for it.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any

from ingestion.backoff import BackoffFactory, ConnectLimiter, backoff
from ingestion.clock import SYSTEM_CLOCK, Clock
from ingestion.config import ConfigError, FeedSettings, normalize_symbols
from ingestion.feed import SymbolFeed
from ingestion.owed import check_stored_ids
from ingestion.rest import RestClient, RestError, RestStats
from ingestion.spill import restore_spill, spill_path, write_spill
from ingestion.status import SymbolStatus
from ingestion.writer import TickWriter, WriterStats
from storage import StorageError, Tick, Writer, open_writer

__all__ = ["FeedService", "validate_symbols"]

log = logging.getLogger(__name__)


def validate_symbols(exchange_info: dict[str, Any], symbols: Iterable[str]) -> None:
    """Raise ``ConfigError`` naming every symbol that is unknown, not TRADING or not PERPETUAL."""
    listed = {s.get("symbol"): s for s in exchange_info.get("symbols", []) if isinstance(s, dict)}
    problems = []
    for symbol in symbols:
        info = listed.get(symbol)
        if info is None:
            problems.append(f"{symbol} is not listed on Binance USD-M futures")
        elif info.get("status") != "TRADING":
            problems.append(f"{symbol} is not trading (status {info.get('status')})")
        elif info.get("contractType") != "PERPETUAL":
            problems.append(
                f"{symbol} is not a perpetual (contract type {info.get('contractType')})"
            )
    if problems:
        raise ConfigError("; ".join(problems))


class FeedService:
    """Stream trades of ``symbols`` into the database ``db``.

    Parameters
    ----------
    db : path of the SQLite database, or an open ``storage.Writer`` to share (then the
        caller closes it; otherwise ``stop()`` does).
    symbols : e.g. ``["BTCUSDT", "ETHUSDT"]`` or ``"btcusdt,ethusdt"``.
    settings : ``FeedSettings`` (default: Binance's production endpoints).
    backoff_factory : reconnect delays; default ``backoff(...)`` from the settings.
    repair_backoff : delays between attempts of a repair REST failed (gap or start-up
        history); default ``backoff`` from ``settings.repair_retry_*``.
    collector_id : name under which status is saved in storage (default ``host:pid``).
    on_commit : called in the writer thread after every commit with the ticks and the
        wall-clock time (s); for monitoring and the latency benchmark. Keep it quick.
    clock : the feeds' clocks (``ingestion.clock``); tests move it instead of waiting.

    ``start()`` raises ``ConfigError`` with a one-line reason for unknown or delisted
    symbols, an unreachable REST endpoint or a database that already has a writer.
    """

    def __init__(
        self,
        db: str | os.PathLike[str] | Writer,
        symbols: Iterable[str] | str,
        settings: FeedSettings | None = None,
        *,
        backoff_factory: BackoffFactory | None = None,
        collector_id: str | None = None,
        on_commit: Callable[[list[Tick], float], None] | None = None,
        repair_backoff: BackoffFactory | None = None,
        clock: Clock = SYSTEM_CLOCK,
    ) -> None:
        self.settings = settings or FeedSettings()
        self._repair_backoff = repair_backoff
        self._clock = clock
        self._db = db
        self._symbols = list(
            normalize_symbols(symbols if isinstance(symbols, str) else list(symbols))
        )
        s = self.settings
        self._backoff = backoff_factory or (
            lambda: backoff(
                s.backoff_initial_s, s.backoff_factor, s.backoff_max_s, s.backoff_jitter
            )
        )
        self.collector_id = collector_id or f"{socket.gethostname()}:{os.getpid()}"
        self._stop_event = threading.Event()
        self._rest = RestClient(
            s.rest_base,
            timeout_s=s.rest_timeout_s,
            weight_limit_per_min=s.rest_weight_limit_per_min,
            headroom=s.rest_weight_headroom,
            max_retries=s.rest_max_retries,
            max_retry_after_s=s.rest_max_retry_after_s,
            stop=self._stop_event,
        )
        self._limiter = ConnectLimiter(s.connect_attempts_per_window, s.connect_window_s)
        self._storage: Writer | None = None
        self._owns_storage = False
        self._writer: TickWriter | None = None
        self._feeds: dict[str, SymbolFeed] = {}
        self._lock = threading.RLock()
        self._start_called = False  # start() ran or runs; a failed start() resets it
        self._started = False  # start() completed
        self._stopped = False  # stop() ran: this service never runs again
        self._stop_clean = True  # what stop() returned
        self._monitor: threading.Thread | None = None
        self._exchange_info: dict[str, Any] | None = None
        self._on_commit = on_commit

    # --- life --------------------------------------------------------------------------------
    def start(self) -> FeedService:
        """Validate, open storage, start the writer and one feed per symbol. Once only.

        A ``stop()`` before or during it wins: nothing more is started and it returns
        without error (``running`` stays False). On an error it stops what it started,
        releases the database and raises; it may then be called again.
        """
        with self._lock:
            if self._start_called or self._stopped:
                return self
            self._start_called = True
        try:
            self._start()
        except BaseException:
            if self._stop_event.is_set():  # the stop cut it short, and tore down
                log.info("feed service start interrupted by stop()")
                return self
            with self._lock:
                self._teardown(time.monotonic() + 10.0)
                self._storage, self._owns_storage, self._writer = None, False, None
                self._feeds.clear()
                self._start_called = False
            raise
        return self

    def _start(self) -> None:
        if not self._symbols:
            raise ConfigError("no symbols given")
        self._validate(self._symbols)
        storage, owns = self._open_storage()
        with self._lock:
            if self._stopped:
                if owns:
                    storage.close()
                return
            self._storage, self._owns_storage = storage, owns
            s = self.settings
            spill_to = spill_path(storage.path)
            self._restore_spill(storage, spill_to)
            self._writer = TickWriter(
                storage,
                queue_size=s.queue_size,
                batch_size=s.batch_size,
                batch_latency_s=s.batch_latency_s,
                retry_s=s.storage_retry_s,
                on_symbol_error=self._symbol_failed,
                on_commit=self._on_commit,
                spill=lambda ticks: write_spill(spill_to, ticks),
            ).start()
        while True:
            with self._lock:
                if self._stopped:
                    return
                todo = [sym for sym in self._symbols if sym not in self._feeds]
                if not todo:  # symbols added meanwhile were started too
                    self._monitor = threading.Thread(
                        target=self._publish_loop, name="feed-status", daemon=True
                    )
                    self._monitor.start()
                    self._started = True
                    return
            feed = self._make_feed(todo[0])  # reads storage: outside the lock
            with self._lock:
                if self._stopped:
                    return  # never started: nothing to stop
                if feed.symbol in self._symbols:  # not removed meanwhile
                    self._feeds[feed.symbol] = feed
                    feed.start()

    @staticmethod
    def _restore_spill(storage: Writer, path: Any) -> None:
        """Store what an earlier stop could not (``ingestion.spill``), before any feed starts."""
        try:
            restore_spill(path, storage)
        except (StorageError, OSError, ValueError) as exc:  # still full: keep the file
            log.error("could not store the ticks saved in %s yet (kept): %s", path, exc)

    def _open_storage(self) -> tuple[Writer, bool]:
        """The storage writer and whether it is ours to close."""
        if not isinstance(self._db, str | os.PathLike):
            return self._db, False  # an open writer of either backend, shared
        try:
            return open_writer(os.fspath(self._db)), True
        except StorageError as exc:
            raise ConfigError(str(exc).splitlines()[0]) from None

    def stop(self, timeout_s: float = 10.0) -> bool:
        """Stop every feed, commit everything queued, close storage (if ours).

        Returns ``True`` if all threads ended and every queued tick was committed. Safe at
        any moment: before ``start()`` (which then starts nothing), while it runs in another
        thread, and again (it returns the first answer).
        """
        deadline = time.monotonic() + timeout_s
        self._stop_event.set()  # first: REST waits of a running start() end now
        with self._lock:
            if self._stopped:
                return self._stop_clean
            self._stopped = True
            self._stop_clean = self._teardown(deadline)
            log.info("feed service stopped (%s)", "clean" if self._stop_clean else "NOT clean")
            return self._stop_clean

    def _teardown(self, deadline: float) -> bool:
        """Stop whatever has been started (with the lock held); True if all of it ended and
        every queued tick was committed."""
        feeds = list(self._feeds.values())
        for feed in feeds:
            feed.stop()
        clean = all(feed.join(max(0.1, deadline - time.monotonic())) for feed in feeds)
        if self._monitor is not None:
            self._monitor.join(max(0.1, deadline - time.monotonic()))
        if self._writer is not None:
            self._save_status(feeds)
            clean = self._writer.stop(max(1.0, deadline - time.monotonic())) and clean
        if self._owns_storage and self._storage is not None:
            self._storage.close()
        return clean

    @property
    def running(self) -> bool:
        """Started, not stopped, and the writer thread alive."""
        writer = self._writer
        return self._started and not self._stopped and writer is not None and writer.running

    def __enter__(self) -> FeedService:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # --- symbols -----------------------------------------------------------------------------
    @property
    def symbols(self) -> list[str]:
        with self._lock:
            return list(self._feeds) if self._started else list(self._symbols)

    def add_symbol(self, symbol: str) -> None:
        """Start streaming one more symbol (validated first; ``ConfigError`` if bad)."""
        (symbol,) = normalize_symbols([symbol])
        with self._lock:
            if symbol in self._symbols:
                return
            self._validate([symbol], refresh=True)
            self._symbols.append(symbol)
            if self._started and not self._stopped:
                self._start_feed(symbol)

    def remove_symbol(self, symbol: str, timeout_s: float = 5.0) -> None:
        """Stop streaming a symbol; its queued ticks are still written."""
        symbol = symbol.upper()
        with self._lock:
            if symbol in self._symbols:
                self._symbols.remove(symbol)
            feed = self._feeds.pop(symbol, None)
        if feed is not None:
            feed.stop()
            feed.join(timeout_s)

    # --- status ------------------------------------------------------------------------------
    def status(self) -> dict[str, SymbolStatus]:
        """A frozen status per symbol (see ``SymbolStatus``)."""
        with self._lock:
            feeds = list(self._feeds.values())
        return {feed.symbol: feed.status() for feed in feeds}

    def submit(self, command: Callable[[Writer], Any]) -> bool:
        """Run ``command(storage)`` in the writer thread after what is queued (the one
        writer: e.g. the collector's funding readings); False when not running."""
        writer = self._writer
        if writer is None or not self.running:
            return False
        writer.submit(command)
        return True

    def writer_status(self) -> WriterStats | None:
        return None if self._writer is None else self._writer.stats()

    def rest_status(self) -> RestStats:
        return self._rest.stats()

    def owed(self) -> dict[str, list[str]]:
        """Per symbol, the ranges recorded as owed and not stored yet (see ``SymbolFeed.owed``):
        after ``stop()``, exactly what this run could not store; the next start resumes it."""
        with self._lock:
            feeds = list(self._feeds.values())
        return {f.symbol: owed for f in feeds if (owed := f.owed())}

    def reject_reasons(self) -> dict[str, dict[str, int]]:
        with self._lock:
            return {s: f.reject_reasons() for s, f in self._feeds.items()}

    # --- internals ---------------------------------------------------------------------------
    def _validate(self, symbols: list[str], refresh: bool = False) -> None:
        if self._exchange_info is None or refresh:
            try:
                self._exchange_info = self._rest.exchange_info()
            except RestError as exc:
                raise ConfigError(
                    f"cannot read exchangeInfo from {self.settings.rest_base}: {exc}"
                ) from None
        validate_symbols(self._exchange_info, symbols)

    def _start_feed(self, symbol: str) -> None:
        feed = self._make_feed(symbol)
        self._feeds[symbol] = feed
        feed.start()

    def _make_feed(self, symbol: str) -> SymbolFeed:
        """A feed for ``symbol`` resuming from storage (not started); ``ConfigError`` if the
        database holds the symbol with other ids than the stream's."""
        assert self._storage is not None and self._writer is not None
        storage = self._storage
        last_stored_ms: int | None = None
        try:
            last_stored = storage.last_trade_id(symbol)
            if last_stored is not None:
                stored_kind = storage.id_kind(symbol)
                # The time before the gap a restart leaves (kline fallback).
                last_stored_ms = storage.trade_time_ms(symbol, last_stored)
                if stored_kind == self.settings.stream.id_kind.value:
                    # Holes no run recorded (e.g. left by an older version) become gaps.
                    try:
                        check_stored_ids(storage, symbol, int(time.time() * 1000))
                    except StorageError as exc:  # a safety net: never a reason not to start
                        log.warning("%s: start-up id check failed: %s", symbol, exc)
            # Gaps an earlier run could not finish: the new feed retries them, knowing the
            # stored trade times around each (None where not stored, e.g. pruned).
            retry_gaps = storage.open_gaps(symbol)
            retry_gap_times = {
                g.gap_id: (
                    storage.trade_time_ms(symbol, g.first_missing_id - 1),
                    storage.trade_time_ms(symbol, g.last_missing_id + 1),
                )
                for g in retry_gaps
                if g.gap_id is not None
            }
        except StorageError as exc:
            raise ConfigError(str(exc)) from None
        wanted = self.settings.stream.id_kind.value
        if last_stored is not None and stored_kind != wanted:
            raise ConfigError(
                f"{symbol} is stored with {stored_kind} ids in {self._storage.path}; streaming "
                f"@{self.settings.stream.value} would mix in {wanted} ids: use another database"
            )
        return SymbolFeed(
            symbol,
            self.settings,
            rest=self._rest,
            writer=self._writer,
            limiter=self._limiter,
            backoff=self._backoff,
            last_stored_id=last_stored,
            last_stored_ms=last_stored_ms,
            retry_gaps=retry_gaps,
            retry_gap_times=retry_gap_times,
            repair_backoff=self._repair_backoff,
            clock=self._clock,
        )

    def _symbol_failed(self, symbol: str, exc: Exception) -> None:
        feed = self._feeds.get(symbol)
        if feed is not None:
            feed.fail(f"storage refused the ticks: {exc}")

    def _publish_loop(self) -> None:
        """Save every feed's status to storage periodically, for other processes."""
        interval = max(0.5, self.settings.status_interval_s)
        while not self._stop_event.wait(interval):
            with self._lock:
                feeds = list(self._feeds.values())
            self._save_status(feeds)

    def _save_status(self, feeds: list[SymbolFeed]) -> None:
        writer = self._writer
        if writer is None:
            return
        collector = self.collector_id
        for feed in feeds:
            snapshot = feed.status().to_dict()
            symbol = feed.symbol
            writer.submit(
                lambda storage, s=symbol, d=snapshot: storage.save_feed_status(collector, s, d)
            )
