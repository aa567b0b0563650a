"""Feed settings: one frozen dataclass built once from defaults, environment and CLI flags.

Every time is in seconds (``*_s``), and ``None`` means "disabled". The defaults follow
``../shared/docs/binance-usdm.md``; each number that Binance imposes is a setting here, not
a literal in the code.
"""

from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from config import BINANCE_REST_BASE, BINANCE_WS_BASE, ConfigError, binance_roots
from formats.wire import StreamKind

__all__ = ["ConfigError", "FeedSettings", "normalize_symbols"]

# ConfigError (config.ConfigError) is any fatal configuration error: a bad setting, an unknown
# or delisted symbol, a busy database. Its message is one line naming what is wrong; the CLI
# prints it and exits non-zero.


def normalize_symbols(symbols: str | list[str] | tuple[str, ...]) -> tuple[str, ...]:
    """``"btcusdt, ETHUSDT"`` or a list -> ``("BTCUSDT", "ETHUSDT")``, order kept, deduplicated."""
    items = symbols.split(",") if isinstance(symbols, str) else list(symbols)
    out: list[str] = []
    for item in items:
        symbol = item.strip().upper()
        if not symbol:
            continue
        if not symbol.replace("_", "").isalnum():
            raise ConfigError(f"invalid symbol {item.strip()!r}: expected letters, digits and '_'")
        if symbol not in out:
            out.append(symbol)
    return tuple(out)


