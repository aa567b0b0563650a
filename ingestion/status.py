"""Per-symbol feed status: a frozen snapshot for the dashboard, the CLI and storage."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

__all__ = ["FeedState", "SymbolStatus"]


class FeedState(StrEnum):
    """What a symbol's feed is doing, most severe first when several apply.

    ``error``: stopped by a fatal problem, or nothing is being stored (disk full, a failing
    database; see ``last_error``). ``stopped``: stopped on request.
    ``stale``: the socket is open but delivers nothing while REST shows the market traded
    ("connected but no data"): trades are backfilled from REST and the socket replaced.
    ``reconnecting``: connection lost, waiting out the backoff or dialling again.
    ``connecting``: first connection. ``backfilling``: live, and REST repair or history
    loading in progress. ``quiet``: live, no trade for a while, and REST agrees nothing
    traded. ``live``: trades flowing.
    """

    CONNECTING = "connecting"
    LIVE = "live"
    QUIET = "quiet"
    STALE = "stale"
    RECONNECTING = "reconnecting"
    BACKFILLING = "backfilling"
    STOPPED = "stopped"
    ERROR = "error"


@dataclass(frozen=True, slots=True)
class SymbolStatus:
    """One symbol's feed at one moment. Times: ``*_ms`` since the epoch (UTC), ``*_s`` seconds."""

    symbol: str
    state: FeedState
    stream: str  # "aggTrade" or "trade"
    url: str
    connected: bool
    messages: int  # trade messages accepted from the socket
    messages_per_s: float  # over the last ~10 s
    last_trade_ms: int | None  # exchange time T of the newest trade seen (socket or REST)
    last_trade_age_s: float | None  # now minus last_trade_ms
    last_trade_id: int | None
    reconnects: int  # unplanned reconnects (drops, dead sockets, stale sockets)
    planned_reconnects: int  # replacements before the 24 h cut
    gaps_found: int  # found by this run, plus those an earlier run left open/failed (retried)
    gaps_repaired: int  # fully repaired
    ids_missing: int  # ids in all gaps found (and retried)
    ids_backfilled: int  # ticks fetched from REST (gaps and history)
    backfill_pending: bool  # a REST job is queued or running
    backfill_todo_ids: int  # ids the running REST job still has to fetch (progress)
    history_loaded: bool  # start-up history done (or not wanted)
    rejected: int  # malformed or invalid messages, counted and dropped
    duplicates: int  # messages with an id already seen (overlaps after reconnects)
    stored: int  # ticks of this symbol committed by the writer (new or already stored)
    last_error: str
    last_error_ms: int | None
    connected_for_s: float | None  # age of the current connection
    queue_depth: int  # shared writer queue, items
    queue_capacity: int
    queue_blocked_s: float  # total time feeds waited for queue space: back-pressure
    updated_ms: int
    # Owed data (``ingestion.owed``): ranges recorded in the gap ledger and not yet stored
    # nor declared unrepairable (gaps and start-up history, this run's and earlier runs').
    owed_ranges: int = 0
    owed_ids: int = 0  # ids in them (a range known by time only counts 1 until resolved)
    owed_by_time: int = 0  # ranges whose first id REST has not told yet
    repair_retry_in_s: float | None = None  # next retry of a repair REST failed, if any

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able dict (for ``storage.Writer.save_feed_status``)."""
        out = dataclasses.asdict(self)
        out["state"] = str(self.state)
        return out

    def line(self) -> str:
        """One human-readable line for the collector's output."""
        if self.last_trade_ms is not None:
            last = datetime.fromtimestamp(self.last_trade_ms / 1000, UTC).strftime("%H:%M:%S.%f")[
                :-3
            ]
            age = (
                f" (age {self.last_trade_age_s:.1f} s)" if self.last_trade_age_s is not None else ""
            )
        else:
            last, age = "-", ""
        text = (
            f"{self.symbol:<10} {self.state.value:<12} {self.messages_per_s:7.1f} msg/s "
            f"msgs={self.messages} stored={self.stored} last={last}{age} "
            f"reconnects={self.reconnects}+{self.planned_reconnects}p "
            f"gaps={self.gaps_repaired}/{self.gaps_found} backfilled={self.ids_backfilled} "
            f"rejected={self.rejected} queue={self.queue_depth}/{self.queue_capacity}"
        )
        if self.backfill_todo_ids:
            text += f" backfill_todo={self.backfill_todo_ids}"
        if self.owed_ranges:
            text += f" owed={self.owed_ids}ids/{self.owed_ranges}ranges"
            if self.repair_retry_in_s is not None:
                text += f" retry_in={self.repair_retry_in_s:.1f}s"
        if self.last_error:
            text += f" error={self.last_error!r}"
        return text
