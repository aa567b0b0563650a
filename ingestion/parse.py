"""Moved: the wire parsers live in :mod:`formats.wire` (one home for every Binance format).

This name stays only so that branches written against it keep importing; new code imports
from ``formats``.
"""

from formats.wire import (  # noqa: F401 - re-exported names
    KLINE_COLUMNS,
    ParseError,
    StreamKind,
    parse_agg_trade,
    parse_message,
    parse_rest_agg_trade,
    parse_rest_kline,
    parse_rest_trade,
    parse_trade,
    unwrap,
)
