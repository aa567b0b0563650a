"""Storage errors: each names the file and the problem, so the UI and CLIs can print it as is."""

from __future__ import annotations


class StorageError(Exception):
    """A problem with the database file: missing, corrupt, foreign, full, locked."""


class WriterBusyError(StorageError):
    """Another writer (this process or another) already holds the database."""


class UnknownSymbolError(ValueError):
    """A symbol that the database holds no data for."""

    def __init__(self, symbol: str, known: list[str]):
        hint = f"; stored symbols: {', '.join(known)}" if known else "; the database is empty"
        super().__init__(f"no data for symbol {symbol!r}{hint}")
        self.symbol = symbol
        self.known = known


class IdKindConflictError(ValueError):
    """A write would mix two id spaces (aggregate ids and trade ids) for one symbol."""


class ConnectionLostError(StorageError):
    """The database server cannot be reached or dropped the connection (PostgreSQL only).

    The write that raised it was not committed, or its commit is unknown; every write is
    idempotent, so the caller keeps the batch, waits (backoff) and writes it again. The next
    call on the same writer reconnects by itself.
    """