@dataclass(frozen=True, slots=True)
class FeedSettings:
    """How the feed connects, stays alive, repairs gaps and writes. Immutable.

    Build it with ``FeedSettings(...)`` in code and tests, or ``FeedSettings.from_env()``
    for the collector (environment first, then explicit overrides).
    """

    # --- where -------------------------------------------------------------------------------
    #: WebSocket root, without route: ``wss://fstream.binance.com`` (or ``ws://127.0.0.1:P``).
    ws_base: str = BINANCE_WS_BASE
    #: REST root: ``https://fapi.binance.com``.
    rest_base: str = BINANCE_REST_BASE
    #: ``aggTrade`` (default, documented) or ``trade`` (opt-in, undocumented on USD-M).
    stream: StreamKind = StreamKind.AGG_TRADE
    #: Route path between root and ``/ws``; ``None`` picks ``/market`` for aggTrade and
    #: ``/public`` for trade. ``""`` gives the retired unrouted URLs (which go silent).
    ws_route: str | None = None

    # --- connection life ---------------------------------------------------------------------
    #: Timeout of the TCP + TLS + WebSocket handshake, in seconds.
    connect_timeout_s: float = 10.0
    #: The read loop wakes at least this often (seconds) to check stop, pings and liveness.
    read_poll_s: float = 0.5
    #: Send a ping of our own this often (seconds) to prove the socket is alive; None = never.
    #: Binance counts pings against 10 incoming messages/s per connection, so keep it slow.
    ping_interval_s: float | None = 30.0
    #: A ping unanswered this long (seconds) means a dead socket: reconnect.
    pong_timeout_s: float = 10.0
    #: Largest message (bytes) accepted, one frame or a text assembled from continuation
    #: frames; a bigger one ends the connection. Binance trade messages are < 1 KiB.
    max_message_bytes: int = 1 << 20
    #: More server pings than this within one second (Binance sends one per 3 min) is a
    #: ping flood: the connection is ended and dialled again after the backoff.
    max_pings_per_s: int = 20
    #: No trade for this long (seconds) shows the symbol as ``quiet`` (display only).
    quiet_after_s: float = 10.0
    #: Connected this long (seconds) without one trade: ask REST whether the market traded.
    first_data_timeout_s: float = 30.0
    #: No trade for this long (seconds): ask REST whether the market traded meanwhile.
    #: If it did, the socket is stale ("connected but no data"): backfill and reconnect.
    #: If it did not, the market is quiet and nothing happens (no reconnect storm).
    stale_after_s: float = 60.0
    #: While quiet, ask REST again at most this often (seconds). Each probe costs 20 weight.
    stale_probe_interval_s: float = 60.0
    #: A trade that REST shows but the socket has not delivered counts as missed only once
    #: it is this old (seconds): the socket may simply be a little behind REST.
    stale_grace_s: float = 2.0
    #: Replace the connection after this long (seconds), before Binance's 24 h cut. None = never.
    planned_reconnect_s: float | None = 23 * 3600.0
    #: After a planned reconnect, read what is left on the old socket for up to this long
    #: (seconds) so the switch loses nothing. Any remaining hole is backfilled from REST.
    drain_old_s: float = 0.5

    # --- reconnect backoff -------------------------------------------------------------------
    #: First reconnect delay (seconds); doubles (``backoff_factor``) up to ``backoff_max_s``.
    backoff_initial_s: float = 0.5
    backoff_factor: float = 2.0
    #: Cap of the reconnect delay, in seconds.
    backoff_max_s: float = 60.0
    #: Fraction of each delay that is random (0 = none, 1 = "full jitter").
    backoff_jitter: float = 0.5
    #: A connection that delivered data and lived this long (seconds) resets the backoff.
    healthy_after_s: float = 30.0
    #: Connection attempts allowed per ``connect_window_s`` for the whole process. Binance
    #: allows about 300 per 5 min per IP; we keep a margin.
    connect_attempts_per_window: int = 250
    #: Window of the connection-attempt limit, in seconds.
    connect_window_s: float = 300.0

    # --- REST --------------------------------------------------------------------------------
    #: Timeout of one REST request, in seconds.
    rest_timeout_s: float = 10.0
    #: IP request weight allowed per minute; replaced by ``exchangeInfo.rateLimits`` at start.
    rest_weight_limit_per_min: int = 2400
    #: Use at most this fraction of the weight limit, leaving room for other clients.
    rest_weight_headroom: float = 0.8
    #: Retries of one REST request after network errors, 5xx, 429 or 418.
    rest_max_retries: int = 5
    #: Longest ``Retry-After`` (seconds) we wait out; a longer 418 ban fails the request.
    rest_max_retry_after_s: float = 600.0
    #: Rows per ``aggTrades`` / ``trades`` page (Binance's maximum is 1000).
    rest_page_limit: int = 1000
    #: Most ids one gap repair fetches (newest first kept); older ones are recorded unrepaired.
    max_backfill_ids: int = 100_000
    #: A stream id more than this past the last one is a suspect, held until REST confirms
    #: it exists (``ingestion.suspect``): a lie must not make every later trade a duplicate.
    suspect_id_jump: int = 100_000
    #: Ids of a gap that REST no longer has (``unrepairable``/``partial``) are replaced by
    #: Binance's 1m klines for the closed minutes they fall in, when the trade times around
    #: them are known: those minutes' 1m and 5m bars become the exchange's, their ticks and
    #: 1s bars keep the hole, and the gap's ``detail`` names the minutes. False = leave the
    #: bars built from the ticks that exist.
    kline_fallback: bool = True
    #: A repair (gap or start-up history) that REST failed is kept owed (status ``failed``)
    #: and retried in this run after this many seconds, doubling up to
    #: ``repair_retry_max_s`` (with ``backoff_jitter``); every start retries it as well.
    repair_retry_initial_s: float = 5.0
    #: Cap of the in-run repair retry delay, in seconds.
    repair_retry_max_s: float = 300.0

    # --- writing -----------------------------------------------------------------------------
    #: Capacity of the queue to the storage writer, in items (a tick, or one REST page).
    queue_size: int = 20_000
    #: Most ticks committed in one transaction.
    batch_size: int = 5_000
    #: Longest a tick waits (seconds) for its batch to fill before being committed.
    batch_latency_s: float = 0.05
    #: Wait (seconds) before retrying a commit that failed (disk full, locked ...).
    storage_retry_s: float = 1.0
    #: Feed threads pause while a commit runs instead of competing with it for the GIL
    #: (sqlite3 drops and retakes the GIL on every row). Faster for both on CPython; see
    #: ``TickWriter.yield_to_commit``. Frames wait in the kernel's socket buffer meanwhile.
    yield_to_commits: bool = True

    # --- history on start --------------------------------------------------------------------
    #: Load history when a symbol starts, so analytics have data at once.
    history: bool = True
    #: Trades (aggTrades or recent trades) to load on start, in seconds back from now.
    history_trades_s: float = 600.0
    #: 1m klines to load on start, in seconds back from now, for the minutes before the
    #: first loaded trade; 0 = none.
    history_klines_s: float = 24 * 3600.0

    # --- reporting ---------------------------------------------------------------------------
    #: The collector prints a status line per symbol this often, in seconds.
    status_interval_s: float = 5.0
    #: Log at most this many rejected messages per symbol (the counter keeps counting).
    log_rejects_max: int = 20

    def __post_init__(self) -> None:
        object.__setattr__(self, "stream", StreamKind(self.stream))
        for name in ("ws_base", "rest_base"):
            url = getattr(self, name).rstrip("/")
            parts = urlsplit(url)
            wanted = ("ws", "wss") if name == "ws_base" else ("http", "https")
            if parts.scheme not in wanted or not parts.netloc:
                raise ConfigError(
                    f"{name}={getattr(self, name)!r}: expected {' or '.join(wanted)}://host[:port]"
                )
            object.__setattr__(self, name, url)
        if (
            self.ws_route is not None
            and self.ws_route not in ("",)
            and (not self.ws_route.startswith("/") or self.ws_route.endswith("/"))
        ):
            raise ConfigError(f"ws_route={self.ws_route!r}: expected '', '/market' or '/public'")
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            is_seconds = f.name.endswith("_s") and value is not None
            if is_seconds and (
                not isinstance(value, int | float) or not math.isfinite(value) or value < 0
            ):
                raise ConfigError(f"{f.name}={value!r}: expected seconds >= 0")
        for name in (
            "queue_size",
            "batch_size",
            "rest_page_limit",
            "max_backfill_ids",
            "connect_attempts_per_window",
            "rest_weight_limit_per_min",
            "max_message_bytes",
            "suspect_id_jump",
            "max_pings_per_s",
        ):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name}={getattr(self, name)!r}: expected >= 1")
        if not 0.0 < self.rest_weight_headroom <= 1.0:
            raise ConfigError("rest_weight_headroom must be in (0, 1]")
        if not 0.0 <= self.backoff_jitter <= 1.0:
            raise ConfigError("backoff_jitter must be in [0, 1]")
        if self.backoff_factor < 1.0:
            raise ConfigError("backoff_factor must be >= 1")
        if self.rest_page_limit > 1000:
            raise ConfigError("rest_page_limit must be <= 1000 (Binance's maximum)")

    # ---------------------------------------------------------------------------------------------
    @property
    def route(self) -> str:
        """The URL route for this stream kind (``/market`` for aggTrade, ``/public`` for trade)."""
        if self.ws_route is not None:
            return self.ws_route
        return "/market" if self.stream is StreamKind.AGG_TRADE else "/public"

    def stream_name(self, symbol: str) -> str:
        """``btcusdt@aggTrade``: lower-case symbol, Binance's stream name."""
        return f"{symbol.lower()}@{self.stream.value}"

    def ws_url(self, symbol: str) -> str:
        """Raw-payload URL of one symbol, e.g. ``wss://fstream.binance.com/market/ws/btcusdt@aggTrade``."""
        return f"{self.ws_base}{self.route}/ws/{self.stream_name(symbol)}"

    def replace(self, **changes: Any) -> FeedSettings:
        """A copy with some fields changed (validated again)."""
        return dataclasses.replace(self, **changes)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **overrides: Any) -> FeedSettings:
        """Defaults, then ``BINANCE_WS_BASE`` / ``BINANCE_REST_BASE``, then ``overrides``.

        Overrides whose value is ``None`` are ignored, so unset CLI flags do not win.
        """
        env = os.environ if env is None else env
        ws_base, rest_base = binance_roots(env)
        values: dict[str, Any] = {"ws_base": ws_base, "rest_base": rest_base}
        values.update({k: v for k, v in overrides.items() if v is not None})
        try:
            return cls(**values)
        except TypeError as exc:  # an unknown field name
            raise ConfigError(str(exc)) from None
