"""The Scan tab in a real browser: ``streamlit run app.py`` on a stored universe of real klines.

Run a scan from the page, wait for the candidate table, open the first candidate in the Live
panel and see the URL and the title change. Auto-waiting ``expect``; no fixed sleeps.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest

from bench.harness import CHROMIUM, launch_chromium
from config import SAMPLE_RECORDING
from replay import FakeBinance, load_recording
from storage import open_writer
from tests.conftest import streamlit_server

ROOT = Path(__file__).resolve().parents[1]
SYMBOLS = ["ALGOUSDT", "AVAXUSDT", "FILUSDT", "NEARUSDT"]

pytestmark = [
    pytest.mark.browser,
    pytest.mark.slow,
    pytest.mark.skipif(not Path(CHROMIUM).exists(), reason=f"no browser at {CHROMIUM}"),
]


@pytest.fixture(scope="module")
def page_url(tmp_path_factory, storage_real_dir) -> Iterator[str]:
    tmp = tmp_path_factory.mktemp("browser_scan")
    db = tmp / "u.db"
    with open_writer(db) as w:
        for s in SYMBOLS:
            path = storage_real_dir / "binance_usdm_klines_1m" / f"{s}-1m-2024-02.csv"
            w.write_klines(s, pd.read_csv(path, nrows=6000))
    # exchangeInfo must list the symbols for the Live panel to accept them.
    server = FakeBinance(
        load_recording([SAMPLE_RECORDING]), speed=0, static_klines={s: [] for s in SYMBOLS}
    ).start()
    env = dict(
        os.environ,
        DB_PATH=str(db),
        FEED_AUTOSTART="0",
        BINANCE_REST_BASE=server.rest_base,
        BINANCE_WS_BASE=server.rest_base.replace("http", "ws"),
        TICKS_KEEP_HOURS="forever",
        BARS_1S_KEEP_DAYS="forever",
        OPENBLAS_NUM_THREADS="1",
        PYTHONUNBUFFERED="1",
    )
    env.pop("DATABASE_URL", None)
    try:
        with streamlit_server(tmp, env, timeout_s=60) as (url, _):
            yield url
    finally:
        server.stop()


def test_scan_in_the_browser_then_open_a_candidate_in_live(page_url):
    from playwright.sync_api import expect, sync_playwright

    with sync_playwright() as p:
        browser = launch_chromium(p)
        try:
            page = browser.new_page(viewport={"width": 1600, "height": 1300})
            page.goto(f"{page_url}/?view=Scan")
            run = page.get_by_role("button", name="Run scan")
            expect(run).to_be_enabled(timeout=60_000)
            for key in ("scan_q", "scan_p"):  # 4 symbols are few: show every pair
                box = page.locator(f".st-key-{key} input")
                box.fill("1.00")
                box.press("Enter")
                expect(box).to_have_value("1.00")
            run.click()
            expect(page.get_by_text(re.compile("Last scan finished"))).to_be_visible(
                timeout=180_000
            )
            if os.environ.get("SCAN_SCREENSHOT"):
                page.screenshot(path=os.environ["SCAN_SCREENSHOT"], full_page=True)
            expect(page.locator(".st-key-scan_pick")).to_be_visible(timeout=30_000)
            pick = page.locator(".st-key-scan_pick").inner_text()
            inputs = page.locator(".st-key-scan_pick input")
            if inputs.count():  # the selected value may live in the combobox's input
                pick += " " + (inputs.first.input_value() or "")
            x, y = re.search(r"([A-Z]+USDT) / ([A-Z]+USDT)", pick).groups()
            page.get_by_role("button", name="Open in Live panel").click()
            expect(page).to_have_url(re.compile(rf"x={x}&y={y}|y={y}.*x={x}"), timeout=30_000)
            expect(page.get_by_role("heading", level=1)).to_contain_text(
                f"{x} / {y}", timeout=30_000
            )
            expect(page.locator('[data-testid="stException"]')).to_have_count(0)
        finally:
            browser.close()
