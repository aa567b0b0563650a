"""The dashboard's background service: one per process, owning every thread and the writer.

``app.py`` holds one :class:`DashboardService` in ``st.cache_resource`` (see
:func:`acquire_service`): the storage ``Writer`` (one per database file), the ingestion
``FeedService``, the in-process replay server in replay mode, the ``RetentionJob`` and the
``AlertMonitor``. Browser sessions only read the database and call the few control methods
below; nothing here calls ``st.*``.

Sources: *live* writes to ``DB_PATH``; *replay* serves a recording through
``replay.start_replay_server`` (the same client code runs against it) and writes to a
separate file, recreated each time a replay starts — replayed ids and times must never mix
with a live database. If another process already writes ``DB_PATH`` (a headless collector),
the service runs read-only and says so.
"""

from __future__ import annotations

import contextlib
import difflib
import logging
import re
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from service import feeds as feedlib
from service import watchlist as watchlib
from service.alerts import AlertMonitor
from service.delivery import DeliveryWorker
from service.exchange import ExchangeCatalog, Listing
from service.funding import FundingService, stored_in
from service.pageviews import PageViews
from service.settings import SAMPLE_RECORDING, AppSettings
from storage import StorageError, Writer, WriterBusyError, open_reader, open_writer
from storage.backend import backend_of, drop_sqlite_file
from storage.config import StorageSettings
from storage.retention import RetentionJob

log = logging.getLogger(__name__)

SYMBOL_RE = re.compile(r"^[A-Z0-9]{2,30}$")


class Source(StrEnum):
    LIVE = "live"
    REPLAY = "replay"


@dataclass(frozen=True, slots=True)
class Probe:
    """Can the live REST endpoint be reached? ``ok`` None while the first probe runs."""

    ok: bool | None
    detail: str = ""
    checked_ms: int | None = None


@dataclass(frozen=True, slots=True)
class ServiceStatus:
    """A snapshot of the service for the page (cheap; taken on every refresh)."""

    source: Source
    db_path: str
    generation: int
    read_only: str | None  # why the page cannot write, or None
    feed_running: bool
    feed_error: str
    symbols: tuple[str, ...]
    collected_elsewhere: dict[str, list[str]]  # symbol → other live collectors' ids
    replay_files: tuple[str, ...]
    replay_speed: float
    probe: Probe
    monitor_alive: bool
    monitor_error: str
    started_ms: int
    #: Symbol → why it is not collected although wanted (delisted, refused by the exchange).
    symbol_notes: dict[str, str] = field(default_factory=dict)


@dataclass
class _Parts:
    """What is running now; replaced as a whole when the source changes."""

    writer: Writer | None = None
    monitor: AlertMonitor | None = None
    delivery: DeliveryWorker | None = None
    retention: RetentionJob | None = None
    feed: Any = None
    replay: Any = None


#: A collector that published its status within this many seconds (and is not stopped) is
#: live; collectors publish every few seconds (``FeedSettings.status_interval_s``).
LIVE_COLLECTOR_MAX_AGE_S = 20.0


