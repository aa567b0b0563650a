"""Ticks and bars in SQLite: one writer, many readers, bars maintained as ticks arrive.

Public API: :class:`Writer`, :class:`Reader`, the record types in :mod:`storage.records`
and the errors in :mod:`storage.errors`. SQL lives only in this package.

PostgreSQL is the same API behind a URL: :func:`open_writer` and :func:`open_reader` take a file
path, ``sqlite:///path`` or ``postgresql://...`` (default ``$DATABASE_URL``, else ``$DB_PATH``,
else ``data.db``) and return the SQLite or the PostgreSQL (:mod:`storage.postgres`) classes.
"""

from storage.backend import (
    backend_of,
    default_db,
    describe,
    open_reader,
    open_writer,
    write_with_retry,
)
from storage.errors import (
    ConnectionLostError,
    IdKindConflictError,
    StorageError,
    UnknownSymbolError,
    WriterBusyError,
)
from storage.records import TIMEFRAMES_S, Gap, IdKind, Tick, timeframe_s
from storage.sqlite import BAR_COLUMNS, PAIR_COLUMNS, Reader, Writer

__all__ = [
    "BAR_COLUMNS",
    "PAIR_COLUMNS",
    "TIMEFRAMES_S",
    "ConnectionLostError",
    "Gap",
    "IdKind",
    "IdKindConflictError",
    "Reader",
    "StorageError",
    "Tick",
    "UnknownSymbolError",
    "Writer",
    "WriterBusyError",
    "backend_of",
    "default_db",
    "describe",
    "open_reader",
    "open_writer",
    "timeframe_s",
    "write_with_retry",
]
