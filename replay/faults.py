"""Fault injection for the replay server: what goes wrong, by design, for tests and benchmarks.

Apart from the product path: a server started without ``faults`` (the dashboard's offline
demo) never imports this module. With a :class:`Faults` the server asks it at a few hooks:
``Faults.rest_refusal`` before each REST answer, ``Faults.for_connection`` when a WebSocket
connection opens (a :class:`ConnectionFaults` then drops, stalls, skips ids, adds garbage or
injected frames, or hands the connection to a hostile mode). A ``Faults`` is changeable while
the server runs (``server.faults.rest_down = False``).

Hostile modes (issue 14) take over one WebSocket connection right after the handshake instead
of the replay, the way a broken or malicious endpoint would:

- ``silent``: sends nothing at all (the reader thread still answers pings), while REST
  keeps publishing the market: "connected but no data" in a busy market.
- ``ping_flood``: pings back to back, never a data frame.
- ``endless_fragments``: one text frame that never finishes: a non-final text frame, then
  64 KiB continuation frames for as long as the client reads.

``hostile_trade`` builds one well-formed trade frame with chosen fields, for the
``Faults.inject`` list (an id past 2**64, a far-ahead id, ...); ``NESTED_FRAME`` is a
100,000-deep JSON array. ``Faults.from_options`` reads ``python -m replay --fault`` options.
"""

from __future__ import annotations

import dataclasses
import json
import threading
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from replay.framing import OP_CONT, OP_PING, OP_TEXT, encode_frame

if TYPE_CHECKING:
    from replay.server import FakeBinance
    from replay.session import WsSession

__all__ = [
    "GARBAGE_FRAMES",
    "HOSTILE_MODES",
    "NESTED_FRAME",
    "ConnectionFaults",
    "Faults",
    "hostile_trade",
    "run_hostile",
]

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

#: One frame of 100,000 nested JSON arrays: deep enough to blow Python's recursion limit.
NESTED_FRAME = b"[" * 100_000

HOSTILE_MODES = ("silent", "ping_flood", "endless_fragments")

#: Size of each continuation frame of the ``endless_fragments`` mode, in bytes.
FRAGMENT_BYTES = 64 * 1024

#: Guards the countdown fields (``rest_429`` ...): REST handlers run in many threads.
_COUNTDOWN_LOCK = threading.Lock()

