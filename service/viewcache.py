"""Compute once, serve many: a process-wide cache of what the live page shows.

Every browser tab of the same view (pair, timeframe, window, method, bars shown) refreshes on
its own timer; without sharing, N tabs read, compute and serialise the same pair N times. A
:class:`ViewCache` holds one :class:`Snapshot` per view key: the value computed for one *data
version*, plus whatever is derived from it (figure payloads, key figures), each computed once.

The rules, in order, when a session asks for a key:

1. a snapshot checked less than ``fresh_s`` ago, or computed less than ``min_interval_s``
   ago, is served as it is (no database read at all: N tabs refreshing at random phases cost
   one version probe per ``fresh_s`` and at most one computation per ``min_interval_s``,
   not N);
2. otherwise the data version is read (one cheap query); an unchanged version keeps the
   snapshot (an idle refresh recomputes nothing);
3. otherwise the value is computed, by exactly one thread per key (the others wait for it).

It is bounded in size (least recently used views are dropped beyond ``max_entries``) and in age
(a snapshot older than ``max_age_s`` is recomputed even if its version looks unchanged, and a
view nobody asked for in ``max_age_s`` is dropped). Thread-safe; no Streamlit here, so the
alert monitor or a watchlist can share it. Time comes from an injectable ``clock``.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable, Iterator
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from storage import Reader, open_reader

T = TypeVar("T")
D = TypeVar("D")

#: A snapshot checked this recently is served without reading the version (seconds). Half the
#: fastest refresh (0.5 s): it adds at most this much to trade-to-screen.
FRESH_S = 0.25
#: The live pair views are recomputed at most once per this many seconds (``min_interval_s``),
#: however many tabs ask: a little under the fastest refresh (0.5 s), so one tab still gets a
#: new computation on every refresh, while tabs at random phases cause at most 2.5
#: computations a second instead of 4 (one per ``FRESH_S``) when trades arrive continuously.
#: Charts may lag the newest trade by at most this much more (by construction; the
#: trade-to-wire benchmark reads the Last update line, which does not go through the cache).
RECOMPUTE_S = 0.4
#: Recompute a snapshot this old even if its version is unchanged, and drop views nobody has
#: asked for in this long (seconds).
MAX_AGE_S = 60.0
#: Views kept at most (each holds one pair's table of ≤ 2,000 bars and six chart payloads).
MAX_ENTRIES = 64


@dataclass
class Snapshot(Generic[T]):
    """One view's value at one data version, and the values derived from it."""

    value: T
    version: Hashable
    computed_s: float
    checked_s: float
    max_age_s: float = MAX_AGE_S
    _derived: dict[Hashable, Any] = field(default_factory=dict, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    derivations: int = 0

    def derive(self, name: Hashable, compute: Callable[[], D]) -> D:
        """``compute()`` once per snapshot and ``name`` (e.g. one chart's payload)."""
        try:
            return self._derived[name]
        except KeyError:
            pass
        with self._lock:
            if name not in self._derived:
                self._derived[name] = compute()
                self.derivations += 1
            return self._derived[name]


@dataclass
class CacheStats:
    """Counters for tests and the benchmark: what the sessions' requests cost."""

    requests: int = 0
    fresh_hits: int = 0  # served within fresh_s, no version read
    version_reads: int = 0
    version_hits: int = 0  # version unchanged: nothing recomputed
    computations: int = 0
    evictions: int = 0
    computed_keys: dict[Hashable, int] = field(default_factory=dict)


class ViewCache:
    """Snapshots by view key, computed once per data version (see the module docstring)."""

    def __init__(
        self,
        *,
        fresh_s: float = FRESH_S,
        max_age_s: float = MAX_AGE_S,
        max_entries: int = MAX_ENTRIES,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if fresh_s < 0 or max_age_s <= 0 or max_entries < 1:
            raise ValueError(
                f"need fresh_s ≥ 0, max_age_s > 0, max_entries ≥ 1 "
                f"(got {fresh_s}, {max_age_s}, {max_entries})"
            )
        self.fresh_s = fresh_s
        self.max_age_s = max_age_s
        self.max_entries = max_entries
        self._clock = clock
        self._entries: OrderedDict[Hashable, Snapshot] = OrderedDict()
        self._key_locks: dict[Hashable, threading.Lock] = {}
        self._lock = threading.Lock()
        self.stats = CacheStats()

    def __len__(self) -> int:
        return len(self._entries)

    def get(
        self,
        key: Hashable,
        version: Callable[[], Hashable],
        compute: Callable[[], T],
        *,
        fresh_s: float | None = None,
        max_age_s: float | None = None,
        min_interval_s: float = 0.0,
    ) -> Snapshot[T]:
        """The snapshot of ``key``: reused while fresh or while ``version()`` is unchanged.

        ``version()`` must be cheap (one indexed query); ``compute()`` reads and computes the
        value. ``fresh_s`` and ``max_age_s`` override the cache's windows for this key (a
        ``version`` that never changes plus a short ``max_age_s`` makes a plain time-to-live).
        A snapshot computed less than ``min_interval_s`` ago is served without a version read
        (a rate limit on computations for views whose data changes faster than anyone looks).
        """
        fresh = self.fresh_s if fresh_s is None else fresh_s
        max_age = self.max_age_s if max_age_s is None else max_age_s
        if min_interval_s < 0:
            raise ValueError(f"need min_interval_s ≥ 0 (got {min_interval_s})")
        with self._lock:
            self.stats.requests += 1
            snap = self._lookup(key, fresh, min_interval_s)
            if snap is not None:
                self.stats.fresh_hits += 1
                return snap
            key_lock = self._key_locks.setdefault(key, threading.Lock())
        with key_lock:  # one thread per key reads the version and computes; others wait
            with self._lock:
                snap = self._lookup(key, fresh, min_interval_s)  # refreshed while we waited?
                if snap is not None:
                    self.stats.fresh_hits += 1
                    return snap
                old = self._entries.get(key)
            v = version()
            now = self._clock()
            with self._lock:
                self.stats.version_reads += 1
            if old is not None and old.version == v and now - old.computed_s < max_age:
                old.checked_s = now
                with self._lock:
                    self.stats.version_hits += 1
                    self._entries.move_to_end(key)
                return old
            value = compute()
            snap = Snapshot(value, v, computed_s=now, checked_s=now, max_age_s=max_age)
            with self._lock:
                self.stats.computations += 1
                self.stats.computed_keys[key] = self.stats.computed_keys.get(key, 0) + 1
                self._entries[key] = snap
                self._entries.move_to_end(key)
                self._evict(now)
            return snap

    def _lookup(self, key: Hashable, fresh_s: float, min_interval_s: float) -> Snapshot | None:
        """The snapshot if checked within ``fresh_s`` or computed within ``min_interval_s``
        (call with ``_lock`` held)."""
        snap = self._entries.get(key)
        if snap is None:
            return None
        now = self._clock()
        recent = now - snap.checked_s < fresh_s or now - snap.computed_s < min_interval_s
        if recent and now - snap.computed_s < snap.max_age_s:
            self._entries.move_to_end(key)
            return snap
        return None

    def _evict(self, now: float) -> None:
        """Drop views not asked for in ``max_age_s`` and the oldest beyond ``max_entries``."""
        for k in [k for k, s in self._entries.items() if now - s.checked_s >= self.max_age_s]:
            del self._entries[k]
            self._key_locks.pop(k, None)
            self.stats.evictions += 1
        while len(self._entries) > self.max_entries:
            k, _ = self._entries.popitem(last=False)
            self._key_locks.pop(k, None)
            self.stats.evictions += 1

    def retain(self, keep: Callable[[Hashable], bool]) -> None:
        """Drop every view whose key ``keep`` refuses (e.g. pairs no longer watched)."""
        with self._lock:
            for k in [k for k in self._entries if not keep(k)]:
                del self._entries[k]
                self._key_locks.pop(k, None)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
            self._key_locks.clear()


class SharedReader:
    """One ``Reader`` per process for the cache's version probes and computations.

    A Reader is not safe in two threads at once, so it is lent behind a lock; a new database
    (another source, or a replay restarted: ``generation``) gets a new Reader.
    """

    def __init__(self, opener: Callable[[str], Reader] = open_reader) -> None:
        self._open = opener
        self._lock = threading.Lock()
        self._reader: Reader | None = None
        self._key: tuple[str, int] | None = None

    @contextlib.contextmanager
    def lease(self, db_path: str, generation: int) -> Iterator[Reader]:
        with self._lock:
            if self._reader is None or self._key != (db_path, generation):
                self._close()
                self._reader = self._open(db_path)
                self._key = (db_path, generation)
            try:
                yield self._reader
            except ValueError:
                raise  # bad arguments, or no data yet (UnknownSymbolError): the connection is fine
            except BaseException:
                # A failed query may leave the connection unusable: start afresh next time.
                self._close()
                raise

    def _close(self) -> None:
        if self._reader is not None:
            with contextlib.suppress(Exception):
                self._reader.close()
        self._reader = None
        self._key = None

    def close(self) -> None:
        with self._lock:
            self._close()
