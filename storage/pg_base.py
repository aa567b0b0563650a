"""PostgreSQL plumbing shared by the writer (:mod:`storage.postgres`) and the reader
(:mod:`storage.pg_read`): binary COPY buffers, connecting, translating driver errors into
:class:`~storage.errors.StorageError`, and checking or creating the schema.
"""

from __future__ import annotations

import contextlib
import json
import logging
import re
import struct
import urllib.parse
from collections.abc import Iterator, Sequence

import numpy as np
import psycopg
import psycopg.errors
from psycopg_pool import PoolTimeout

from storage.errors import (
    ConnectionLostError,
    StorageError,
)
from storage.pg_schema import (
    APPLICATION,
    LOCK_NAMESPACE,
    SCHEMA_VERSION,
    migrations,
    timescale_steps,
)

log = logging.getLogger(__name__)

_TABLES_OURS = (
    "qd_meta",
    "symbols",
    "ticks",
    "bars",
    "bars_1s",
    "gaps",
    "alert_rules",
    "alert_events",
    "feed_status",
)


def _bars_table(tf_s: int) -> str:
    return "bars_1s" if tf_s == 1 else "bars"


# ----------------------------------------------------------------------------- binary COPY
_COPY_HEADER = b"PGCOPY\n\xff\r\n\x00" + struct.pack(">ii", 0, 0)
_COPY_TRAILER = b"\xff\xff"
_PG_BINARY = {
    "i2": (">i2", 2),
    "i4": (">i4", 4),
    "i8": (">i8", 8),
    "f8": (">f8", 8),
    "bool": ("u1", 1),
}


def _copy_buffer(columns: Sequence[tuple[np.ndarray, str]]) -> bytes:
    """PostgreSQL binary COPY data for equal-length column arrays, built without a row loop.

    Each row is ``int16 field count`` then per field ``int32 length`` and the big-endian value
    (no NULLs here), which a numpy structured dtype lays out exactly.
    """
    fields: list[tuple[str, str]] = [("n", ">i2")]
    for i, (_, kind) in enumerate(columns):
        fields += [(f"l{i}", ">i4"), (f"v{i}", _PG_BINARY[kind][0])]
    n = len(columns[0][0])
    rows = np.empty(n, dtype=np.dtype(fields))
    rows["n"] = len(columns)
    for i, (values, kind) in enumerate(columns):
        rows[f"l{i}"] = _PG_BINARY[kind][1]
        rows[f"v{i}"] = values
    return _COPY_HEADER + rows.tobytes() + _COPY_TRAILER


# ----------------------------------------------------------------------------- errors
def redact_url(url: str) -> str:
    """The URL with its password replaced by ``***``: safe to print and log."""
    try:
        parts = urllib.parse.urlsplit(url)
    except ValueError:
        return re.sub(r"(password=)\S+", r"\1***", url)
    if parts.password is None:
        return re.sub(r"(password=)[^&\s]+", r"\1***", url)
    user = parts.username or ""
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    netloc = f"{user}:***@{host}" + (f":{parts.port}" if parts.port else "")
    query = re.sub(r"(password=)[^&]+", r"\1***", parts.query)
    return urllib.parse.urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


class _Conflict(StorageError):
    """A deadlock or serialization failure: the transaction was rolled back; run it again."""


def _is_connection_error(exc: BaseException, conn: psycopg.Connection | None) -> bool:
    if isinstance(exc, PoolTimeout):
        return True
    if not isinstance(exc, psycopg.OperationalError):
        return False
    if conn is not None and (conn.broken or conn.closed):
        return True
    state = getattr(exc, "sqlstate", None) or ""
    return state.startswith("08") or state in ("57P01", "57P02", "57P03")


def _describe(where: str, exc: BaseException, conn: psycopg.Connection | None) -> StorageError:
    msg = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    if _is_connection_error(exc, conn):
        return ConnectionLostError(f"{where}: connection to the database lost or refused ({msg})")
    if isinstance(exc, psycopg.errors.DiskFull):
        return StorageError(
            f"{where}: the database server's disk is full; the last batch was "
            "rolled back, everything committed before it is intact"
        )
    if isinstance(exc, psycopg.errors.DeadlockDetected | psycopg.errors.SerializationFailure):
        return _Conflict(f"{where}: concurrent writers collided ({msg}); rolled back")
    if isinstance(exc, psycopg.errors.ReadOnlySqlTransaction):
        return StorageError(f"{where}: the database is read-only for this connection ({msg})")
    return StorageError(f"{where}: {msg}")


@contextlib.contextmanager
def _translated(where: str, conn: psycopg.Connection | None = None) -> Iterator[None]:
    """Turn psycopg errors into :class:`StorageError` naming the database."""
    try:
        yield
    except (psycopg.Error, PoolTimeout) as exc:
        raise _describe(where, exc, conn) from exc


