"""Alerts in a headless collector: the monitor and the delivery worker beside the feed.

``python -m ingestion --alerts FILE.toml`` builds one :class:`AlertRuntime` on the collector's
writer: the same ``AlertMonitor`` and ``DeliveryWorker`` the dashboard runs, so alerts reach
their sinks with no browser open. No Streamlit here.
"""

from __future__ import annotations

from collections.abc import Mapping

from service.alertfile import AlertConfig, AlertFileError, apply_config, load_config
from service.alerts import AlertMonitor
from service.delivery import DeliveryWorker, RetryPolicy
from service.watchlist import wanted_symbols as _wanted
from service.watchlist import watched_symbols
from storage import StorageError, Writer, open_reader

__all__ = ["AlertFileError", "AlertRuntime", "load_config", "wanted_symbols", "watched_symbols"]


def wanted_symbols(db: str) -> list[str]:
    """Every symbol the stored watchlist or an enabled alert rule of ``db`` needs."""
    with open_reader(db) as reader:
        return _wanted(reader)


class AlertRuntime:
    """The alert monitor and the delivery worker on one writer; ``start()``/``stop()``."""

    def __init__(
        self,
        writer: Writer,
        db: str,
        *,
        policy: RetryPolicy | None = None,
        environ: Mapping[str, str] | None = None,
        poll_s: float = 0.25,
    ) -> None:
        self.monitor = AlertMonitor(writer, db, poll_s=poll_s)
        self.worker = DeliveryWorker(writer, db, policy=policy, environ=environ, poll_s=poll_s)
        self.monitor.on_fired = self.worker.poke

    @staticmethod
    def apply(writer: Writer, db: str, config: AlertConfig) -> dict[str, int]:
        """Store the file's pairs, rules and sinks (see ``service.alertfile.apply_config``)."""
        try:
            with open_reader(db) as reader:
                return apply_config(writer, reader, config)
        except (StorageError, ValueError) as exc:
            raise AlertFileError(f"cannot store the alerts file's entries: {exc}") from None

    def start(self) -> AlertRuntime:
        self.monitor.start()
        self.worker.start()
        return self

    def stop(self, timeout_s: float = 5.0) -> None:
        self.monitor.stop(timeout_s)
        self.worker.stop(timeout_s)

    def status_line(self) -> str:
        m, d = self.monitor.stats, self.worker.stats
        line = (
            f"alerts: {m.passes} passes, {m.fired} fired; deliveries {d.delivered} delivered, "
            f"{d.retried} retried, {d.failed} failed"
        )
        if m.last_error or d.last_error:
            line += f"; last error: {m.last_error or d.last_error}"
        return line
