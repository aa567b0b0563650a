"""Ticks and bars in SQLite or PostgreSQL: one writer, many readers, bars kept as ticks arrive.

Public API: the :class:`Writer` and :class:`Reader` protocols (:mod:`storage.api`) and their
openers :func:`open_writer` / :func:`open_reader`, the record types in :mod:`storage.records`
and the errors in :mod:`storage.errors`. SQL lives only in this package.

The openers take a file path, ``sqlite:///path`` or ``postgresql://...`` (default
``config.resolve_db``: ``$DATABASE_URL``, else ``$DB_PATH``, else ``data.db``) and return the
engine's class (:class:`storage.sqlite.SQLiteWriter`, :class:`storage.postgres.PostgresWriter`,
...); code outside ``storage/`` names only the protocols.
"""

from storage.api import Reader, Writer
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
from storage.readbase import BAR_COLUMNS, PAIR_COLUMNS
from storage.records import TIMEFRAMES_S, Gap, IdKind, Tick, timeframe_s

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
