"""Both engines satisfy the storage protocols (``storage.api.Writer`` / ``Reader``)."""

from __future__ import annotations

import pytest

from storage import api, open_reader, open_writer
from storage import postgres as pg
from storage import sqlite as sq


def _members(protocol: type) -> set[str]:
    names = {n for n in vars(protocol) if not n.startswith("_")} | {"__enter__", "__exit__"}
    return names | set(getattr(protocol, "__annotations__", {}))


@pytest.mark.parametrize(
    ("protocol", "engine"),
    [
        (api.Writer, sq.SQLiteWriter),
        (api.Writer, pg.PostgresWriter),
        (api.Reader, sq.SQLiteReader),
        (api.Reader, pg.PostgresReader),
    ],
    ids=["sqlite-writer", "postgres-writer", "sqlite-reader", "postgres-reader"],
)
def test_engine_class_has_every_member(protocol, engine) -> None:
    annotations = set(getattr(protocol, "__annotations__", {}))
    missing = sorted(
        n for n in _members(protocol) - annotations if not callable(getattr(engine, n, None))
    )
    assert not missing, f"{engine.__module__}.{engine.__name__} lacks {missing}"


@pytest.mark.parametrize(
    ("protocol", "engines"),
    [
        (api.Writer, (sq.SQLiteWriter, pg.PostgresWriter)),
        (api.Reader, (sq.SQLiteReader, pg.PostgresReader)),
    ],
    ids=["writer", "reader"],
)
def test_protocol_names_every_public_method_of_both_engines(protocol, engines) -> None:
    """A method both engines offer belongs in the protocol, or callers typed with it miss it."""
    public = [{n for n in dir(e) if not n.startswith("_")} for e in engines]
    missing = sorted(set.intersection(*public) - _members(protocol))
    assert not missing, f"storage.api.{protocol.__name__} lacks {missing}"


def test_storage_writer_and_reader_are_the_protocols() -> None:
    """``storage.Writer`` / ``storage.Reader`` mean "either engine", not the SQLite classes."""
    import storage

    assert storage.Writer is api.Writer and storage.Reader is api.Reader
    with pytest.raises(TypeError):
        storage.Writer()  # a protocol is not an engine: open one with open_writer


def test_opened_handles_are_instances(tmp_path) -> None:
    with open_writer(tmp_path / "a.db") as w:
        assert isinstance(w, api.Writer) and w.path and not w.closed
        assert type(w) is sq.SQLiteWriter
        with open_reader(tmp_path / "a.db") as r:
            assert isinstance(r, api.Reader) and type(r) is sq.SQLiteReader
    assert not isinstance(object(), api.Writer)  # the check can fail


def test_opened_postgres_handles_are_instances(pg_url: str) -> None:
    with open_writer(pg_url) as w:
        assert isinstance(w, api.Writer) and type(w) is pg.PostgresWriter and not w.closed
        with open_reader(pg_url) as r:
            assert isinstance(r, api.Reader) and type(r) is pg.PostgresReader


def test_only_storage_names_the_engine_classes() -> None:
    """Outside ``storage/`` (tests of the protocols aside) handles come from the openers."""
    import re
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    engine = re.compile(r"\b(SQLiteWriter|SQLiteReader|PostgresWriter|PostgresReader)\b")
    hits = [
        str(p.relative_to(root))
        for p in root.rglob("*.py")
        if p.relative_to(root).parts[0] not in ("storage", ".venv")
        and p.name != "test_storage_api.py"
        and engine.search(p.read_text(encoding="utf-8"))
    ]
    assert not hits, hits


def test_drop_sqlite_file_recreates_empty_and_refuses_postgres(tmp_path) -> None:
    from storage import StorageError, Tick
    from storage.backend import drop_sqlite_file

    db = tmp_path / "replay.db"
    with open_writer(db) as w:
        w.write_ticks([Tick("BTCUSDT", 1, 1_700_000_000_000, 1.0, 1.0, False)])
    drop_sqlite_file(db)
    assert not [p for p in tmp_path.glob("replay.db*") if not p.name.endswith(".writer.lock")]
    drop_sqlite_file(db)  # nothing there: fine
    with open_writer(db) as w, open_reader(db) as r:
        assert r.symbols() == []
    with pytest.raises(StorageError, match="only a SQLite file"):
        drop_sqlite_file("postgresql://u:p@127.0.0.1:1/x")


def test_only_storage_touches_database_files() -> None:
    """The page and the service never delete a database's files themselves."""
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    hits = [
        str(p.relative_to(root))
        for folder in ("service", "ui")
        for p in (root / folder).rglob("*.py")
        if '"-wal"' in p.read_text(encoding="utf-8") or '"-shm"' in p.read_text(encoding="utf-8")
    ]
    assert not hits, hits
