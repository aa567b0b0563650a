"""Pure parsers: Binance USD-M trade payloads (WebSocket and REST) into frozen ``Tick`` records.

Nothing here does I/O. A payload that is not a valid market trade raises ``ParseError``
whose ``reason`` is a short, stable code suitable for counting (``not_json``,
``missing_field``, ``bad_price`` ...); the caller counts and logs it and carries on.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from enum import StrEnum
from typing import Any

from storage.formats import KLINE_COLUMNS as _DUMP_KLINE_COLUMNS
from storage.records import IdKind, Tick

__all__ = [
    "KLINE_COLUMNS",
    "ParseError",
    "StreamKind",
    "parse_agg_trade",
    "parse_message",
    "parse_rest_agg_trade",
    "parse_rest_kline",
    "parse_rest_trade",
    "parse_trade",
    "unwrap",
]


class StreamKind(StrEnum):
    """Which Binance trade stream a feed subscribes to, and so which id space it stores."""

    AGG_TRADE = "aggTrade"  # ``<sym>@aggTrade`` on the ``/market`` route; ids are ``a``
    TRADE = "trade"  # ``<sym>@trade`` on the ``/public`` route; ids are ``t``

    @property
    def id_kind(self) -> IdKind:
        return IdKind.AGG if self is StreamKind.AGG_TRADE else IdKind.TRADE


class ParseError(ValueError):
    """A message that is not a storable trade. ``reason`` is a short code for counters."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


def _positive_float(value: Any, field: str) -> float:
    # Binance sends prices and quantities as decimal strings; "NaN", "inf", "0" and
    # negatives are never a real print (``X: NA`` prints carry zero price and qty).
    if type(value) is not str:
        raise ParseError(f"bad_{field}", f"{field}={value!r} is not a decimal string")
    try:
        number = float(value)
    except ValueError:
        raise ParseError(f"bad_{field}", f"{field}={value!r} is not a number") from None
    if not (number > 0.0 and math.isfinite(number)):
        raise ParseError(f"bad_{field}", f"{field}={value!r} is not finite and positive")
    return number


def _int_field(data: Mapping[str, Any], key: str) -> int:
    value = data[key]
    # ``bool`` is a subclass of ``int``: ``"a": true`` must not pass as id 1.
    if type(value) is not int or value < 0:
        raise ParseError("bad_field", f"{key}={value!r} is not a non-negative integer")
    return value


def _bool_field(data: Mapping[str, Any], key: str) -> bool:
    value = data[key]
    if type(value) is not bool:
        raise ParseError("bad_field", f"{key}={value!r} is not a boolean")
    return value


def _symbol(data: Mapping[str, Any]) -> str:
    value = data["s"]
    # Perpetuals are alphanumeric; delivery contracts carry an underscore (BTCUSDT_240927).
    if type(value) is not str or not value.replace("_", "").isalnum():
        raise ParseError("bad_field", f"s={value!r} is not a symbol")
    return value.upper()


def parse_agg_trade(data: Mapping[str, Any]) -> Tick:
    """Parse one ``<symbol>@aggTrade`` event into a ``Tick`` with an aggregate id.

    A real payload (``../shared/data/real/binance_usdm_ws_cryptofeed/``)::

        {"e": "aggTrade",        # event type
         "E": 1626992741575,     # event time, ms (not used: T places the trade)
         "a": 16599292,          # aggregate trade id -> Tick.trade_id, +1 per aggregate
         "s": "CTKUSDT",         # symbol, upper-case
         "p": "1.01100",         # price, decimal string, finite and > 0
         "q": "10",              # quantity, decimal string, finite and > 0
         "f": 23961322,          # first underlying trade id (holes are legitimate)
         "l": 23961322,          # last underlying trade id
         "T": 1626992741421,     # trade time, ms -> Tick.ts_ms
         "m": false}             # buyer is maker: true means the seller was the aggressor

    Raises ``ParseError`` for anything else.
    """
    try:
        if data["e"] != "aggTrade":
            raise ParseError("unexpected_event", f"e={data['e']!r}")
        return Tick(
            _symbol(data),
            _int_field(data, "a"),
            _int_field(data, "T"),
            _positive_float(data["p"], "price"),
            _positive_float(data["q"], "qty"),
            _bool_field(data, "m"),
            IdKind.AGG,
        )
    except KeyError as exc:
        raise ParseError("missing_field", f"no {exc.args[0]!r}") from None
    except TypeError:
        raise ParseError("not_an_object", type(data).__name__) from None


