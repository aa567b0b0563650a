"""Retention in the background: prune old ticks and 1s bars in short transactions."""

from __future__ import annotations

import logging
import threading

from storage.api import Writer
from storage.config import StorageSettings
from storage.errors import StorageError

log = logging.getLogger(__name__)


class RetentionJob:
    """A daemon thread that calls :meth:`Writer.prune` every ``retention_interval_s``.

    Each pruned chunk is its own short transaction, so ingestion batches interleave with it.
    Stop with :meth:`stop` (sets an Event; the current chunk finishes first).
    """

    def __init__(self, writer: Writer, settings: StorageSettings):
        self._writer = writer
        self._settings = settings
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="retention", daemon=True)
        self.last_result: dict[str, int] | None = None
        self.last_error: str | None = None
        self.passes = 0

    def start(self) -> RetentionJob:
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.is_set():
            self.run_once()
            self._stop.wait(self._settings.retention_interval_s)

    def run_once(self) -> None:
        try:
            self.last_result = self._writer.prune(
                ticks_keep_s=self._settings.ticks_keep_s,
                bars_1s_keep_s=self._settings.bars_1s_keep_s,
                should_stop=self._stop.is_set,
            )
            self.last_error = None
        except StorageError as exc:
            self.last_error = str(exc)
            log.warning("retention pass failed: %s", exc)
        self.passes += 1

    def stop(self, timeout_s: float = 5.0) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout_s)
