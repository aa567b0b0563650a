"""Is a thin viewer a faithful stand-in for a tab? One Chromium tab and one thin viewer of the
same ``streamlit run`` server, compared on what they send and receive.

    python -m bench.thincheck          # about 1 minute
"""

from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path

from streamlit.proto.BackMsg_pb2 import BackMsg
from streamlit.proto.ForwardMsg_pb2 import ForwardMsg

from bench.harness import launch_chromium
from bench.thinviewer import ThinViewer, ThinViewers
from bench.viewers import CHROME_ARGS, DEFAULT_VIEW_QUERY, open_tab, start_server


def compare_with_chromium(seconds: float = 20.0, warm_s: float = 10.0) -> dict:
    """One Chromium tab and one thin viewer of the same server: what each sends and receives.

    Over ``seconds`` after ``warm_s`` of steady state: rerun requests per second by fragment,
    ForwardMsgs and bytes received per second, ``ref_hash`` references received, and whether
    the newest live-panel rerun requests carry the same query, page hash, widget states and
    context (the cached-message hashes are compared by count: they depend on timing).
    """
    from playwright.sync_api import sync_playwright

    frames: dict[str, list[tuple[float, str, bytes]]] = {"chromium": [], "thin": []}
    with tempfile.TemporaryDirectory(prefix="bench-thin-compare-") as tmp:
        server = start_server("shared", Path(tmp), 1.0)
        pool = ThinViewers(server.url, DEFAULT_VIEW_QUERY)
        try:
            with sync_playwright() as pw:
                browser = launch_chromium(pw, CHROME_ARGS)
                try:
                    tap = frames["chromium"]

                    def listen(page) -> None:
                        def on_ws(ws) -> None:
                            ws.on("framesent", lambda p: tap.append((time.time(), "out", p)))
                            ws.on("framereceived", lambda p: tap.append((time.time(), "in", p)))

                        page.on("websocket", on_ws)

                    page = open_tab(browser, server.url, on_page=listen)
                    viewer = pool.add()
                    _tap_thin(viewer, frames["thin"])
                    # (waiting in the page lets Playwright deliver its WebSocket events)
                    page.wait_for_timeout(warm_s * 1000)  # both sessions reach steady state
                    t0 = time.time()
                    page.wait_for_timeout(seconds * 1000)  # the window both are measured over
                    t1 = time.time()
                finally:
                    browser.close()
        finally:
            pool.close()
            server.stop()
    return _compare(frames, t0, t1)


def _tap_thin(viewer: ThinViewer, out: list) -> None:
    """Record what ``viewer`` sends and receives, as the browser's WebSocket events would."""
    send, receive = viewer.ws.send_binary, viewer.session.receive

    def sent(data: bytes):
        out.append((time.time(), "out", data))
        return send(data)

    def received(raw: bytes):
        out.append((time.time(), "in", raw))
        return receive(raw)

    viewer.ws.send_binary, viewer.session.receive = sent, received


def _compare(frames: dict, t0: float, t1: float) -> dict:
    result: dict = {"seconds": round(t1 - t0, 1)}
    last: dict = {}
    for kind, log in frames.items():
        inside = [(d, p) for t, d, p in log if t0 <= t < t1]
        reruns = [BackMsg.FromString(p).rerun_script for d, p in inside if d == "out"]
        got = [ForwardMsg.FromString(p) for d, p in inside if d == "in"]
        by_fragment: dict[str, int] = {}
        for r in reruns:
            by_fragment[r.fragment_id[:8]] = by_fragment.get(r.fragment_id[:8], 0) + 1
        result[kind] = {
            "reruns_per_s_by_fragment": {k: v / (t1 - t0) for k, v in by_fragment.items()},
            "messages_in_per_s": len(got) / (t1 - t0),
            "bytes_in_per_s": sum(len(p) for d, p in inside if d == "in") / (t1 - t0),
            "ref_hash_in": sum(m.WhichOneof("type") == "ref_hash" for m in got),
            "cached_hashes_sent_last": len(reruns[-1].cached_message_hashes) if reruns else None,
        }
        last[kind] = reruns[-1] if reruns else None
    a, b = last["chromium"], last["thin"]
    if a is not None and b is not None:
        for r in (a, b):
            r.ClearField("cached_message_hashes")
            r.ClearField("fragment_id")  # the newest of either fragment's timer
            r.widget_states.widgets.sort(key=lambda w: w.id)
        result["same_rerun_request"] = a == b
        if a != b:
            result["chromium_request"], result["thin_request"] = str(a), str(b)
    return result


if __name__ == "__main__":
    print(json.dumps(compare_with_chromium(), indent=2))
