"""What the page's timed fragments read, computed once per data version for every session.

The live panel (pair analytics, key figures, chart payloads), the status strip (recent alerts)
and the feed-health panel refresh on timers in every open tab. :class:`PageViews` answers them
from one :class:`~service.viewcache.ViewCache` and one reader, so N tabs of one view cost one
read and one computation per new data version, and different views never share a result.

The data version of a pair view is the newest bar of each leg at the view's timeframe (open
time, trades, volume): one primary-key lookup per leg, and it moves with every stored trade of
either leg. A trade repaired into an *older* bar (a gap backfill) shows at the next trade of
either leg, or after ``MAX_AGE_S`` at the latest.

``shared=False`` (``SHARED_VIEWS=0``) gives each session a :class:`PageViews` of its own with no
freshness window: today's per-session behaviour, kept so ``bench/viewers.py`` can measure the
baseline in the same run.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from typing import Any

import pandas as pd

from service.compute import PairParams, PairView, compute_pair
from service.viewcache import FRESH_S, RECOMPUTE_S, SharedReader, Snapshot, ViewCache
from service.watch import PairBoard
from storage import Reader, UnknownSymbolError, open_reader

#: Recent alerts and feed health are re-read at most this often for all sessions (seconds):
#: toasts and the health table are seconds-paced, not bar-paced.
ALERTS_FRESH_S = 1.0
HEALTH_FRESH_S = 2.0
#: Newest alert events read for toasts (per read, for every session).
ALERT_TOAST_LIMIT = 20
#: Boards of watched pairs kept (one per database and generation: a replay restart, a
#: switch of source); older ones are dropped.
MAX_BOARDS = 4


@dataclass(frozen=True, slots=True)
class Health:
    """What the feed-health panel reads from the database: other collectors, and the gaps."""

    published: pd.DataFrame
    gaps: pd.DataFrame


def pair_version(reader: Reader, params: PairParams) -> Hashable:
    """The pair view's data version: each leg's newest bar stamp at the view's timeframe."""
    return (
        reader.newest_bar_stamp(params.x, params.tf),
        reader.newest_bar_stamp(params.y, params.tf),
    )


def newest_1s_bar_ms(reader: Reader, params: PairParams) -> int | None:
    """Open time of the newest 1s bar of either leg (the newest-trade time without a feed)."""
    best: int | None = None
    for sym in (params.x, params.y):
        try:
            stamp = reader.newest_bar_stamp(sym, "1s")
        except UnknownSymbolError:
            continue
        if stamp is not None:
            best = max(best or 0, stamp[0])
    return best


class PageViews:
    """The shared reads of the page's fragments (one per process, or one per session)."""

    def __init__(
        self,
        *,
        shared: bool = True,
        opener: Callable[[str], Reader] = open_reader,
        clock: Callable[[], float] | None = None,
    ) -> None:
        self.shared = shared
        #: the live pair views' rate limit on computations (``ViewCache.get``'s
        #: ``min_interval_s``); without sharing, every refresh computes, as before
        self.recompute_s = RECOMPUTE_S if shared else 0.0
        kwargs: dict[str, Any] = {"fresh_s": FRESH_S if shared else 0.0}
        if clock is not None:
            kwargs["clock"] = clock
        self.cache = ViewCache(**kwargs)
        self._reader = SharedReader(opener)
        self._boards: dict[tuple[str, int], PairBoard] = {}
        self._boards_lock = threading.Lock()
        self._board_kwargs = kwargs

    def _read(self, db: tuple[str, int], fn: Callable[[Reader], Any]) -> Any:
        with self._reader.lease(*db) as reader:
            return fn(reader)

    def pair(self, db_path: str, generation: int, params: PairParams) -> Snapshot[PairView]:
        """The pair's analytics for ``params`` at the newest data version.

        Raises ``UnknownSymbolError`` while a leg has no data yet. Derive chart payloads and
        the like with ``snapshot.derive(name, ...)``: once per version for every session.
        """
        db = (db_path, generation)

        def compute() -> PairView:
            frame = self._read(
                db, lambda r: r.pair_frame(params.x, params.y, params.tf, limit=params.read_bars)
            )
            return compute_pair(frame, params)

        return self.cache.get(
            ("pair", db, params),
            lambda: self._read(db, lambda r: pair_version(r, params)),
            compute,
            min_interval_s=self.recompute_s,
        )

    def read(self, db_path: str, generation: int, fn: Callable[[Reader], Any]) -> Any:
        """``fn(reader)`` on this object's reader (for a snapshot's derived reads)."""
        return self._read((db_path, generation), fn)

    def alerts(self, db_path: str, generation: int) -> pd.DataFrame:
        """The newest alert events (for toasts), read at most every ``ALERTS_FRESH_S``."""
        db = (db_path, generation)
        return self.cache.get(
            ("alerts", db),
            lambda: None,
            lambda: self._read(db, lambda r: r.alert_events(limit=ALERT_TOAST_LIMIT)),
            fresh_s=ALERTS_FRESH_S if self.shared else 0.0,
            max_age_s=ALERTS_FRESH_S,
        ).value

    def health(self, db_path: str, generation: int) -> Health:
        """Other collectors' published status and the gaps, read at most every
        ``HEALTH_FRESH_S``."""
        db = (db_path, generation)

        def compute() -> Health:
            return self._read(
                db, lambda r: Health(published=r.feed_status(max_age_s=120), gaps=r.gaps())
            )

        return self.cache.get(
            ("health", db),
            lambda: None,
            compute,
            fresh_s=HEALTH_FRESH_S if self.shared else 0.0,
            max_age_s=HEALTH_FRESH_S,
        ).value

    def board(self, db_path: str, generation: int) -> PairBoard:
        """The watched pairs' snapshots of one database: the alert monitor and every
        session's Watchlist tab share it, so N watched pairs cost N computations per new bar
        whatever the number of tabs (see ``service.watch.PairBoard``)."""
        key = (str(db_path), int(generation))
        with self._boards_lock:
            board = self._boards.get(key)
            if board is None:
                board = self._boards[key] = PairBoard(**self._board_kwargs)
                while len(self._boards) > MAX_BOARDS:
                    self._boards.pop(next(iter(self._boards)))
            return board

    def close(self) -> None:
        self.cache.clear()
        with self._boards_lock:
            self._boards.clear()
        self._reader.close()
