"""WebSocket framing (RFC 6455) for the replay server: the handshake key, frames out and in.

Server frames are unmasked; client frames are masked (the reader accepts both). A payload
length takes one of three forms: up to 125 in the second byte, up to 65,535 in a 16-bit
extension (marker 126), beyond that a 64-bit extension (marker 127). Standard library only.
"""

from __future__ import annotations

import base64
import hashlib
import struct
from typing import Any

__all__ = [
    "MAX_CLIENT_FRAME_BYTES",
    "OP_BINARY",
    "OP_CLOSE",
    "OP_CONT",
    "OP_PING",
    "OP_PONG",
    "OP_TEXT",
    "accept_key",
    "encode_frame",
    "read_frame",
]

_WS_GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
OP_CONT, OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA

#: A client frame larger than this ends the connection (clients send pings and SUBSCRIBE).
MAX_CLIENT_FRAME_BYTES = 1 << 20


def accept_key(key: str) -> str:
    """``Sec-WebSocket-Accept`` for a client's ``Sec-WebSocket-Key``."""
    return base64.b64encode(hashlib.sha1((key + _WS_GUID).encode()).digest()).decode()


def encode_frame(opcode: int, payload: bytes, *, fin: bool = True) -> bytes:
    """One unmasked server frame; ``fin=False`` leaves the message unfinished (a fragment)."""
    n = len(payload)
    first = (0x80 if fin else 0) | opcode
    if n < 126:
        header = struct.pack("!BB", first, n)
    elif n < 65536:
        header = struct.pack("!BBH", first, 126, n)
    else:
        header = struct.pack("!BBQ", first, 127, n)
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
    """Read one client frame: ``(opcode, fin, payload)``; ``ConnectionError`` at EOF or for a
    frame over ``MAX_CLIENT_FRAME_BYTES``."""
    b0, b1 = _read_exact(rfile, 2)
    opcode, fin = b0 & 0x0F, bool(b0 & 0x80)
    length = b1 & 0x7F
    if length == 126:
        (length,) = struct.unpack("!H", _read_exact(rfile, 2))
    elif length == 127:
        (length,) = struct.unpack("!Q", _read_exact(rfile, 8))
    if length > MAX_CLIENT_FRAME_BYTES:
        raise ConnectionError("client frame too large")
    mask = _read_exact(rfile, 4) if b1 & 0x80 else b""
    payload = _read_exact(rfile, length) if length else b""
    return opcode, fin, (_unmask(mask, payload) if mask else payload)
