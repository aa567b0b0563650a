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
        (api.Writer, sq.Writer),
        (api.Writer, pg.Writer),
        (api.Reader, sq.Reader),
        (api.Reader, pg.Reader),
    ],
    ids=["sqlite-writer", "postgres-writer", "sqlite-reader", "postgres-reader"],
)
def test_engine_class_has_every_member(protocol, engine) -> None:
    annotations = set(getattr(protocol, "__annotations__", {}))
    missing = sorted(
        n for n in _members(protocol) - annotations if not callable(getattr(engine, n, None))
    )
    assert not missing, f"{engine.__module__}.{engine.__name__} lacks {missing}"


def test_opened_handles_are_instances(tmp_path) -> None:
    with open_writer(tmp_path / "a.db") as w:
        assert isinstance(w, api.Writer) and w.path and not w.closed
        with open_reader(tmp_path / "a.db") as r:
            assert isinstance(r, api.Reader)
    assert not isinstance(object(), api.Writer)  # the check can fail
