"""The one storage writer: a bounded queue of ticks and commands, committed in batches.

Feed threads ``put`` ticks (or whole REST pages) and ``submit`` storage commands (record
a gap, update it, save feed status). One thread takes everything queued at once, commits
ticks in transactions of at most ``batch_size``, and runs each command only after the
ticks queued before it are committed, so a gap is marked "repaired" only once its ticks
are on disk. A full queue blocks the producers (back-pressure reaches the socket and the
exchange), and the time they spent blocked is reported. Memory is bounded: at most
``queue_size`` items, each a tick or a list of at most 1000 ticks (a burst of frames
or a REST page).

One bad record never stops more than itself (issue 14): when storage refuses a batch for
a data reason (any error that is not a ``StorageError``, or a DB-API integrity/data
error), the batch is split by symbol and then halved until the refused ticks are alone;
they are rejected (counted per symbol, logged once per reason) and every other tick is
stored. A ``StorageError`` (disk full, locked, connection lost) keeps the batch and
retries it; ``WriterStats.failing_s`` says for how long nothing could be stored, so the
feeds' status shows it. When ``stop`` cannot drain in time, the ticks not stored are
handed to ``spill`` (a side file that the next start stores) and named in the log.
"""

from __future__ import annotations

import collections
import itertools
import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from storage import IdKindConflictError, StorageError
from storage.records import Tick

__all__ = ["StorageWriter", "TickWriter", "WriterStats"]

log = logging.getLogger(__name__)


class StorageWriter(Protocol):
    """The part of ``storage.Writer`` this module uses."""

    def write_ticks(self, ticks: Sequence[Tick]) -> int: ...


@dataclass(frozen=True, slots=True)
class WriterStats:
    """A snapshot of the writer, for the status display."""

    queued: int  # items waiting (ticks or pages)
    capacity: int
    high_water: int  # most items ever waiting at once
    blocked_s: float  # total time producers waited for space: back-pressure
    committed: int  # ticks newly stored (duplicates not counted)
    offered: int  # ticks handed to storage, duplicates included
    batches: int
    last_commit_ms: int | None  # wall clock of the last commit
    last_batch_ms: float  # duration of the last commit, ms
    errors: int  # failed commits (retried)
    last_error: str
    running: bool
    #: Seconds since commits started failing without one success since (0 = storing).
    failing_s: float = 0.0
    rejected: int = 0  # ticks storage refused for a data reason (dropped, others stored)
    #: After a ``stop`` that could not drain: what was not stored, and where it went.
    unstored: str = ""
    #: Seconds the running commit has taken so far (0 = none running): a wedged database.
    commit_running_s: float = 0.0

    @property
    def fill(self) -> float:
        """Queue fill fraction, 0..1."""
        return self.queued / self.capacity if self.capacity else 0.0


_STOP = object()


