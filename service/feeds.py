"""The one place the dashboard talks to ``ingestion``: feed, replay server, exchange info.

``ingestion.service.FeedService.start()`` validates the symbols against ``exchangeInfo`` over
REST, which can take a while when the network is slow or absent, so :class:`FeedHandle` starts
it in a daemon thread: the page never waits for the network, and a stop requested while the
start is still running wins at once (the service tears down what it had started). No Streamlit
here.
"""

from __future__ import annotations

import collections
import functools
import logging
import os
import socket
import threading
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from ingestion.config import ConfigError, FeedSettings
from ingestion.rest import RestClient
from ingestion.service import FeedService
from ingestion.status import SymbolStatus
from service.exchange import Listing
from storage import Writer

log = logging.getLogger(__name__)

#: This dashboard's collector id in ``feed_status``: unique per process, so dashboards on
#: several machines sharing one PostgreSQL database tell their feeds apart (a headless
#: collector uses ``host:pid``).
COLLECTOR_ID = f"dashboard@{socket.gethostname()}:{os.getpid()}"


def fetch_listing(rest_base: str, *, timeout_s: float = 3.0) -> dict[str, str]:
    """Every USD-M perpetual listed at ``rest_base`` → its status (``TRADING``, ``SETTLING``,
    ...): one exchangeInfo call, no retry (``RestError`` or ``OSError`` when it fails)."""
    client = RestClient(rest_base, timeout_s=timeout_s, max_retries=0)
    info = client.exchange_info()
    return {
        str(s.get("symbol", "")).upper(): str(s.get("status", ""))
        for s in info.get("symbols", [])
        if isinstance(s, dict) and s.get("contractType", "PERPETUAL") == "PERPETUAL"
    }


@functools.lru_cache(maxsize=16)
def _recording_symbols(path: str, mtime_ns: int, size: int) -> tuple[str, ...]:
    from formats import validate_recording  # streamed and bounded: never the whole file

    return validate_recording(path).symbols


def recording_symbols(files: Iterable[str]) -> list[str]:
    """Symbols traded in recordings (cached per file version); [] if none can be read."""
    out: list[str] = []
    for f in files:
        try:
            st = os.stat(f)
            syms = _recording_symbols(str(Path(f).resolve()), st.st_mtime_ns, st.st_size)
        except (OSError, ValueError, EOFError):
            continue
        out.extend(s for s in syms if s not in out)
    return out


#: Seconds of a replay already "in the past" when it starts: REST serves them as history, so
#: the default 60-bar window of 1s analytics is defined at once instead of after a minute.
REPLAY_PREROLL_S = 90.0


def start_replay(files: Sequence[str], speed: float) -> Any:
    """Serve ``files`` on a free local port (looping, times shifted to now); return the handle."""
    from replay import start_replay_server

    return start_replay_server(
        list(files), port=0, speed=speed, loop=True, preroll_s=REPLAY_PREROLL_S
    )


def feed_settings(*, ws_base: str, rest_base: str, replay: bool) -> FeedSettings:
    """Live: production defaults (history loaded on start). Replay: the pre-roll as history
    (recent trades only: the replay's derived klines would add nothing)."""
    settings = FeedSettings(ws_base=ws_base, rest_base=rest_base)
    if replay:
        settings = settings.replace(history_trades_s=REPLAY_PREROLL_S + 30.0, history_klines_s=0.0)
    return settings


class FeedHandle:
    """A ``FeedService`` started in the background; safe to stop at any moment (the service
    honours a stop that comes while its start is still running).

    Symbols added or removed later (:meth:`add_symbols`, :meth:`remove_symbols`) are applied
    in order by one daemon thread, after the start: the exchange is asked about a new symbol
    over REST and a removed symbol's socket is joined, neither in the caller's thread.
    ``refused``: symbol → why the exchange would not let it be collected (not trading).
    """

    def __init__(self, writer: Writer, symbols: Sequence[str], settings: FeedSettings) -> None:
        self.service = FeedService(writer, list(symbols), settings, collector_id=COLLECTOR_ID)
        self.error = ""
        self.refused: dict[str, str] = {}
        self._stop_requested = False
        self._changes: collections.deque[tuple[str, str]] = collections.deque()
        self._changes_lock = threading.Lock()
        self._changer: threading.Thread | None = None
        self._thread = threading.Thread(target=self._start, name="feed-start", daemon=True)
        self._thread.start()

    def _start(self) -> None:
        try:
            self._drop_refused()
            self.service.start()
        except Exception as exc:  # broad on purpose: ConfigError, network: shown on the page
            log.warning("feed did not start: %s", exc)
            self.error = str(exc).splitlines()[0] if str(exc) else type(exc).__name__

    def _drop_refused(self) -> None:
        """Leave out symbols the exchange lists as not trading (delisted while this process was
        down, say): one of them must not keep every other symbol from being collected."""
        try:
            listing = Listing.of(fetch_listing(self.service.settings.rest_base))
        except Exception:  # broad on purpose: unreachable: the service's own check says so
            return
        for symbol in self.service.symbols:
            why = listing.not_trading(symbol)
            if why:
                self.refused[symbol] = why
                self.service.remove_symbol(symbol)
        if self.refused and not self.service.symbols:
            raise ConfigError(
                "no symbol can be collected: "
                + "; ".join(f"{s} {why}" for s, why in self.refused.items())
            )

    @property
    def starting(self) -> bool:
        return self._thread.is_alive() and not self._stop_requested

    @property
    def running(self) -> bool:
        """Started, not stopped, and its writer thread alive."""
        return self.service.running

    def alive(self) -> bool:
        """Starting or running (a failed start is not alive)."""
        return self.starting or self.running

    def stop(self, timeout_s: float = 10.0) -> None:
        self._stop_requested = True
        self.service.stop(timeout_s)

    def status(self) -> list[SymbolStatus]:
        return list(self.service.status().values())

    def add_symbols(self, symbols: Sequence[str]) -> None:
        """Stream more symbols; validated over REST in the background."""
        self._change("add", symbols)

    def remove_symbols(self, symbols: Sequence[str]) -> None:
        """Stop streaming symbols (their queued ticks are still written); in the background."""
        self._change("remove", symbols)

    def _change(self, op: str, symbols: Sequence[str]) -> None:
        with self._changes_lock:
            self._changes.extend((op, s) for s in symbols)
            if self._changer is None:
                self._changer = threading.Thread(
                    target=self._apply_changes, name="feed-symbols", daemon=True
                )
                self._changer.start()

    def _apply_changes(self) -> None:
        self._thread.join()  # after the start, successful or not
        while True:
            with self._changes_lock:
                if not self._changes or self._stop_requested:
                    self._changer = None
                    return
                op, symbol = self._changes.popleft()
            if not self.service.running:
                continue
            try:
                if op == "add":
                    self.service.add_symbol(symbol)
                    self.refused.pop(symbol, None)
                else:
                    self.service.remove_symbol(symbol)
            except Exception as exc:  # broad on purpose: shown on the page
                reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
                self.refused[symbol] = reason
                self.error = f"could not add {symbol}: {reason}"


def start_feed(
    writer: Writer | None, symbols: Sequence[str], *, ws_base: str, rest_base: str, replay: bool
) -> FeedHandle:
    """Start ingestion's ``FeedService`` for ``symbols`` writing through the shared ``writer``."""
    if writer is None:
        raise RuntimeError("read-only: another process writes this database")
    return FeedHandle(
        writer, symbols, feed_settings(ws_base=ws_base, rest_base=rest_base, replay=replay)
    )
