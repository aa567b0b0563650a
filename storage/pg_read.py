"""Reading PostgreSQL: a pool of read-only connections per URL and the :class:`PostgresReader`.

The same API as :class:`storage.sqlite.SQLiteReader` (both build on
:class:`storage.readbase.ReaderBase`).
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import threading
from collections.abc import Callable, Iterable
from typing import Any

import pandas as pd
import psycopg
import psycopg.errors
from psycopg_pool import ConnectionPool, PoolTimeout

from storage.errors import (
    ConnectionLostError,
)
from storage.pg_base import _bars_table, _check_schema, _connect, _describe, redact_url
from storage.pg_schema import (
    SCHEMA_VERSION,
)
from storage.readbase import Query, ReaderBase, pyformat

log = logging.getLogger(__name__)


# ----------------------------------------------------------------------------- reader pools
_POOLS: dict[tuple[str, int], ConnectionPool] = {}
_POOLS_LOCK = threading.Lock()


def _configure_reader(conn: psycopg.Connection) -> None:
    conn.execute("SET default_transaction_read_only = on")


def _pool(url: str, max_size: int, timeout_s: float, where: str) -> ConnectionPool:
    """The process's pool of reader connections to ``url`` (made on first use)."""
    key = (url, max_size)
    with _POOLS_LOCK:
        pool = _POOLS.get(key)
        if pool is not None and not pool.closed:
            return pool
        # One direct attempt first: it fails at once with the real cause (refused, password,
        # no such database) where the pool would retry in the background until its timeout.
        _connect(url, where, timeout_s, "qd-reader").close()
        pool = ConnectionPool(
            url,
            min_size=1,
            max_size=max_size,
            open=False,
            timeout=timeout_s,
            kwargs={
                "autocommit": True,
                "application_name": "qd-reader",
                "connect_timeout": max(1, int(timeout_s)),
            },
            configure=_configure_reader,
            name=f"qd-readers-{len(_POOLS)}",
            reconnect_timeout=timeout_s * 6,
        )
        try:
            pool.open(wait=True, timeout=timeout_s)
        except PoolTimeout:
            pool.close(timeout=0)
            raise ConnectionLostError(f"{where}: cannot reach the database server") from None
        _POOLS[key] = pool
        return pool


def close_pools() -> None:
    """Close every reader pool of this process (at exit, or in tests)."""
    with _POOLS_LOCK:
        pools = list(_POOLS.values())
        _POOLS.clear()
    for pool in pools:
        with contextlib.suppress(Exception):
            pool.close(timeout=1.0)


atexit.register(close_pools)


# ----------------------------------------------------------------------------- reader
class PostgresReader(ReaderBase):
    """Read-only access through the process's pool for this URL: the API of sqlite.SQLiteReader.

    Cheap to make, and (unlike the SQLite reader) safe to share between threads: each call
    borrows a pooled connection. A call that meets a dropped connection is retried once on a
    fresh one.

    Parameters
    ----------
    url : the database; its schema must exist (a writer creates it).
    pool_max_size : connections the process's pool for this URL may open.
    connect_timeout_s : how long to wait for the server or a free pooled connection, seconds.
    """

    def __init__(
        self,
        url: str,
        *,
        pool_max_size: int = 8,
        connect_timeout_s: float = 10.0,
        busy_timeout_s: float | None = None,
    ):
        del busy_timeout_s  # SQLite's option
        self.url = url
        self.path = redact_url(url)
        self._pool = _pool(url, pool_max_size, connect_timeout_s, self.path)
        self._sym_ids: dict[str, int] = {}
        self.timescale = self._call(self._check)

    def _check(self, conn: psycopg.Connection) -> bool:
        return _check_schema(conn, self.path, migrate=False)

    def close(self) -> None:
        """Nothing to release: the pool is shared by the process (see :func:`close_pools`)."""

    def __enter__(self) -> PostgresReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _call(self, fn: Callable[[psycopg.Connection], Any], snapshot: bool = False) -> Any:
        """Run ``fn`` on a pooled connection (in one read-only snapshot if asked)."""
        for attempt in (0, 1):
            conn = None
            try:
                with self._pool.connection() as conn:
                    if not snapshot:
                        return fn(conn)
                    with conn.transaction():
                        conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
                        return fn(conn)
            except (psycopg.Error, PoolTimeout) as exc:
                err = _describe(self.path, exc, conn)
                if isinstance(err, ConnectionLostError) and attempt == 0:
                    continue  # the pool drops the broken connection; try a fresh one
                raise err from exc
        raise AssertionError("unreachable")

    def _q(self, sql: str, params: Iterable[Any] = ()) -> list[tuple]:
        """One query, ``?`` placeholders (see :mod:`storage.readbase`), on a pooled connection."""
        params = tuple(params)
        return self._call(lambda conn: _query_on(conn)(sql, params))

    def _bars_table(self, tf_s: int) -> str:
        return _bars_table(tf_s)

    def data_version(self) -> int:
        """Changes after every committed write by any writer: a cheap cache key for readers."""
        return int(
            self._q("SELECT CASE WHEN is_called THEN last_value ELSE 0 END FROM qd_data_version")[
                0
            ][0]
        )

    def pair_frame(
        self,
        x: str,
        y: str,
        tf: str,
        start_ms: int | None = None,
        end_ms: int | None = None,
        limit: int | None = None,
    ) -> pd.DataFrame:
        """Two legs on one regular grid of ``tf`` bars: see
        :meth:`storage.sqlite.SQLiteReader.pair_frame`.

        Read in one snapshot, so both legs are of the same moment even while a writer commits.
        """
        sx, sy, tf_s = self._pair_legs(x, y, tf, start_ms, end_ms, limit)
        return self._call(
            lambda conn: self._pair_frame(_query_on(conn), sx, sy, tf_s, start_ms, end_ms, limit),
            snapshot=True,
        )

    def info(self) -> dict[str, Any]:
        """Everything ``python -m storage info`` prints, as plain data (one snapshot)."""

        def read(conn: psycopg.Connection) -> dict[str, Any]:
            symbols = self._symbol_info(_query_on(conn))
            size = conn.execute("SELECT pg_database_size(current_database())").fetchone()[0]
            return {
                "path": self.path,
                "size_bytes": int(size),
                "schema_version": SCHEMA_VERSION,
                "backend": "postgresql",
                "timescale": self.timescale,
                "symbols": symbols,
            }

        return self._call(read, snapshot=True)


def _query_on(conn: psycopg.Connection) -> Query:
    """A :data:`storage.readbase.Query` on ``conn``: ``?`` placeholders, binary results."""

    def q(sql: str, params: Iterable[Any] = ()) -> list[tuple]:
        return conn.execute(pyformat(sql), tuple(params), binary=True).fetchall()

    return q
