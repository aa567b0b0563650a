"""``validate_recording``: is this file a trade recording the replay server can serve?

The page calls it on an upload or a typed path before replaying, ``storage import`` reads
with the same reader, and the replay server's loader too, so a file that passes here loads
there. It streams the file once through :func:`formats.files.read_file`, within
:class:`~formats.limits.Limits` and in small chunks, keeping only counts: memory stays
bounded whatever the file holds, and a hostile file (a bomb, no newline, ``/dev/zero``, a
FIFO, a directory, ``/proc/...``) is refused with one line as soon as it shows what it is.
"""

from __future__ import annotations

from dataclasses import dataclass

from formats.chunks import KlineChunk, ReadStats
from formats.errors import ParseError
from formats.files import read_file
from formats.limits import Limits
from formats.opener import Source, source_name

__all__ = ["RecordingSummary", "validate_recording"]

_CHUNK_ROWS = 20_000  # rows buffered at a time while validating: a few MB at most


@dataclass(frozen=True, slots=True)
class RecordingSummary:
    """What a valid recording holds.

    ``trades`` maps each symbol to its number of trade prints; ``first_ms``/``last_ms`` are
    the earliest and latest trade times (ms since the epoch, UTC); ``skipped`` counts
    messages that are not trades (book, depth, klines ...).
    """

    name: str
    format: str
    trades: dict[str, int]
    first_ms: int
    last_ms: int
    skipped: int

    @property
    def symbols(self) -> tuple[str, ...]:
        return tuple(sorted(self.trades))


def validate_recording(source: Source, limits: Limits | None = None) -> RecordingSummary:
    """Check that ``source`` (a path or a seekable binary file) is a replayable recording.

    Returns a :class:`RecordingSummary`; raises :class:`ParseError` (a ``ValueError``) with a
    one-line message naming the file and the problem otherwise, including a file that is
    valid but holds no trades (a klines dump, a book-only capture).
    """
    name = source_name(source)
    stats = ReadStats()
    trades: dict[str, int] = {}
    first_ms: int | None = None
    last_ms: int | None = None
    klines = 0
    for chunk in read_file(source, stats=stats, limits=limits, chunk_rows=_CHUNK_ROWS):
        if isinstance(chunk, KlineChunk):
            klines += len(chunk)
            continue
        if not len(chunk):
            continue
        trades[chunk.symbol] = trades.get(chunk.symbol, 0) + len(chunk)
        lo, hi = int(chunk.ts_ms.min()), int(chunk.ts_ms.max())
        first_ms = lo if first_ms is None else min(first_ms, lo)
        last_ms = hi if last_ms is None else max(last_ms, hi)
    if first_ms is None or last_ms is None:
        what = f"holds {klines:,} klines, not trades" if klines else "holds no trades"
        raise ParseError(
            "no_trades",
            f"{what} (a replay needs @trade/@aggTrade lines, collector NDJSON or a "
            "trades/aggTrades dump)",
            path=name,
        )
    return RecordingSummary(name, stats.fmt, trades, first_ms, last_ms, stats.skipped)
