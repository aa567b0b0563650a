"""The universe scan in the background: one scan at a time, progress, and the last result kept.

The page starts a scan and polls :meth:`ScanJob.status`; leaving the tab or reloading the page
does not stop it. The last finished scan of a database (:class:`LastScan`: its best rows with
their z-score sparklines, and its time) is kept for every session of the process and, for a
SQLite file, saved beside it (``<file>.last-scan.parquet`` + ``.json``), so a restarted page
shows it at once. The worker is a daemon thread with one way to stop (:meth:`ScanJob.stop`,
checked at every progress step) and never touches Streamlit.
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Generic, TypeVar

import numpy as np
import pandas as pd

from service.universe import ScanRequest, ScanRun, run_scan

S = TypeVar("S")

#: Rows of a scan kept for the page (best first): the filters (q, p, liquidity) choose among them.
KEEP_ROWS = 2000
#: Points of each kept row's z-score sparkline (the last bars of the lookback).
SPARK_BARS = 120


def spread_sparklines(prices: pd.DataFrame, table: pd.DataFrame) -> list[list[float]]:
    """Each row's residual z-score ``(x − α − β y) / sd`` over the last ``SPARK_BARS`` bars."""
    out = []
    for x, y, a, b in zip(table["x"], table["y"], table["alpha"], table["beta"], strict=True):
        e = prices[str(x)].to_numpy() - a - b * prices[str(y)].to_numpy()
        sd = e.std(ddof=1)
        z = e[-SPARK_BARS:] / sd if sd > 0 else np.zeros(min(SPARK_BARS, e.size))
        out.append([round(float(v), 3) for v in z])
    return out


@dataclass(frozen=True, slots=True)
class LastScan:
    """What the page shows of a finished scan; ``table`` holds the best ``KEEP_ROWS`` rows
    with a ``zscore`` sparkline column. Times in UTC ms; ``seconds`` is the wall time."""

    db: str
    tf: str
    finished_ms: int
    symbols: int
    pairs_tested: int
    nobs: int
    formation_bars: int
    validation_bars: int
    lags: int
    seconds: float
    skipped: tuple[tuple[str, str], ...]
    table: pd.DataFrame

    @classmethod
    def from_run(cls, db: str, tf: str, finished_ms: int, run: ScanRun) -> LastScan:
        top = run.table.head(KEEP_ROWS).astype({"x": str, "y": str}).reset_index(drop=True)
        top["zscore"] = spread_sparklines(run.prices, top)
        res = run.scan
        return cls(
            db, tf, finished_ms, len(res.symbols), res.pairs_tested, res.nobs,
            res.formation_bars, res.validation_bars, res.lags, run.seconds["total"],
            tuple(run.skipped), top,
        )  # fmt: skip


def last_scan_path(db: str) -> Path | None:
    """Where the last scan of ``db`` is saved: beside a SQLite file; None for PostgreSQL."""
    from storage.backend import backend_of, sqlite_path

    if backend_of(db) != "sqlite":
        return None
    path = sqlite_path(db)
    return path.with_name(path.name + ".last-scan.parquet")


def save_last(last: LastScan, path: Path) -> None:
    """Write the table (parquet) and the rest (JSON), each replaced atomically."""
    meta = {f.name: getattr(last, f.name) for f in fields(last) if f.name != "table"}
    tmp = path.with_name(path.name + ".tmp")
    last.table.to_parquet(tmp, index=False)
    tmp.replace(path)
    side = path.with_suffix(".json")
    tmp = side.with_name(side.name + ".tmp")
    tmp.write_text(json.dumps(meta))
    tmp.replace(side)


def load_last(path: Path) -> LastScan | None:
    """The saved last scan, or None if there is none (or it cannot be read: a cache)."""
    try:
        meta = json.loads(path.with_suffix(".json").read_text())
        table = pd.read_parquet(path)
        meta["skipped"] = tuple(tuple(s) for s in meta["skipped"])
        table["zscore"] = [list(z) for z in table["zscore"]]
        return LastScan(**meta, table=table)
    except (OSError, ValueError, KeyError, TypeError):
        return None


class _Stopped(Exception):
    """Raised from the progress callback to end a scan the user stopped."""


@dataclass(frozen=True, slots=True)
class ScanStatus:
    """A snapshot of the job. ``state``: idle, running, done, failed or stopped.

    ``stage`` / ``done`` / ``total`` / ``eta_s`` describe the running stage (read, moments,
    pairs, recheck); ``result`` is the last *finished* scan (kept while a new one runs) and
    ``finished_ms`` its end time (UTC ms); ``error`` the one-line reason of a failure.
    ``run`` is the full result of the last scan of this process (every pair, the prices).
    """

    state: str = "idle"
    stage: str = ""
    done: int = 0
    total: int = 0
    eta_s: float | None = None
    started_ms: int | None = None
    finished_ms: int | None = None
    error: str = ""
    request: ScanRequest | None = None
    db: str = ""
    result: LastScan | None = None
    run: ScanRun | None = None


class _Job(Generic[S]):
    """One daemon worker at a time, polled through an immutable status snapshot; one way to
    stop: the run's Event, which the worker checks at every progress step."""

    def __init__(self, status: S, clock: Callable[[], float]) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._status = status
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def status(self) -> S:
        with self._lock:
            return self._status

    def _spawn(self, target: Callable[..., None], args: tuple, name: str) -> None:
        """Start ``target(*args, stop)`` in a new daemon thread (call with the lock held)."""
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=target, args=(*args, self._stop), name=name, daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        """Ask the running job to stop at its next progress step."""
        self._stop.set()

    def join(self, timeout_s: float | None = None) -> None:
        t = self._thread
        if t is not None:
            t.join(timeout_s)


