"""Hostile connection modes of the local Binance look-alike (``ingestion.fakebinance``).

Each mode takes over one WebSocket connection right after the handshake instead of the
replay, the way a broken or malicious endpoint would (issue 14):

- ``silent``: sends nothing at all (the reader thread still answers pings), while REST
  keeps publishing the market: "connected but no data" in a busy market.
- ``ping_flood``: pings back to back, never a data frame.
- ``endless_fragments``: one text frame that never finishes: a non-final text frame, then
  64 KiB continuation frames for as long as the client reads.

``hostile_trade`` builds one well-formed trade frame with chosen fields, for the
``Faults.inject`` list (an id past 2**64, a far-ahead id, ...); ``NESTED_FRAME`` is a
100,000-deep JSON array.
"""

from __future__ import annotations

import json
import struct
import time
from typing import Any

__all__ = ["HOSTILE_MODES", "NESTED_FRAME", "hostile_trade", "run_hostile"]

OP_CONT, OP_TEXT, OP_PING = 0x0, 0x1, 0x9

#: One frame of 100,000 nested JSON arrays: deep enough to blow Python's recursion limit.
NESTED_FRAME = b"[" * 100_000

HOSTILE_MODES = ("silent", "ping_flood", "endless_fragments")

#: Size of each continuation frame of the ``endless_fragments`` mode, in bytes.
FRAGMENT_BYTES = 64 * 1024


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


def _frame(opcode: int, payload: bytes, fin: bool = True) -> bytes:
    n = len(payload)
    first = (0x80 if fin else 0) | opcode
    if n < 126:
        header = struct.pack("!BB", first, n)
    elif n < 65536:
        header = struct.pack("!BBH", first, 126, n)
    else:
        header = struct.pack("!BBQ", first, 127, n)
    return header + payload


def run_hostile(session: Any, mode: str) -> None:
    """Play ``mode`` on ``session`` (a ``fakebinance._WsSession``) until it closes."""
    app = session.app
    if mode == "silent":
        while not session.closed.wait(0.05) and not app._stopping.is_set():
            pass
        return
    if mode == "ping_flood":
        ping = _frame(OP_PING, b"flood") * 64
        while not session.closed.is_set() and not app._stopping.is_set():
            session.send(ping)
            with app._lock:
                app.stats.hostile_frames += 64
        return
    if mode == "endless_fragments":
        session.send(_frame(OP_TEXT, b'{"e":"aggTrade","p":"', fin=False))
        chunk = _frame(OP_CONT, b"9" * FRAGMENT_BYTES, fin=False)
        while not session.closed.is_set() and not app._stopping.is_set():
            session.send(chunk)
            with app._lock:
                app.stats.hostile_frames += 1
        return
    raise ValueError(f"unknown hostile mode {mode!r}; expected one of {HOSTILE_MODES}")
