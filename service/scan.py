"""The universe scan in the background: one scan at a time, progress, and the last result kept.

The page starts a scan and polls :meth:`ScanJob.status`; leaving the tab or reloading the page
does not stop it, and the last finished scan stays available (with its time) for any session
of the process. The worker is a daemon thread with one way to stop (:meth:`ScanJob.stop`,
checked at every progress step) and never touches Streamlit.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace

from analytics.universe import ScanRequest, ScanRun, run_scan


class _Stopped(Exception):
    """Raised from the progress callback to end a scan the user stopped."""


@dataclass(frozen=True, slots=True)
class ScanStatus:
    """A snapshot of the job. ``state``: idle, running, done, failed or stopped.

    ``stage`` / ``done`` / ``total`` / ``eta_s`` describe the running stage (read, moments,
    pairs, recheck); ``result`` is the last *finished* scan (kept while a new one runs) and
    ``finished_ms`` its end time (UTC ms); ``error`` the one-line reason of a failure.
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
    result: ScanRun | None = None


class ScanJob:
    """Runs :func:`analytics.universe.run_scan` in a daemon thread; one scan at a time."""

    def __init__(self, *, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._status = ScanStatus()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._stage_started = 0.0

    def status(self) -> ScanStatus:
        with self._lock:
            return self._status

    def start(self, db: str, req: ScanRequest) -> bool:
        """Start a scan of ``db``; False (and nothing started) if one is running."""
        with self._lock:
            if self._status.state == "running":
                return False
            self._stop = threading.Event()
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
            self._thread = threading.Thread(
                target=self._run, args=(db, req, self._stop), name="universe-scan", daemon=True
            )
            self._thread.start()
        return True

    def stop(self) -> None:
        """Ask the running scan to stop at its next progress step."""
        self._stop.set()

    def join(self, timeout_s: float | None = None) -> None:
        t = self._thread
        if t is not None:
            t.join(timeout_s)

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
            self._finish("done", "", result)

    def _finish(self, state: str, error: str, result: ScanRun | None = None) -> None:
        with self._lock:
            self._status = replace(
                self._status,
                state=state,
                error=error,
                eta_s=None,
                **(
                    {"result": result, "finished_ms": int(self._clock() * 1000)}
                    if result is not None
                    else {}
                ),
            )