class ScanJob(_Job[ScanStatus]):
    """Runs :func:`service.universe.run_scan` in a daemon thread; one scan at a time."""

    def __init__(self, *, clock: Callable[[], float] = time.time) -> None:
        super().__init__(ScanStatus(), clock)
        self._stage_started = 0.0

    def last(self, db: str) -> LastScan | None:
        """The last finished scan of ``db``: this process's, else the one saved beside it."""
        with self._lock:
            mine = self._status.result
        if mine is not None and mine.db == db:
            return mine
        path = last_scan_path(db)
        return None if path is None else load_last(path)

    def start(self, db: str, req: ScanRequest) -> bool:
        """Start a scan of ``db``; False (and nothing started) if one is running."""
        with self._lock:
            if self._status.state == "running":
                return False
            now_ms = int(self._clock() * 1000)
            self._status = replace(
                self._status,
                state="running",
                stage="read",
                done=0,
                total=0,
                eta_s=None,
                started_ms=now_ms,
                error="",
                request=req,
                db=db,
            )
            self._spawn(self._run, (db, req), "universe-scan")
        return True

    def _progress(self, stop: threading.Event) -> Callable[[str, int, int], None]:
        def progress(stage: str, done: int, total: int) -> None:
            if stop.is_set():
                raise _Stopped
            now = self._clock()
            with self._lock:
                if stage != self._status.stage:
                    self._stage_started = now
                spent = now - self._stage_started
                eta = spent / done * (total - done) if done and spent > 0 else None
                self._status = replace(self._status, stage=stage, done=done, total=total, eta_s=eta)

        return progress

    def _run(self, db: str, req: ScanRequest, stop: threading.Event) -> None:
        try:
            result = run_scan(db, req, progress=self._progress(stop))
        except _Stopped:
            self._finish("stopped", "")
        except Exception as exc:  # the page shows any failure as one line; the worker lives on
            self._finish("failed", " ".join(str(exc).split()) or type(exc).__name__)
        else:
            finished_ms = int(self._clock() * 1000)
            last = LastScan.from_run(db, req.tf, finished_ms, result)
            path = last_scan_path(db)
            if path is not None:
                with contextlib.suppress(OSError):  # a cache: a read-only folder is no failure
                    save_last(last, path)
            self._finish("done", "", last, result)

    def _finish(
        self, state: str, error: str, last: LastScan | None = None, run: ScanRun | None = None
    ) -> None:
        with self._lock:
            more = {} if last is None else {"result": last, "run": run}
            finished = {} if last is None else {"finished_ms": last.finished_ms}
            self._status = replace(
                self._status, state=state, error=error, eta_s=None, **more, **finished
            )


@dataclass(frozen=True, slots=True)
class FetchStatus:
    """A snapshot of the kline fetch. ``state``: idle, running, done, failed or stopped.

    ``done`` / ``total`` count symbols; ``rows`` the klines stored so far; ``results`` the
    per-symbol outcomes (:class:`ingestion.klines.SymbolFetch`) of the current or last run.
    """

    state: str = "idle"
    done: int = 0
    total: int = 0
    eta_s: float | None = None
    rows: int = 0
    error: str = ""
    finished_ms: int | None = None
    results: tuple = ()


class FetchJob(_Job[FetchStatus]):
    """Runs :class:`ingestion.klines.KlineFetcher` in a daemon thread through the page's writer.

    SQLite allows one writer per file and the page's service holds it, so the fetch writes
    through that writer (its writes are serialised by the writer's own lock).
    """

    def __init__(self, *, clock: Callable[[], float] = time.time) -> None:
        super().__init__(FetchStatus(), clock)

    def start(
        self,
        db: str,
        writer: object,
        rest_base: str,
        start_ms: int,
        end_ms: int,
        symbols: tuple[str, ...] | None = None,
    ) -> bool:
        """Fetch the missing 1m klines of ``symbols`` (None: the exchange's universe)."""
        with self._lock:
            if self._status.state == "running":
                return False
            self._status = FetchStatus(state="running")
            self._spawn(
                self._run, (db, writer, rest_base, start_ms, end_ms, symbols), "kline-fetch"
            )
        return True

    def _on_progress(self, p) -> None:
        with self._lock:
            self._status = replace(
                self._status,
                done=p.done,
                total=p.total,
                eta_s=p.eta_s,
                rows=self._status.rows + p.last.rows,
                results=(*self._status.results, p.last),
            )

    def _run(self, db, writer, rest_base, start_ms, end_ms, symbols, stop) -> None:
        from ingestion.klines import KlineFetcher, universe_symbols
        from ingestion.rest import RestClient

        try:
            rest = RestClient(rest_base, headroom=0.5, stop=stop)
            info = rest.exchange_info()  # adopts the weight limit
            syms = list(symbols) if symbols else universe_symbols(info)
            with self._lock:
                self._status = replace(self._status, total=len(syms))
            fetcher = KlineFetcher(rest, db, stop=stop, progress=self._on_progress)
            fetcher.run(syms, start_ms, end_ms, writer=writer)
        except Exception as exc:  # one line for the page; the worker never dies noisily
            state, error = "failed", " ".join(str(exc).split()) or type(exc).__name__
        else:
            state, error = ("stopped" if stop.is_set() else "done"), ""
        with self._lock:
            self._status = replace(
                self._status, state=state, error=error, eta_s=None,
                finished_ms=int(self._clock() * 1000),
            )  # fmt: skip
