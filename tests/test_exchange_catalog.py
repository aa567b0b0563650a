"""The exchange's symbol list is read in the background: no page run waits for the network.

A REST endpoint that hangs (a local server on port 0 that accepts and never finishes an
answer: one byte a second, so no client timeout ends the wait) must not hold up the sidebar:
a full rerun of the page completes and says the symbols are being checked. The catalog itself
is tested against the real local Binance look-alike: the first answer, a refresh after the
time-to-live, and a failure that keeps the last known list.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Iterator

import pytest

from service import registry
from service.exchange import ExchangeCatalog, Listing
from service.feeds import fetch_listing
from tests.conftest import wait_for
from tests.test_app import _env, run


class HangingServer:
    """Accepts connections and never finishes an answer (one byte of a status line a second)."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        self.accepted = 0
        self._stop = threading.Event()
        self._conns: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.accepted += 1
            self._conns.append(conn)
            threading.Thread(target=self._trickle, args=(conn,), daemon=True).start()

    def _trickle(self, conn: socket.socket) -> None:
        with contextlib.suppress(OSError):
            conn.sendall(b"HTTP/1.1 200 ")
            while not self._stop.wait(1.0):
                conn.sendall(b"x")

    def stop(self) -> None:
        self._stop.set()
        self.sock.close()
        for c in self._conns:
            with contextlib.suppress(OSError):
                c.shutdown(socket.SHUT_RDWR)
            c.close()

    def __enter__(self) -> HangingServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


@pytest.fixture
def hanging() -> Iterator[HangingServer]:
    with HangingServer() as server:
        yield server


def sidebar_captions(at) -> list[str]:
    return [c.value for c in at.sidebar.caption]


def test_a_full_rerun_never_waits_for_a_hanging_exchange(hanging, tmp_path, monkeypatch):
    _env(monkeypatch, tmp_path / "hang.db", hanging.url)
    try:
        at = run()  # AppTest fails the run if the script does not finish
        wait_for(lambda: hanging.accepted >= 1, 10, "the catalog's request")
        assert registry.SERVICE.probe.ok is None  # still waiting for its answer ...
        assert "Checking the symbols against the exchange…" in sidebar_captions(at)
        at.text_input(key="x").set_value("SOLUSDT").run()  # ... and a full rerun does not
        assert not at.exception, [e.value for e in at.exception]
        assert "Checking the symbols against the exchange…" in sidebar_captions(at)
        assert not [e.value for e in at.sidebar.error]  # accepted until it can be checked
        assert registry.SERVICE.probe.ok is None and hanging.accepted == 1
    finally:
        if registry.SERVICE is not None:
            registry.SERVICE.close()


def test_catalog_first_answer_refresh_and_a_failure_keeping_the_last_list(tmp_path):
    from replay import start_replay_server
    from replay.faults import Faults

    server = start_replay_server(port=0, speed=1.0, loop=True, faults=Faults())
    catalog = ExchangeCatalog(
        server.rest_base, fetch_listing, timeout_s=2.0, ttl_s=0.2, retry_s=0.2
    )
    seen: list[Listing] = []
    catalog.on_update = seen.append
    stopped = False
    try:
        assert catalog.listing().ok is None and catalog.listing().trading is None  # not started
        catalog.start()
        assert catalog.wait_answer(0)
        first = catalog.listing()
        assert first.ok and first.trading == {"BTCUSDT", "ETHUSDT"}
        assert first.not_trading("BTCUSDT") is None
        assert first.not_trading("SOLUSDT") == "not listed on the exchange"
        server.faults.delisted.add("ETHUSDT")
        wait_for(lambda: catalog.listing().trading == {"BTCUSDT"}, 10, "a refresh after the TTL")
        assert catalog.listing().not_trading("ETHUSDT") == (
            "delisted (status SETTLING on the exchange)"
        )
        server.stop()
        stopped = True
        wait_for(lambda: catalog.listing().ok is False, 10, "a failed refresh")
        failed = catalog.listing()
        assert "did not answer" in failed.detail and failed.trading == {"BTCUSDT"}
        assert seen[0] == first and seen[-1].ok is False
    finally:
        catalog.stop()
        if not stopped:
            server.stop()


def test_bad_catalog_timings_are_refused():
    with pytest.raises(ValueError, match="> 0"):
        ExchangeCatalog("http://127.0.0.1:9", fetch_listing, ttl_s=0)
