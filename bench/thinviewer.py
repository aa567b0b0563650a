"""Thin viewers: Python clients that load ``streamlit run`` as browser tabs do, without drawing.

A Chromium tab of the dashboard costs the *server* its script runs and WebSocket sends, and
costs the *machine* a renderer drawing six Plotly charts twice a second (0.1-0.2 cores each).
On a 2-core machine the renderers, not the server, run out of CPU from four tabs on. A
:class:`ThinSession` speaks the browser's side of Streamlit 1.67's protocol over
``/_stcore/stream`` and does what the frontend does that the server can see, so N thin
viewers load the real server as N tabs would:

- **opening**: the frontend's HTTP pings (``/_stcore/health``, ``/_stcore/host-config``), then
  a ``rerun_script`` ``BackMsg`` with the page's query string and no widget states;
- **timers**: every ``auto_rerun`` message ``(fragment_id, interval)`` starts a fixed-rate
  timer (``setInterval``) sending a fragment rerun (``is_auto_rerun``) with the widget states
  the frontend holds; a full run's ``new_session`` clears them, ``stop_auto_rerun`` stops some;
- **widget states**: each widget element registers the value the frontend would send (the
  same 12 ids and values a Chromium tab of the default view sends; buttons register nothing
  until clicked); states of widgets no longer on the page are dropped after a
  successful run, as the frontend's ``removeInactive`` does;
- **message cache**: ``cacheable`` messages (≥ ``global.minCachedMessageSize``) are kept and
  their hashes sent as ``cached_message_hashes`` with every rerun, so the server answers with
  ``ref_hash`` references exactly as to a tab; entries expire after
  ``max_cached_message_age`` finished runs of their fragment (the frontend's
  ``ForwardMessageCache``). Streamlit 1.67 has no ``/_stcore/message`` fetch: a reference to
  a message the client does not hold is an error (counted in ``cache_misses``).

It reads the newest-trade time the live panel shows (the first code span of the
``last_update`` container, what ``bench/dashboard.py``'s ``OBSERVE_LAST_UPDATE_JS`` reads in
Chromium) when its message arrives, so trade-to-wire latency has the definition of the tabs'
trade-to-screen minus drawing. What it does not do: render, load the static files, run the
chart component's JavaScript (which sends nothing on an idle page).

``ThinSession`` is the protocol alone (bytes in, bytes and timer changes out);
:class:`ThinViewers` runs N of them over ``websocket-client`` with one reader thread per
viewer and one timer thread for all. ``python -m bench.viewers --thin 1,4,8,20`` measures the
server with them; ``python -m bench.thincheck`` checks the stand-in against one Chromium tab
of the same server (rerun requests per fragment, messages and bytes received, and whether the
newest rerun requests are identical).
"""

from __future__ import annotations

import contextlib
import heapq
import itertools
import re
import threading
import time
import urllib.request
from dataclasses import dataclass, field
from urllib.parse import urlsplit

import websocket
from streamlit.proto.BackMsg_pb2 import BackMsg
from streamlit.proto.ForwardMsg_pb2 import ForwardMsg
from streamlit.proto.WidgetStates_pb2 import WidgetState

from ui.plot import decode_grid

#: The key of the container whose first code span is the newest trade's time (ui/live.py).
LAST_UPDATE_KEY = "last_update"
_CODE = re.compile(r"`([^`]*)`")
#: script_finished statuses after which the frontend drops stale elements and widget states.
_SUCCESS = {ForwardMsg.FINISHED_SUCCESSFULLY, ForwardMsg.FINISHED_FRAGMENT_RUN_SUCCESSFULLY}


# ----------------------------------------------------------------------------- widget states
def _button_group(w) -> WidgetState:
    s = WidgetState(id=w.id)
    values = list(w.raw_values) if w.set_value else [w.options[i].content for i in w.default]
    s.string_array_value.data.extend(values)
    return s


def _choice(w) -> WidgetState | None:
    """Radio and selectbox: the chosen option's string (nothing while none is chosen)."""
    if w.set_value and w.HasField("raw_value"):
        return WidgetState(id=w.id, string_value=w.raw_value)
    if not w.HasField("default"):
        return None
    return WidgetState(id=w.id, string_value=w.options[w.default])


