"""A local HTTP server on port 0 standing in for webhook, Slack, Discord and Telegram endpoints.

Each request is recorded; what it answers is scripted per request: ``200``, ``500``, ``429``
(with ``Retry-After``), ``400`` or ``hang`` (no answer until the server stops). A request is
*acknowledged* when it was answered 2xx: that is what "delivered" means to a receiver.
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class Hit:
    path: str
    headers: dict[str, str]
    body: Any
    answer: str
    t: float = field(default_factory=time.monotonic)


class Endpoint:
    """``with Endpoint(script=["500", "hang", "200"]) as ep: ep.url("/hook")``; after the
    script runs out every request gets ``default``."""

    def __init__(
        self, script: list[str] | None = None, default: str = "200", port: int = 0
    ) -> None:
        self.script = list(script or [])
        self.default = default
        self.hits: list[Hit] = []
        self.retry_after_s = "1"
        self._lock = threading.Lock()
        self._release = threading.Event()
        self.hanging = threading.Event()  # set while a request hangs
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                n = int(self.headers.get("Content-Length", "0"))
                raw = self.rfile.read(n)
                try:
                    body = json.loads(raw)
                except ValueError:
                    body = raw.decode("utf-8", "replace")
                with outer._lock:
                    answer = outer.script.pop(0) if outer.script else outer.default
                    outer.hits.append(Hit(self.path, dict(self.headers), body, answer))
                if answer == "hang":
                    outer.hanging.set()
                    outer._release.wait(60)
                    return  # the client has given up; answer nothing
                code = int(answer)
                self.send_response(code)
                if code == 429:
                    self.send_header("Retry-After", outer.retry_after_s)
                # Like many servers, an error echoes what was asked for (here: the path).
                error = json.dumps({"ok": False, "description": f"refused {self.path}"})
                payload = b'{"ok": true}' if code < 300 else error.encode()
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

        self.server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def url(self, path: str = "/hook") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def acked(self) -> list[Hit]:
        with self._lock:
            return [h for h in self.hits if h.answer.startswith("2")]

    def __enter__(self) -> Endpoint:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._release.set()
        self.server.shutdown()
        self.server.server_close()
        self._thread.join(5)
