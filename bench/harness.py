"""The one way tests and benchmarks start the real page and a real browser.

``streamlit run app.py`` on a free local port, as a user starts it (:func:`start_streamlit`,
or :func:`streamlit_server` as a context manager), and Debian's headless Chromium through
Playwright (:data:`CHROMIUM`, :data:`CHROME_ARGS`, :func:`launch_chromium`). It lives in
``bench/`` because the benchmarks must not import ``tests/``, while the tests may import
``bench/`` (they already run its hostile-file maker); ``tests/conftest.py`` re-exports
:func:`wait_for`, :func:`free_port` and :func:`streamlit_server` for the tests.
:func:`key_figures` and :func:`chart_cells` read the live panel's key figures and charts from
an ``AppTest`` run; :func:`chart_selector` finds a live chart in the browser.
"""

from __future__ import annotations

import contextlib
import html
import re
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
#: Debian's Chromium (package ``chromium``; ``bash .ci/setup --test`` installs it).
CHROMIUM = "/usr/bin/chromium"
#: Headless, no sandbox (root in CI), and none of Chromium's own network chatter.
CHROME_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def wait_for(condition, timeout_s: float = 20.0, what: str = "condition", *, interval_s=0.05):
    """Poll ``condition`` until it returns a truthy value; return that value.

    The one way tests wait for an outcome: no fixed sleeps. Fails the test naming ``what`` after
    ``timeout_s`` seconds. ``interval_s`` is the polling interval, not a wait for the outcome.
    Import it as ``from tests.conftest import wait_for``.
    """
    deadline = time.monotonic() + timeout_s
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")
        time.sleep(interval_s)


def free_port() -> int:
    """A TCP port nobody listens on right now (for servers started as subprocesses)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class StreamlitServer:
    """A running ``streamlit run app.py``: its process, its URL and its log file."""

    proc: subprocess.Popen
    url: str
    log_path: Path

    @property
    def pid(self) -> int:
        return self.proc.pid

    def stop(self) -> None:
        """Terminate, then kill after 15 s; waits for the process either way."""
        self.proc.terminate()
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def start_streamlit(
    log_path: Path,
    env: dict[str, str],
    *,
    app_args: Sequence[str] = (),
    flags: Sequence[str] = (),
    timeout_s: float = 30.0,
) -> StreamlitServer:
    """``streamlit run app.py`` on a free local port; returns once ``/_stcore/health`` answers.

    ``env`` is the whole environment of the server; ``flags`` are extra Streamlit options and
    ``app_args`` the dashboard's own flags (after ``--``). The server's output goes to
    ``log_path``, shown if it exits early. The caller stops it (:meth:`StreamlitServer.stop`).
    """
    port = free_port()
    cmd = [sys.executable, "-m", "streamlit", "run", str(ROOT / "app.py"), "--server.port",
           str(port), "--server.headless", "true", "--server.address", "127.0.0.1",
           "--browser.gatherUsageStats", "false", *flags]  # fmt: skip
    if app_args:
        cmd += ["--", *app_args]
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    server = StreamlitServer(proc, f"http://127.0.0.1:{port}", Path(log_path))

    def healthy() -> bool:
        if proc.poll() is not None:
            raise AssertionError(f"streamlit exited: {server.log_path.read_text()[-4000:]}")
        try:
            with urllib.request.urlopen(f"{server.url}/_stcore/health", timeout=1) as r:
                return r.status == 200
        except OSError:
            return False

    try:
        wait_for(healthy, timeout_s, "the Streamlit server", interval_s=0.1)
    except BaseException:
        server.stop()
        raise
    return server


@contextlib.contextmanager
def streamlit_server(
    tmp: Path, env: dict[str, str], *, app_args=(), flags=(), timeout_s: float = 30.0
) -> Iterator[tuple[str, subprocess.Popen]]:
    """:func:`start_streamlit` logging to ``tmp/streamlit.log``; yields ``(url, proc)``.

    Stopped (terminate, then kill) on exit.
    """
    server = start_streamlit(
        tmp / "streamlit.log", env, app_args=app_args, flags=flags, timeout_s=timeout_s
    )
    try:
        yield server.url, server.proc
    finally:
        server.stop()


def launch_chromium(playwright, args: Sequence[str] = CHROME_ARGS):
    """Headless :data:`CHROMIUM` through Playwright with ``args`` (a caller that needs more
    flags passes ``[*CHROME_ARGS, ...]``)."""
    return playwright.chromium.launch(executable_path=CHROMIUM, args=list(args))


#: One key-figure tile of ``ui.live.key_figures_html``: its label and its value.
_TILE = re.compile(
    r'<div class="pd-kf" data-label="([^"]*)"[^>]*>.*?<div class="pd-kf-value">([^<]*)</div>'
)


def key_figures(at) -> dict[str, str]:
    """The live panel's key figures in an ``AppTest`` run, label → value as shown, in order."""
    found: dict[str, str] = {}
    for element in at.markdown:
        for label, value in _TILE.findall(str(element.value)):
            found[html.unescape(label)] = html.unescape(value)
    return found


def chart_selector(key: str) -> str:
    """CSS selector of a live chart's Plotly box in the browser (``ui/plot.js`` grid cells)."""
    return f'[data-chart="{key}"] .js-pd-plot'


def chart_cells(at) -> list[dict]:
    """The live chart grid's cells in an ``AppTest`` run, in order (``ui.plot.decode_grid``):
    each has ``key``, ``title``, and the chart's ``spec`` or a ``note``; [] without the grid."""
    from ui.plot import decode_grid  # the page's own decoder (imports Streamlit: used late)

    return [
        cell
        for node in elements(at._tree)
        if node.type == "bidi_component" and node.proto.bytes  # not ui.guard's tidy_browser
        for cell in decode_grid(node.proto.bytes)
    ]


def elements(node):
    """Every node under an ``AppTest`` tree node (``at._tree``), depth first."""
    children = getattr(node, "children", None) or {}
    for child in children.values() if isinstance(children, dict) else children:
        yield child
        yield from elements(child)
