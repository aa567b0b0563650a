"""Pick the storage backend from a database name: a file path (SQLite) or a URL (PostgreSQL).

* ``data.db``, ``/var/lib/qd/data.db``, ``sqlite:///data.db`` (relative),
  ``sqlite:////var/lib/qd/data.db`` (absolute) → SQLite.
* ``postgresql://user:password@host:5432/dbname`` (or ``postgres://``) → PostgreSQL through
  psycopg 3. Query parameters pass through to libpq, e.g. ``?sslmode=require`` or
  ``?options=-csearch_path%3Dqd`` to keep the tables in a schema of their own.

Both backends satisfy the :class:`storage.api.Writer` / :class:`storage.api.Reader` protocols
(:mod:`storage.sqlite`, :mod:`storage.postgres`); these two openers are the only way code outside
``storage/`` gets a handle.
The default database is ``$DATABASE_URL``, else ``$DB_PATH``, else ``data.db``.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, TypeVar

from config import resolve_db
from storage.errors import ConnectionLostError, StorageError

if TYPE_CHECKING:
    from storage.api import Reader, Writer

Backend = Literal["sqlite", "postgresql"]
T = TypeVar("T")

_PG_SCHEMES = ("postgresql://", "postgres://")


def backend_of(db: str | os.PathLike[str]) -> Backend:
    """``"postgresql"`` for a PostgreSQL URL, ``"sqlite"`` for a path or ``sqlite:`` URL."""
    text = os.fspath(db)
    if text.startswith(_PG_SCHEMES):
        return "postgresql"
    if "://" in text and not text.startswith("sqlite:"):
        scheme = text.split("://", 1)[0]
        raise StorageError(
            f"unsupported database URL scheme {scheme!r} in {describe(text)}: "
            "use a file path, sqlite:///path or postgresql://..."
        )
    return "sqlite"


def sqlite_path(db: str | os.PathLike[str]) -> Path:
    """The file of a SQLite database name: ``sqlite:///rel.db`` and ``sqlite:////abs.db`` too."""
    text = os.fspath(db)
    if text.startswith("sqlite:///"):
        return Path(text[len("sqlite:///") :])
    if text.startswith("sqlite:"):
        raise StorageError(
            f"{text!r}: a SQLite URL is sqlite:///relative/path or sqlite:////absolute/path"
        )
    return Path(text)


def is_postgres(db: str | os.PathLike[str]) -> bool:
    return backend_of(db) == "postgresql"


def describe(db: str | os.PathLike[str]) -> str:
    """The database name as it may be printed: a URL's password is masked."""
    text = os.fspath(db)
    if text.startswith(_PG_SCHEMES):
        from storage.postgres import redact_url

        return redact_url(text)
    return text


def drop_sqlite_file(db: str | os.PathLike[str]) -> None:
    """Delete a SQLite database with its write-ahead log and shared-memory files, so the next
    :func:`open_writer` recreates it empty (a replay's scratch file). Refuses PostgreSQL: a
    shared database is never dropped by a page. Missing files are fine. No writer may hold it.
    """
    if is_postgres(db):
        raise StorageError(f"{describe(db)}: only a SQLite file can be dropped")
    path = sqlite_path(db)
    for suffix in ("", "-wal", "-shm"):
        try:
            os.unlink(f"{path}{suffix}")
        except FileNotFoundError:
            pass
        except OSError as exc:
            raise StorageError(f"cannot drop {path}{suffix}: {exc.strerror}") from None


def default_db(env: dict[str, str] | None = None) -> str:
    """``$DATABASE_URL``, else ``$DB_PATH``, else ``data.db`` (``config.resolve_db``, no flag)."""
    return resolve_db(None, env)


def open_writer(db: str | os.PathLike[str] | None = None, **options: Any) -> Writer:
    """A writer of ``db`` (default :func:`default_db`): :class:`storage.sqlite.SQLiteWriter` or
    :class:`storage.postgres.PostgresWriter`, both a :class:`storage.api.Writer`. Options that
    only one backend knows are dropped for the other (``busy_timeout_s`` for SQLite;
    ``connect_timeout_s``, ``timescale``, ``ticks_keep_s``, ``bars_1s_keep_s`` for PostgreSQL)."""
    db = default_db() if db is None else db
    if is_postgres(db):
        from storage.postgres import PostgresWriter

        return PostgresWriter(
            os.fspath(db),
            **_only(options, "connect_timeout_s", "timescale", "ticks_keep_s", "bars_1s_keep_s"),
        )
    from storage.sqlite import SQLiteWriter

    return SQLiteWriter(sqlite_path(db), **_only(options, "busy_timeout_s"))


def open_reader(db: str | os.PathLike[str] | None = None, **options: Any) -> Reader:
    """A reader of ``db`` (default :func:`default_db`); see :func:`open_writer`.

    PostgreSQL readers share one connection pool per URL in the process (``pool_max_size``).
    """
    db = default_db() if db is None else db
    if is_postgres(db):
        from storage.postgres import PostgresReader

        return PostgresReader(os.fspath(db), **_only(options, "pool_max_size", "connect_timeout_s"))
    from storage.sqlite import SQLiteReader

    return SQLiteReader(sqlite_path(db), **_only(options, "busy_timeout_s"))


def _only(options: dict[str, Any], *names: str) -> dict[str, Any]:
    return {k: v for k, v in options.items() if k in names and v is not None}


def write_with_retry(
    write: Callable[[], T],
    delays: Iterator[float],
    *,
    should_stop: Callable[[], bool] = lambda: False,
    sleep: Callable[[float], Any] = time.sleep,
    on_retry: Callable[[ConnectionLostError, float], None] | None = None,
) -> T | None:
    """Call ``write()`` until it succeeds, waiting ``next(delays)`` seconds after each
    :class:`ConnectionLostError` (the database went away; the writer reconnects by itself on
    the next call). Every write of ticks, klines, feed status and alert events is idempotent,
    so writing a batch again after an unknown outcome is harmless.

    The collector's writer thread keeps its queued batch and calls, for example::

        write_with_retry(lambda: writer.write_ticks(batch), backoff(),
                         should_stop=stop_event.is_set, sleep=stop_event.wait)

    Returns ``write()``'s result, or None if ``should_stop()`` turned true while waiting.
    Any other error is raised at once: it would fail again.
    """
    while True:
        try:
            return write()
        except ConnectionLostError as exc:
            delay = next(delays)
            if on_retry is not None:
                on_retry(exc, delay)
            if should_stop():
                return None
            sleep(delay)
            if should_stop():
                return None
