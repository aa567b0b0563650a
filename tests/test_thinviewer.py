"""Thin viewers (bench/thinviewer.py): the browser's side of Streamlit's protocol, no drawing.

Against a real ``streamlit run app.py -- --replay`` server a thin viewer must get what a tab
gets: the live panel's newest-trade time moving at the refresh rate, driven only by the fragment
reruns it sends on the ``auto_rerun`` timers. The message cache is checked on real
``ForwardMsg`` protobufs against the frontend's rules (references resolved, entries aged per
finished run of their own fragment).
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from streamlit.proto.ForwardMsg_pb2 import ForwardMsg

from bench.thinviewer import MessageCache, ThinViewers
from bench.viewers import DEFAULT_VIEW_QUERY
from tests.conftest import streamlit_server, wait_for

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "samples" / "btcusdt_ethusdt_20240808_trades.txt.gz"
TRADE_TIME = re.compile(r"^\d\d:\d\d:\d\d\.\d{3}$")


def test_a_thin_viewer_of_the_real_server_sees_the_newest_trade_move(tmp_path):
    env = dict(os.environ, DB_PATH=str(tmp_path / "thin.db"), PYTHONUNBUFFERED="1")
    env.pop("DATABASE_URL", None)
    app_args = ["--replay", str(SAMPLE), "--speed", "1"]
    with streamlit_server(tmp_path, env, app_args=app_args, timeout_s=60) as (url, _):
        pool = ThinViewers(url, DEFAULT_VIEW_QUERY)
        try:
            viewer = pool.add()

            # Only the fragment reruns this client sends refresh the panel: without them the
            # first run's time would be the only one.
            def trade_times() -> list[str]:
                return [s["text"] for s in viewer.seen() if TRADE_TIME.match(s["text"])]

            times = wait_for(
                lambda: len(t := trade_times()) >= 4 and t,
                timeout_s=45,
                what="four successive newest-trade times on the live panel",
            )
            session = viewer.session
            assert len(set(times)) == len(times) and times == sorted(times), times
            assert session.fragment_runs >= 3
            # The sidebar's widgets as the frontend registers them, sent with every rerun.
            keys = {k.rsplit("-", 1)[-1]: w for k, w in session.widgets.items()}
            assert keys["window"].int_value == 60 and keys["x"].string_value == "BTCUSDT"
            assert list(keys["tf"].string_array_value.data) == ["1s"]
            assert list(keys["refresh"].string_array_value.data) == ["0.5"]
            assert (viewer.errors, session.cache.misses, session.exceptions) == ([], 0, 0)
        finally:
            pool.close()


def _chart(fragment_id: str, body: str) -> tuple[ForwardMsg, bytes]:
    msg = ForwardMsg(hash=f"h-{body}")
    msg.metadata.cacheable = True
    msg.delta.fragment_id = fragment_id
    msg.delta.new_element.markdown.body = body
    return msg, msg.SerializeToString()


def _ref(hash_: str) -> tuple[ForwardMsg, bytes]:
    msg = ForwardMsg(ref_hash=hash_)
    msg.metadata.delta_path.extend([0, 4])
    return msg, msg.SerializeToString()


def test_the_message_cache_resolves_references_and_ages_entries_as_the_frontend_does():
    cache = MessageCache()
    cache.resolve(*_chart("live", "zscore"))
    cache.resolve(*_chart("", "sidebar"))
    for _ in range(6):  # used by every run of its fragment: kept
        resolved = cache.resolve(*_ref("h-zscore"))
        cache.finish_run(2, ["live"])
    assert resolved.delta.new_element.markdown.body == "zscore"
    assert list(resolved.metadata.delta_path) == [0, 4]  # the reference's place on the page
    for _ in range(5):  # another fragment's runs count but evict only that fragment's entries
        cache.finish_run(2, ["status"])
    assert set(cache.messages) == {"h-zscore", "h-sidebar"}
    cache.finish_run(2, ["live"])  # unused for more than 2 finished runs: dropped
    assert set(cache.messages) == {"h-sidebar"}  # fragment runs never evict the main script's
    assert cache.resolve(*_ref("h-zscore")) is None and cache.misses == 1
    cache.finish_run(2, [])  # a full run may evict anything
    assert cache.messages == {}


def test_the_soak_measures_growth_from_when_the_view_is_full_not_while_the_charts_fill():
    from bench.viewers import soak_growth

    # 60 samples 30 s apart: the view fills for 8.5 minutes (bars 150 → 630, then 660), the
    # heap grows with it (40 → 48 MB), then stays at 50 MB; RSS grows by 10 % after the fill.
    samples = []
    for i in range(60):
        filling = i < 17
        samples.append(
            {
                "t_s": 30 * i,
                "bars": 150 + 30 * i if filling else 660,
                "js_heap_mb": [40.0 + 0.5 * i if filling else 50.0],
                "rss_mb": 300.0 if i < 24 else 330.0,
                "cores_so_far": 0.2,
            }
        )
    got = soak_growth(samples)
    assert got["warm_until_s"] == 30 * 17  # not 20 % of the samples (index 12): still filling
    assert got["js_heap_growth_pct"] == [0.0]
    assert got["rss_growth_pct"] == 10.0
    assert soak_growth(samples[:24])["note"].startswith("too few samples after warm-up")


def test_the_soak_tells_a_bounded_cache_saw_from_a_leak_by_the_floor_and_the_peak():
    from bench.viewers import soak_growth

    # The view is full from the start; after warm-up (12 samples) the heap saws between 44 and
    # 48 MB with a period of 24 samples (a cache filling, then emptied), so the quarters'
    # medians fall on different phases of the saw. A leak is the same saw on a rising floor.
    def run(leak_mb_per_sample: float) -> dict:
        samples = [
            {
                "t_s": 30 * i,
                "bars": 660,
                "js_heap_mb": [44.0 + 4.0 * (i % 24) / 23 + leak_mb_per_sample * i],
                "rss_mb": 300.0,
                "cores_so_far": 0.2,
            }
            for i in range(60)
        ]
        return soak_growth(samples)

    flat = run(0.0)
    assert flat["js_heap_floor_growth_pct"] == [0.0]
    assert flat["js_heap_peak_growth_pct"] == [0.0]
    assert abs(flat["js_heap_growth_pct"][0]) > 1.0  # the median alone is at the saw's mercy
    assert flat["js_heap_mb_range_after_warmup"] == [[44.0, 48.0]]
    assert flat["rss_floor_growth_pct"] == flat["rss_peak_growth_pct"] == 0.0
    leak = run(0.15)  # 3.6 MB over the 24 samples between the halves' floors: about +7.5 %
    assert leak["js_heap_floor_growth_pct"][0] > 5.0
    assert leak["js_heap_peak_growth_pct"][0] > 5.0
