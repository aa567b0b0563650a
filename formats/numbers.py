"""Strict scalars and bounded JSON: the grammar every Binance format shares.

Binance writes prices and quantities as plain decimal strings (``"61800.30"``, ``"0.001"``,
``"10"``) and ids and times as JSON integers. Anything else is refused here, once, for the
live client, ``storage import`` and the replay server alike: no signs, no exponents, no
underscores, no surrounding spaces, no full-width or other non-ASCII digits, no NaN or
infinity, and ids that fit a signed 64-bit integer (what both databases store).
"""

from __future__ import annotations

import json
import re
from typing import Any

from formats.errors import ParseError
from formats.limits import Limits, default_limits

__all__ = [
    "DECIMAL_PATTERN",
    "INT64_MAX",
    "decimal_text",
    "id_value",
    "loads_bounded",
    "positive_decimal",
    "signed_decimal",
]

#: Exactly Binance's decimal strings: ASCII digits, an optional fraction, nothing else.
#: 30 digits either side is far beyond any price or quantity and keeps ``float`` cheap.
DECIMAL_PATTERN = r"[0-9]{1,30}(?:\.[0-9]{1,30})?"
_DECIMAL = re.compile(DECIMAL_PATTERN)

#: Largest id or time stored: both engines keep them as signed 64-bit integers.
INT64_MAX = 2**63 - 1


def decimal_text(value: Any, field: str) -> str:
    """``value`` if it is one of Binance's decimal strings, else ``ParseError("bad_<field>")``."""
    if type(value) is not str:
        raise ParseError(f"bad_{field}", f"{field}={value!r:.40} is not a decimal string")
    if _DECIMAL.fullmatch(value) is None:
        raise ParseError(f"bad_{field}", f"{field}={value!r:.40} is not a plain decimal")
    return value


def positive_decimal(value: Any, field: str) -> float:
    """A Binance decimal string that is > 0, as a float (``"0"`` is never a real print)."""
    number = float(decimal_text(value, field))
    if not number > 0.0:
        raise ParseError(f"bad_{field}", f"{field}={value!r} is not positive")
    return number


#: A funding rate may be negative: Binance writes ``"-0.00010000"``; the sign is the only extra.
_SIGNED_DECIMAL = re.compile("-?" + DECIMAL_PATTERN)


def signed_decimal(value: Any, field: str) -> float:
    """A Binance decimal string with an optional leading ``-`` (funding rates), as a float."""
    if type(value) is not str or _SIGNED_DECIMAL.fullmatch(value) is None:
        raise ParseError(f"bad_{field}", f"{field}={value!r:.40} is not a signed plain decimal")
    return float(value)


def id_value(value: Any, field: str) -> int:
    """A JSON integer in ``0..2**63-1`` (``true`` is not 1; ``2**64`` does not fit a column)."""
    if type(value) is not int or not 0 <= value <= INT64_MAX:
        raise ParseError("bad_field", f"{field}={value!r:.40} is not an integer in 0..2^63-1")
    return value


def _reject_constant(name: str) -> Any:
    raise ParseError("bad_number", f"{name} is not a number Binance sends")


#: One decoder for every call: building one per call (``json.loads`` with a keyword) is
#: slower than the parse itself.
_DECODER = json.JSONDecoder(parse_constant=_reject_constant)


_NOT_SHAPE = bytes(c for c in range(256) if c not in b'[]{}"')


def _deeper_than(text: str | bytes, limit: int) -> bool:
    """Whether JSON ``text`` nests ``[``/``{`` deeper than ``limit``; strings are not nesting.

    Keeps only the brackets (string contents dropped), then peels the innermost pairs off,
    all of them at once, at most ``limit`` times: a structure of depth d is gone after d
    peels. Every step runs in C; a 40 KB depth update costs microseconds.
    """
    raw = text.encode("utf-8", "replace") if isinstance(text, str) else bytes(text)
    if b"\\" in raw:  # escaped quotes possible: blank out string contents with a regex
        raw = re.sub(rb'"(?:[^"\\]|\\.)*"?', b'""', raw, flags=re.DOTALL)
    shape = raw.translate(None, _NOT_SHAPE).replace(b'""', b"")
    if b'"' in shape:  # a string holds brackets: drop every string's contents
        shape = b"".join(raw.split(b'"')[::2]).translate(None, _NOT_SHAPE)
    shape = shape.replace(b"{", b"[").replace(b"}", b"]")
    for peeled in range(limit):
        if not shape:
            return False
        inner = shape.replace(b"[]", b"")
        if len(inner) == len(shape):  # unbalanced (invalid JSON): bound it by what is open
            return peeled + shape.count(b"[") > limit
        shape = inner
    return bool(shape)


def loads_bounded(text: str | bytes, limits: Limits | None = None) -> Any:
    """``json.loads`` within ``limits``: size, nesting depth, and no NaN/Infinity literals.

    Raises ``ParseError`` with reason ``too_large``, ``too_deep``, ``bad_number`` or
    ``not_json`` (invalid JSON or UTF-8); never ``RecursionError``. Cheap on real frames: the
    depth is only scanned when the text holds more brackets than the depth limit.
    """
    lim = limits or default_limits()
    if len(text) > lim.max_frame_bytes:
        raise ParseError(
            "too_large",
            f"{len(text):,} bytes; the limit is {lim.max_frame_bytes:,} (MAX_FRAME_BYTES)",
        )
    try:
        if type(text) is not str:
            text = bytes(text).decode("utf-8")
        if text.count("[") + text.count("{") > lim.max_json_depth and _deeper_than(
            text, lim.max_json_depth
        ):
            raise ParseError(
                "too_deep", f"JSON nested deeper than {lim.max_json_depth} levels (MAX_JSON_DEPTH)"
            )
        return _DECODER.decode(text)
    except ParseError:
        raise
    except RecursionError:  # pragma: no cover - the scan above refuses such text first
        raise ParseError("too_deep", "JSON nested too deeply") from None
    except (ValueError, TypeError) as exc:  # JSONDecodeError and UnicodeDecodeError
        raise ParseError("not_json", str(exc)[:80]) from None
