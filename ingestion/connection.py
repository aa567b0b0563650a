"""WebSocket connection life: connect, read, ping, liveness, planned replacement, reconnect.

This module never parses. It hands every data frame (as ``bytes``) to a listener and asks
the listener, a few times a second, whether the data still looks alive (``on_tick``); the
listener decides quiet-versus-stale from what the frames contain and from REST.

Protocol liveness is ours: every ``ping_interval_s`` the client sends a ping with a unique
payload and expects the echo within ``pong_timeout_s``; silence means a dead socket. The
server's pings are answered by websocket-client inside ``recv``. Before Binance's 24 h
cut the connection is replaced *make-before-break*: dial the new socket, read what is left
on the old one for ``drain_old_s``, then close it; overlapping trades are dropped by id
upstream, and anything still missing is a gap that REST repairs.

Hostile input is bounded here (issue 14): a frame longer than ``max_message_bytes`` is
refused from its header, before its payload is read; a text assembled from continuation
frames is refused as soon as it grows past the same limit (an endless fragment); more
than ``max_pings_per_s`` server pings in a second is a ping flood. Each ends the
connection with its reason, and the usual backoff applies before the next dial.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any, Protocol

import websocket
from websocket import ABNF, WebSocketPayloadException, WebSocketTimeoutException
from websocket._abnf import continuous_frame, frame_buffer

from ingestion.backoff import BackoffFactory, ConnectLimiter
from ingestion.config import FeedSettings

__all__ = ["Connection", "ConnectionListener"]

log = logging.getLogger(__name__)

_DATA_OPCODES = (ABNF.OPCODE_TEXT, ABNF.OPCODE_BINARY)
#: How often (s, at most) the read loop checks timers even while frames keep arriving.
_CHECK_EVERY_S = 0.1


class ConnectionListener(Protocol):
    """What a ``Connection`` reports to. Every method runs in the connection's thread."""

    def on_connecting(self, url: str, attempt: int) -> None: ...

    def on_open(self, url: str, planned: bool) -> None: ...

    def on_message(self, payload: bytes) -> None: ...

    def on_burst_end(self) -> None:
        """Every frame received so far has been delivered; the next read waits on the
        network. A natural moment to hand accumulated work on without adding latency."""
        ...

    def on_tick(self, connected_s: float) -> str | None:
        """Periodic check; return a reason to replace the connection, or None."""
        ...

    def on_close(self, reason: str, planned: bool) -> None: ...

    def on_wait(self, delay_s: float, reason: str) -> None: ...


class _ReadAheadSocket:
    """Wraps the connected socket so that reads fetch up to ``chunk`` bytes at once.

    websocket-client reads a frame in two or three exact-size ``recv`` calls (header,
    length, payload); each is a system call that drops and retakes the GIL, which the
    writer thread then contends for. Reading ahead serves those small reads from memory:
    one system call per burst of frames instead of three per frame. Everything else
    (send, timeouts, shutdown, fileno) goes straight to the real socket.
    """

    __slots__ = ("_buf", "_chunk", "_pos", "_sock")

    def __init__(self, sock: Any, chunk: int = 256 * 1024) -> None:
        self._sock = sock
        self._chunk = chunk
        self._buf = b""
        self._pos = 0

    def recv(self, bufsize: int) -> bytes:
        pos = self._pos
        if pos < len(self._buf):
            end = pos + bufsize
            self._pos = end
            return self._buf[pos:end]
        data = self._sock.recv(max(bufsize, self._chunk))
        if len(data) <= bufsize:
            return data
        self._buf = data
        self._pos = bufsize
        return data[:bufsize]

    def pending(self) -> int:
        """Bytes read from the socket but not yet handed to websocket-client."""
        return max(0, len(self._buf) - self._pos)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._sock, name)


class _BoundedFrames(frame_buffer):
    """websocket-client's frame reader, refusing a frame whose header announces more than
    ``limit`` bytes (before a byte of its payload is read)."""

    def __init__(self, recv_fn: Callable[[int], bytes], limit: int) -> None:
        super().__init__(recv_fn, skip_utf8_validation=True)
        self.limit = limit

    def recv_length(self) -> None:
        super().recv_length()
        if self.length is not None and self.length > self.limit:
            raise WebSocketPayloadException(
                f"frame of {self.length} bytes is over the {self.limit}-byte message limit"
            )


class _BoundedMessages(continuous_frame):
    """websocket-client's continuation assembly, refusing a message past ``limit`` bytes."""

    def __init__(self, limit: int) -> None:
        super().__init__(fire_cont_frame=False, skip_utf8_validation=True)
        self.limit = limit

    def add(self, frame: ABNF) -> None:
        held = len(self.cont_data[1]) if self.cont_data else 0
        if held + len(frame.data) > self.limit:
            self.cont_data = None  # free what was held
            self.recving_frames = None
            raise WebSocketPayloadException(
                f"message over the {self.limit}-byte limit across continuation frames"
            )
        super().add(frame)