Reply = tuple[int, dict[str, Any], dict[str, str]]


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
    #: Symbols delisted now: status SETTLING in exchangeInfo, their streams silent from the
    #: next subscription on (``cut_all`` makes every client reconnect), and static klines
    #: answer -1121.
    delisted: set[str] = field(default_factory=set)
    #: Per connection of each symbol, in turn: a hostile mode (``HOSTILE_MODES``:
    #: ``silent``, ``ping_flood``, ``endless_fragments``) that replaces the replay, or None.
    hostile: list[str | None] = field(default_factory=list)
    #: ``(symbol, after_n, payload)``: on the first connection of ``symbol``, send the raw
    #: text frame ``payload`` after its ``after_n``-th data message (a nested frame, a trade
    #: with an impossible id ...; see ``hostile_trade``); ``after_n`` 0: before the first.
    inject: list[tuple[str, int, bytes]] = field(default_factory=list)

    # --- REST hooks --------------------------------------------------------------------------
    def take(self, name: str) -> bool:
        """Use up one of the countdown ``name`` (``rest_429`` ...): True if one was left."""
        with _COUNTDOWN_LOCK:
            left = getattr(self, name)
            if left > 0:
                setattr(self, name, left - 1)
                return True
            return False

    def rest_refusal(self, data_path: bool, over_limit: bool) -> Reply | None:
        """The injected answer to a REST request instead of the real one, or None.

        ``over_limit``: the server's own weight limit is exceeded; its 429 comes after an
        injected 418 and before every other fault. ``rest_delay_s`` sleeps here.
        """
        if data_path and self.take("rest_418"):
            body = {"code": -1003, "msg": "Way too many requests; IP banned."}
            return 418, body, {"Retry-After": str(self.retry_after_s)}
        if over_limit:
            return None
        if data_path and self.take("rest_429"):
            body = {"code": -1003, "msg": "Too many requests."}
            return 429, body, {"Retry-After": str(self.retry_after_s)}
        if self.rest_delay_s > 0:
            time.sleep(self.rest_delay_s)
        if data_path and (self.rest_down or self.take("rest_500")):
            return 500, {"code": -1000, "msg": "An unknown error occurred."}, {}
        return None

    # --- WebSocket hooks ---------------------------------------------------------------------
    def for_connection(self, app: FakeBinance, symbol: str) -> ConnectionFaults:
        """The faults of the next connection whose first stream is of ``symbol``."""
        return ConnectionFaults(self, app, app.next_connection_index(symbol), symbol)

    # --- the command line --------------------------------------------------------------------
    @classmethod
    def from_options(cls, options: list[str]) -> Faults:
        """``["garbage_every=25", "drop_after=50,200", "silent"]`` → ``Faults``.

        Numbers, flags (a bare name is true), comma-separated id lists and hostile modes;
        ``ValueError`` naming the option otherwise.
        """
        kinds = {f.name: str(f.type) for f in dataclasses.fields(cls)}
        values: dict[str, Any] = {}
        for option in options:
            name, eq, text = option.partition("=")
            name = name.strip().replace("-", "_")
            kind = kinds.get(name)
            if kind is None or kind.startswith(("dict", "list[dict", "list[tuple")):
                raise ValueError(f"--fault {option}: not a fault option ({', '.join(_CLI_NAMES)})")
            try:
                values[name] = _option_value(kind, text.strip() if eq else None)
            except ValueError as exc:
                raise ValueError(f"--fault {option}: {exc}") from None
        for mode in values.get("hostile", []):
            if mode is not None and mode not in HOSTILE_MODES:
                raise ValueError(f"--fault hostile: {mode!r} is not one of {HOSTILE_MODES}")
        return cls(**values)


_CLI_NAMES = tuple(
    f.name
    for f in dataclasses.fields(Faults)
    if not str(f.type).startswith(("dict", "list[dict", "list[tuple"))
)


def _option_value(kind: str, text: str | None) -> Any:
    """The value of one ``--fault name=text`` for a field annotated ``kind``."""
    if kind == "bool":
        if text is None or text.lower() in ("1", "true", "yes", "on"):
            return True
        if text.lower() in ("0", "false", "no", "off"):
            return False
        raise ValueError(f"{text!r} is not true or false")
    if text is None or text == "":
        raise ValueError("needs a value (name=value)")
    if kind == "int":
        return int(text)
    if kind in ("float", "float | None"):
        return float(text)
    items = [t.strip() for t in text.split(",") if t.strip()]
    if kind == "list[int]":
        return [int(t) for t in items]
    if kind == "set[int]":
        return {int(t) for t in items}
    if kind == "set[str]":
        return {t.upper() for t in items}
    return [None if t.lower() == "none" else t for t in items]  # hostile: list[str | None]


