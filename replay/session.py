"""One WebSocket connection of the replay server: routing, client frames, the paced data loop.

Routes like Binance's (``../shared/docs/binance-usdm.md``): ``/market/ws/<sym>@aggTrade``
(raw) and ``/market/stream?streams=a/b`` (wrapped in ``{"stream":..,"data":..}``);
``/public/ws/<sym>@trade`` and ``/public/stream?streams=...``. Retired unrouted paths
(``/ws/...``, ``/stream?...``) and wrong routes connect, answer pings and SUBSCRIBE, and then
send nothing: Binance's silent failure. Like Binance, a new connection starts at the
present: what happened while a client was away is only on REST.

The session's thread sends; a helper thread reads client frames (pongs, pings, SUBSCRIBE,
close). The server pings with a payload every ``ping_interval_s`` and disconnects a client
that does not echo it within ``pong_timeout_s``, or that sends more than
``max_incoming_per_s`` frames a second. Faults (``replay.faults``) enter only through the
optional ``ConnectionFaults`` of a server started with them.
"""

from __future__ import annotations

import contextlib
import heapq
import json
import logging
import math
import socket
import struct
import threading
import time
import urllib.parse
from typing import TYPE_CHECKING, Any

from replay.framing import OP_CLOSE, OP_PING, OP_PONG, OP_TEXT, encode_frame, read_frame
from replay.timeline import SymbolView, Timeline

if TYPE_CHECKING:
    from replay.faults import ConnectionFaults
    from replay.server import FakeBinance

__all__ = ["WsSession", "route_streams"]

log = logging.getLogger(__name__)

#: Frames batched into one ``sendall`` at most (a fast replay sends many per wake-up).
_BATCH_FRAMES = 256
#: Longest sleep of the data loop, in seconds: how soon it notices a stop or SUBSCRIBE.
_TICK_S = 0.05


def route_streams(path: str, query: str) -> tuple[str, list[str], bool]:
    """``("/market", ["btcusdt@aggTrade"], wrapped)`` from a request path."""
    route = ""
    for prefix in ("/market", "/public", "/private"):
        if path.startswith(prefix + "/"):
            route, path = prefix, path[len(prefix) :]
            break
    if path.startswith("/ws/"):
        return route, [s for s in path[4:].split("/") if s], False
    if path.rstrip("/") in ("/ws", "/stream"):
        streams = urllib.parse.parse_qs(query).get("streams", [""])[-1]
        return route, [s for s in streams.split("/") if s], path.startswith("/stream")
    return route, [], False


class _Schedule:
    """Which event of which subscribed stream is due next: a heap of ``(due wall s, stream
    index, n)`` with one entry per stream, refilled from the stream's next event."""

    def __init__(self, timeline: Timeline) -> None:
        self.timeline = timeline
        self.heap: list[tuple[float, int, int]] = []
        self.streams: list[tuple[SymbolView, bytes]] = []  # (view, wrapped-payload prefix)

    def reset(self, views: list[tuple[SymbolView, str]]) -> None:
        """Subscribe to ``views`` (view, stream name), each starting at the present."""
        timeline = self.timeline
        self.heap.clear()
        self.streams.clear()
        now_ms = timeline.now_ms()
        live = timeline.speed or timeline.rate
        for j, (view, name) in enumerate(views):
            start = timeline.n_after_time(view, now_ms) if live else 0
            self.streams.append((view, f'{{"stream":"{name}","data":'.encode()))
            if timeline.exists(view, start):
                self.heap.append((timeline.due_wall_s(view, start), j, start))
        heapq.heapify(self.heap)

    def wait_s(self) -> float:
        """Seconds until the next event is due (``inf`` with nothing subscribed)."""
        return self.heap[0][0] - time.time() if self.heap else math.inf

    def pop(self) -> tuple[SymbolView, bytes, int]:
        """The due event ``(view, prefix, n)``; its stream's next event takes its place."""
        _, j, n = heapq.heappop(self.heap)
        view, prefix = self.streams[j]
        if self.timeline.exists(view, n + 1):
            heapq.heappush(self.heap, (self.timeline.due_wall_s(view, n + 1), j, n + 1))
        return view, prefix, n


