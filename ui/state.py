"""Per-browser-session state: the session's database reader and its small result caches.

Streamlit runs each script run (and each fragment rerun) of a session in a fresh thread, and a
full rerun may start while the previous run is still stopping. A ``storage.Reader`` must not be
used by two threads at once, and ``Reader.data_version()`` is only meaningful on the *same*
connection across runs. So each session keeps one Reader behind a lock: a run that gets the
lock reuses it (its ``data_version`` keys the caches, so an idle refresh recomputes nothing);
a run that finds it busy opens a throw-away Reader of its own.

The timed fragments (live panel, status strip, feed health) do not use it: they read through
:func:`page_views`, the process-wide ``service.pageviews.PageViews`` shared by every session.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Hashable, Iterator
from dataclasses import dataclass, field
from typing import Any, TypeVar

import streamlit as st

from service.pageviews import PageViews
from storage import Reader, open_reader

T = TypeVar("T")

_KEY = "_dashboard_store"


@dataclass
class SessionStore:
    """What one browser session keeps between runs (never shared with another session)."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    reader: Reader | None = None
    reader_key: tuple[str, int] | None = None
    serial: int = 0
    cache: dict[str, tuple[Hashable, Any]] = field(default_factory=dict)
    #: When the session started (ms): older alerts are not toasted.
    started_ms: int = field(default_factory=lambda: int(time.time() * 1000))
    #: Newest alert event already shown as a toast in this session.
    seen_event_id: int = 0
    #: This session's own PageViews, only when sharing is off (``SHARED_VIEWS=0``).
    views: PageViews | None = None

    def close(self) -> None:
        if self.reader is not None:
            with contextlib.suppress(Exception):
                self.reader.close()
        self.reader = None
        self.reader_key = None


def store() -> SessionStore:
    s = st.session_state.get(_KEY)
    if s is None:
        s = st.session_state[_KEY] = SessionStore()
    return s


def page_views(shared: PageViews, share: bool) -> PageViews:
    """The PageViews this session reads the timed fragments through.

    ``shared`` is the service's (one per process); with ``share`` off (``SHARED_VIEWS=0``) the
    session gets one of its own, computing everything itself (the old per-session behaviour).
    """
    if share:
        return shared
    s = store()
    if s.views is None:
        s.views = PageViews(shared=False)
    return s.views


_serials = iter(range(1, 1 << 62))
_serials_lock = threading.Lock()


def _serial() -> int:
    with _serials_lock:
        return next(_serials)


@dataclass(frozen=True, slots=True)
class Lease:
    """A Reader for one run. ``version`` changes whenever the database changed since the
    last run on the same connection; it is unique to that connection (``serial``)."""

    reader: Reader
    serial: int

    def version(self) -> tuple[int, int]:
        return (self.serial, self.reader.data_version())


@contextlib.contextmanager
def session_reader(db_path: str, generation: int) -> Iterator[Lease]:
    """This session's Reader of ``db_path`` (reopened when the service's generation changes)."""
    s = store()
    if s.lock.acquire(blocking=False):
        try:
            key = (db_path, generation)
            if s.reader is None or s.reader_key != key:
                s.close()
                s.reader = open_reader(db_path)
                s.reader_key = key
                s.serial = _serial()
                s.cache.clear()
            yield Lease(s.reader, s.serial)
        finally:
            s.lock.release()
    else:  # another run of this session still holds it: use a private connection
        with open_reader(db_path) as reader:
            yield Lease(reader, _serial())


def cached(name: str, key: Hashable, compute: Callable[[], T]) -> T:
    """The value of ``compute()`` for ``key``, reused while ``key`` is unchanged (one per name)."""
    s = store()
    hit = s.cache.get(name)
    if hit is not None and hit[0] == key:
        return hit[1]
    value = compute()
    s.cache[name] = (key, value)
    return value
