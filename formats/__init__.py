"""Every Binance format the desk reads, in one place: wire messages, REST rows, recorded files.

One home per format, used alike by the live client (``ingestion``), ``python -m storage
import`` and the replay server, so the three can never disagree about a line:

- :mod:`formats.wire` — ``@aggTrade``/``@trade`` WebSocket frames, REST aggTrades, trades and
  klines rows, into :class:`storage.records.Tick`.
- :mod:`formats.funding` — ``@markPrice`` frames, REST premiumIndex and fundingRate rows,
  into :class:`storage.records.MarkPrice` and :class:`storage.records.FundingRate`.
- :mod:`formats.files` (with :mod:`formats.dumps`) — captures, cryptofeed files, WebSocket
  JSON lines, collector NDJSON and Binance's CSV dumps, into column chunks.
- :mod:`formats.opener` — the one bounded file opener; :mod:`formats.limits` — its limits.
- :mod:`formats.numbers` — the strict number/id grammar and the bounded JSON loader.
- :mod:`formats.summary` — ``validate_recording``: a streamed check of a file to replay.

Layering: this package imports only ``storage.records`` (the shared record types) from the
project; ``ingestion`` and the ``storage`` command line import it, the storage library does
not. Every failure is one :class:`ParseError` carrying a short ``reason`` code.
"""

from formats.chunks import KlineChunk, ReadStats, TickChunk
from formats.errors import ParseError
from formats.files import detect_format, read_file, symbol_from_filename
from formats.funding import (
    parse_funding_rate,
    parse_funding_rates,
    parse_mark_price,
    parse_mark_price_message,
    parse_premium_index,
)
from formats.limits import Limits, default_limits
from formats.opener import open_text
from formats.summary import RecordingSummary, validate_recording
from formats.wire import (
    KLINE_COLUMNS,
    StreamKind,
    parse_agg_trade,
    parse_message,
    parse_rest_agg_trade,
    parse_rest_kline,
    parse_rest_trade,
    parse_trade,
    unwrap,
)

__all__ = [
    "KLINE_COLUMNS",
    "KlineChunk",
    "Limits",
    "ParseError",
    "ReadStats",
    "RecordingSummary",
    "StreamKind",
    "TickChunk",
    "default_limits",
    "detect_format",
    "open_text",
    "parse_agg_trade",
    "parse_funding_rate",
    "parse_funding_rates",
    "parse_mark_price",
    "parse_mark_price_message",
    "parse_message",
    "parse_premium_index",
    "parse_rest_agg_trade",
    "parse_rest_kline",
    "parse_rest_trade",
    "parse_trade",
    "read_file",
    "symbol_from_filename",
    "unwrap",
    "validate_recording",
]
