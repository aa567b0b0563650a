"""The replay server: a local Binance USD-M endpoint (WebSocket + REST on one port).

Standard library only: a threaded ``http.server`` whose GET handler either answers REST
(``replay.rest``) or upgrades to WebSocket (``replay.framing``, ``replay.session``). What it
serves comes from a ``Recording`` (``replay.recording``) paced by a ``Timeline``
(``replay.timeline``).

Time: the recording is paced by its trade times ``T`` at ``speed`` (0 = as fast as the
socket takes it). With ``rebase_time`` (default) served times are shifted so that the
replay starts "now" (``preroll_s`` of it already in the past, available over REST only);
``loop`` repeats the recording with ids and times continuing upwards. ``rate`` replaces
recorded pacing by a steady number of messages per second per symbol, stamped with the send
time (used by the latency benchmark).

``faults`` (a ``replay.faults.Faults``, for tests and benchmarks) is optional: without it
the server runs no fault code at all.
"""

from __future__ import annotations

import http.server
import json
import logging
import os
import threading
import time
import urllib.parse
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from config import SAMPLE_RECORDING
from replay.framing import accept_key
from replay.recording import Recording, load_recording
from replay.rest import answer_rest
from replay.session import WsSession
from replay.timeline import Timeline

if TYPE_CHECKING:
    from replay.faults import Faults

__all__ = [
    "FakeBinance",
    "ReplayServer",
    "ServerStats",
    "auto_id_offset",
    "start_replay_server",
]

log = logging.getLogger(__name__)


@dataclass
class ServerStats:
    """What happened, for tests to assert on."""

    ws_connections: list[str] = field(default_factory=list)  # paths, in order
    rest_requests: list[tuple[float, str, dict[str, str], int]] = field(default_factory=list)
    rest_received: list[str] = field(default_factory=list)  # paths as they arrive, answered or not
    messages_sent: dict[str, int] = field(default_factory=dict)  # per symbol, data frames
    garbage_sent: int = 0
    pings_sent: int = 0
    pongs_ok: int = 0
    pongs_bad: int = 0
    client_pings: int = 0
    drops: int = 0
    hostile_frames: int = 0  # frames sent by hostile modes and injections


