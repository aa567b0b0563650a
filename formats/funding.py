"""Binance USD-M funding payloads into frozen records: ``@markPrice``, premiumIndex, fundingRate.

Three shapes carry funding, one parser each; nothing here does I/O:

- the ``<symbol>@markPrice[@1s]`` WebSocket event ``markPriceUpdate`` (on the ``/market``
  route), and the ``GET /fapi/v1/premiumIndex`` REST object: the mark price and the *current*
  (estimated) funding rate with the next funding time, into :class:`storage.records.MarkPrice`;
- a row of ``GET /fapi/v1/fundingRate``: one *settled* funding event, into
  :class:`storage.records.FundingRate`.

Numbers follow the grammar of :mod:`formats.numbers` (plain decimal strings, JSON integer
times); a rate may carry a leading ``-`` and must lie within ``±MAX_ABS_RATE``. A contract
without funding (a delivery contract) sends an empty rate and a next funding time of 0: the
record then says None for both. Anything else is one ``ParseError`` with a short reason.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from formats.errors import ParseError
from formats.limits import Limits
from formats.numbers import id_value, loads_bounded, positive_decimal, signed_decimal
from formats.wire import _symbol, unwrap
from storage.records import FundingRate, MarkPrice

__all__ = [
    "MAX_ABS_RATE",
    "parse_funding_rate",
    "parse_funding_rates",
    "parse_mark_price",
    "parse_mark_price_message",
    "parse_premium_index",
]

#: Largest |funding rate| accepted per settlement. Binance caps rates per symbol (±0.3 % to
#: ±3 %; its documentation's own example is −3.75 %); 10 % is far beyond any cap, so a value
#: past it is a corrupt or hostile payload, not a market.
MAX_ABS_RATE = 0.1


def _rate(value: Any, field: str = "rate") -> float | None:
    """A funding rate, or None for ``""`` (a contract without funding)."""
    if value == "":
        return None
    rate = signed_decimal(value, field)
    if abs(rate) > MAX_ABS_RATE:
        raise ParseError(f"bad_{field}", f"{field}={value!r:.40} is beyond ±{MAX_ABS_RATE:g}")
    return rate


def _mark_price(symbol, mark, index, rate, next_ms, event_ms) -> MarkPrice:
    next_funding = id_value(next_ms, "nextFundingTime")
    funding = _rate(rate)
    if funding is None or next_funding == 0:  # no funding on this contract
        funding, next_funding = None, None
    return MarkPrice(
        symbol=_symbol(symbol),
        mark=positive_decimal(mark, "mark"),
        index=None if index in (None, "") else positive_decimal(index, "index"),
        rate=funding,
        next_funding_ms=next_funding,
        event_ms=id_value(event_ms, "E"),
    )


def parse_mark_price(data: Mapping[str, Any]) -> MarkPrice:
    """Parse one ``<symbol>@markPrice`` event (payload as in Binance's documentation)::

        {"e": "markPriceUpdate",   # event type
         "E": 1562305380000,       # event time, ms -> MarkPrice.event_ms
         "s": "BTCUSDT",           # symbol
         "p": "11794.15000000",    # mark price -> mark
         "i": "11784.62659091",    # index price -> index
         "P": "11784.25641265",    # estimated settle price (not kept)
         "r": "0.00038167",        # funding rate for the next settlement -> rate
         "T": 1562306400000}       # next funding time, ms -> next_funding_ms

    Raises ``ParseError``: ``unexpected_event``, ``missing_field``, ``bad_mark``, ``bad_rate``,
    ``bad_field``, ``not_an_object``.
    """
    if type(data) is not dict:
        raise ParseError("not_an_object", type(data).__name__)
    if data.get("e") != "markPriceUpdate":
        raise ParseError("unexpected_event", f"e={data.get('e')!r:.40}")
    try:
        return _mark_price(data["s"], data["p"], data.get("i"), data["r"], data["T"], data["E"])
    except KeyError as exc:
        raise ParseError("missing_field", f"no {exc.args[0]!r}") from None


def parse_mark_price_message(payload: str | bytes, limits: Limits | None = None) -> MarkPrice:
    """One ``@markPrice`` WebSocket text frame, raw or combined (bounded like every frame)."""
    return parse_mark_price(unwrap(loads_bounded(payload, limits)))


def parse_premium_index(row: Mapping[str, Any]) -> MarkPrice:
    """Parse the object of ``GET /fapi/v1/premiumIndex?symbol=...`` (or one list item)::

    {"symbol": "BTCUSDT",
     "markPrice": "11793.63104562",         # -> mark
     "indexPrice": "11781.80495970",        # -> index
     "estimatedSettlePrice": "11781.16138815",
     "lastFundingRate": "0.00038246",       # the rate of the coming settlement -> rate
     "interestRate": "0.00010000",
     "nextFundingTime": 1597392000000,      # -> next_funding_ms
     "time": 1597370495002}                 # -> event_ms
    """
    if not isinstance(row, Mapping):
        raise ParseError("not_an_object", type(row).__name__)
    try:
        return _mark_price(
            row["symbol"],
            row["markPrice"],
            row.get("indexPrice"),
            row["lastFundingRate"],
            row["nextFundingTime"],
            row["time"],
        )
    except KeyError as exc:
        raise ParseError("missing_field", f"no {exc.args[0]!r}") from None


def parse_funding_rate(row: Mapping[str, Any]) -> FundingRate:
    """Parse one row of ``GET /fapi/v1/fundingRate`` (a settled funding event)::

    {"symbol": "BTCUSDT",
     "fundingRate": "-0.03750000",    # signed; longs pay when > 0 -> rate
     "fundingTime": 1570608000000,    # settlement time, ms -> funding_time_ms
     "markPrice": "34287.54619963"}   # mark used; "" on old rows -> mark (None)
    """
    if not isinstance(row, Mapping):
        raise ParseError("not_an_object", type(row).__name__)
    try:
        rate = _rate(row["fundingRate"])
        if rate is None:
            raise ParseError("bad_rate", "fundingRate is empty")
        mark = row.get("markPrice", "")
        return FundingRate(
            symbol=_symbol(row["symbol"]),
            funding_time_ms=id_value(row["fundingTime"], "fundingTime"),
            rate=rate,
            mark=None if mark in ("", None) else positive_decimal(mark, "mark"),
        )
    except KeyError as exc:
        raise ParseError("missing_field", f"no {exc.args[0]!r}") from None


def parse_funding_rates(rows: Any, symbol: str) -> list[FundingRate]:
    """A whole ``fundingRate`` reply: a JSON array of rows of ``symbol``, oldest first.

    A row of another symbol is ``bad_field`` (the reply does not answer the question asked).
    """
    if not isinstance(rows, list):
        raise ParseError("not_a_list", f"{type(rows).__name__}")
    want = _symbol(symbol)
    out = [parse_funding_rate(r) for r in rows]
    for rec in out:
        if rec.symbol != want:
            raise ParseError("bad_field", f"a {rec.symbol} row in the reply for {want}")
    return out