class WsSession:
    """One WebSocket connection: this thread sends data; a helper thread reads client frames."""

    def __init__(self, app: FakeBinance, sock: socket.socket, rfile: Any, parts: Any) -> None:
        self.app = app
        self.sock = sock
        self.rfile = rfile
        self.route, self.streams, self.wrapped = route_streams(parts.path, parts.query)
        self.send_lock = threading.Lock()
        self.closed = threading.Event()
        self.wake = threading.Event()  # a SUBSCRIBE changed the stream set
        self.opened_s = time.monotonic()
        self.ping_payload: bytes | None = None
        self.ping_sent_s = 0.0
        self.next_ping_s = math.inf
        self.answer_pings = True
        self.incoming: list[float] = []
        self.faults: ConnectionFaults | None = None
        self._out: list[bytes] = []  # frames not yet sent
        self._counts: dict[str, int] = {}  # data frames per symbol not yet in the stats
        self._sent = 0  # data frames of this connection

    # --- sending -----------------------------------------------------------------------------
    def send(self, data: bytes) -> None:
        with self.send_lock:
            self.sock.sendall(data)

    def flush(self) -> None:
        """Send the batched frames and count them in the server's stats."""
        if self._out:
            self.send(b"".join(self._out))
            self._out.clear()
        if self._counts:
            with self.app.lock:
                sent = self.app.stats.messages_sent
                for symbol, count in self._counts.items():
                    sent[symbol] = sent.get(symbol, 0) + count
            self._counts.clear()

    def close_abruptly(self) -> None:
        if self.closed.is_set():
            return
        self.closed.set()
        self.wake.set()
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)

    def close_gracefully(self, code: int = 1000, reason: str = "") -> None:
        with contextlib.suppress(OSError):
            self.send(encode_frame(OP_CLOSE, struct.pack("!H", code) + reason.encode()))
        self.close_abruptly()

    # --- reading -----------------------------------------------------------------------------
    def _reader(self) -> None:
        try:
            while not self.closed.is_set():
                opcode, _fin, payload = read_frame(self.rfile)
                if self._over_incoming_limit(time.monotonic()):
                    log.info(
                        "client over %d messages/s: disconnecting", self.app.max_incoming_per_s
                    )
                    self.close_gracefully(1008, "too many messages")
                    return
                if opcode == OP_CLOSE:
                    self.close_gracefully(1000)
                    return
                if opcode in (OP_PING, OP_PONG):
                    self._on_control(opcode, payload)
                elif opcode == OP_TEXT:
                    self._on_text(payload)
        except (ConnectionError, OSError, struct.error, ValueError):
            pass
        finally:
            self.close_abruptly()

    def _over_incoming_limit(self, now: float) -> bool:
        """Binance's limit of incoming frames per second per connection."""
        limit = self.app.max_incoming_per_s
        if limit is None:
            return False
        self.incoming = [t for t in self.incoming if now - t < 1.0]
        self.incoming.append(now)
        return len(self.incoming) > limit

    def _on_control(self, opcode: int, payload: bytes) -> None:
        app = self.app
        if opcode == OP_PING:
            with app.lock:
                app.stats.client_pings += 1
            if self.answer_pings:
                self.send(encode_frame(OP_PONG, payload))
            return
        with app.lock:
            if self.ping_payload is not None and payload == self.ping_payload:
                app.stats.pongs_ok += 1
                self.ping_payload = None
            else:
                app.stats.pongs_bad += 1

    def _on_text(self, payload: bytes) -> None:
        try:
            msg = json.loads(payload)
            method, ident = msg.get("method"), msg.get("id")
        except (ValueError, AttributeError):
            self.send(encode_frame(OP_TEXT, b'{"error":{"code":3,"msg":"Invalid JSON"}}'))
            return
        if method == "SUBSCRIBE":
            self.streams += [s for s in msg.get("params", []) if s not in self.streams]
            self.wake.set()
            result = None
        elif method == "UNSUBSCRIBE":
            self.streams = [s for s in self.streams if s not in msg.get("params", [])]
            self.wake.set()
            result = None
        elif method == "LIST_SUBSCRIPTIONS":
            result = list(self.streams)
        else:
            result = None
        self.send(encode_frame(OP_TEXT, json.dumps({"result": result, "id": ident}).encode()))

    # --- the data loop -----------------------------------------------------------------------
    def _views(self) -> list[tuple[SymbolView, str]]:
        """Data-bearing (view, stream name) pairs: right route, known symbol, right kind."""
        timeline = self.app.timeline
        assert timeline is not None
        out: list[tuple[SymbolView, str]] = []
        if self.faults is not None and self.faults.silent():
            return out
        for name in self.streams:
            sym, _, kind = name.partition("@")
            if sym != sym.lower():
                continue  # Binance stream names are lower-case
            if self.faults is not None and self.faults.delisted(sym.upper()):
                continue  # a delisted symbol's stream is silent
            if kind == "aggTrade" and self.route == "/market":
                view = timeline.views.get((sym.upper(), "agg"))
            elif kind == "trade" and self.route == "/public":
                view = timeline.views.get((sym.upper(), "trade"))
            else:
                view = None
            if view is not None:
                out.append((view, name))
        return out

    def run(self) -> None:
        reader = threading.Thread(target=self._reader, name="replay-ws-read", daemon=True)
        reader.start()
        try:
            self._send_loop()
        except OSError:
            pass
        finally:
            self.close_abruptly()
            reader.join(timeout=2)

    def _send_loop(self) -> None:
        """Send each subscribed stream's events when due, keep the connection alive, and stop
        when it closes, the server stops, or the connection must end."""
        app = self.app
        assert app.timeline is not None
        if app.faults is not None:
            first_symbol = self.streams[0].partition("@")[0].upper() if self.streams else ""
            self.faults = app.faults.for_connection(app, first_symbol)
            if self.faults.take_over(self):
                return
            self._out += self.faults.frames_before_first()
        schedule = _Schedule(app.timeline)
        schedule.reset(self._views())
        self.next_ping_s = time.monotonic() + (app.ping_interval_s or math.inf)
        while not self.closed.is_set() and not app.stopping.is_set():
            if self.wake.is_set():
                self.wake.clear()
                schedule.reset(self._views())
            now = time.monotonic()
            if not self._keep_alive(now):
                return
            wait_s = schedule.wait_s()
            if wait_s > 0:
                self.flush()
                self.wake.wait(min(wait_s, _TICK_S, max(0.0, self.next_ping_s - now)))
                continue
            if not self._send_event(*schedule.pop()):
                return

    def _keep_alive(self, now: float) -> bool:
        """Ping when due; False once the connection was closed (pong timeout, lifetime)."""
        app = self.app
        if self.faults is not None and self.faults.lifetime_over(now - self.opened_s):
            self.flush()
            self.close_gracefully(1000, "connection lifetime reached")
            return False
        if now >= self.next_ping_s:
            if self.ping_payload is None:  # one ping in flight at a time
                self.flush()
                self._ping(now)
            self.next_ping_s = now + (app.ping_interval_s or math.inf)
        if self.ping_payload is not None and now - self.ping_sent_s > app.pong_timeout_s:
            log.info("no pong within %.1f s: disconnecting", app.pong_timeout_s)
            self.flush()
            self.close_gracefully(1008, "pong timeout")
            return False
        return True

    def _send_event(self, view: SymbolView, prefix: bytes, n: int) -> bool:
        """Batch event ``n`` of ``view``; False once a fault cut the connection."""
        faults = self.faults
        if faults is not None and faults.skips(view.id_of(n)):
            return True
        timeline = self.app.timeline
        assert timeline is not None
        payload = timeline.ws_payload(view, n).encode()
        if self.wrapped:
            payload = prefix + payload + b"}"
        self._out.append(encode_frame(OP_TEXT, payload))
        self._sent += 1
        self._counts[view.symbol] = self._counts.get(view.symbol, 0) + 1
        if faults is not None:
            self._out += faults.frames_after(self._sent)
        if len(self._out) >= _BATCH_FRAMES:
            self.flush()
        return faults is None or faults.after_sent(self, self._sent)

    def _ping(self, now: float) -> None:
        with self.app.lock:
            self.app.stats.pings_sent += 1
            self.ping_payload = f"{time.time():.6f}".encode()
        self.ping_sent_s = now
        self.send(encode_frame(OP_PING, self.ping_payload))
