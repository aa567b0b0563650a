"""Ticks and bars in SQLite: one writer, many readers, bars maintained as ticks arrive.

Public API: :class:`Writer`, :class:`Reader`, the record types in :mod:`storage.records`
and the errors in :mod:`storage.errors`. SQL lives only in this package.
"""

from storage.errors import IdKindConflictError, StorageError, UnknownSymbolError, WriterBusyError
from storage.records import TIMEFRAMES_S, Gap, IdKind, Tick, timeframe_s
from storage.sqlite import BAR_COLUMNS, PAIR_COLUMNS, Reader, Writer

__all__ = [
    "BAR_COLUMNS",
    "PAIR_COLUMNS",
    "TIMEFRAMES_S",
    "Gap",
    "IdKind",
    "IdKindConflictError",
    "Reader",
    "StorageError",
    "Tick",
    "UnknownSymbolError",
    "Writer",
    "WriterBusyError",
    "timeframe_s",
]