class DashboardService:
    """Owns the process's threads and the database writer. Thread-safe; never calls ``st.*``."""

    def __init__(self, settings: AppSettings) -> None:
        self.settings = settings
        self._lock = threading.RLock()
        self._parts = _Parts()
        self.source = Source.REPLAY if settings.start_in_replay else Source.LIVE
        self.replay_files: tuple[str, ...] = settings.replay_files or (str(SAMPLE_RECORDING),)
        self.replay_speed = settings.replay_speed
        self.symbols: list[str] = self._default_symbols()
        if self.source == Source.REPLAY:
            self.symbols = feedlib.recording_symbols(self.replay_files) or self.symbols
        self.generation = 0
        self.read_only: str | None = None
        self.collected_elsewhere: dict[str, list[str]] = {}
        self.feed_error = ""
        self.started_ms = int(time.time() * 1000)
        self._closed = False
        #: Symbols a page showed (the sidebar's pair): collected until the process ends.
        self._pinned: set[str] = set()
        #: Symbol → why it is not collected: delisted, or refused by the exchange.
        self._refused: dict[str, str] = {}
        self.catalog: ExchangeCatalog | None = None
        #: The page's timed reads, shared by every browser session (service/pageviews.py).
        self.views = PageViews()
        #: Each leg's current funding (polled in the background) and the funding history.
        self.funding = FundingService(
            self._rest_base_now, lambda: self.writer, stored=stored_in(lambda: self.db_path)
        )  # what a headless collector stored stands in where this process cannot ask
        self._open_storage(fresh=self.source == Source.REPLAY)
        if self.source == Source.LIVE:
            self._start_catalog()
        if settings.autostart:
            self.start_feed()

    # ------------------------------------------------------------------ storage
    @property
    def db_path(self) -> str:
        return (
            self.settings.replay_db_path if self.source == Source.REPLAY else self.settings.db_path
        )

    def _open_storage(self, *, fresh: bool) -> None:
        """Open the writer, the alert monitor and retention for the current source."""
        path = self.db_path
        carried: dict[str, Any] = {}
        if fresh and backend_of(path) == "sqlite":  # replays always write a SQLite file
            carried = watchlib.carry_over(path)  # rules, watchlist and sinks
            drop_sqlite_file(path)  # a replay starts from an empty file
        self.read_only = None
        parts = _Parts()
        try:
            parts.writer = open_writer(path)
        except WriterBusyError as exc:
            self.read_only = (
                f"{exc} — this page shows what that process writes; "
                "feed controls and alert rules are disabled here."
            )
        except StorageError as exc:
            self.read_only = f"cannot write the database: {exc}"
        if parts.writer is not None:
            watchlib.restore(parts.writer, carried)
            if self.source == Source.LIVE:  # the stored watchlist's legs are collected too
                with contextlib.suppress(StorageError, ValueError):
                    more = watchlib.watched_symbols(path)
                    self.symbols += [s for s in more if s not in self.symbols]
            board = self.views.board(path, self.generation + 1)  # shared with the tabs
            parts.monitor = AlertMonitor(parts.writer, path, board=board).start()
            parts.delivery = DeliveryWorker(parts.writer, path).start()
            parts.monitor.on_fired = parts.delivery.poke
            storage_settings = StorageSettings.from_env()
            parts.retention = RetentionJob(parts.writer, storage_settings).start()
        self.generation += 1
        self._parts = parts

    def _close_storage(self) -> None:
        parts = self._parts
        if parts.monitor is not None:
            parts.monitor.stop()
        if parts.delivery is not None:
            parts.delivery.stop()
        if parts.retention is not None:
            parts.retention.stop()
        if parts.writer is not None:
            parts.writer.close()
        self._parts = _Parts()

    @property
    def writer(self) -> Writer | None:
        return self._parts.writer

    @property
    def monitor(self) -> AlertMonitor | None:
        return self._parts.monitor

    @property
    def delivery(self) -> DeliveryWorker | None:
        return self._parts.delivery

    # ------------------------------------------------------------------ other collectors
    def external_collectors(self) -> dict[str, list[str]]:
        """Symbols that other live processes collect into this database: symbol → their ids.

        A collector is live while it keeps publishing (``feed_status`` newer than
        ``LIVE_COLLECTOR_MAX_AGE_S``) and its state is not ``stopped``. Replays write a file
        of their own, so nobody else collects there.
        """
        if self.source != Source.LIVE:
            return {}
        try:
            with open_reader(self.db_path) as reader:
                published = reader.feed_status(max_age_s=LIVE_COLLECTOR_MAX_AGE_S)
        except StorageError:
            return {}
        out: dict[str, list[str]] = {}
        for row in published.itertuples():
            if row.collector_id == feedlib.COLLECTOR_ID or row.status.get("state") == "stopped":
                continue
            out.setdefault(row.symbol, []).append(row.collector_id)
        return out

    # ------------------------------------------------------------------ feed
    def start_feed(self) -> None:
        """Start the feed (and, in replay mode, the replay server) for the watched symbols."""
        with self._lock:
            if self._closed or self.read_only or self.feed_running():
                return
            self.feed_error = ""
            parts = self._parts
            try:
                if self.source == Source.REPLAY:
                    if parts.replay is None:
                        parts.replay = feedlib.start_replay(self.replay_files, self.replay_speed)
                    ws_base, rest_base = parts.replay.ws_base, parts.replay.rest_base
                else:
                    ws_base, rest_base = self.settings.ws_base, self.settings.rest_base
                others = self.external_collectors()
                own = [s for s in self.symbols if s not in others and s not in self._refused]
                self.collected_elsewhere = {s: others[s] for s in self.symbols if s in others}
                if not own:
                    return  # every watched symbol is collected by another process: just read
                parts.feed = feedlib.start_feed(
                    parts.writer,
                    own,
                    ws_base=ws_base,
                    rest_base=rest_base,
                    replay=self.source == Source.REPLAY,
                )
            except Exception as exc:  # broad on purpose: shown on the page, never a traceback
                log.exception("feed did not start")
                self.feed_error = f"the feed did not start: {exc}"
                parts.feed = None

    def stop_feed(self) -> None:
        """Stop the feed; what was received is committed first. The replay server keeps time."""
        with self._lock:
            feed, self._parts.feed = self._parts.feed, None
        if feed is not None:
            feed.stop()

    def feed_running(self) -> bool:
        """Starting or running."""
        feed = self._parts.feed
        return feed is not None and feed.alive()

    def feed_starting(self) -> bool:
        feed = self._parts.feed
        return feed is not None and feed.starting

    def feed_status(self) -> list[Any]:
        """Per-symbol ``SymbolStatus`` of the in-process feed (empty when stopped)."""
        feed = self._parts.feed
        return [] if feed is None else feed.status()

    def feed_stats(self) -> dict[str, Any]:
        """The in-process feed's writer queue and REST counters (empty when stopped)."""
        feed = self._parts.feed
        if feed is None or not feed.running:
            return {}
        return {"writer": feed.service.writer_status(), "rest": feed.service.rest_status()}

    def watch(self, symbols: Iterable[str], *, pinned: bool = True) -> None:
        """Make sure the feed collects ``symbols`` (added to what it already collects).

        ``pinned`` (a page's pair): collected for the life of the process. Otherwise (a
        watched pair's legs) until nothing needs them any more (:meth:`unwatch`).
        """
        wanted = [s.upper() for s in symbols]
        if pinned:
            self._pinned.update(wanted)
        new = [s for s in wanted if s not in self.symbols]
        if not new:
            return
        with self._lock:
            self.symbols.extend(new)
            feed = self._parts.feed
            if feed is not None:
                others = self.external_collectors()
                self.collected_elsewhere.update({s: others[s] for s in new if s in others})
                own = [s for s in new if s not in others and s not in self._refused]
                if own:
                    feed.add_symbols(own)

    def unwatch(self, pair_id: int) -> bool:
        """Stop watching a pair, and stop collecting each leg that nothing needs any more: no
        other watched pair, no alert rule, no page's pair, not the default (or replayed) pair.
        What was stored stays."""
        writer = self.writer
        if writer is None:
            raise StorageError(self.read_only or "the database is read-only here")
        removed = writer.unwatch_pair(int(pair_id))
        if removed:
            with open_reader(self.db_path) as reader:
                needed = set(watchlib.wanted_symbols(reader))
            needed |= self._pinned | set(self._base_symbols())
            with self._lock:
                drop = [s for s in self.symbols if s not in needed]
                self.symbols = [s for s in self.symbols if s in needed]
                for s in drop:
                    self.collected_elsewhere.pop(s, None)
                    self._refused.pop(s, None)
                feed = self._parts.feed
            if feed is not None and drop:
                feed.remove_symbols(drop)
        if self.monitor is not None:
            self.monitor.poke()
        return removed

    def symbol_notes(self) -> dict[str, str]:
        """Symbol → why it is not collected although wanted (delisted, refused)."""
        feed = self._parts.feed
        notes = dict(feed.refused) if feed is not None else {}
        return notes | self._refused

    def _on_listing(self, listing: Listing) -> None:
        """After each exchangeInfo answer (in the catalog's thread): stop collecting symbols
        that no longer trade (delisted), collect again those that came back."""
        if self.source != Source.LIVE or self._closed:
            return
        with self._lock:
            gone = {s: why for s in self.symbols if (why := listing.not_trading(s))}
            newly = [s for s in gone if s not in self._refused]
            back = [s for s in self._refused if s not in gone and s in self.symbols]
            self._refused = gone
            feed = self._parts.feed
        for s in newly:
            log.warning("%s: %s; its feed is stopped (what was stored stays)", s, gone[s])
        if feed is not None:
            if newly:
                feed.remove_symbols(newly)
            if back:
                feed.add_symbols(back)

    # ------------------------------------------------------------------ sources
    def use_live(self) -> None:
        with self._lock:
            if self.source == Source.LIVE:
                return
            self._teardown_feed()
            self._close_storage()
            self.source = Source.LIVE
            self.symbols = self._default_symbols()
            self._open_storage(fresh=False)
            self._start_catalog()
            self.start_feed()

    def use_replay(self, files: Iterable[str] | None = None, speed: float | None = None) -> None:
        """(Re)start a replay from the beginning into a fresh replay database."""
        with self._lock:
            self._teardown_feed()
            self._close_storage()
            self.source = Source.REPLAY
            if files is not None:
                self.replay_files = tuple(str(f) for f in files)
            if speed is not None:
                self.replay_speed = float(speed)
            self.symbols = feedlib.recording_symbols(self.replay_files) or self._default_symbols()
            self._open_storage(fresh=True)
            self.start_feed()

    def _rest_base_now(self) -> str | None:
        """The REST root of the current source (None while a replay's server is not up)."""
        if self.source == Source.LIVE:
            return self.settings.rest_base
        replay = self._parts.replay
        return None if replay is None else replay.rest_base

    def _default_symbols(self) -> list[str]:
        return [self.settings.default_x, self.settings.default_y]

    def _base_symbols(self) -> list[str]:
        """Collected whatever is watched: the default pair, or every replayed symbol."""
        if self.source == Source.REPLAY:
            return feedlib.recording_symbols(self.replay_files) or self._default_symbols()
        return self._default_symbols()

    def default_pair(self) -> tuple[str, str]:
        """The pair a new page shows: BTCUSDT/ETHUSDT, or a replay's first two symbols."""
        x, y = self.settings.default_x, self.settings.default_y
        if self.source == Source.REPLAY:
            syms = feedlib.recording_symbols(self.replay_files)
            if len(syms) >= 2 and not {x, y} <= set(syms):
                return syms[0], syms[1]
        return x, y

    def _teardown_feed(self) -> None:
        self.stop_feed()
        replay, self._parts.replay = self._parts.replay, None
        if replay is not None:
            with contextlib.suppress(Exception):
                replay.stop()
        catalog, self.catalog = self.catalog, None
        if catalog is not None:
            catalog.stop()
        self._refused = {}

    # ------------------------------------------------------------------ the exchange's symbols
    def _start_catalog(self) -> None:
        """Read the live exchange's symbol list in the background (also the reachability
        probe); the page only ever looks at the last answer."""
        self.catalog = ExchangeCatalog(
            self.settings.rest_base,
            feedlib.fetch_listing,
            timeout_s=self.settings.probe_timeout_s,
            ttl_s=self.settings.exchange_info_ttl_s,
        )
        self.catalog.on_update = self._on_listing
        self.catalog.start()

    @property
    def probe(self) -> Probe:
        """Can the live REST endpoint be reached? (the catalog's last answer)"""
        catalog = self.catalog
        if catalog is None:
            return Probe(None, "checking…")
        listing = catalog.listing()
        return Probe(listing.ok, listing.detail, listing.checked_ms)

    def _exchange_symbols(self) -> frozenset[str] | None:
        """Tradable perpetuals of the current source as last known, or None when unknown
        (never fetched yet, or unreachable). Never waits for the network."""
        if self.source == Source.REPLAY:
            return frozenset(feedlib.recording_symbols(self.replay_files))
        catalog = self.catalog
        return None if catalog is None else catalog.listing().trading

    def symbol_check_note(self) -> str | None:
        """What the sidebar says when symbols cannot be checked now (None when they can)."""
        if self._exchange_symbols() is not None:
            return None
        if self.probe.ok is False:
            return (
                "The exchange cannot be reached, so the symbols were not verified; the "
                "panels wait for their data."
            )
        return "Checking the symbols against the exchange…"

    def check_symbol(self, symbol: str) -> str | None:
        """None if ``symbol`` can be shown, else a one-line reason for the user."""
        sym = symbol.strip().upper()
        if not sym:
            return "enter a symbol, e.g. BTCUSDT"
        if not SYMBOL_RE.match(sym):
            return f"{symbol!r} is not a symbol: use letters and digits only, e.g. BTCUSDT"
        known = self._exchange_symbols()
        if known is None:
            # Not known yet (the first answer is on its way) or offline: a well-formed symbol
            # is accepted and simply waits for data; the sidebar says it was not verified.
            return None
        if sym in known:
            return None
        where = (
            "in this replay"
            if self.source == Source.REPLAY
            else "a trading USD-M perpetual on Binance"
        )
        hint = difflib.get_close_matches(sym, sorted(known), n=3)
        also = f" — did you mean {', '.join(hint)}?" if hint else ""
        return f"{sym} is not {where}{also}"

    # ------------------------------------------------------------------ alert rules
    def add_rule(self, **rule: Any) -> int:
        writer = self.writer
        if writer is None:
            raise StorageError(self.read_only or "the database is read-only here")
        rule_id = writer.add_alert_rule(**rule)
        params = rule.get("params") or {}
        with contextlib.suppress(ValueError):  # a rule's pair joins the watchlist
            writer.watch_pair(
                rule["x"],
                rule["y"],
                rule["tf"],
                params.get("window", 60),
                params.get("method", "ols"),
            )
        self.watch([rule["x"], rule["y"]], pinned=False)  # collected while the rule exists
        if self.monitor is not None:
            self.monitor.poke()
        return rule_id

    def delete_rule(self, rule_id: int) -> None:
        writer = self.writer
        if writer is None:
            raise StorageError(self.read_only or "the database is read-only here")
        writer.delete_alert_rule(int(rule_id))
        if self.monitor is not None:
            self.monitor.poke()

    def set_rule_enabled(self, rule_id: int, enabled: bool) -> None:
        writer = self.writer
        if writer is None:
            raise StorageError(self.read_only or "the database is read-only here")
        writer.set_alert_rule_enabled(int(rule_id), bool(enabled))
        if self.monitor is not None:
            self.monitor.poke()

    # ------------------------------------------------------------------ life
    def healthy(self) -> bool:
        """False if a thread that should run has died (``st.cache_resource`` then rebuilds)."""
        if self._closed:
            return False
        parts = self._parts
        if parts.monitor is not None and not parts.monitor.is_alive():
            return False
        # A feed whose start failed (e.g. offline) is reported on the page, not rebuilt.
        return not (parts.feed is not None and not parts.feed.alive() and not parts.feed.error)

    def status(self) -> ServiceStatus:
        mon = self._parts.monitor
        return ServiceStatus(
            source=self.source,
            db_path=self.db_path,
            generation=self.generation,
            read_only=self.read_only,
            feed_running=self.feed_running(),
            feed_error=self.feed_error or (self._parts.feed.error if self._parts.feed else ""),
            symbols=tuple(self.symbols),
            collected_elsewhere=dict(self.collected_elsewhere),
            replay_files=self.replay_files,
            replay_speed=self.replay_speed,
            probe=self.probe if self.source == Source.LIVE else Probe(True, "replay"),
            monitor_alive=mon is not None and mon.is_alive(),
            monitor_error=mon.stats.last_error if mon is not None else "",
            started_ms=self.started_ms,
            symbol_notes=self.symbol_notes(),
        )

    def close(self) -> None:
        """Stop every thread and release the writer (idempotent)."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self._teardown_feed()
            self._close_storage()
            self.views.close()
            self.funding.stop()


# ---------------------------------------------------------------------- one per process
_REGISTRY_LOCK = threading.Lock()


def acquire_service(settings: AppSettings) -> DashboardService:
    """The process's one service, created on first use, recreated only if it died.

    Called from the ``st.cache_resource`` factory in ``app.py``. The instance is also kept in
    ``service.registry`` (a module that never changes, so Streamlit's code reload does not drop
    it): if the cache is rebuilt after a reload, the old service is closed before a new one
    starts, so there is never a second writer or a second set of threads.
    """
    from service import registry

    with _REGISTRY_LOCK:
        current = registry.SERVICE
        # Compared by value: after a code reload the settings class is a new class object.
        if current is not None and current.healthy() and repr(current.settings) == repr(settings):
            return current
        if current is not None:
            with contextlib.suppress(Exception):
                current.close()
        service = DashboardService(settings)
        registry.SERVICE = service
        return service
