"""Binance USD-M trade payloads off the wire (WebSocket and REST) into frozen ``Tick`` records.

Nothing here does I/O. A payload that is not a valid market trade raises ``ParseError``
whose ``reason`` is a short, stable code suitable for counting (``not_json``,
``missing_field``, ``bad_price``, ``too_deep`` ...); the caller counts and logs it and carries
on. Recorded files (:mod:`formats.files`) go through :func:`trade_fields` too, so a line of a
capture and the same frame off the socket are judged by the same rules.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from enum import StrEnum
from typing import Any

from formats.errors import ParseError
from formats.limits import Limits
from formats.numbers import (
    _DECIMAL,
    INT64_MAX,
    decimal_text,
    id_value,
    loads_bounded,
    positive_decimal,
)
from storage.records import KLINE_FIELDS, IdKind, Tick

__all__ = [
    "KLINE_COLUMNS",
    "ParseError",
    "StreamKind",
    "TradeFields",
    "parse_agg_trade",
    "parse_message",
    "parse_rest_agg_trade",
    "parse_rest_kline",
    "parse_rest_trade",
    "parse_trade",
    "trade_fields",
    "unwrap",
]


class StreamKind(StrEnum):
    """Which Binance trade stream a feed subscribes to, and so which id space it stores."""

    AGG_TRADE = "aggTrade"  # ``<sym>@aggTrade`` on the ``/market`` route; ids are ``a``
    TRADE = "trade"  # ``<sym>@trade`` on the ``/public`` route; ids are ``t``

    @property
    def id_kind(self) -> IdKind:
        return IdKind.AGG if self is StreamKind.AGG_TRADE else IdKind.TRADE


#: ``(symbol, id kind, id, T, E, price text, qty text, m, first id, last id)`` of one print.
TradeFields = tuple[str, IdKind, int, int, int, str, str, bool, int, int]


def _bool_field(data: Mapping[str, Any], key: str) -> bool:
    value = data[key]
    if type(value) is not bool:
        raise ParseError("bad_field", f"{key}={value!r:.40} is not a boolean")
    return value


_SYMBOLS: dict[str, str] = {}  # symbols seen valid, to their upper case (bounded below)


def _symbol(value: Any) -> str:
    known = _SYMBOLS.get(value) if type(value) is str else None
    if known is not None:
        return known
    # Perpetuals are alphanumeric; delivery contracts carry an underscore (BTCUSDT_240927).
    if (
        type(value) is not str
        or not 0 < len(value) <= 40
        or not value.isascii()
        or not value.replace("_", "").isalnum()
    ):
        raise ParseError("bad_field", f"s={value!r:.40} is not a symbol")
    if len(_SYMBOLS) < 4096:
        _SYMBOLS[value] = value.upper()
    return value.upper()


def _price_qty(data: Mapping[str, Any], p: str, q: str) -> tuple[str, str, float, float]:
    price, qty = data[p], data[q]
    return price, qty, positive_decimal(price, "price"), positive_decimal(qty, "qty")


def _plain_positive(value: Any) -> bool:
    # The fast check of positive_decimal: a plain decimal with a non-zero digit.
    return type(value) is str and _DECIMAL.fullmatch(value) is not None and bool(value.strip("0."))


def _is_id(value: Any) -> bool:
    return type(value) is int and 0 <= value <= INT64_MAX


def trade_fields(data: Any) -> TradeFields:
    """Check one ``trade`` or ``aggTrade`` event and return its fields, decimals as sent.

    ``E`` (event time) defaults to ``T``; an aggregate's ``f``/``l`` (first and last trade
    id) default to its own id ``a``; a trade without ``X`` is a market print (older
    captures). Raises ``ParseError``: ``unexpected_event``, ``not_market`` (``X`` other than
    ``MARKET``), ``missing_field``, ``bad_field``, ``bad_price``, ``bad_qty``, ``not_an_object``.
    """
    if type(data) is not dict:
        raise ParseError("not_an_object", type(data).__name__)
    try:
        event = data["e"]
        if event == "aggTrade":
            kind, key = IdKind.AGG, "a"
        elif event == "trade":
            if data.get("X", "MARKET") != "MARKET":
                raise ParseError("not_market", f"X={data['X']!r:.40}")
            kind, key = IdKind.TRADE, "t"
        else:
            raise ParseError("unexpected_event", f"e={event!r:.40}")
        ident, ts, price, qty, m = data[key], data["T"], data["p"], data["q"], data["m"]
        event_ms, first, last = data.get("E", ts), data.get("f", ident), data.get("l", ident)
        ok = _is_id(ident) and _is_id(ts) and _is_id(event_ms) and _is_id(first)
        if not (ok and _is_id(last) and type(m) is bool):
            for name in (key, "T", "E", "f", "l"):
                if name in data:
                    id_value(data[name], name)
            _bool_field(data, "m")
        if not (_plain_positive(price) and _plain_positive(qty)):
            _price_qty(data, "p", "q")  # raises with the field and the reason
        return (_symbol(data["s"]), kind, ident, ts, event_ms, price, qty, m, first, last)
    except KeyError as exc:
        raise ParseError("missing_field", f"no {exc.args[0]!r}") from None


def _tick(data: Any, expected: str) -> Tick:
    if type(data) is dict and data.get("e") not in (expected, None):
        raise ParseError("unexpected_event", f"e={data['e']!r:.40}")
    sym, kind, ident, ts, _, price, qty, m, _, _ = trade_fields(data)
    return Tick(sym, ident, ts, float(price), float(qty), m, kind)


def parse_agg_trade(data: Mapping[str, Any]) -> Tick:
    """Parse one ``<symbol>@aggTrade`` event into a ``Tick`` with an aggregate id.

    A real payload (``../shared/data/real/binance_usdm_ws_cryptofeed/``)::

        {"e": "aggTrade",        # event type
         "E": 1626992741575,     # event time, ms (not used: T places the trade)
         "a": 16599292,          # aggregate trade id -> Tick.trade_id, +1 per aggregate
         "s": "CTKUSDT",         # symbol, upper-case
         "p": "1.01100",         # price, plain decimal string, > 0
         "q": "10",              # quantity, plain decimal string, > 0
         "f": 23961322,          # first underlying trade id (holes are legitimate)
         "l": 23961322,          # last underlying trade id
         "T": 1626992741421,     # trade time, ms -> Tick.ts_ms
         "m": false}             # buyer is maker: true means the seller was the aggressor

    Raises ``ParseError`` for anything else (see :func:`trade_fields`).
    """
    return _tick(data, "aggTrade")


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
    return _tick(data, "trade")


def unwrap(message: Any) -> Any:
    """Return the payload of a combined-stream message ``{"stream": ..., "data": {...}}``.

    Raw payloads are returned unchanged. The wrapper is decided by the URL path
    (``/stream`` always wraps), so both shapes must be accepted on any connection.
    """
    if type(message) is dict and "data" in message and "stream" in message:
        return message["data"]
    return message


_PARSERS = {StreamKind.AGG_TRADE: parse_agg_trade, StreamKind.TRADE: parse_trade}


def parse_message(
    payload: str | bytes, stream: StreamKind = StreamKind.AGG_TRADE, limits: Limits | None = None
) -> Tick:
    """Parse one WebSocket text frame, raw or combined, of the given stream kind.

    ``payload`` may be ``bytes`` straight off the socket: invalid UTF-8 is a ``not_json``
    reject, like any other text that is not JSON. Frames over ``limits.max_frame_bytes`` or
    nested deeper than ``limits.max_json_depth`` are ``too_large`` / ``too_deep``.
    """
    return _PARSERS[stream](unwrap(loads_bounded(payload, limits)))


def _rest_tick(row: Any, symbol: str, names: tuple[str, str, str, str, str], kind: IdKind) -> Tick:
    if not isinstance(row, Mapping):
        raise ParseError("not_an_object", type(row).__name__)
    ident, ts, p, q, m = names
    try:
        _, _, price, qty = _price_qty(row, p, q)
        return Tick(_symbol(symbol), id_value(row[ident], ident), id_value(row[ts], ts),
                    price, qty, _bool_field(row, m), kind)  # fmt: skip
    except KeyError as exc:
        raise ParseError("missing_field", f"no {exc.args[0]!r}") from None


def parse_rest_agg_trade(row: Mapping[str, Any], symbol: str) -> Tick:
    """Parse one row of ``GET /fapi/v1/aggTrades``.

    REST rows carry no ``e``, ``E`` or ``s``::

        {"a": 26129, "p": "0.01633102", "q": "4.70443515", "f": 27781, "l": 27781,
         "T": 1498793709153, "m": true}
    """
    return _rest_tick(row, symbol, ("a", "T", "p", "q", "m"), IdKind.AGG)


def parse_rest_trade(row: Mapping[str, Any], symbol: str) -> Tick:
    """Parse one row of ``GET /fapi/v1/trades`` (recent trades, trade-id space)::

    {"id": 28457, "price": "4.00000100", "qty": "12.00000000", "quoteQty": "48.00",
     "time": 1499865549590, "isBuyerMaker": true}
    """
    return _rest_tick(row, symbol, ("id", "time", "price", "qty", "isBuyerMaker"), IdKind.TRADE)


#: Columns of a parsed REST kline (Binance's order; the trailing "ignore" is dropped).
KLINE_COLUMNS: tuple[str, ...] = KLINE_FIELDS[:-1]
_KLINE_INT_COLUMNS = frozenset({"open_time", "close_time", "count"})


def parse_rest_kline(row: Sequence[Any]) -> dict[str, float | int]:
    """Parse one row of ``GET /fapi/v1/klines`` into a dict keyed by ``KLINE_COLUMNS``::

    [1706745600000, "33.1730", "33.2780", "33.1480", "33.2640", "31584",
     1706745659999, "1048736.6860", 2093, "15886", "527484.6350", "0"]

    Times and the trade count are JSON integers, the rest plain decimal strings (volumes
    may be ``"0"``); anything else is ``ParseError("bad_kline")``.
    """
    if not isinstance(row, Sequence) or isinstance(row, str) or len(row) < len(KLINE_COLUMNS):
        raise ParseError("bad_kline", f"{row!r:.80}")
    out: dict[str, float | int] = {}
    try:
        for name, value in zip(KLINE_COLUMNS, row, strict=False):
            if name in _KLINE_INT_COLUMNS:
                out[name] = id_value(value, name)
            else:
                out[name] = float(decimal_text(value, name))
    except ParseError as exc:
        raise ParseError("bad_kline", f"{exc.detail}: {row!r:.80}") from None
    return out