def _text(w) -> WidgetState | None:
    if w.HasField("value") and w.set_value:
        return WidgetState(id=w.id, string_value=w.value)
    return WidgetState(id=w.id, string_value=w.default) if w.HasField("default") else None


def _number(w) -> WidgetState | None:
    if w.set_value and w.HasField("value"):
        v = w.value
    elif w.HasField("default"):
        v = w.default
    else:
        return None
    if w.data_type == w.INT:
        return WidgetState(id=w.id, int_value=int(v))
    return WidgetState(id=w.id, double_value=v)


def _checkbox(w) -> WidgetState:
    return WidgetState(id=w.id, bool_value=w.value if w.set_value else w.default)


def _slider(w) -> WidgetState:
    """A select_slider sends its options' strings, a numeric slider its numbers."""
    s = WidgetState(id=w.id)
    if w.options:
        picked = list(w.raw_value) if w.set_value and w.raw_value else None
        s.string_array_value.data.extend(picked or [w.options[int(i)] for i in w.default])
    else:
        s.double_array_value.data.extend(w.value if w.set_value else w.default)
    return s


def _multiselect(w) -> WidgetState:
    s = WidgetState(id=w.id)
    values = list(w.raw_values) if w.set_value else [w.options[i] for i in w.default]
    s.string_array_value.data.extend(values)
    return s


#: Element type -> the state the frontend registers when the widget first draws. Widgets not
#: listed (button, ...) register nothing until a user touches them.
WIDGET_STATE = {
    "button_group": _button_group,
    "radio": _choice,
    "selectbox": _choice,
    "text_input": _text,
    "number_input": _number,
    "checkbox": _checkbox,
    "multiselect": _multiselect,
    "slider": _slider,
}


# ----------------------------------------------------------------------------- message cache
@dataclass
class _Cached:
    encoded: bytes
    run_count: int
    fragment_id: str


class MessageCache:
    """The frontend's ``ForwardMessageCache``: cacheable messages by hash, aged per finished run."""

    def __init__(self) -> None:
        self.messages: dict[str, _Cached] = {}
        self.run_count = 0
        self.hits = 0
        self.misses = 0

    def resolve(self, msg: ForwardMsg, raw: bytes) -> ForwardMsg | None:
        """The message itself, or the cached one a ``ref_hash`` points to (None on a miss)."""
        if msg.WhichOneof("type") != "ref_hash":
            if msg.metadata.cacheable and msg.hash:
                hit = self.messages.get(msg.hash)
                if hit is None:
                    frag = msg.delta.fragment_id if msg.HasField("delta") else ""
                    self.messages[msg.hash] = _Cached(raw, self.run_count, frag)
                else:
                    hit.run_count = self.run_count
            return msg
        hit = self.messages.get(msg.ref_hash)
        if hit is None:
            self.misses += 1
            return None
        self.hits += 1
        hit.run_count = self.run_count
        full = ForwardMsg.FromString(hit.encoded)
        full.metadata.CopyFrom(msg.metadata)
        return full

    def finish_run(self, max_age: int, fragment_ids: list[str]) -> None:
        """One more finished run: drop what that run's fragments have not used for ``max_age``."""
        self.run_count += 1
        for h, m in list(self.messages.items()):
            if fragment_ids and (not m.fragment_id or m.fragment_id not in fragment_ids):
                continue
            if self.run_count - m.run_count > max_age:
                del self.messages[h]


# ----------------------------------------------------------------------------- the protocol
@dataclass(frozen=True, slots=True)
class TimerChange:
    """What the frontend's timers do after a message: start/replace, stop one, or stop all."""

    kind: str  # "start" | "stop" | "stop_all"
    fragment_id: str = ""
    interval_s: float = 0.0


@dataclass
class _Element:
    widget_id: str | None  # a widget whose state the frontend holds
    element_id: str  # any element's id ("$$ID-<hash>-<key>" for keyed ones), or ""
    run_id: str
    fragment_id: str
    charts: frozenset[str] = frozenset()  # a chart grid's cells drawn as charts (ui/plot.js)