class FakeBinance:
    """The server. ``start()`` binds (port 0 = any free port) and serves in daemon threads.

    Parameters are described in the module docstring. ``ping_interval_s``: send a ping
    with a payload this often (Binance: 180 s); a client that does not echo it within
    ``pong_timeout_s`` is disconnected. ``max_incoming_per_s``: Binance's limit of incoming
    frames per connection (pings, pongs, SUBSCRIBE); exceeding it disconnects.
    ``id_offset`` is added to every served id (see ``auto_id_offset``). ``faults``: a
    ``replay.faults.Faults`` to inject (changeable while running, ``server.faults.x = ...``);
    None, the default, runs no fault code and leaves ``server.faults`` None.
    """

    def __init__(
        self,
        recording: Recording,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        speed: float = 1.0,
        loop: bool = False,
        rebase_time: bool = True,
        preroll_s: float = 0.0,
        rate: float | None = None,
        faults: Faults | None = None,
        ping_interval_s: float | None = 180.0,
        pong_timeout_s: float = 600.0,
        max_incoming_per_s: int | None = 10,
        weight_limit_per_min: int = 2400,
        id_offset: int = 0,
        static_klines: dict[str, list[list[Any]]] | None = None,
    ) -> None:
        self.recording = recording
        #: Symbols served from fixed 1m kline rows (Binance's arrays, oldest first) besides the
        #: recording: a universe of many symbols for the kline fetcher.
        self.static_klines = {k.upper(): v for k, v in (static_klines or {}).items()}
        self.faults = faults  # None: no fault code on the path (replay.faults)
        self.ping_interval_s = ping_interval_s
        self.pong_timeout_s = pong_timeout_s
        self.max_incoming_per_s = max_incoming_per_s
        self.weight_limit_per_min = weight_limit_per_min
        self.stats = ServerStats()
        self._timeline_args = dict(
            speed=speed,
            loop=loop,
            rebase_time=rebase_time,
            preroll_s=preroll_s,
            rate=rate,
            id_offset=id_offset,
        )
        self.timeline: Timeline | None = None
        self._host, self._port = host, port
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self.lock = threading.Lock()  # guards stats and connection bookkeeping
        self._conn_count: dict[str, int] = {}
        self._live: set[WsSession] = set()
        self._weight_minute = -1
        self._weight_used = 0
        self.stopping = threading.Event()

    # --- life --------------------------------------------------------------------------------
    def start(self) -> FakeBinance:
        self.timeline = Timeline(self.recording, **self._timeline_args)
        self._server = _Server((self._host, self._port), _Handler)
        self._server.app = self
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.1},
            name="replay-server",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop accepting, cut every live connection, wait for the threads."""
        self.stopping.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        with self.lock:
            sessions = list(self._live)
        for session in sessions:
            session.close_abruptly()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> FakeBinance:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def port(self) -> int:
        assert self._server is not None, "not started"
        return self._server.server_address[1]

    @property
    def ws_base(self) -> str:
        return f"ws://{self._host}:{self.port}"

    @property
    def rest_base(self) -> str:
        return f"http://{self._host}:{self.port}"

    # --- what tests compare against ----------------------------------------------------------
    def source_ids(self, symbol: str, kind: str = "agg") -> list[int]:
        """Every id of ``symbol`` published so far (all of them once a non-loop replay ended)."""
        assert self.timeline is not None
        view = self.timeline.views[(symbol.upper(), kind)]
        end = self.timeline.published_end(view)
        if end >= 1 << 62:
            raise ValueError("a looping replay at speed 0 publishes without end")
        return [view.id_of(n) for n in range(end)]

    def finished(self) -> bool:
        """True once a non-looping replay has published its last trade."""
        assert self.timeline is not None
        return not self.timeline.loop and all(
            self.timeline.published_end(v) >= v.size for v in self.timeline.views.values()
        )

    def cut_all(self) -> int:
        """Drop every live WebSocket connection now (abruptly). Returns how many."""
        with self.lock:
            sessions = list(self._live)
        for session in sessions:
            session.close_abruptly()
        return len(sessions)

    def live_connections(self) -> int:
        with self.lock:
            return len(self._live)

    # --- used by the REST routes and sessions ----------------------------------------------
    def next_connection_index(self, symbol: str) -> int:
        """0 for the first connection whose first stream is of ``symbol``, then 1, 2 ... (faults
        are picked per connection)."""
        with self.lock:
            k = self._conn_count.get(symbol, 0)
            self._conn_count[symbol] = k + 1
            return k

    def charge_weight(self, weight: int) -> tuple[int, bool]:
        """Add ``weight`` to this minute's total; ``(used, over_limit)``."""
        with self.lock:
            minute = int(time.time() // 60)
            if minute != self._weight_minute:
                self._weight_minute, self._weight_used = minute, 0
            self._weight_used += weight
            return self._weight_used, self._weight_used > self.weight_limit_per_min


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128
    app: FakeBinance

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that vanished mid-reply is routine here; keep stderr clean.
        log.debug("connection from %s ended with an error", client_address, exc_info=True)


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("%s " + format, self.address_string(), *args)

    def do_GET(self) -> None:
        app = self.server.app
        parts = urllib.parse.urlsplit(self.path)
        if self.headers.get("Upgrade", "").lower() == "websocket":
            self._upgrade(app, parts)
            return
        params = {k: v[-1] for k, v in urllib.parse.parse_qs(parts.query).items()}
        with app.lock:
            app.stats.rest_received.append(parts.path)
        status, body, headers = answer_rest(app, parts.path, params)
        with app.lock:
            app.stats.rest_requests.append((time.time(), parts.path, params, status))
        payload = json.dumps(body, separators=(",", ":")).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        for key, value in headers.items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(payload)

    def _upgrade(self, app: FakeBinance, parts: urllib.parse.SplitResult) -> None:
        key = self.headers.get("Sec-WebSocket-Key")
        if not key:
            self.send_error(400, "missing Sec-WebSocket-Key")
            return
        accept = accept_key(key)
        self.wfile.write(
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            + f"Sec-WebSocket-Accept: {accept}\r\n\r\n".encode()
        )
        self.wfile.flush()
        self.close_connection = True
        session = WsSession(app, self.connection, self.rfile, parts)
        with app.lock:
            app.stats.ws_connections.append(self.path)
            app._live.add(session)
        try:
            session.run()
        finally:
            with app.lock:
                app._live.discard(session)


#: The handle returned by ``start_replay_server``: ``.port``, ``.ws_base``, ``.rest_base``,
#: ``.stop()``, and ``.stats`` / ``.faults`` for tests.
ReplayServer = FakeBinance


def auto_id_offset(now_s: float | None = None) -> int:
    """An id offset that grows with the wall clock: one million ids per second since 1970.

    A replay restarted later serves higher ids than any earlier run (which would have had
    to serve more than a million ids per second of its life to catch up), so a database
    kept between replay sessions keeps growing instead of dropping the new session's
    trades as repeats of the old ids. The ids stay below 2**53 until the year 2255.
    """
    return int((time.time() if now_s is None else now_s) * 1_000_000)


def start_replay_server(
    files: Iterable[str | os.PathLike[str]] | None = None,
    *,
    port: int = 0,
    host: str = "127.0.0.1",
    speed: float = 1.0,
    loop: bool = True,
    preroll_s: float = 0.0,
    rebase_time: bool = True,
    faults: Faults | None = None,
    ping_interval_s: float | None = 180.0,
    id_offset: int | None = None,
) -> ReplayServer:
    """Start serving ``files`` (default: the bundled sample) in daemon threads; return the handle.

    ``speed`` multiplies the recorded pace (0 = as fast as the client reads). ``loop``
    repeats the recording with ids and times continuing upwards. With ``rebase_time`` the
    served trade times start at now minus ``preroll_s``; the pre-roll is history that REST
    already has when a client connects. ``id_offset`` is added to every served id;
    ``None`` picks ``auto_id_offset()`` so that restarts never reuse ids (0 serves the
    recorded ids, and derived aggregate ids from 1).
    """
    paths = [SAMPLE_RECORDING] if files is None else [Path(f) for f in files]
    recording = load_recording(paths)
    server = FakeBinance(
        recording,
        host=host,
        port=port,
        speed=speed,
        loop=loop,
        preroll_s=preroll_s,
        rebase_time=rebase_time,
        faults=faults,
        ping_interval_s=ping_interval_s,
        id_offset=auto_id_offset() if id_offset is None else id_offset,
    )
    return server.start()