class ConnectionFaults:
    """The faults of one WebSocket connection, picked when it opens: the k-th connection of a
    symbol takes the k-th entry of ``drop_after``, ``stall_after`` and ``hostile``; the first
    takes the ``inject`` frames. ``skip_ids``, ``garbage_every``, ``silent``,
    ``delisted`` and ``max_connection_s`` are read live from the ``Faults``."""

    def __init__(self, faults: Faults, app: FakeBinance, k_conn: int, symbol: str) -> None:
        self.faults = faults
        self.app = app
        self.drop_after = _nth(faults.drop_after, k_conn)
        self.stall_after = _nth(faults.stall_after, k_conn)
        self.hostile = _nth(faults.hostile, k_conn)
        self.inject = sorted(
            (after, payload)
            for sym, after, payload in faults.inject
            if k_conn == 0 and sym.upper() == symbol
        )
        self._garbage_i = 0

    def take_over(self, session: WsSession) -> bool:
        """Play this connection's hostile mode, if it has one, until it closes."""
        if self.hostile is None:
            return False
        run_hostile(session, self.hostile)
        return True

    def silent(self) -> bool:
        return self.faults.silent

    def delisted(self, symbol: str) -> bool:
        """A delisted symbol's stream is silent (read live: a delisting reaches open sockets)."""
        return symbol in self.faults.delisted

    def lifetime_over(self, age_s: float) -> bool:
        limit = self.faults.max_connection_s
        return limit is not None and age_s >= limit

    def skips(self, trade_id: int) -> bool:
        return trade_id in self.faults.skip_ids

    def frames_before_first(self) -> list[bytes]:
        """Injected frames due "after 0" data messages: sent before the first one."""
        return self._injected(0)

    def _injected(self, sent: int) -> list[bytes]:
        out = []
        while self.inject and self.inject[0][0] <= sent:
            out.append(encode_frame(OP_TEXT, self.inject.pop(0)[1]))
            with self.app.lock:
                self.app.stats.hostile_frames += 1
        return out

    def frames_after(self, sent: int) -> list[bytes]:
        """Garbage and injected frames that follow the ``sent``-th data message."""
        out = []
        every = self.faults.garbage_every
        if every and sent % every == 0:
            out.append(encode_frame(OP_TEXT, GARBAGE_FRAMES[self._garbage_i % len(GARBAGE_FRAMES)]))
            self._garbage_i += 1
            with self.app.lock:
                self.app.stats.garbage_sent += 1
        return out + self._injected(sent)

    def after_sent(self, session: WsSession, sent: int) -> bool:
        """Drop or stall after the ``sent``-th data message; False once the connection is cut."""
        if self.drop_after is not None and sent >= self.drop_after:
            session.flush()
            with self.app.lock:
                self.app.stats.drops += 1
            session.close_abruptly()
            return False
        if self.stall_after is not None and sent == self.stall_after:
            session.flush()
            session.answer_pings = self.faults.stall_answers_pings
            session.closed.wait(self.faults.stall_s)
            session.answer_pings = True
        return True


def _nth(values: list[Any], k: int) -> Any:
    return values[k] if k < len(values) else None


def hostile_trade(
    symbol: str, trade_id: int, *, price: str = "60000.0", ts_ms: int | None = None
) -> bytes:
    """A well-formed raw ``aggTrade`` payload with the given id and price (a lie to inject)."""
    ts = int(time.time() * 1000) if ts_ms is None else ts_ms
    # json.dumps writes any int exactly, also past 2**64: the wire format has no limit.
    return json.dumps(
        {
            "e": "aggTrade",
            "E": ts,
            "a": trade_id,
            "s": symbol.upper(),
            "p": price,
            "q": "0.001",
            "f": trade_id,
            "l": trade_id,
            "T": ts,
            "m": False,
        },
        separators=(",", ":"),
    ).encode()


def run_hostile(session: WsSession, mode: str) -> None:
    """Play ``mode`` on ``session`` until it closes."""
    app = session.app
    if mode == "silent":
        while not session.closed.wait(0.05) and not app.stopping.is_set():
            pass
        return
    if mode == "ping_flood":
        ping = encode_frame(OP_PING, b"flood") * 64
        while not session.closed.is_set() and not app.stopping.is_set():
            session.send(ping)
            with app.lock:
                app.stats.hostile_frames += 64
        return
    if mode == "endless_fragments":
        session.send(encode_frame(OP_TEXT, b'{"e":"aggTrade","p":"', fin=False))
        chunk = encode_frame(OP_CONT, b"9" * FRAGMENT_BYTES, fin=False)
        while not session.closed.is_set() and not app.stopping.is_set():
            session.send(chunk)
            with app.lock:
                app.stats.hostile_frames += 1
        return
    raise ValueError(f"unknown hostile mode {mode!r}; expected one of {HOSTILE_MODES}")