@dataclass
class ThinSession:
    """The browser's side of one Streamlit session, without I/O (bytes in, bytes out).

    ``url`` is the page's address without query (``http://host:port/``), ``query_string`` the
    query the tab opened with. ``seen`` collects ``{"text", "at"}`` (at: wall ms) each time the
    newest-trade time changes, the shape ``bench.dashboard.trade_to_screen`` reads.
    """

    url: str
    query_string: str
    #: the browser's preferred colour scheme (the bench's Chromium tabs are dark)
    color_scheme: str = "dark"
    clock_ms: object = field(default=lambda: time.time() * 1000.0)
    seen: list[dict] = field(default_factory=list)
    cache: MessageCache = field(default_factory=MessageCache)
    widgets: dict[str, WidgetState] = field(default_factory=dict)
    page_script_hash: str = ""
    max_cached_message_age: int = 2
    fragment_runs: int = 0
    full_runs: int = 0
    messages: int = 0
    bytes_in: int = 0
    exceptions: int = 0
    _run_id: str = ""
    _has_new_session: bool = False
    _elements: dict[tuple, _Element] = field(default_factory=dict)
    _blocks: dict[tuple, str] = field(default_factory=dict)

    # ------------------------------------------------------------------ out
    def first_rerun(self) -> bytes:
        """The rerun the frontend asks for once connected: the page's query, no widgets."""
        return self._rerun(fragment_id="", with_widgets=False)

    def fragment_rerun(self, fragment_id: str) -> bytes:
        """What a fragment's ``setInterval`` sends: all widget states, ``is_auto_rerun``."""
        return self._rerun(fragment_id=fragment_id, with_widgets=True)

    def _rerun(self, fragment_id: str, with_widgets: bool) -> bytes:
        msg = BackMsg()
        r = msg.rerun_script
        r.query_string = self.query_string
        r.widget_states.SetInParent()
        if with_widgets:
            r.widget_states.widgets.extend(self.widgets.values())
        r.page_script_hash = self.page_script_hash
        if fragment_id:
            r.fragment_id = fragment_id
            r.is_auto_rerun = True
        r.cached_message_hashes.extend(self.cache.messages)
        ctx = r.context_info
        ctx.timezone, ctx.timezone_offset, ctx.locale = "UTC", 0, "en-US"
        ctx.url, ctx.is_embedded, ctx.color_scheme = self.url, False, self.color_scheme
        self._has_new_session = False
        return msg.SerializeToString()

    # ------------------------------------------------------------------ in
    def receive(self, raw: bytes) -> list[TimerChange]:
        """Handle one ForwardMsg as the frontend would; return what its timers must do."""
        self.messages += 1
        self.bytes_in += len(raw)
        msg = self.cache.resolve(ForwardMsg.FromString(raw), raw)
        if msg is None:
            return []
        kind = msg.WhichOneof("type")
        if kind == "new_session":
            return self._new_session(msg)
        if kind == "delta":
            self._delta(msg)
        elif kind == "auto_rerun":
            a = msg.auto_rerun
            return [TimerChange("start", a.fragment_id, a.interval)] if a.fragment_id else []
        elif kind == "stop_auto_rerun":
            return [TimerChange("stop", f) for f in msg.stop_auto_rerun.fragment_ids]
        elif kind == "page_info_changed":
            self.query_string = msg.page_info_changed.query_string
        elif kind == "script_finished":
            self._finished(msg)
        return []

    def _new_session(self, msg: ForwardMsg) -> list[TimerChange]:
        ns = msg.new_session
        self.page_script_hash = ns.page_script_hash
        self.max_cached_message_age = ns.config.max_cached_message_age
        self._run_id = msg.metadata.run.script_run_id
        self._has_new_session = True
        if msg.metadata.run.fragment_ids:
            self.fragment_runs += 1
            return []
        self.full_runs += 1
        return [TimerChange("stop_all")]  # a full run's new_session: cleanupAutoReruns()

    def _delta(self, msg: ForwardMsg) -> None:
        path = tuple(msg.metadata.delta_path)
        d = msg.delta
        # A new node at ``path`` replaces whatever was under it.
        for p in [p for p in self._elements if p[: len(path)] == path and p != path]:
            del self._elements[p]
        widget_id, element_id, drawn = None, "", frozenset()
        if d.WhichOneof("type") == "add_block":
            self._blocks[path] = d.add_block.id
        elif d.WhichOneof("type") == "new_element":
            self._blocks.pop(path, None)
            el = d.new_element
            et = el.WhichOneof("type")
            element_id = getattr(getattr(el, et), "id", "") if et else ""
            if et in WIDGET_STATE:
                w = getattr(el, et)
                widget_id = w.id
                if w.id not in self.widgets or w.set_value:
                    state = WIDGET_STATE[et](w)
                    if state is not None:
                        self.widgets[w.id] = state
            elif et == "markdown" and self._in_last_update(path):
                self._saw(el.markdown.body)
            elif et == "exception":
                self.exceptions += 1
            elif et == "bidi_component" and el.bidi_component.bytes:
                cells = decode_grid(el.bidi_component.bytes)
                drawn = frozenset(c["key"] for c in cells if c.get("spec"))
        self._elements[path] = _Element(widget_id, element_id, self._run_id, d.fragment_id, drawn)

    def shows(self, key: str) -> bool:
        """Whether the page holds the container, element or grid chart keyed ``key`` now."""
        suffix = f"-{key}"
        return any(b.endswith(suffix) for b in self._blocks.values()) or any(
            e.element_id.endswith(suffix) or key in e.charts for e in self._elements.values()
        )

    def _in_last_update(self, path: tuple) -> bool:
        suffix = f"-{LAST_UPDATE_KEY}"
        return any(self._blocks.get(path[:k], "").endswith(suffix) for k in range(len(path)))

    def _saw(self, body: str) -> None:
        m = _CODE.search(body)
        if m is None:
            return
        text = m.group(1)
        if not self.seen or self.seen[-1]["text"] != text:
            self.seen.append({"text": text, "at": self.clock_ms()})

    def _finished(self, msg: ForwardMsg) -> None:
        if not msg.metadata.HasField("run"):
            return
        run = msg.metadata.run
        fragments = list(run.fragment_ids)
        if msg.script_finished in _SUCCESS:
            # clearStaleNodes + removeInactiveWidgetState
            for p, e in list(self._elements.items()):
                in_scope = not fragments or e.fragment_id in fragments
                if in_scope and e.run_id != run.script_run_id:
                    del self._elements[p]
                    self._blocks.pop(p, None)
            live = {e.widget_id for e in self._elements.values() if e.widget_id}
            self.widgets = {k: v for k, v in self.widgets.items() if k in live}
        if msg.script_finished != ForwardMsg.FINISHED_EARLY_FOR_RERUN and self._has_new_session:
            self.cache.finish_run(self.max_cached_message_age, fragments)


