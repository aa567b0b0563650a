"""Record types shared by every stage: ticks, bars, gaps, timeframes, funding.

These are the only types that cross package boundaries besides pandas DataFrames.
Units are in the names: ``*_ms`` is milliseconds since the Unix epoch, UTC.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

#: Timeframes the product maintains, by name, in seconds.
TIMEFRAMES_S: dict[str, int] = {"1s": 1, "1m": 60, "5m": 300}


def timeframe_s(tf: str) -> int:
    """Seconds in timeframe ``tf`` (``"1s"``, ``"1m"`` or ``"5m"``); ``ValueError`` otherwise."""
    try:
        return TIMEFRAMES_S[tf]
    except KeyError:
        raise ValueError(
            f"unknown timeframe {tf!r}: expected one of {', '.join(TIMEFRAMES_S)}"
        ) from None


#: The fields of one Binance kline, in Binance's order: a REST ``/fapi/v1/klines`` row and a
#: ``data.binance.vision`` klines dump line alike. Times are ms; ``count`` is the trade count.
KLINE_FIELDS: tuple[str, ...] = (
    "open_time",
    "open",
    "high",
    "low",
    "close",
    "volume",
    "close_time",
    "quote_volume",
    "count",
    "taker_buy_volume",
    "taker_buy_quote_volume",
    "ignore",
)


class IdKind(StrEnum):
    """Which id space a symbol's trade ids come from. One symbol never mixes two.

    ``agg``: Binance aggregate trade ids (``a`` of ``@aggTrade``, aggTrades dumps and REST).
    ``trade``: Binance trade ids (``t`` of ``@trade``, trades dumps).
    ``synthetic``: ids made by the importer for files that carry none (collector NDJSON).
    """

    AGG = "agg"
    TRADE = "trade"
    SYNTHETIC = "synthetic"


@dataclass(frozen=True, slots=True)
class Tick:
    """One trade print, as parsed at the edge.

    ``ts_ms`` is the exchange trade time (``T``), which places the trade in a bar.
    ``is_buyer_maker`` true means the aggressor was the seller (Binance's ``m``).
    """

    symbol: str  # upper-case, e.g. "BTCUSDT"
    trade_id: int
    ts_ms: int
    price: float
    qty: float
    is_buyer_maker: bool
    id_kind: IdKind = IdKind.AGG


@dataclass(frozen=True, slots=True)
class Gap:
    """A hole in a symbol's id sequence: ids ``first_missing_id..last_missing_id`` inclusive.

    ``status`` is one of ``open`` (found, not yet repaired), ``repaired`` (every missing id
    was fetched from REST), ``partial`` (some were), ``unrepairable`` (REST no longer has
    them) or ``failed`` (REST errors; retried). ``open`` and ``failed`` are owed: every start
    retries them. ``repaired_count`` counts the ids fetched.

    ``from_ts_ms`` set means the range is known by time only (start-up history whose first
    id REST could not tell yet): the ids of the trades at or after ``from_ts_ms`` up to
    ``last_missing_id``; ``first_missing_id`` is then a placeholder (``last_missing_id``)
    until the first id is resolved (``update_gap(..., first_missing_id=...)``).
    """

    symbol: str
    first_missing_id: int
    last_missing_id: int
    found_ts_ms: int
    status: str = "open"
    repaired_count: int = 0
    detail: str = ""
    gap_id: int | None = None
    from_ts_ms: int | None = None

    @property
    def missing(self) -> int:
        return self.last_missing_id - self.first_missing_id + 1


@dataclass(frozen=True, slots=True)
class FundingRate:
    """One settled funding event of a perpetual (a row of ``GET /fapi/v1/fundingRate``).

    At ``funding_time_ms`` every open position pays ``position × mark × rate``: longs pay
    shorts when ``rate`` > 0, shorts pay longs when it is < 0. ``mark`` is the mark price
    Binance used (None when it did not say: old rows carry ``""``).
    """

    symbol: str
    funding_time_ms: int
    rate: float
    mark: float | None = None


@dataclass(frozen=True, slots=True)
class MarkPrice:
    """A perpetual's mark price and *current* funding (``@markPrice`` or ``premiumIndex``).

    ``rate`` is the funding rate estimated for the next settlement at ``next_funding_ms``
    (both None for a contract without funding); ``event_ms`` is the exchange time of the
    reading. ``index`` is the index price (None when not sent).
    """

    symbol: str
    mark: float
    index: float | None
    rate: float | None
    next_funding_ms: int | None
    event_ms: int