def parse_trade(data: Mapping[str, Any]) -> Tick:
    """Parse one ``<symbol>@trade`` event into a ``Tick`` with a trade id.

    A real payload (``../shared/data/real/binance_usdm_ws_hftbacktest/``)::

        {"e": "trade",            # event type
         "E": 1723161256560,      # event time, ms
         "T": 1723161256560,      # trade time, ms -> Tick.ts_ms
         "s": "ETHUSDT",          # symbol
         "t": 4308068523,         # trade id -> Tick.trade_id (a different id space from "a")
         "p": "2681.62",          # price
         "q": "1.000",            # quantity
         "X": "MARKET",           # only MARKET is a market print; INSURANCE_FUND, ADL, NA are not
         "m": true}               # buyer is maker

    Raises ``ParseError`` for anything else, including prints whose ``X`` is not ``MARKET``.
    """
    try:
        if data["e"] != "trade":
            raise ParseError("unexpected_event", f"e={data['e']!r}")
        if data["X"] != "MARKET":
            raise ParseError("not_market", f"X={data['X']!r}")
        return Tick(
            _symbol(data),
            _int_field(data, "t"),
            _int_field(data, "T"),
            _positive_float(data["p"], "price"),
            _positive_float(data["q"], "qty"),
            _bool_field(data, "m"),
            IdKind.TRADE,
        )
    except KeyError as exc:
        raise ParseError("missing_field", f"no {exc.args[0]!r}") from None
    except TypeError:
        raise ParseError("not_an_object", type(data).__name__) from None


def unwrap(message: Any) -> Any:
    """Return the payload of a combined-stream message ``{"stream": ..., "data": {...}}``.

    Raw payloads are returned unchanged. The wrapper is decided by the URL path
    (``/stream`` always wraps), so both shapes must be accepted on any connection.
    """
    if type(message) is dict and "data" in message and "stream" in message:
        return message["data"]
    return message


_PARSERS = {StreamKind.AGG_TRADE: parse_agg_trade, StreamKind.TRADE: parse_trade}


def parse_message(payload: str | bytes, stream: StreamKind = StreamKind.AGG_TRADE) -> Tick:
    """Parse one WebSocket text frame, raw or combined, of the given stream kind.

    ``payload`` may be ``bytes`` straight off the socket: invalid UTF-8 is a ``not_json``
    reject, like any other text that is not JSON.
    """
    try:
        message = json.loads(payload)
    except (ValueError, TypeError) as exc:  # JSONDecodeError and UnicodeDecodeError
        raise ParseError("not_json", str(exc)[:80]) from None
    return _PARSERS[stream](unwrap(message))


def parse_rest_agg_trade(row: Mapping[str, Any], symbol: str) -> Tick:
    """Parse one row of ``GET /fapi/v1/aggTrades``.

    REST rows carry no ``e``, ``E`` or ``s``::

        {"a": 26129, "p": "0.01633102", "q": "4.70443515", "f": 27781, "l": 27781,
         "T": 1498793709153, "m": true}
    """
    try:
        return Tick(
            symbol.upper(),
            _int_field(row, "a"),
            _int_field(row, "T"),
            _positive_float(row["p"], "price"),
            _positive_float(row["q"], "qty"),
            _bool_field(row, "m"),
            IdKind.AGG,
        )
    except KeyError as exc:
        raise ParseError("missing_field", f"no {exc.args[0]!r}") from None
    except TypeError:
        raise ParseError("not_an_object", type(row).__name__) from None


def parse_rest_trade(row: Mapping[str, Any], symbol: str) -> Tick:
    """Parse one row of ``GET /fapi/v1/trades`` (recent trades, trade-id space)::

    {"id": 28457, "price": "4.00000100", "qty": "12.00000000", "quoteQty": "48.00",
     "time": 1499865549590, "isBuyerMaker": true}
    """
    try:
        return Tick(
            symbol.upper(),
            _int_field(row, "id"),
            _int_field(row, "time"),
            _positive_float(row["price"], "price"),
            _positive_float(row["qty"], "qty"),
            _bool_field(row, "isBuyerMaker"),
            IdKind.TRADE,
        )
    except KeyError as exc:
        raise ParseError("missing_field", f"no {exc.args[0]!r}") from None
    except TypeError:
        raise ParseError("not_an_object", type(row).__name__) from None


#: Columns of ``Writer.write_klines``, in Binance's order (the trailing "ignore" is dropped).
KLINE_COLUMNS: tuple[str, ...] = tuple(_DUMP_KLINE_COLUMNS[:-1])
_KLINE_INT_COLUMNS = frozenset({"open_time", "close_time", "count"})


def parse_rest_kline(row: Sequence[Any]) -> dict[str, float | int]:
    """Parse one row of ``GET /fapi/v1/klines`` into a dict keyed by ``KLINE_COLUMNS``::

    [1706745600000, "33.1730", "33.2780", "33.1480", "33.2640", "31584",
     1706745659999, "1048736.6860", 2093, "15886", "527484.6350", "0"]
    """
    if not isinstance(row, Sequence) or isinstance(row, str) or len(row) < len(KLINE_COLUMNS):
        raise ParseError("bad_kline", f"{row!r:.80}")
    out: dict[str, float | int] = {}
    try:
        for name, value in zip(KLINE_COLUMNS, row, strict=False):
            out[name] = int(value) if name in _KLINE_INT_COLUMNS else float(value)
    except (TypeError, ValueError):
        raise ParseError("bad_kline", f"{row!r:.80}") from None
    if not all(math.isfinite(float(v)) for v in out.values()):
        raise ParseError("bad_kline", f"{row!r:.80}")
    return out