# ----------------------------------------------------------------------------- the I/O
class ThinViewer:
    """One WebSocket and its session; the reader thread feeds it, the timer thread sends."""

    def __init__(self, base_url: str, query_string: str, timeout_s: float) -> None:
        parts = urlsplit(base_url)
        for path in ("/_stcore/health", "/_stcore/host-config"):  # the frontend's init pings
            with urllib.request.urlopen(base_url + path, timeout=timeout_s) as r:
                r.read()
        self.session = ThinSession(
            url=f"{parts.scheme}://{parts.netloc}/", query_string=query_string
        )
        self.lock = threading.Lock()
        #: fragment id -> (interval, token) of its live timer (the token tells stale heap entries)
        self.intervals: dict[str, tuple[float, int]] = {}
        self.closed = False
        self.errors: list[str] = []
        self.ws = websocket.create_connection(
            f"ws://{parts.netloc}/_stcore/stream",
            timeout=timeout_s,
            subprotocols=["streamlit"],
            enable_multithread=True,
        )
        self.ws.settimeout(None)

    def send_first(self) -> None:
        with self.lock:
            data = self.session.first_rerun()
        self.ws.send_binary(data)

    def send_fragment(self, fragment_id: str) -> None:
        with self.lock:
            data = self.session.fragment_rerun(fragment_id)
        try:
            self.ws.send_binary(data)
        except (OSError, websocket.WebSocketException) as exc:
            if not self.closed:
                self.errors.append(f"send: {exc}")

    # The measurement window's view of a viewer (the same as bench.viewers.ChromiumTab's).
    def mark(self) -> None:
        """Start a window: keep only the newest update seen."""
        with self.lock:
            del self.session.seen[:-1]

    def seen(self) -> list[dict]:
        with self.lock:
            return list(self.session.seen)

    def shows(self, key: str) -> bool:
        with self.lock:
            return self.session.shows(key)

    def redraws(self) -> None:
        return None  # nothing is drawn

    def js_heap_mb(self) -> None:
        return None

    def close(self) -> None:
        """Close the tab: its timers stop, the server ends its session."""
        self.closed = True
        self.intervals.clear()
        with contextlib.suppress(OSError, websocket.WebSocketException):
            self.ws.close(timeout=1)


