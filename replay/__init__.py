"""The local Binance USD-M look-alike: recorded trades served over WebSocket + REST on one port.

The dashboard's offline demo and every network test run against it (``python -m replay`` is
its command line). Its parts, one module each:

- ``framing``: WebSocket frames (RFC 6455) and the handshake key;
- ``recording``: loading recordings through ``formats``; ``timeline``: pacing, served ids,
  times and payloads;
- ``rest``: the REST routes; ``session``: one WebSocket connection and its data loop;
- ``server``: the HTTP server, its stats, ``start_replay_server``;
- ``faults``: fault injection for tests and benchmarks, apart: a server started without
  faults never imports it.

The client side (``ingestion``) never imports this package; ``service`` starts it.
"""

from replay.recording import Recording, load_recording
from replay.server import (
    FakeBinance,
    ReplayServer,
    ServerStats,
    auto_id_offset,
    start_replay_server,
)

__all__ = [
    "FakeBinance",
    "Recording",
    "ReplayServer",
    "ServerStats",
    "auto_id_offset",
    "load_recording",
    "start_replay_server",
]
