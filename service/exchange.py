"""The exchange's symbol list, kept fresh in the background: the page never waits for it.

One :class:`ExchangeCatalog` per REST root holds the last ``exchangeInfo`` answer (every
USD-M perpetual → its status). One daemon thread fetches it at start, then every ``ttl_s``
(10 minutes: symbols rarely change), or ``retry_s`` after a failure; :meth:`refresh` asks for
a fetch now. Readers (the sidebar's symbol check, the status strip) only look at what is
known — :meth:`listing` never blocks — and say "checking…" while nothing is known yet.

The same fetch answers "can Binance be reached?" (the probe of the status strip), and after
each answer ``on_update`` is called in that thread: the dashboard uses it to notice a
collected symbol that stopped trading (delisted) and stop its feed. No Streamlit here.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

log = logging.getLogger(__name__)

#: Exchange info is refreshed this often, in seconds (symbols rarely change).
EXCHANGE_INFO_TTL_S = 600.0
#: A failed fetch is retried after this many seconds.
RETRY_S = 15.0
TRADING = "TRADING"


@dataclass(frozen=True, slots=True)
class Listing:
    """What is known of the exchange's symbols.

    ``ok``: None until the first answer, then whether the last fetch succeeded. ``statuses``
    (symbol → status) is the last *successful* answer, kept across later failures (empty if
    none yet). ``checked_ms``: wall-clock time of the last answer, ok or not.
    """

    base: str
    ok: bool | None = None
    detail: str = "checking…"
    statuses: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    checked_ms: int | None = None
    fetched: bool = False  # at least one fetch succeeded: ``statuses`` is real

    @classmethod
    def of(cls, statuses: Mapping[str, str], base: str = "") -> Listing:
        """A successful answer: symbol → status (``service.feeds.fetch_listing``)."""
        trading = sum(1 for st in statuses.values() if st == TRADING)
        return cls(
            base, True, f"{base} answered ({trading} perpetuals)",
            MappingProxyType(dict(statuses)), int(time.time() * 1000), True,
        )  # fmt: skip

    @property
    def trading(self) -> frozenset[str] | None:
        """Symbols trading now, or None while no fetch has succeeded."""
        if not self.fetched:
            return None
        return frozenset(s for s, st in self.statuses.items() if st == TRADING)

    def not_trading(self, symbol: str) -> str | None:
        """Why ``symbol`` cannot be collected (delisted, unknown), or None if it trades or
        nothing is known yet."""
        if not self.fetched:
            return None
        status = self.statuses.get(symbol)
        if status == TRADING:
            return None
        if status is None:
            return "not listed on the exchange"
        return f"delisted (status {status} on the exchange)"


class ExchangeCatalog:
    """The symbol list of one REST root, fetched by one daemon thread (see the module doc).

    ``fetch(base, timeout_s)`` returns symbol → status (``service.feeds.fetch_listing``);
    ``clock`` (monotonic seconds) is injectable. Stop with :meth:`stop` (one Event; a fetch in
    flight ends within its timeout).
    """

    def __init__(
        self,
        base: str,
        fetch: Callable[..., Mapping[str, str]],
        *,
        timeout_s: float = 3.0,
        ttl_s: float = EXCHANGE_INFO_TTL_S,
        retry_s: float = RETRY_S,
    ) -> None:
        if not (timeout_s > 0 and ttl_s > 0 and retry_s > 0):
            raise ValueError(
                f"need timeout_s, ttl_s, retry_s > 0 ({timeout_s}, {ttl_s}, {retry_s})"
            )
        self.base = base
        self._fetch = fetch
        self.timeout_s = timeout_s
        self.ttl_s = ttl_s
        self.retry_s = retry_s
        self._listing = Listing(base)
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._answered = threading.Condition()
        self.fetches = 0
        #: Called in the catalog's thread after every answer (keep it quick, never raise).
        self.on_update: Callable[[Listing], None] = lambda _listing: None
        self._thread = threading.Thread(target=self._run, name="exchange-info", daemon=True)

    def start(self) -> ExchangeCatalog:
        self._thread.start()
        return self

    def listing(self) -> Listing:
        """What is known now; never waits for the network."""
        return self._listing

    def refresh(self) -> None:
        """Fetch now (e.g. the feed saw a symbol's stream go quiet); returns at once."""
        self._wake.set()

    def wait_answer(self, after: int = 0, timeout_s: float = 10.0) -> bool:
        """Wait until more than ``after`` fetches have been answered (tests, shutdown)."""
        deadline = time.monotonic() + timeout_s
        with self._answered:
            while self.fetches <= after:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._answered.wait(left)
        return True

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()

    def is_alive(self) -> bool:
        return self._thread.is_alive()

    def _run(self) -> None:
        while not self._stop.is_set():
            self._wake.clear()
            listing = self._fetch_once()
            if self._stop.is_set():
                return
            try:
                self.on_update(listing)
            except Exception:  # broad on purpose: the catalog must outlive a bad listener
                log.exception("exchange-info listener failed")
            self._wake.wait(self.ttl_s if listing.ok else self.retry_s)

    def _fetch_once(self) -> Listing:
        old = self._listing
        now_ms = int(time.time() * 1000)
        try:
            statuses = dict(self._fetch(self.base, timeout_s=self.timeout_s))
        except Exception as exc:  # broad on purpose: any failure means "not reachable now"
            new = Listing(
                self.base, False, f"{self.base} did not answer: {_short(exc)}",
                old.statuses, now_ms, old.fetched,
            )  # fmt: skip
        else:
            new = Listing.of(statuses, self.base)
        self._listing = new
        with self._answered:
            self.fetches += 1
            self._answered.notify_all()
        return new


def _short(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return text if len(text) <= 160 else text[:157] + "…"