class TickWriter:
    """Bounded queue → one ``storage.Writer`` (see the module docstring).

    Parameters
    ----------
    storage : the storage writer (thread-safe ``storage.Writer``).
    queue_size : capacity in items.
    batch_size : most ticks per transaction.
    batch_latency_s : how long the first tick of a batch waits for company, in seconds.
    retry_s : wait before retrying a commit that raised ``StorageError``, in seconds.
    on_commit : called in the writer thread after each commit with the ticks and the
        wall-clock time (s) of the commit; used by the latency benchmark.
    on_symbol_error : called when storage refuses a symbol's ticks for good
        (``IdKindConflictError``: mixing id kinds); that symbol's ticks are dropped, the
        others are written.
    spill : called by ``stop`` with the ticks it could not store (a persisting storage
        error); returns where it put them (a side file the next start stores). Without it,
        or when it fails, they are named in the log as lost.
    """

    def __init__(
        self,
        storage: StorageWriter,
        *,
        queue_size: int = 20_000,
        batch_size: int = 5_000,
        batch_latency_s: float = 0.05,
        retry_s: float = 1.0,
        on_commit: Callable[[list[Tick], float], None] | None = None,
        on_symbol_error: Callable[[str, Exception], None] | None = None,
        spill: Callable[[list[Tick]], str] | None = None,
    ) -> None:
        if queue_size < 1 or batch_size < 1:
            raise ValueError("queue_size and batch_size must be >= 1")
        self._storage = storage
        self._capacity = queue_size
        self._batch_size = batch_size
        self._latency_s = batch_latency_s
        self._retry_s = retry_s
        self._on_commit = on_commit
        self._on_symbol_error = on_symbol_error
        self._items: collections.deque[Any] = collections.deque()
        self._queued_ticks = 0  # ticks in self._items (pages count their length)
        self._cond = threading.Condition(threading.Lock())
        self._writer_idle = False  # the writer waits for a first item: producers notify
        self._stopping = False
        self._abandon = threading.Event()
        self._thread: threading.Thread | None = None
        self._stored_by_symbol: collections.Counter[str] = collections.Counter()
        # Ticks refused in a row since the symbol's last stored tick: a symbol whose every tick
        # storage refuses is storing nothing, and its feed must not say "live" (issue 14).
        self._refused_in_a_row: collections.Counter[str] = collections.Counter()
        self._high_water = 0
        self._blocked_s = 0.0
        self._committed = 0
        self._offered = 0
        self._batches = 0
        self._last_commit_ms: int | None = None
        self._last_batch_ms = 0.0
        self._errors = 0
        self._last_error = ""
        self._dead_symbols: set[str] = set()
        self._spill = spill
        self._unstored: list[Tick] = []  # batches given up on by an abandoned stop
        self._unstored_report = ""
        self._failing_since: float | None = None  # monotonic time of the first failure
        self._commit_since: float | None = None  # monotonic start of the running commit
        self._in_flight = 0  # ticks of the running commit
        self._rejected_by_symbol: collections.Counter[str] = collections.Counter()
        self._reject_reasons: dict[str, collections.Counter[str]] = {}
        self._idle = threading.Event()  # clear while a commit runs
        self._idle.set()

    # --- life --------------------------------------------------------------------------------
    def start(self) -> TickWriter:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="ingest-writer", daemon=True)
            self._thread.start()
        return self

    def stop(self, timeout_s: float | None = 30.0) -> bool:
        """Commit everything queued, then end the thread. ``False`` if it did not finish in time
        (a storage error that persists): what is still queued is then reported lost."""
        with self._cond:
            self._stopping = True
            self._items.append(_STOP)
            self._cond.notify_all()
        if self._thread is None:
            return True
        self._thread.join(timeout_s)
        if self._thread.is_alive():
            self._abandon.set()
            with self._cond:
                self._cond.notify_all()
            self._thread.join(5.0)
            self._report_unstored()
            return False
        return True

    def _report_unstored(self) -> None:
        """Say exactly which ticks ``stop`` could not store, and spill them if it can."""
        with self._cond:
            ticks = list(self._unstored)
            commands = 0
            for item in self._items:
                if type(item) is list:
                    ticks.extend(item)
                elif type(item) is Tick:
                    ticks.append(item)
                elif item is not _STOP:
                    commands += 1
            self._items.clear()
            self._unstored = []
        what = _describe_ticks(ticks)
        if commands:
            what += f"; {commands} status/gap updates not run"
        if self._commit_since is not None:  # the thread is still stuck in a commit
            what += f"; a commit of {self._in_flight} ticks never returned (stored or not)"
        if not ticks or self._spill is None:
            report = f"not stored: {what}"
        else:
            try:
                where = self._spill(ticks)
            except Exception as exc:  # a full disk may refuse the side file too: say so
                report = f"LOST (the side file failed: {exc}): {what}"
            else:
                report = f"not stored: {what}; saved to {where}, stored at the next start"
        self._unstored_report = report
        log.error("writer did not drain in time; %s", report)

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    # --- producers ---------------------------------------------------------------------------
    def put(self, tick: Tick) -> None:
        """Queue one tick; blocks while the queue is full."""
        self._put_item(tick, 1)

    def put_many(self, ticks: list[Tick]) -> None:
        """Queue a list of ticks *of one symbol* (a burst of frames, a REST page) as one item.

        The list is taken over: do not modify it afterwards."""
        if ticks:
            self._put_item(ticks, len(ticks))

    def submit(self, command: Callable[[Any], Any]) -> None:
        """Run ``command(storage)`` in the writer thread after everything queued before it is
        committed. Exceptions are logged, not raised."""
        self._put_item(command, 0)

    def _put_item(self, item: Any, ticks: int) -> None:
        with self._cond:
            if len(self._items) >= self._capacity:
                self._wait_for_space()
            self._items.append(item)
            self._queued_ticks += ticks
            if self._writer_idle or self._queued_ticks >= self._batch_size:
                self._cond.notify_all()

    def yield_to_commit(self, timeout_s: float = 1.0) -> None:
        """If a commit is running, wait (GIL released) until it ends; producers call this
        between bursts of frames.

        Why: CPython's sqlite3 releases the GIL around every row it steps, and takes it
        back only when the other threads let go. A producer thread that is busy parsing
        frames lets go only every switch interval (5 ms), so a 5,000-row commit that takes
        15 ms alone takes 150 ms beside it, and both threads spend the difference waiting
        on each other. Pausing the producer for the commit (its frames wait in the kernel's
        socket buffer) is faster for both. See ``FeedSettings.yield_to_commits``.
        """
        if not self._idle.is_set():
            self._idle.wait(timeout_s)

    def _wait_for_space(self) -> None:
        # Called with the lock held. A stopping writer still drains, so waiting is safe.
        started = time.monotonic()
        while len(self._items) >= self._capacity and not self._abandon.is_set():
            self._cond.notify_all()
            self._cond.wait(0.5)
        self._blocked_s += time.monotonic() - started

    # --- status ------------------------------------------------------------------------------
    def stats(self) -> WriterStats:
        with self._cond:
            queued = len(self._items) - (1 if self._stopping and _STOP in self._items else 0)
            return WriterStats(
                queued=queued,
                capacity=self._capacity,
                high_water=self._high_water,
                blocked_s=round(self._blocked_s, 3),
                committed=self._committed,
                offered=self._offered,
                batches=self._batches,
                last_commit_ms=self._last_commit_ms,
                last_batch_ms=round(self._last_batch_ms, 2),
                errors=self._errors,
                last_error=self._last_error,
                running=self.running,
                failing_s=0.0
                if self._failing_since is None
                else round(time.monotonic() - self._failing_since, 3),
                rejected=sum(self._rejected_by_symbol.values()),
                unstored=self._unstored_report,
                commit_running_s=0.0
                if self._commit_since is None
                else round(time.monotonic() - self._commit_since, 3),
            )

    def stored(self, symbol: str) -> int:
        """Ticks of ``symbol`` this writer has handed to storage and seen committed
        (duplicates of stored ticks included: they are stored too)."""
        return self._stored_by_symbol.get(symbol, 0)

    def refused_in_a_row(self, symbol: str) -> int:
        """Ticks of ``symbol`` storage refused since it last stored one (0 once one is stored)."""
        with self._cond:
            return self._refused_in_a_row.get(symbol, 0)

    def rejected(self, symbol: str) -> dict[str, int]:
        """Ticks of ``symbol`` storage refused, by reason (e.g. ``storage_OverflowError``)."""
        with self._cond:
            return dict(self._reject_reasons.get(symbol, {}))

    # --- the writer thread -------------------------------------------------------------------
    def _take(self) -> tuple[collections.deque[Any], bool]:
        """Wait for items, give the batch ``batch_latency_s`` to fill, take them all."""
        with self._cond:
            while not self._items:
                self._writer_idle = True
                self._cond.wait()
            self._writer_idle = False
            if self._latency_s > 0:
                deadline = time.monotonic() + self._latency_s
                while not (
                    self._stopping
                    or self._queued_ticks >= self._batch_size
                    or len(self._items) >= self._capacity  # producers are waiting
                ):
                    left = deadline - time.monotonic()
                    if left <= 0:
                        break
                    self._cond.wait(left)
            items, self._items = self._items, collections.deque()
            self._queued_ticks = 0
            self._high_water = max(self._high_water, len(items))
            self._cond.notify_all()  # room for blocked producers
            return items, self._stopping

    def _run(self) -> None:
        pending: list[list[Tick]] = []  # lists of one symbol each, in queue order
        count = 0
        batch_size = self._batch_size
        while True:
            items, _ = self._take()
            stop_seen = False
            for item in items:
                if type(item) is list:
                    pending.append(item)
                    count += len(item)
                    if count >= batch_size:
                        self._commit(pending)
                        pending, count = [], 0
                elif type(item) is Tick:
                    pending.append([item])
                    count += 1
                    if count >= batch_size:
                        self._commit(pending)
                        pending, count = [], 0
                elif item is _STOP:
                    stop_seen = True
                else:
                    if pending:
                        self._commit(pending)
                        pending, count = [], 0
                    self._run_command(item)
            if pending:
                self._commit(pending)
                pending, count = [], 0
            if stop_seen or self._abandon.is_set():
                return

    def _run_command(self, command: Callable[[Any], Any]) -> None:
        try:
            command(self._storage)
        except Exception as exc:  # a failed status/gap write must not stop ticks
            self._note_error(f"storage command failed: {exc}")

    def _note_error(self, message: str) -> None:
        log.error("%s", message)
        with self._cond:
            self._errors += 1
            self._last_error = message

    def _commit(self, groups: list[list[Tick]]) -> None:
        if self._dead_symbols:
            groups = [g for g in groups if g[0].symbol not in self._dead_symbols]
            if not groups:
                return
        ticks = groups[0] if len(groups) == 1 else list(itertools.chain.from_iterable(groups))
        while True:
            if self._abandon.is_set():  # stop gave up: keep them for the report and spill
                with self._cond:
                    self._unstored.extend(ticks)
                return
            started = time.perf_counter()
            self._idle.clear()
            self._commit_since, self._in_flight = time.monotonic(), len(ticks)
            try:
                inserted = self._storage.write_ticks(ticks)
            except Exception as exc:
                self._commit_since = None
                self._idle.set()
                if _refuses_data(exc):  # this input, not the database: isolate it
                    self._isolate(groups, exc)
                    return
                # The batch was rolled back; keep it and try again (disk full, locked ...).
                with self._cond:
                    if self._failing_since is None:
                        self._failing_since = time.monotonic()
                self._note_error(f"commit of {len(ticks)} ticks failed, retrying: {exc}")
                self._abandon.wait(self._retry_s)
                continue
            finally:
                self._commit_since = None
                self._idle.set()
            self._account(groups, ticks, inserted, started)
            return

    def _account(
        self, groups: list[list[Tick]], ticks: list[Tick], inserted: int, started: float
    ) -> None:
        now = time.time()
        counts: collections.Counter[str] = collections.Counter()
        for group in groups:
            counts[group[0].symbol] += len(group)
        with self._cond:
            self._committed += inserted
            self._offered += len(ticks)
            self._batches += 1
            self._last_commit_ms = int(now * 1000)
            self._last_batch_ms = (time.perf_counter() - started) * 1000
            self._stored_by_symbol.update(counts)
            for symbol in counts:
                self._refused_in_a_row.pop(symbol, None)
            self._failing_since = None
        if self._on_commit is not None:
            try:
                self._on_commit(ticks, now)
            except Exception as exc:  # a monitoring hook must not stop the writer
                self._note_error(f"on_commit hook failed: {exc!r}")

    def _isolate(self, groups: list[list[Tick]], exc: Exception) -> None:
        """Storage refused the batch for a data reason: write symbol by symbol, then halves,
        until the refused ticks are alone; reject those, store the rest."""
        by_symbol: dict[str, list[list[Tick]]] = {}
        for group in groups:
            by_symbol.setdefault(group[0].symbol, []).append(group)
        if len(by_symbol) > 1:
            for group in by_symbol.values():
                self._commit(group)
            return
        (symbol,) = by_symbol
        if isinstance(exc, IdKindConflictError):  # the whole symbol, for good
            self._dead_symbols.add(symbol)
            self._note_error(f"{symbol}: storage refused its ticks, feed stopped: {exc}")
            if self._on_symbol_error is not None:
                self._on_symbol_error(symbol, exc)
            return
        ticks = list(itertools.chain.from_iterable(groups))
        if len(ticks) == 1:
            self._reject(ticks[0], exc)
            return
        half = len(ticks) // 2
        self._commit([ticks[:half]])
        self._commit([ticks[half:]])

    def _reject(self, tick: Tick, exc: Exception) -> None:
        reason = f"storage_{type(exc).__name__}"
        with self._cond:
            self._rejected_by_symbol[tick.symbol] += 1
            self._refused_in_a_row[tick.symbol] += 1
            reasons = self._reject_reasons.setdefault(tick.symbol, collections.Counter())
            reasons[reason] += 1
            first = reasons[reason] == 1
            self._last_error = f"{tick.symbol}: storage refused tick {tick.trade_id}: {exc}"
        if first:  # once per symbol and reason; the counter keeps counting
            log.error(
                "%s: storage refused tick %s (%s: %s); rejected, the other ticks are stored",
                tick.symbol,
                tick.trade_id,
                type(exc).__name__,
                str(exc)[:160],
            )


def _refuses_data(exc: BaseException) -> bool:
    """Whether storage refused the input itself (retrying cannot help), not the database.

    Any error that is not a ``StorageError`` comes from checking or converting the ticks
    (``ValueError``, ``OverflowError`` for an id past int64 ...); a ``StorageError`` caused
    by a DB-API integrity or data error (a constraint, a value out of range) is one too.
    Everything else (disk full, locked, connection lost) is the database's and retried.
    """
    if not isinstance(exc, StorageError):
        return True
    cause = exc.__cause__
    return cause is not None and any(
        c.__name__ in ("IntegrityError", "DataError") for c in type(cause).__mro__
    )


def _describe_ticks(ticks: Sequence[Tick]) -> str:
    """``"12 ticks: BTCUSDT 7 (ids 100..106), ETHUSDT 5 (ids 40..44)"``."""
    by_symbol: dict[str, list[int]] = {}
    for t in ticks:
        by_symbol.setdefault(t.symbol, []).append(t.trade_id)
    parts = [
        f"{symbol} {len(ids)} (ids {min(ids)}..{max(ids)})" for symbol, ids in by_symbol.items()
    ]
    return f"{len(ticks)} ticks" + (": " + ", ".join(parts) if parts else "")