class ThinViewers:
    """N thin viewers of one page: a reader thread each, one fixed-rate timer thread for all.

    Threads are daemons; :meth:`close` (an Event and closing every socket) stops them.
    """

    def __init__(self, base_url: str, query_string: str, *, timeout_s: float = 30.0) -> None:
        self.base_url = base_url.rstrip("/")
        self.query_string = query_string
        self.timeout_s = timeout_s
        self.viewers: list[ThinViewer] = []
        self._stop = threading.Event()
        self._wake = threading.Condition()
        self._heap: list[tuple[float, int, ThinViewer, str]] = []
        self._seq = itertools.count()
        self._timer = threading.Thread(target=self._timers, name="thin-timers", daemon=True)
        self._timer.start()

    def add(self) -> ThinViewer:
        """Open one more viewer: connect, ask for the first run, follow its timers."""
        v = ThinViewer(self.base_url, self.query_string, self.timeout_s)
        self.viewers.append(v)
        threading.Thread(target=self._read, args=(v,), name="thin-reader", daemon=True).start()
        v.send_first()
        return v

    @staticmethod
    def wait_until_shown(viewers: list[ThinViewer], key: str, timeout_s: float) -> None:
        """Return once every viewer's page shows the element keyed ``key`` (``chart_zscore``:
        what ``bench.viewers.open_tab`` waits for in Chromium); TimeoutError otherwise."""
        deadline = time.monotonic() + timeout_s
        waiting = list(viewers)
        while waiting:
            errors = [e for v in waiting for e in v.errors]
            if errors or time.monotonic() > deadline:
                raise TimeoutError(
                    f"{len(waiting)} thin viewer(s) without {key!r} after {timeout_s:g} s"
                    + (f" ({errors[0]})" if errors else "")
                )
            time.sleep(0.05)  # polling the reader threads' progress
            waiting = [v for v in waiting if not v.shows(key)]

    def close(self) -> None:
        """Stop the timer thread and close every viewer (their reader threads end with them)."""
        self._stop.set()
        with self._wake:
            self._wake.notify_all()
        for v in self.viewers:
            v.close()
        self.viewers.clear()
        self._timer.join(timeout=5)

    # ------------------------------------------------------------------ threads
    def _read(self, v: ThinViewer) -> None:
        while not self._stop.is_set() and not v.closed:
            try:
                raw = v.ws.recv()
            except (OSError, websocket.WebSocketException) as exc:
                if not v.closed and not self._stop.is_set():
                    v.errors.append(f"recv: {exc}")
                return
            if not raw:
                continue
            with v.lock:
                changes = v.session.receive(raw)
            if changes:
                self._apply(v, changes)

    def _apply(self, v: ThinViewer, changes: list[TimerChange]) -> None:
        now = time.monotonic()
        with self._wake:
            for c in changes:
                if c.kind == "stop_all":
                    v.intervals.clear()
                elif c.kind == "stop":
                    v.intervals.pop(c.fragment_id, None)
                elif v.intervals.get(c.fragment_id, (None,))[0] != c.interval_s:
                    # (the same interval again is a no-op, as in handleAutoRerun)
                    token = next(self._seq)
                    v.intervals[c.fragment_id] = (c.interval_s, token)
                    heapq.heappush(self._heap, (now + c.interval_s, token, v, c.fragment_id))
            self._wake.notify()

    def _timers(self) -> None:
        """``setInterval`` for every viewer's fragments: fire, then schedule one interval on."""
        while not self._stop.is_set():
            with self._wake:
                now = time.monotonic()
                if not self._heap or self._heap[0][0] > now:
                    timeout = self._heap[0][0] - now if self._heap else None
                    self._wake.wait(timeout)
                    continue
                due, token, v, frag = heapq.heappop(self._heap)
                interval, live = v.intervals.get(frag, (0.0, None))
                if live != token:
                    continue  # stopped or replaced since it was scheduled
                # Fixed rate like setInterval; a late timer does not fire twice to catch up.
                heapq.heappush(self._heap, (max(due + interval, now), token, v, frag))
            v.send_fragment(frag)
