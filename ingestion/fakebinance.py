"""A local Binance USD-M endpoint (WebSocket + REST on one port) replaying recorded trades.

Standard library only: a threaded ``http.server`` whose GET handler either answers REST
or upgrades to WebSocket (RFC 6455: ``Sec-WebSocket-Accept`` handshake, unmasked server
frames, masked client frames, ping with payload + pong echo check, close frames).

Served like the real thing (``../shared/docs/binance-usdm.md``):

- ``/market/ws/<sym>@aggTrade`` (raw) and ``/market/stream?streams=a/b`` (wrapped)
- ``/public/ws/<sym>@trade`` and ``/public/stream?streams=...``
- retired unrouted paths (``/ws/...``, ``/stream?...``) and wrong routes connect, answer
  pings and SUBSCRIBE, and then send nothing: Binance's silent failure
- ``GET /fapi/v1/exchangeInfo``, ``/fapi/v1/aggTrades`` (by ``fromId`` or by time),
  ``/fapi/v1/trades`` (recent), ``/fapi/v1/klines`` (1m/3m/5m/15m/30m/1h, built from the
  trades), ``/fapi/v1/time``, ``/fapi/v1/ping``; request weights are counted per minute and
  returned in ``X-MBX-USED-WEIGHT-1M``; over the limit gives 429 with ``Retry-After``.

Time: the recording is paced by its trade times ``T`` at ``speed`` (0 = as fast as the
socket takes it). With ``rebase_time`` (default) served times are shifted so that the
replay starts "now" (``preroll_s`` of it already in the past, available over REST only);
``loop`` repeats the recording with ids and times continuing upwards. A new connection,
like Binance's, starts at the present: what happened while a client was away is only on
REST. ``rate`` replaces recorded pacing by a steady number of messages per second per
symbol, stamped with the send time (used by the latency benchmark).

Fault injection (``Faults``, changeable while running) drops connections, sends garbage,
skips ids, stalls, returns 429/418/500, forgets old ids, cuts connections at an age (the
24 h cut), and adds delisted or non-perpetual symbols to exchangeInfo. Hostile endpoints
(issue 14, ``ingestion.fakehostile``): per connection, a silent socket, a ping flood or a
text frame that never finishes (``Faults.hostile``); raw frames injected into the stream
(``Faults.inject``: a 100,000-deep JSON array, an id past 2**64, a far-ahead id ...).
"""

from __future__ import annotations

import base64
import bisect
import contextlib
import hashlib
import heapq
import http.server
import json
import logging
import math
import socket
import struct
import threading
import time
import urllib.parse
from collections.abc import Iterable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from ingestion.fakehostile import run_hostile
from ingestion.recording import Recording, SymbolRecording, TradeColumns, load_recording

__all__ = ["GARBAGE_FRAMES", "FakeBinance", "Faults"]

log = logging.getLogger(__name__)

_WS_GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
OP_CONT, OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA

#: Frames sent by the ``garbage_every`` fault, in turn. None of them is a storable trade.
GARBAGE_FRAMES: tuple[bytes, ...] = (
    b"this is not json",
    b'{"e":"aggTrade","E":1,"s":"BTCUSDT","p":"1.0"',  # truncated
    b"\xff\xfe\x00 invalid utf-8 \xc3\x28",
    b'{"e":"aggTrade","E":1,"a":1,"s":"BTCUSDT","p":"NaN","q":"1","f":1,"l":1,"T":1,"m":false}',
    b'{"e":"aggTrade","E":1,"a":1,"s":"BTCUSDT","p":"-5","q":"1","f":1,"l":1,"T":1,"m":false}',
    b'{"e":"aggTrade","E":1,"a":1,"s":"BTCUSDT","p":"1","q":"0","f":1,"l":1,"T":1,"m":false}',
    b'{"e":"aggTrade","E":1,"s":"BTCUSDT","p":"1","q":"1","T":1,"m":false}',  # no "a"
    b'{"e":"trade","E":1,"T":1,"s":"BTCUSDT","t":1,"p":"0","q":"0","X":"NA","m":false}',
    b'{"e":"trade","E":1,"T":1,"s":"BTCUSDT","t":1,"p":"9e9","q":"1","X":"INSURANCE_FUND","m":true}',
    b'{"result":null,"id":1}',
    b"[1,2,3]",
    b"",
)


@dataclass
class Faults:
    """What goes wrong, by design. Lists are consumed per symbol, one entry per connection:
    ``drop_after=[50, 200]`` cuts the first connection of each symbol after 50 data
    messages, the second after 200, and leaves later ones alone."""

    #: Cut the k-th connection abruptly (no close frame) after this many data messages.
    drop_after: list[int] = field(default_factory=list)
    #: After every N data messages send one garbage frame (0 = never).
    garbage_every: int = 0
    #: Ids never sent over WebSocket (REST still has them): in-stream gaps.
    skip_ids: set[int] = field(default_factory=set)
    #: The k-th connection stops sending data after this many messages, for ``stall_s``.
    stall_after: list[int] = field(default_factory=list)
    stall_s: float = 5.0
    #: While stalled, answer pings (a stuck stream) or not (a dead socket).
    stall_answers_pings: bool = True
    #: Every data route is silent (connects, answers pings, sends nothing).
    silent: bool = False
    #: The next N REST data requests (aggTrades/trades/klines) get 429 / 418 / 500.
    rest_429: int = 0
    rest_418: int = 0
    rest_500: int = 0
    #: ``Retry-After`` of those 429/418 responses, in whole seconds.
    retry_after_s: int = 1
    #: Every REST data request answers 500 while this is true (an outage of unknown length).
    rest_down: bool = False
    #: Every REST request (exchangeInfo too) is answered this many seconds late (a slow REST).
    rest_delay_s: float = 0.0
    #: The next N ``aggTrades?fromId=`` replies (with rows) end with a malformed row ``{"a": "x"}``.
    rest_bad_rows: int = 0
    #: Per symbol: REST no longer has ids below this (history expired).
    rest_min_id: dict[str, int] = field(default_factory=dict)
    #: Close every connection this long (seconds) after it opened: the 24 h cut. None = never.
    max_connection_s: float | None = None
    #: Extra exchangeInfo entries, e.g. ``{"symbol": "OLDUSDT", "status": "SETTLING"}``.
    extra_symbols: list[dict[str, Any]] = field(default_factory=list)
    #: Symbols delisted now: status SETTLING in exchangeInfo, their streams silent (a socket
    #: open before stays open: ``cut_all`` closes it), and static klines answer -1121.
    delisted: set[str] = field(default_factory=set)
    #: Per connection of each symbol, in turn: a hostile mode (``ingestion.fakehostile``:
    #: ``silent``, ``ping_flood``, ``endless_fragments``) that replaces the replay, or None.
    hostile: list[str | None] = field(default_factory=list)
    #: ``(symbol, after_n, payload)``: on the first connection of ``symbol``, send the raw
    #: text frame ``payload`` after its ``after_n``-th data message (a nested frame, a trade
    #: with an impossible id ...; see ``fakehostile.hostile_trade``).
    inject: list[tuple[str, int, bytes]] = field(default_factory=list)


