"""Column chunks that the file readers yield: ticks and klines of one symbol, plus read stats."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from storage.records import IdKind

__all__ = ["AGG_COLUMNS", "TRADE_COLUMNS", "KlineChunk", "ReadStats", "TickChunk"]

#: Columns of a ``data.binance.vision`` aggTrades dump, and of a trades dump.
AGG_COLUMNS = (
    "agg_trade_id",
    "price",
    "quantity",
    "first_trade_id",
    "last_trade_id",
    "transact_time",
    "is_buyer_maker",
)
TRADE_COLUMNS = ("id", "price", "qty", "quote_qty", "time", "is_buyer_maker")

_MAX_SKIPPED_KINDS = 32  # distinct skipped message kinds named in the summary; then "other"


@dataclass(frozen=True, slots=True)
class TickChunk:
    """Ticks of one symbol and id space, as columns.

    With ``keep_text`` the reader also keeps what the replay server serves: prices and
    quantities as the file wrote them, the event time ``E`` and an aggregate's first and
    last trade ids (``None`` otherwise).
    """

    symbol: str
    id_kind: IdKind
    trade_id: np.ndarray
    ts_ms: np.ndarray
    price: np.ndarray
    qty: np.ndarray
    is_buyer_maker: np.ndarray
    price_text: list[str] | None = None
    qty_text: list[str] | None = None
    event_ms: np.ndarray | None = None
    first_id: np.ndarray | None = None
    last_id: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.trade_id)


@dataclass(frozen=True, slots=True)
class KlineChunk:
    """1m klines of one symbol with Binance's column names."""

    symbol: str
    rows: pd.DataFrame

    def __len__(self) -> int:
        return len(self.rows)


@dataclass(slots=True)
class ReadStats:
    """What a reader saw, for progress and the summary line."""

    fmt: str = ""
    lines: int = 0
    rows: int = 0
    skipped: int = 0
    bytes_read: int = 0
    bytes_total: int = 0
    skipped_kinds: dict[str, int] = field(default_factory=dict)

    def skip(self, kind: str) -> None:
        key = kind[:40]
        if key not in self.skipped_kinds and len(self.skipped_kinds) >= _MAX_SKIPPED_KINDS:
            key = "other"
        self.skipped_kinds[key] = self.skipped_kinds.get(key, 0) + 1
        self.skipped += 1