def _bounded(ws: websocket.WebSocket, limit: int) -> websocket.WebSocket:
    """Bound ``ws``'s frame and message sizes. websocket-client has no option for it; its
    reader (``frame_buffer``) and assembler (``continuous_frame``) are replaced by
    subclasses that check the sizes (checked against websocket-client 1.9)."""
    ws.frame_buffer = _BoundedFrames(ws._recv, limit)
    ws.cont_frame = _BoundedMessages(limit)
    return ws


class _Session:
    """One open socket and its timers."""

    def __init__(self, ws: websocket.WebSocket, url: str) -> None:
        self.ws = ws
        self.reader: _ReadAheadSocket = ws.sock  # type: ignore[assignment]
        self.url = url
        self.opened = time.monotonic()
        self.planned_at = float("inf")  # set by Connection from planned_reconnect_s
        self.got_data = False
        self.ping_payload: bytes | None = None
        self.ping_sent = 0.0
        self.pings = 0
        self.server_pings = 0  # in the current one-second window
        self.server_ping_window = 0.0


class Connection:
    """Keeps one WebSocket URL connected until ``stop`` is set.

    ``url`` is a callable so a listener can change it between attempts. ``backoff`` is
    a factory of delay iterators (``ingestion.backoff``); a fresh one is started after
    every healthy connection. ``limiter`` is shared by all connections of a process.
    """

    def __init__(
        self,
        url: Callable[[], str],
        listener: ConnectionListener,
        settings: FeedSettings,
        *,
        stop: threading.Event,
        backoff: BackoffFactory,
        limiter: ConnectLimiter,
    ) -> None:
        self._url = url
        self._listener = listener
        self._settings = settings
        self._stop = stop
        self._backoff = backoff
        self._limiter = limiter
        self._session: _Session | None = None
        self._lock = threading.Lock()
        self._reconnect_reason: str | None = None
        self.attempts = 0
        self.pong_rtt_s: float | None = None

    # --- control from other threads ----------------------------------------------------------
    def abort(self) -> None:
        """Shut the current socket down so a blocked read returns at once (used by stop)."""
        with self._lock:
            session = self._session
        if session is not None:
            session.ws.abort()

    def request_reconnect(self, reason: str) -> None:
        """Ask the read loop to replace the connection at its next check."""
        with self._lock:
            self._reconnect_reason = reason

    @property
    def connected_for_s(self) -> float | None:
        session = self._session
        return None if session is None else time.monotonic() - session.opened

    # --- the loop ----------------------------------------------------------------------------
    def run(self) -> None:
        """Connect, read, reconnect, until ``stop`` is set. Never raises."""
        delays = self._backoff()
        session: _Session | None = None
        while not self._stop.is_set():
            if session is None:
                session = self._dial()
                if session is None:
                    if self._stop.is_set():
                        break
                    delay = next(delays)
                    self._listener.on_wait(delay, "connect failed")
                    self._stop.wait(delay)
                    continue
                self._set_session(session)
                self._listener.on_open(session.url, False)
            reason, planned = self._read(session)
            healthy = session.got_data and (
                time.monotonic() - session.opened >= self._settings.healthy_after_s
            )
            if healthy and not self._stop.is_set():
                delays = self._backoff()
            if planned and not self._stop.is_set():
                replacement = self._dial(replacing=True)
                if replacement is not None:
                    self._drain(session)
                    self._close(session)
                    self._listener.on_close(reason, True)
                    session = replacement
                    self._set_session(session)
                    self._listener.on_open(session.url, True)
                    continue
                # Could not dial the replacement: keep the old socket, which still works
                # until the server's cut, and try again after a backoff delay.
                session.planned_at = time.monotonic() + next(delays)
                continue
            self._close(session)
            self._set_session(None)
            session = None
            self._listener.on_close(reason, False)
            if self._stop.is_set():
                break
            delay = next(delays)
            self._listener.on_wait(delay, reason)
            self._stop.wait(delay)
        if session is not None:
            self._close(session)
            self._set_session(None)

    def _set_session(self, session: _Session | None) -> None:
        with self._lock:
            self._session = session
            self._reconnect_reason = None

    def _dial(self, replacing: bool = False) -> _Session | None:
        if not self._limiter.acquire(self._stop):
            return None
        url = self._url()
        self.attempts += 1
        self._listener.on_connecting(url, self.attempts)
        ws = _bounded(
            websocket.WebSocket(skip_utf8_validation=True, enable_multithread=False),
            self._settings.max_message_bytes,
        )
        try:
            ws.connect(url, timeout=self._settings.connect_timeout_s)
            ws.settimeout(self._settings.read_poll_s)
            # The handshake reads byte by byte, so nothing is buffered yet: safe to wrap now.
            ws.sock = _ReadAheadSocket(ws.sock)
        except Exception as exc:  # any failure to connect is retried
            log.warning("connect %s failed: %s", url, exc)
            if not replacing:  # a failed replacement leaves the working socket in place
                self._listener.on_close(f"connect failed: {_describe(exc)}", False)
            ws.shutdown()
            return None
        log.info("connected %s", url)
        return _Session(ws, url)

    def _close(self, session: _Session) -> None:
        try:
            if session.ws.connected:
                session.ws.close(timeout=0.2)
        except Exception:  # best effort on a socket we are leaving
            pass
        session.ws.shutdown()

    def _read(self, session: _Session) -> tuple[str, bool]:
        """Read frames until the connection should end; ``(reason, planned)``."""
        ws, listener, settings = session.ws, self._listener, self._settings
        on_message = listener.on_message
        on_burst_end = listener.on_burst_end
        pending = session.reader.pending
        ping_interval_s = settings.ping_interval_s
        next_ping = session.opened + ping_interval_s if ping_interval_s else float("inf")
        if settings.planned_reconnect_s is not None and session.planned_at == float("inf"):
            session.planned_at = session.opened + settings.planned_reconnect_s
        next_check = 0.0
        while True:
            try:
                opcode, data = ws.recv_data(control_frame=True)
            except WebSocketTimeoutException:
                opcode, data = None, None
            except WebSocketPayloadException as exc:  # over a size limit: end this socket
                return f"refused a message: {_describe(exc)}", False
            except Exception as exc:  # closed, reset, protocol error: reconnect
                if self._stop.is_set():
                    return "stopped", False
                return f"connection lost: {_describe(exc)}", False
            if opcode in _DATA_OPCODES:
                session.got_data = True
                on_message(data)
                if not pending():
                    on_burst_end()
                now = time.monotonic()
                if now < next_check:
                    continue
            elif opcode == ABNF.OPCODE_PONG:
                if session.ping_payload is not None and data == session.ping_payload:
                    self.pong_rtt_s = time.monotonic() - session.ping_sent
                    session.ping_payload = None
            elif opcode == ABNF.OPCODE_CLOSE:
                return f"server closed the connection{_close_text(data)}", False
            elif opcode == ABNF.OPCODE_PING and self._ping_flood(session):
                limit = settings.max_pings_per_s
                return f"ping flood: more than {limit} pings in 1 s, no data", False
            now = time.monotonic()
            if now < next_check:
                continue
            next_check = now + min(_CHECK_EVERY_S, settings.read_poll_s)
            if self._stop.is_set():
                return "stopped", False
            with self._lock:
                requested = self._reconnect_reason
            if requested:
                return requested, False
            if (
                session.ping_payload is not None
                and now - session.ping_sent > settings.pong_timeout_s
            ):
                return f"no pong within {settings.pong_timeout_s:g} s: socket dead", False
            if now >= next_ping and session.ping_payload is None:
                session.pings += 1
                session.ping_payload = f"liveness-{session.pings}-{time.time():.3f}".encode()
                session.ping_sent = now
                next_ping = now + (ping_interval_s or float("inf"))
                try:
                    ws.ping(session.ping_payload)
                except Exception as exc:
                    return f"connection lost: {_describe(exc)}", False
            if now >= session.planned_at:
                return "planned reconnect before the 24 h limit", True
            reason = listener.on_tick(now - session.opened)
            if reason:
                return reason, False

    def _ping_flood(self, session: _Session) -> bool:
        """Count a server ping; True once a one-second window holds too many."""
        now = time.monotonic()
        if now - session.server_ping_window >= 1.0:
            session.server_ping_window, session.server_pings = now, 0
        session.server_pings += 1
        return session.server_pings > self._settings.max_pings_per_s

    def _drain(self, session: _Session) -> None:
        """Read what the old socket still holds (overlap with the new one is harmless)."""
        deadline = time.monotonic() + self._settings.drain_old_s
        ws = session.ws
        try:
            ws.settimeout(min(0.05, self._settings.drain_old_s) or 0.001)
            while time.monotonic() < deadline:
                try:
                    opcode, data = ws.recv_data(control_frame=True)
                except WebSocketTimeoutException:
                    break  # nothing left in flight
                if opcode in _DATA_OPCODES:
                    self._listener.on_message(data)
                elif opcode == ABNF.OPCODE_CLOSE:
                    break
        except Exception:  # the old socket may already be gone
            pass
        self._listener.on_burst_end()


def _describe(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return text if len(text) < 160 else text[:157] + "..."


def _close_text(frame_data: object) -> str:
    data = getattr(frame_data, "data", frame_data)
    if isinstance(data, bytes | bytearray) and len(data) >= 2:
        code = int.from_bytes(data[:2], "big")
        reason = bytes(data[2:]).decode("utf-8", "replace")
        return f" ({code}{': ' + reason if reason else ''})"
    return ""