# --------------------------------------------------------------------------------------------
# WebSocket framing
# --------------------------------------------------------------------------------------------
def encode_frame(opcode: int, payload: bytes) -> bytes:
    """One unmasked, final server frame."""
    n = len(payload)
    if n < 126:
        header = struct.pack("!BB", 0x80 | opcode, n)
    elif n < 65536:
        header = struct.pack("!BBH", 0x80 | opcode, 126, n)
    else:
        header = struct.pack("!BBQ", 0x80 | opcode, 127, n)
    return header + payload


def _unmask(mask: bytes, data: bytes) -> bytes:
    n = len(data)
    if not n:
        return data
    key = (mask * (n // 4 + 1))[:n]
    return (int.from_bytes(data, "big") ^ int.from_bytes(key, "big")).to_bytes(n, "big")


def _read_exact(rfile: Any, n: int) -> bytes:
    data = rfile.read(n)
    if data is None or len(data) < n:
        raise ConnectionError("client closed")
    return data


def read_frame(rfile: Any) -> tuple[int, bool, bytes]:
    """Read one client frame: ``(opcode, fin, payload)``; ``ConnectionError`` at EOF."""
    b0, b1 = _read_exact(rfile, 2)
    opcode, fin = b0 & 0x0F, bool(b0 & 0x80)
    length = b1 & 0x7F
    if length == 126:
        (length,) = struct.unpack("!H", _read_exact(rfile, 2))
    elif length == 127:
        (length,) = struct.unpack("!Q", _read_exact(rfile, 8))
    if length > 1 << 20:
        raise ConnectionError("client frame too large")
    mask = _read_exact(rfile, 4) if b1 & 0x80 else b""
    payload = _read_exact(rfile, length) if length else b""
    return opcode, fin, (_unmask(mask, payload) if mask else payload)


# --------------------------------------------------------------------------------------------
# The replay timeline
# --------------------------------------------------------------------------------------------
class _View:
    """One symbol's sequence (aggregates or trades) as an endless list of events ``n``:
    pass ``k = n // len``, index ``i = n % len``; ids and times move up by a span per pass."""

    def __init__(
        self, symbol: str, cols: TradeColumns, kind: str, id_span_sub: int, id_offset: int = 0
    ) -> None:
        self.symbol = symbol
        self.lower = symbol.lower()
        self.cols = cols
        self.kind = kind  # "agg" or "trade"
        self.size = len(cols)
        self.id_span = cols.ids[-1] - cols.ids[0] + 1
        self.sub_span = id_span_sub  # span of underlying trade ids (aggs' f/l)
        self.offset = id_offset  # added to every served id (ids, and aggs' f/l)
        self.m_json = ["true" if m else "false" for m in cols.buyer_maker]
        self._factors: dict[int, Decimal] = {}  # price scale of each loop pass (see price_of)

    def id_of(self, n: int) -> int:
        k, i = divmod(n, self.size)
        return self.cols.ids[i] + k * self.id_span + self.offset

    def price_of(self, n: int) -> str:
        """Served price of event ``n``: each pass continues from the previous pass's last price.

        A loop joins the recording's end to its start; serving the recorded prices again would
        invent a jump at every join (and, for a pair, a spread no market made). Pass ``k`` is
        scaled by ``(last / first) ** k`` and rounded to the recorded decimals, so its first
        print equals the previous pass's last (within a tick) and its returns are the recorded
        ones.
        """
        k, i = divmod(n, self.size)
        raw = self.cols.price[i]
        if k == 0:
            return raw
        factor = self._factors.get(k)
        if factor is None:
            ratio = Decimal(self.cols.price[-1]) / Decimal(self.cols.price[0])
            factor = self._factors[k] = ratio**k
        recorded = Decimal(raw)
        return str((recorded * factor).quantize(recorded))

    def n_of_id(self, ident: int, loop: bool) -> int:
        """Smallest ``n`` whose id is >= ``ident``."""
        ident -= self.offset
        base = self.cols.ids[0]
        k = max(0, (ident - base) // self.id_span) if loop else 0
        i = bisect.bisect_left(self.cols.ids, ident - k * self.id_span)
        if i >= self.size and loop:
            k, i = k + 1, 0
        return k * self.size + i


class Timeline:
    """Maps every event of every symbol to a served trade time and a wall-clock due time.

    Recorded time runs over passes: ``rel = T_recorded + k × span``. With ``rebase_time``
    (and ``speed`` > 0) the served time *is* the wall-clock send time,
    ``start + (rel − R0 − preroll) / speed``: at speed 10 the clock of the data runs ten
    times faster, and "age of the last trade" still means something. Without it the
    recorded times are served as they are and only the pacing follows ``speed``.
    """

    def __init__(
        self,
        recording: Recording,
        *,
        speed: float = 1.0,
        loop: bool = False,
        rebase_time: bool = True,
        preroll_s: float = 0.0,
        rate: float | None = None,
        loop_pause_ms: int = 1000,
        start_wall_s: float | None = None,
        id_offset: int = 0,
    ) -> None:
        if speed < 0 or not math.isfinite(speed):
            raise ValueError("speed must be >= 0 (0 = as fast as possible)")
        if rate is not None and rate <= 0:
            raise ValueError("rate must be > 0 messages per second")
        self.recording = recording
        self.speed = speed
        self.loop = loop
        self.rate = rate
        self.rebase = rebase_time
        self.start_wall_s = time.time() if start_wall_s is None else start_wall_s
        self.start_ms = self.start_wall_s * 1000
        self.rec_start_ms = recording.start_ms
        self.span_ms = recording.end_ms - recording.start_ms + loop_pause_ms
        self.preroll_ms = preroll_s * 1000
        self.views: dict[tuple[str, str], _View] = {}
        for symbol, rec in recording.symbols.items():
            sub = _sub_span(rec)
            self.views[(symbol, "agg")] = _View(symbol, rec.aggs, "agg", sub, id_offset)
            if rec.trades is not None:
                self.views[(symbol, "trade")] = _View(symbol, rec.trades, "trade", sub, id_offset)

    # --- time --------------------------------------------------------------------------------
    def _served(self, rel_ms: float) -> int:
        """Served ms of recorded-over-passes time ``rel_ms``."""
        origin = self.rec_start_ms + self.preroll_ms
        if self.speed == 0:
            return int(rel_ms - origin + self.start_ms) if self.rebase else int(rel_ms)
        if self.rebase:
            return int(self.start_ms + (rel_ms - origin) / self.speed)
        return int(rel_ms)

    def _rel(self, served_ms: float) -> float:
        """Inverse of ``_served`` (up to the int truncation)."""
        origin = self.rec_start_ms + self.preroll_ms
        if self.speed == 0:
            return served_ms + origin - self.start_ms if self.rebase else served_ms
        if self.rebase:
            return (served_ms - self.start_ms) * self.speed + origin
        return served_ms

    def ts_of(self, view: _View, n: int) -> int:
        """Served trade time ``T`` of event ``n``, ms."""
        if self.rate is not None:
            return int(self.start_ms + n * 1000.0 / self.rate)
        k, i = divmod(n, view.size)
        return self._served(view.cols.ts_ms[i] + k * self.span_ms)

    def now_ms(self) -> float:
        """The replay's present in served ms (``inf`` at speed 0: everything is in the past)."""
        if self.rate is None and self.speed == 0:
            return math.inf
        if self.rate is not None or self.rebase:
            return time.time() * 1000
        elapsed_ms = (time.time() - self.start_wall_s) * 1000
        return self.rec_start_ms + self.preroll_ms + elapsed_ms * self.speed

    def due_wall_s(self, view: _View, n: int) -> float:
        """Wall-clock time (s) at which event ``n`` is sent."""
        if self.rate is None and self.speed == 0:
            return 0.0
        if self.rate is not None or self.rebase:
            return self.ts_of(view, n) / 1000
        offset_ms = self.ts_of(view, n) - (self.rec_start_ms + self.preroll_ms)
        return self.start_wall_s + offset_ms / self.speed / 1000

    def exists(self, view: _View, n: int) -> bool:
        return n >= 0 and (self.loop or n < view.size)

    def n_after_time(self, view: _View, t_ms: float) -> int:
        """Smallest ``n`` with served time > ``t_ms`` (it may not exist)."""
        if t_ms == math.inf:
            return self.end_n(view)
        if self.rate is not None:
            n = max(0, math.floor((t_ms - self.start_ms) * self.rate / 1000))
        else:
            rel = self._rel(t_ms)
            k = max(0, int((rel - self.rec_start_ms) // self.span_ms)) if self.loop else 0
            i = bisect.bisect_right(view.cols.ts_ms, rel - k * self.span_ms)
            if i >= view.size and self.loop:
                k += 1
                i = bisect.bisect_right(view.cols.ts_ms, rel - k * self.span_ms)
            n = k * view.size + i
        # Exact at the edges despite int truncation of served times.
        while n > 0 and self.ts_of(view, n - 1) > t_ms:
            n -= 1
        while self.exists(view, n) and self.ts_of(view, n) <= t_ms:
            n += 1
        return n

    def n_at_or_after_time(self, view: _View, t_ms: float) -> int:
        """Smallest ``n`` with served time >= ``t_ms`` (integer ms)."""
        return self.n_after_time(view, t_ms - 1)

    def end_n(self, view: _View) -> int:
        """One past the last event that exists (a large number when looping)."""
        return view.size if not self.loop else 1 << 62

    def published_end(self, view: _View) -> int:
        """One past the last event whose time has come."""
        if self.speed == 0 and self.rate is None:
            return self.end_n(view)
        return min(self.n_after_time(view, self.now_ms()), self.end_n(view))

    # --- payloads ----------------------------------------------------------------------------
    def ws_payload(self, view: _View, n: int) -> str:
        k, i = divmod(n, view.size)
        c = view.cols
        ts = self.ts_of(view, n)
        ev = ts + (c.event_ms[i] - c.ts_ms[i]) if self.rate is None else ts
        ident = c.ids[i] + k * view.id_span + view.offset
        if view.kind == "agg":
            sub = k * view.sub_span + view.offset
            return (
                f'{{"e":"aggTrade","E":{ev},"a":{ident},"s":"{view.symbol}",'
                f'"p":"{view.price_of(n)}","q":"{c.qty[i]}","f":{c.first_id[i] + sub},'
                f'"l":{c.last_id[i] + sub},"T":{ts},"m":{view.m_json[i]}}}'
            )
        return (
            f'{{"e":"trade","E":{ev},"T":{ts},"s":"{view.symbol}","t":{ident},'
            f'"p":"{view.price_of(n)}","q":"{c.qty[i]}","X":"MARKET","m":{view.m_json[i]}}}'
        )

    def rest_row(self, view: _View, n: int) -> dict[str, Any]:
        k, i = divmod(n, view.size)
        c = view.cols
        if view.kind == "agg":
            return {
                "a": c.ids[i] + k * view.id_span + view.offset,
                "p": view.price_of(n),
                "q": c.qty[i],
                "f": c.first_id[i] + k * view.sub_span + view.offset,
                "l": c.last_id[i] + k * view.sub_span + view.offset,
                "T": self.ts_of(view, n),
                "m": c.buyer_maker[i],
            }
        price = view.price_of(n)
        quote = Decimal(price) * Decimal(c.qty[i])
        return {
            "id": c.ids[i] + k * view.id_span + view.offset,
            "price": price,
            "qty": c.qty[i],
            "quoteQty": str(quote),
            "time": self.ts_of(view, n),
            "isBuyerMaker": c.buyer_maker[i],
        }


def _sub_span(rec: SymbolRecording) -> int:
    if rec.trades is not None:
        return rec.trades.ids[-1] - rec.trades.ids[0] + 1
    return max(rec.aggs.last_id) - min(rec.aggs.first_id) + 1


# --------------------------------------------------------------------------------------------
# The server
# --------------------------------------------------------------------------------------------
@dataclass
class ServerStats:
    """What happened, for tests to assert on."""

    ws_connections: list[str] = field(default_factory=list)  # paths, in order
    rest_requests: list[tuple[float, str, dict[str, str], int]] = field(default_factory=list)
    rest_received: list[str] = field(default_factory=list)  # paths as they arrive, answered or not
    messages_sent: dict[str, int] = field(default_factory=dict)  # per symbol, data frames
    garbage_sent: int = 0
    pings_sent: int = 0
    pongs_ok: int = 0
    pongs_bad: int = 0
    client_pings: int = 0
    drops: int = 0
    hostile_frames: int = 0  # frames sent by hostile modes and injections


_INTERVALS_MS = {
    "1m": 60_000,
    "3m": 180_000,
    "5m": 300_000,
    "15m": 900_000,
    "30m": 1_800_000,
    "1h": 3_600_000,
}


class FakeBinance:
    """The server. ``start()`` binds (port 0 = any free port) and serves in daemon threads.

    Parameters are described in the module docstring. ``ping_interval_s``: send a ping
    with a payload this often (Binance: 180 s); a client that does not echo it within
    ``pong_timeout_s`` is disconnected. ``max_incoming_per_s``: Binance's limit of incoming
    frames per connection (pings, pongs, SUBSCRIBE); exceeding it disconnects.
    ``id_offset`` is added to every served id (see ``replay.auto_id_offset``).
    """

    def __init__(
        self,
        recording: Recording,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        speed: float = 1.0,
        loop: bool = False,
        rebase_time: bool = True,
        preroll_s: float = 0.0,
        rate: float | None = None,
        faults: Faults | None = None,
        ping_interval_s: float | None = 180.0,
        pong_timeout_s: float = 600.0,
        max_incoming_per_s: int | None = 10,
        weight_limit_per_min: int = 2400,
        id_offset: int = 0,
        static_klines: dict[str, list[list[Any]]] | None = None,
    ) -> None:
        self.recording = recording
        #: Symbols served from fixed 1m kline rows (Binance's arrays, oldest first) besides the
        #: recording: a universe of many symbols for the kline fetcher.
        self.static_klines = {k.upper(): v for k, v in (static_klines or {}).items()}
        self.faults = faults or Faults()
        self.ping_interval_s = ping_interval_s
        self.pong_timeout_s = pong_timeout_s
        self.max_incoming_per_s = max_incoming_per_s
        self.weight_limit_per_min = weight_limit_per_min
        self.stats = ServerStats()
        self._timeline_args = dict(
            speed=speed,
            loop=loop,
            rebase_time=rebase_time,
            preroll_s=preroll_s,
            rate=rate,
            id_offset=id_offset,
        )
        self.timeline: Timeline | None = None
        self._host, self._port = host, port
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._conn_count: dict[str, int] = {}
        self._live: set[_WsSession] = set()
        self._weight_minute = -1
        self._weight_used = 0
        self._stopping = threading.Event()

    # --- life --------------------------------------------------------------------------------
    def start(self) -> FakeBinance:
        self.timeline = Timeline(self.recording, **self._timeline_args)
        self._server = _Server((self._host, self._port), _Handler)
        self._server.app = self
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.1},
            name="fakebinance",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop accepting, cut every live connection, wait for the threads."""
        self._stopping.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        with self._lock:
            sessions = list(self._live)
        for session in sessions:
            session.close_abruptly()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> FakeBinance:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def port(self) -> int:
        assert self._server is not None, "not started"
        return self._server.server_address[1]

    @property
    def ws_base(self) -> str:
        return f"ws://{self._host}:{self.port}"

    @property
    def rest_base(self) -> str:
        return f"http://{self._host}:{self.port}"

    # --- what tests compare against ----------------------------------------------------------
    def source_ids(self, symbol: str, kind: str = "agg") -> list[int]:
        """Every id of ``symbol`` published so far (all of them once a non-loop replay ended)."""
        assert self.timeline is not None
        view = self.timeline.views[(symbol.upper(), kind)]
        end = self.timeline.published_end(view)
        if end >= 1 << 62:
            raise ValueError("a looping replay at speed 0 publishes without end")
        return [view.id_of(n) for n in range(end)]

    def finished(self) -> bool:
        """True once a non-looping replay has published its last trade."""
        assert self.timeline is not None
        return not self.timeline.loop and all(
            self.timeline.published_end(v) >= v.size for v in self.timeline.views.values()
        )

    def cut_all(self) -> int:
        """Drop every live WebSocket connection now (abruptly). Returns how many."""
        with self._lock:
            sessions = list(self._live)
        for session in sessions:
            session.close_abruptly()
        return len(sessions)

    def live_connections(self) -> int:
        with self._lock:
            return len(self._live)

    # --- internals used by the handler -------------------------------------------------------
    def _next_conn_index(self, symbol: str) -> int:
        with self._lock:
            k = self._conn_count.get(symbol, 0)
            self._conn_count[symbol] = k + 1
            return k

    def _take_fault(self, name: str) -> bool:
        with self._lock:
            left = getattr(self.faults, name)
            if left > 0:
                setattr(self.faults, name, left - 1)
                return True
            return False

    def _charge_weight(self, weight: int) -> tuple[int, bool]:
        """Add ``weight`` to this minute's total; ``(used, over_limit)``."""
        with self._lock:
            minute = int(time.time() // 60)
            if minute != self._weight_minute:
                self._weight_minute, self._weight_used = minute, 0
            self._weight_used += weight
            return self._weight_used, self._weight_used > self.weight_limit_per_min


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128
    app: FakeBinance

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that vanished mid-reply is routine here; keep stderr clean.
        log.debug("connection from %s ended with an error", client_address, exc_info=True)


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("%s " + format, self.address_string(), *args)

    def do_GET(self) -> None:
        app = self.server.app
        parts = urllib.parse.urlsplit(self.path)
        if self.headers.get("Upgrade", "").lower() == "websocket":
            self._upgrade(app, parts)
            return
        params = {k: v[-1] for k, v in urllib.parse.parse_qs(parts.query).items()}
        with app._lock:
            app.stats.rest_received.append(parts.path)
        status, body, headers = _rest(app, parts.path, params)
        with app._lock:
            app.stats.rest_requests.append((time.time(), parts.path, params, status))
        payload = json.dumps(body, separators=(",", ":")).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        for key, value in headers.items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(payload)

    def _upgrade(self, app: FakeBinance, parts: urllib.parse.SplitResult) -> None:
        key = self.headers.get("Sec-WebSocket-Key")
        if not key:
            self.send_error(400, "missing Sec-WebSocket-Key")
            return
        accept = base64.b64encode(hashlib.sha1((key + _WS_GUID).encode()).digest()).decode()
        self.wfile.write(
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            + f"Sec-WebSocket-Accept: {accept}\r\n\r\n".encode()
        )
        self.wfile.flush()
        self.close_connection = True
        session = _WsSession(app, self.connection, self.rfile, parts)
        with app._lock:
            app.stats.ws_connections.append(self.path)
            app._live.add(session)
        try:
            session.run()
        finally:
            with app._lock:
                app._live.discard(session)


# --------------------------------------------------------------------------------------------
# WebSocket sessions
# --------------------------------------------------------------------------------------------
def _route_streams(path: str, query: str) -> tuple[str, list[str], bool]:
    """``("/market", ["btcusdt@aggTrade"], wrapped)`` from a request path."""
    route = ""
    for prefix in ("/market", "/public", "/private"):
        if path.startswith(prefix + "/"):
            route, path = prefix, path[len(prefix) :]
            break
    if path.startswith("/ws/"):
        return route, [s for s in path[4:].split("/") if s], False
    if path.rstrip("/") in ("/ws", "/stream"):
        streams = urllib.parse.parse_qs(query).get("streams", [""])[-1]
        return route, [s for s in streams.split("/") if s], path.startswith("/stream")
    return route, [], False


class _WsSession:
    """One WebSocket connection: this thread sends data; a helper thread reads client frames."""

    def __init__(self, app: FakeBinance, sock: socket.socket, rfile: Any, parts: Any) -> None:
        self.app = app
        self.sock = sock
        self.rfile = rfile
        self.route, self.streams, self.wrapped = _route_streams(parts.path, parts.query)
        self.send_lock = threading.Lock()
        self.closed = threading.Event()
        self.wake = threading.Event()  # a SUBSCRIBE changed the stream set
        self.opened_s = time.monotonic()
        self.ping_payload: bytes | None = None
        self.ping_sent_s = 0.0
        self.answer_pings = True
        self.incoming: list[float] = []

    # --- sending -----------------------------------------------------------------------------
    def send(self, data: bytes) -> None:
        with self.send_lock:
            self.sock.sendall(data)

    def close_abruptly(self) -> None:
        if self.closed.is_set():
            return
        self.closed.set()
        self.wake.set()
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)

    def close_gracefully(self, code: int = 1000, reason: str = "") -> None:
        with contextlib.suppress(OSError):
            self.send(encode_frame(OP_CLOSE, struct.pack("!H", code) + reason.encode()))
        self.close_abruptly()

    # --- reading -----------------------------------------------------------------------------
    def _reader(self) -> None:
        app = self.app
        try:
            while not self.closed.is_set():
                opcode, _fin, payload = read_frame(self.rfile)
                now = time.monotonic()
                if app.max_incoming_per_s is not None:
                    self.incoming = [t for t in self.incoming if now - t < 1.0]
                    self.incoming.append(now)
                    if len(self.incoming) > app.max_incoming_per_s:
                        log.info("client over %d messages/s: disconnecting", app.max_incoming_per_s)
                        self.close_gracefully(1008, "too many messages")
                        return
                if opcode == OP_PING:
                    with app._lock:
                        app.stats.client_pings += 1
                    if self.answer_pings:
                        self.send(encode_frame(OP_PONG, payload))
                elif opcode == OP_PONG:
                    with app._lock:
                        if self.ping_payload is not None and payload == self.ping_payload:
                            app.stats.pongs_ok += 1
                            self.ping_payload = None
                        else:
                            app.stats.pongs_bad += 1
                elif opcode == OP_CLOSE:
                    self.close_gracefully(1000)
                    return
                elif opcode == OP_TEXT:
                    self._on_text(payload)
        except (ConnectionError, OSError, struct.error, ValueError):
            pass
        finally:
            self.close_abruptly()

    def _on_text(self, payload: bytes) -> None:
        try:
            msg = json.loads(payload)
            method, ident = msg.get("method"), msg.get("id")
        except (ValueError, AttributeError):
            self.send(encode_frame(OP_TEXT, b'{"error":{"code":3,"msg":"Invalid JSON"}}'))
            return
        if method == "SUBSCRIBE":
            self.streams += [s for s in msg.get("params", []) if s not in self.streams]
            self.wake.set()
            result = None
        elif method == "UNSUBSCRIBE":
            self.streams = [s for s in self.streams if s not in msg.get("params", [])]
            self.wake.set()
            result = None
        elif method == "LIST_SUBSCRIPTIONS":
            result = list(self.streams)
        else:
            result = None
        self.send(encode_frame(OP_TEXT, json.dumps({"result": result, "id": ident}).encode()))

    # --- the data loop -----------------------------------------------------------------------
    def _views(self) -> list[tuple[Any, str]]:
        """Data-bearing (view, stream name) pairs: right route, known symbol, right kind."""
        timeline = self.app.timeline
        assert timeline is not None
        out = []
        if self.app.faults.silent:
            return out
        for name in self.streams:
            sym, _, kind = name.partition("@")
            if sym != sym.lower() or sym.upper() in self.app.faults.delisted:
                continue  # Binance stream names are lower-case; a delisted symbol is silent
            if kind == "aggTrade" and self.route == "/market":
                view = timeline.views.get((sym.upper(), "agg"))
            elif kind == "trade" and self.route == "/public":
                view = timeline.views.get((sym.upper(), "trade"))
            else:
                view = None
            if view is not None:
                out.append((view, name))
        return out

    def run(self) -> None:
        reader = threading.Thread(target=self._reader, name="fakebinance-read", daemon=True)
        reader.start()
        try:
            self._send_loop()
        except OSError:
            pass
        finally:
            self.close_abruptly()
            reader.join(timeout=2)

    def _send_loop(self) -> None:
        app = self.app
        timeline = app.timeline
        assert timeline is not None
        faults = app.faults
        first_symbol = self.streams[0].partition("@")[0].upper() if self.streams else ""
        k_conn = app._next_conn_index(first_symbol)
        drop_after = faults.drop_after[k_conn] if k_conn < len(faults.drop_after) else None
        stall_after = faults.stall_after[k_conn] if k_conn < len(faults.stall_after) else None
        hostile = faults.hostile[k_conn] if k_conn < len(faults.hostile) else None
        if hostile is not None:
            run_hostile(self, hostile)
            return
        inject = sorted(
            (after, payload)
            for sym, after, payload in faults.inject
            if k_conn == 0 and sym.upper() == first_symbol
        )
        sent = 0
        garbage_i = 0
        next_ping = time.monotonic() + (app.ping_interval_s or math.inf)
        heap: list[tuple[float, int, int]] = []
        views: list[tuple[Any, bytes]] = []

        def subscribe_all() -> None:
            heap.clear()
            views.clear()
            now_ms = timeline.now_ms()
            for j, (view, name) in enumerate(self._views()):
                live = timeline.speed or timeline.rate
                start = timeline.n_after_time(view, now_ms) if live else 0
                views.append((view, f'{{"stream":"{name}","data":'.encode()))
                if timeline.exists(view, start):
                    heap.append((timeline.due_wall_s(view, start), j, start))
            heapq.heapify(heap)

        subscribe_all()
        out: list[bytes] = []
        counts: dict[str, int] = {}
        while not self.closed.is_set() and not app._stopping.is_set():
            if self.wake.is_set():
                self.wake.clear()
                subscribe_all()
            now = time.monotonic()
            if (
                faults.max_connection_s is not None
                and now - self.opened_s >= faults.max_connection_s
            ):
                self._flush(out, counts)
                self.close_gracefully(1000, "connection lifetime reached")
                return
            if now >= next_ping:
                if self.ping_payload is None:  # one ping in flight at a time
                    self._flush(out, counts)
                    self._ping(now)
                next_ping = now + (app.ping_interval_s or math.inf)
            if self.ping_payload is not None and now - self.ping_sent_s > app.pong_timeout_s:
                log.info("no pong within %.1f s: disconnecting", app.pong_timeout_s)
                self._flush(out, counts)
                self.close_gracefully(1008, "pong timeout")
                return
            if not heap:
                self._flush(out, counts)
                self.wake.wait(min(0.05, max(0.0, next_ping - now)))
                continue
            due, j, n = heap[0]
            wait_s = due - time.time()
            if wait_s > 0:
                self._flush(out, counts)
                self.wake.wait(min(wait_s, 0.05, max(0.0, next_ping - now)))
                continue
            heapq.heappop(heap)
            view, prefix = views[j]
            if timeline.exists(view, n + 1):
                heapq.heappush(heap, (timeline.due_wall_s(view, n + 1), j, n + 1))
            if view.id_of(n) in faults.skip_ids:
                continue
            payload = timeline.ws_payload(view, n).encode()
            if self.wrapped:
                payload = prefix + payload + b"}"
            out.append(encode_frame(OP_TEXT, payload))
            sent += 1
            if faults.garbage_every and sent % faults.garbage_every == 0:
                out.append(encode_frame(OP_TEXT, GARBAGE_FRAMES[garbage_i % len(GARBAGE_FRAMES)]))
                garbage_i += 1
                with app._lock:
                    app.stats.garbage_sent += 1
            counts[view.symbol] = counts.get(view.symbol, 0) + 1
            while inject and inject[0][0] <= sent:
                out.append(encode_frame(OP_TEXT, inject.pop(0)[1]))
                with app._lock:
                    app.stats.hostile_frames += 1
            if len(out) >= 256:
                self._flush(out, counts)
            if drop_after is not None and sent >= drop_after:
                self._flush(out, counts)
                with app._lock:
                    app.stats.drops += 1
                self.close_abruptly()
                return
            if stall_after is not None and sent == stall_after:
                self._flush(out, counts)
                self._stall(faults.stall_s, faults.stall_answers_pings)

    def _flush(self, out: list[bytes], counts: dict[str, int]) -> None:
        if out:
            self.send(b"".join(out))
            out.clear()
        if counts:
            with self.app._lock:
                sent = self.app.stats.messages_sent
                for symbol, count in counts.items():
                    sent[symbol] = sent.get(symbol, 0) + count
            counts.clear()

    def _ping(self, now: float) -> None:
        with self.app._lock:
            self.app.stats.pings_sent += 1
            self.ping_payload = f"{time.time():.6f}".encode()
        self.ping_sent_s = now
        self.send(encode_frame(OP_PING, self.ping_payload))

    def _stall(self, seconds: float, answer_pings: bool) -> None:
        self.answer_pings = answer_pings
        self.closed.wait(seconds)
        self.answer_pings = True


# --------------------------------------------------------------------------------------------
# REST
# --------------------------------------------------------------------------------------------
def _err(status: int, code: int, msg: str) -> tuple[int, Any, dict[str, str]]:
    return status, {"code": code, "msg": msg}, {}


def _int_param(params: dict[str, str], name: str) -> int | None:
    if name not in params:
        return None
    try:
        return int(params[name])
    except ValueError:
        raise _BadRequest(-1100, f"Illegal characters found in parameter '{name}'.") from None


class _BadRequest(Exception):
    def __init__(self, code: int, msg: str) -> None:
        super().__init__(msg)
        self.code, self.msg = code, msg


def _rest(app: FakeBinance, path: str, params: dict[str, str]) -> tuple[int, Any, dict[str, str]]:
    timeline = app.timeline
    assert timeline is not None
    weights = {
        "/fapi/v1/exchangeInfo": 1,
        "/fapi/v1/aggTrades": 20,
        "/fapi/v1/trades": 5,
        "/fapi/v1/time": 1,
        "/fapi/v1/ping": 1,
    }
    if path == "/fapi/v1/klines":
        limit = _safe_int(params.get("limit"), 500)
        weight = 1 if limit < 100 else 2 if limit < 500 else 5 if limit <= 1000 else 10
    elif path in weights:
        weight = weights[path]
    else:
        return _err(404, -1, f"unknown endpoint {path}")
    used, over = app._charge_weight(weight)
    headers = {"X-MBX-USED-WEIGHT-1M": str(used)}
    data_path = path in ("/fapi/v1/aggTrades", "/fapi/v1/trades", "/fapi/v1/klines")
    if data_path and app._take_fault("rest_418"):
        headers["Retry-After"] = str(app.faults.retry_after_s)
        return 418, {"code": -1003, "msg": "Way too many requests; IP banned."}, headers
    if over or (data_path and app._take_fault("rest_429")):
        retry = app.faults.retry_after_s if not over else int(60 - time.time() % 60) + 1
        headers["Retry-After"] = str(retry)
        return 429, {"code": -1003, "msg": "Too many requests."}, headers
    if app.faults.rest_delay_s > 0:
        time.sleep(app.faults.rest_delay_s)
    if data_path and (app.faults.rest_down or app._take_fault("rest_500")):
        return 500, {"code": -1000, "msg": "An unknown error occurred."}, headers
    try:
        if path == "/fapi/v1/exchangeInfo":
            body = _exchange_info(app)
        elif path in ("/fapi/v1/time", "/fapi/v1/ping"):
            body = {"serverTime": int(time.time() * 1000)} if path.endswith("time") else {}
        else:
            symbol = params.get("symbol")
            if not symbol:
                raise _BadRequest(-1102, "Mandatory parameter 'symbol' was not sent.")
            if symbol.upper() in app.static_klines and path == "/fapi/v1/klines":
                return 200, _static_klines(app, symbol.upper(), params), headers
            kind = "trade" if path == "/fapi/v1/trades" else "agg"
            view = timeline.views.get((symbol.upper(), kind))
            if symbol.upper() not in timeline.recording.symbols:
                raise _BadRequest(-1121, "Invalid symbol.")
            if view is None:
                body = []  # an aggregate-only recording has no trade view
            elif path == "/fapi/v1/aggTrades":
                body = _agg_trades(app, view, params)
                if body and "fromId" in params and app._take_fault("rest_bad_rows"):
                    body.append({"a": "x"})
            elif path == "/fapi/v1/trades":
                limit = min(max(_int_param(params, "limit") or 500, 1), 1000)
                end = timeline.published_end(view)
                body = [timeline.rest_row(view, n) for n in range(max(0, end - limit), end)]
            else:
                body = _klines(app, view, params)
    except _BadRequest as exc:
        status, body, _ = _err(400, exc.code, exc.msg)
        return status, body, headers
    return 200, body, headers


def _safe_int(value: str | None, default: int) -> int:
    try:
        return int(value) if value is not None else default
    except ValueError:
        return default


def _exchange_info(app: FakeBinance) -> dict[str, Any]:
    entries = []
    for symbol in [*app.recording.symbols, *app.static_klines]:
        status = "SETTLING" if symbol in app.faults.delisted else "TRADING"
        entries.append(_symbol_entry({"symbol": symbol, "status": status}))
    for extra in app.faults.extra_symbols:
        entries.append(_symbol_entry(extra))
    return {
        "timezone": "UTC",
        "serverTime": int(time.time() * 1000),
        "rateLimits": [
            {
                "rateLimitType": "REQUEST_WEIGHT",
                "interval": "MINUTE",
                "intervalNum": 1,
                "limit": app.weight_limit_per_min,
            },
            {"rateLimitType": "ORDERS", "interval": "MINUTE", "intervalNum": 1, "limit": 1200},
        ],
        "exchangeFilters": [],
        "symbols": entries,
    }


def _symbol_entry(overrides: dict[str, Any]) -> dict[str, Any]:
    symbol = overrides["symbol"]
    quote = "USDT" if symbol.endswith("USDT") else "USDC" if symbol.endswith("USDC") else "USDT"
    entry = {
        "symbol": symbol,
        "pair": symbol,
        "contractType": "PERPETUAL",
        "status": "TRADING",
        "baseAsset": symbol[: -len(quote)] if symbol.endswith(quote) else symbol,
        "quoteAsset": quote,
        "marginAsset": quote,
        "pricePrecision": 2,
        "quantityPrecision": 3,
        "filters": [
            {
                "filterType": "PRICE_FILTER",
                "tickSize": "0.10",
                "minPrice": "0.10",
                "maxPrice": "1000000",
            },
            {"filterType": "LOT_SIZE", "stepSize": "0.001", "minQty": "0.001", "maxQty": "1000"},
        ],
    }
    entry.update(overrides)
    return entry


def _agg_trades(app: FakeBinance, view: _View, params: dict[str, str]) -> list[dict[str, Any]]:
    timeline = app.timeline
    assert timeline is not None
    limit = min(max(_int_param(params, "limit") or 500, 1), 1000)
    from_id = _int_param(params, "fromId")
    start = _int_param(params, "startTime")
    end = _int_param(params, "endTime")
    if start is not None and end is not None and end - start >= 3_600_000:
        raise _BadRequest(-1127, "More than 1 hours between startTime and endTime.")
    published = timeline.published_end(view)
    min_id = app.faults.rest_min_id.get(view.symbol)
    if from_id is not None:
        n = view.n_of_id(from_id, timeline.loop)
        if min_id is not None:
            n = max(n, view.n_of_id(min_id, timeline.loop))
        ns: Iterable[int] = range(n, min(published, n + limit))
        if end is not None:
            ns = (m for m in ns if timeline.ts_of(view, m) <= end)
    elif start is not None or end is not None:
        if start is None:
            start = end - 3_600_000 + 1  # type: ignore[operator]
        n = timeline.n_at_or_after_time(view, start)
        if min_id is not None:
            n = max(n, view.n_of_id(min_id, timeline.loop))
        stop_n = published
        if end is not None:
            stop_n = min(stop_n, timeline.n_after_time(view, end))
        ns = range(n, min(stop_n, n + limit))
    else:
        lo = max(0, published - limit)
        if min_id is not None:
            lo = max(lo, view.n_of_id(min_id, timeline.loop))
        ns = range(lo, published)
    return [timeline.rest_row(view, m) for m in ns]


def _klines(app: FakeBinance, view: _View, params: dict[str, str]) -> list[list[Any]]:
    """Klines built from the served aggregates; minutes without trades are flat bars."""
    timeline = app.timeline
    assert timeline is not None
    interval = params.get("interval", "")
    if interval not in _INTERVALS_MS:
        raise _BadRequest(-1120, "Invalid interval.")
    step = _INTERVALS_MS[interval]
    limit = min(max(_int_param(params, "limit") or 500, 1), 1500)
    published = timeline.published_end(view)
    if published == 0:
        return []
    first_ts = timeline.ts_of(view, 0)
    last_ts = timeline.ts_of(view, published - 1)
    start = _int_param(params, "startTime")
    end = _int_param(params, "endTime")
    lo = max(first_ts // step * step, (start // step * step) if start is not None else 0)
    hi = min(last_ts // step * step, (end // step * step) if end is not None else last_ts)
    if (start is None and end is not None) or start is None:
        lo = max(first_ts // step * step, hi - (limit - 1) * step)
    hi = min(hi, lo + (limit - 1) * step)
    if hi < lo:
        return []
    n = timeline.n_at_or_after_time(view, lo)
    rows: list[list[Any]] = []
    prev_close: Decimal | None = None
    if n > 0:
        prev_close = Decimal(view.price_of(n - 1))
    for open_ms in range(lo, hi + step, step):
        o = h = lo_p = c = prev_close
        vol = quote = tb_vol = tb_quote = Decimal(0)
        count = 0
        while n < published and timeline.ts_of(view, n) < open_ms + step:
            i = n % view.size
            p, q = Decimal(view.price_of(n)), Decimal(view.cols.qty[i])
            if count == 0:
                o = h = lo_p = p
            h, lo_p, c = max(h, p), min(lo_p, p), p  # type: ignore[type-var]
            vol += q
            quote += p * q
            if not view.cols.buyer_maker[i]:
                tb_vol += q
                tb_quote += p * q
            count += view.cols.last_id[i] - view.cols.first_id[i] + 1
            n += 1
        if o is None:
            continue  # before the first trade: no bar
        prev_close = c
        rows.append(
            [
                open_ms,
                str(o),
                str(h),
                str(lo_p),
                str(c),
                str(vol),
                open_ms + step - 1,
                str(quote),
                count,
                str(tb_vol),
                str(tb_quote),
                "0",
            ]
        )
    return rows


def _static_klines(app: FakeBinance, symbol: str, params: dict[str, str]) -> list[list[Any]]:
    """1m rows of a static-kline symbol with open time in [startTime, endTime], at most limit."""
    if symbol in app.faults.delisted:
        raise _BadRequest(-1121, "Invalid symbol.")
    if params.get("interval", "") != "1m":
        raise _BadRequest(-1120, "Invalid interval.")
    limit = min(max(_int_param(params, "limit") or 500, 1), 1500)
    rows = app.static_klines[symbol]
    times = [r[0] for r in rows]
    start, end = _int_param(params, "startTime"), _int_param(params, "endTime")
    hi = len(rows) if end is None else bisect.bisect_right(times, end)
    lo = max(0, hi - limit) if start is None else bisect.bisect_left(times, start)
    return rows[lo : min(hi, lo + limit)]


def start_fake_binance(files: Iterable[str], **kwargs: Any) -> FakeBinance:
    """Load ``files`` and start a ``FakeBinance`` on them (see its parameters)."""
    return FakeBinance(load_recording(files), **kwargs).start()