def _connect(url: str, where: str, connect_timeout_s: float, app: str) -> psycopg.Connection:
    try:
        return psycopg.connect(
            url,
            autocommit=True,
            connect_timeout=max(1, int(connect_timeout_s)),
            application_name=app,
        )
    except psycopg.OperationalError as exc:
        msg = str(exc).strip().splitlines()[0] if str(exc).strip() else "connection failed"
        if "authentication" in msg or "does not exist" in msg or "role" in msg:
            raise StorageError(f"{where}: {msg}") from None
        raise ConnectionLostError(f"{where}: cannot reach the database server ({msg})") from None
    except psycopg.Error as exc:
        raise StorageError(f"{where}: {exc}") from None


# ----------------------------------------------------------------------------- schema
def _regclass(conn: psycopg.Connection, name: str) -> bool:
    return conn.execute("SELECT to_regclass(%s) IS NOT NULL", (name,)).fetchone()[0]


def _meta(conn: psycopg.Connection) -> dict[str, str]:
    return dict(conn.execute("SELECT key, value FROM qd_meta").fetchall())


def _check_schema(
    conn: psycopg.Connection,
    where: str,
    *,
    migrate: bool,
    timescale: bool | None = None,
    keep_ms: tuple[int | None, int | None] = (None, None),
) -> bool:
    """Recognise our schema, refuse foreign or newer ones, create or migrate (writer only).

    Returns whether the schema uses TimescaleDB hypertables. Concurrent writers starting at
    once serialise on an advisory lock, so the schema is created exactly once.
    """
    with _translated(where, conn), conn.transaction():
        if migrate:
            conn.execute("SELECT pg_advisory_xact_lock(%s, 0)", (LOCK_NAMESPACE,))
        if _regclass(conn, "qd_meta"):
            meta = _meta(conn)
            if meta.get("application") != APPLICATION:
                raise StorageError(
                    f"{where} has a table qd_meta of another application; "
                    "refusing to touch it — use another database or schema"
                )
            version = int(meta.get("schema_version", "0"))
        else:
            foreign = [t for t in _TABLES_OURS if _regclass(conn, t)]
            if foreign:
                raise StorageError(
                    f"{where} already has tables {', '.join(foreign)} that are not ours; "
                    "refusing to touch them — use another database, or a schema of its own "
                    "(?options=-csearch_path%3Dqd)"
                )
            if not migrate:
                raise StorageError(
                    f"no data in {where} yet: start a feed or a collector, "
                    "import a file or `python -m storage copy` first"
                )
            version, meta = 0, {}
        if version > SCHEMA_VERSION:
            raise StorageError(
                f"{where} has schema version {version}, newer than this "
                f"program's {SCHEMA_VERSION}; upgrade the program"
            )
        if version == SCHEMA_VERSION:
            return meta.get("timescale") == "1"
        if not migrate:
            raise StorageError(
                f"{where} has schema version {version}; open it once with a "
                "writer (a feed, the collector or `python -m storage info`) to "
                "migrate it"
            )
        use_ts = meta.get("timescale") == "1"
        if version == 0:
            use_ts = _enable_timescale(conn) if timescale is not False else False
        for step in migrations(use_ts)[version:]:
            for statement in step:
                conn.execute(statement)
        if version == 0 and use_ts:
            for statement in timescale_steps(*keep_ms):
                conn.execute(statement)
        for key, value in (
            ("application", APPLICATION),
            ("schema_version", str(SCHEMA_VERSION)),
            ("timescale", "1" if use_ts else "0"),
        ):
            conn.execute(
                "INSERT INTO qd_meta (key, value) VALUES (%s, %s) ON CONFLICT (key) "
                "DO UPDATE SET value = excluded.value",
                (key, value),
            )
        if version == 0 and use_ts:
            conn.execute(
                "INSERT INTO qd_meta (key, value) VALUES ('retention_ms', %s)",
                (json.dumps(list(keep_ms)),),
            )
        return use_ts


def timescale_available(conn: psycopg.Connection) -> bool:
    """Whether the server offers the TimescaleDB extension (installed or installable)."""
    return (
        conn.execute("SELECT 1 FROM pg_available_extensions WHERE name = 'timescaledb'").fetchone()
        is not None
    )


def _enable_timescale(conn: psycopg.Connection) -> bool:
    """Create the extension if the server offers it; False (plain tables) if it cannot."""
    if not timescale_available(conn):
        return False
    try:
        with conn.transaction():  # a savepoint: a failure leaves the outer transaction usable
            conn.execute("CREATE EXTENSION IF NOT EXISTS timescaledb")
    except psycopg.Error as exc:
        log.warning(
            "TimescaleDB is available but cannot be created (%s); using plain tables",
            str(exc).strip().splitlines()[0],
        )
        return False
    return True


# ----------------------------------------------------------------------------- writer
