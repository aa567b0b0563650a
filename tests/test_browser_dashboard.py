"""The real page in a real browser: ``streamlit run app.py`` in replay mode, headless Chromium.

Debian's ``chromium`` driven by Playwright: start the feed, watch the z-score chart appear and
the "last update" time advance, zoom a chart and see the zoom survive refreshes, add an alert
rule and see its toast, download a CSV and check its header — and never a Streamlit exception.
Auto-waiting ``expect`` assertions and polling with deadlines; no fixed sleeps.

Set ``DASHBOARD_SCREENSHOT=path.png`` to save a screenshot of the running dashboard.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from bench.harness import CHROMIUM, chart_selector, launch_chromium
from tests.conftest import streamlit_server, wait_for

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "samples" / "btcusdt_ethusdt_20240808_trades.txt.gz"

pytestmark = [
    pytest.mark.browser,
    pytest.mark.slow,
    pytest.mark.skipif(
        not Path(CHROMIUM).exists(),
        reason=f"no browser: {CHROMIUM} is not installed (Debian package "
        "'chromium'; `bash .ci/setup --test` installs it)",
    ),
]


@pytest.fixture(scope="module")
def dashboard(tmp_path_factory) -> Iterator[str]:
    """``streamlit run app.py -- --replay SAMPLE --speed 5 --no-autostart`` on a free port."""
    tmp = tmp_path_factory.mktemp("browser")
    env = dict(os.environ, DB_PATH=str(tmp / "live.db"), PYTHONUNBUFFERED="1")
    env.pop("DATABASE_URL", None)
    app_args = ["--replay", str(SAMPLE), "--speed", "5", "--no-autostart"]
    with streamlit_server(tmp, env, app_args=app_args) as (url, _):
        yield url


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = launch_chromium(p)
        try:
            yield b
        finally:
            b.close()


def chart_axis(chart) -> dict:
    """The x-axis range of a drawn chart, whether it autoranges, and how often it was drawn."""
    return chart.evaluate(
        "g => ({range: g._fullLayout.xaxis.range.slice(), auto: !!g.layout.xaxis.autorange,"
        " n: Number(g.dataset.rendered)})"
    )


def zoom_survives_refreshes(page, chart) -> dict:
    """Zoom ``chart`` by dragging; assert the zoom survives two redraws; return the axis."""
    box = chart.locator(".nsewdrag").first.bounding_box()
    y = box["y"] + box["height"] / 2
    page.mouse.move(box["x"] + box["width"] * 0.25, y)
    page.mouse.down()
    page.mouse.move(box["x"] + box["width"] * 0.45, y, steps=8)
    page.mouse.move(box["x"] + box["width"] * 0.65, y, steps=8)
    page.mouse.up()
    zoomed = wait_for(
        lambda: (a := chart_axis(chart)) and not a["auto"] and a, 10, "the chart to zoom"
    )
    wait_for(
        lambda: chart_axis(chart)["n"] >= zoomed["n"] + 2, 20, "two refreshes of the zoomed chart"
    )
    after = chart_axis(chart)
    assert not after["auto"] and after["range"] == zoomed["range"], (zoomed, after)
    return after


def add_rule(page, threshold: str) -> None:
    """On the Alerts tab: |z-score| >= ``threshold``, cooldown 0; wait for "Rule N added"."""
    from playwright.sync_api import expect

    page.get_by_role("tab", name="Alerts").click()
    expect(page.get_by_role("button", name="Add rule")).to_be_visible(timeout=20_000)
    page.locator(".st-key-rule_metric").click()
    page.get_by_role("option", name="|z-score|").click()
    page.locator(".st-key-rule_op").click()
    page.get_by_role("option", name=">=", exact=True).click()
    page.locator(".st-key-rule_threshold input").fill(threshold)
    page.locator(".st-key-rule_cooldown input").fill("0")
    page.get_by_role("button", name="Add rule").click()
    expect(page.get_by_text(re.compile(r"Rule \d+ added"))).to_be_visible(timeout=20_000)


def test_live_replay_dashboard_end_to_end(dashboard, browser, tmp_path):
    from playwright.sync_api import expect

    page = browser.new_page(
        viewport={"width": 1600, "height": 1300}, color_scheme="dark", accept_downloads=True
    )
    exceptions = page.locator('[data-testid="stException"]')

    def no_exception() -> None:
        expect(exceptions).to_have_count(0)

    # A short window so the analytics warm up within seconds of replayed data.
    page.goto(f"{dashboard}/?window=10&refresh=1")
    start = page.get_by_role("button", name="Start feed")
    expect(start).to_be_enabled(timeout=30_000)
    no_exception()
    start.click()

    # Warm-up first, then the z-score chart drawn by Plotly.
    zchart = page.locator(chart_selector("chart_zscore")).first
    expect(zchart).to_have_attribute("data-rendered", re.compile(r"\d+"), timeout=60_000)
    expect(zchart.locator(".main-svg").first).to_be_visible()
    no_exception()

    # The "last update" time (newest trade) advances at least three times.
    stamp = page.locator(".st-key-last_update code").first
    seen = [stamp.inner_text()]

    def advanced() -> bool:
        now = stamp.inner_text()
        if now != seen[-1]:
            seen.append(now)
        return len(seen) >= 4

    wait_for(advanced, 30, "three advances of the last-update time")
    no_exception()

    # Zoom the z-score chart by dragging; the zoom must survive later refreshes.
    zoom_survives_refreshes(page, zchart)
    no_exception()

    # An alert rule fires in the background and shows as a toast on the live page.
    add_rule(page, "0.3")
    page.get_by_role("tab", name="Live").click()
    toast = page.locator('[data-testid="stToast"]').first
    expect(toast).to_contain_text("0.3 (BTCUSDT/ETHUSDT 1s) — value", timeout=45_000)
    no_exception()

    # A CSV download, generated when clicked.
    page.get_by_role("tab", name="Exports").click()
    button = page.get_by_role("button", name="Analytics table")
    expect(button).to_be_visible(timeout=20_000)
    with page.expect_download(timeout=30_000) as info:
        button.click()
    path = tmp_path / info.value.suggested_filename
    info.value.save_as(path)
    assert info.value.suggested_filename == "analytics_BTCUSDT_ETHUSDT_1s.csv"
    header = path.read_text().splitlines()[0]
    assert header == "time,x,y,alpha,beta,spread,zscore,corr,r2"
    assert len(path.read_text().splitlines()) > 10
    no_exception()

    shot = os.environ.get("DASHBOARD_SCREENSHOT")
    if shot:
        page.get_by_role("tab", name="Live").click()
        expect(zchart).to_have_attribute("data-rendered", re.compile(r"\d+"))
        page.screenshot(path=shot, full_page=True)
    page.close()


def test_three_tabs_of_one_view_all_refresh_keep_their_zoom_and_get_the_toast(dashboard, browser):
    """Three screens on one server: each refreshes, a zoom in one survives its refreshes while
    the others keep autoranging, and one alert rule toasts in all three."""
    from playwright.sync_api import expect

    pages = [
        browser.new_page(viewport={"width": 1400, "height": 1100}, color_scheme="dark")
        for _ in range(3)
    ]
    for page in pages:
        page.goto(f"{dashboard}/?window=10&refresh=1")
    # Run alone, this test finds the feed stopped (the server starts with --no-autostart).
    # Once the page is connected, exactly one of the two buttons is enabled.
    start = pages[0].get_by_role("button", name="Start feed")
    stop = pages[0].get_by_role("button", name="Stop feed")
    wait_for(lambda: start.is_enabled() or stop.is_enabled(), 60, "the feed buttons")
    if start.is_enabled():
        start.click()
    charts = [p.locator(chart_selector("chart_zscore")).first for p in pages]
    for chart in charts:
        expect(chart).to_have_attribute("data-rendered", re.compile(r"\d+"), timeout=150_000)

    # Every tab refreshes: its newest-trade time advances three times.
    stamps = [p.locator(".st-key-last_update code").first for p in pages]
    seen: list[list[str]] = [[s.inner_text()] for s in stamps]

    def all_advanced() -> bool:
        for stamp, got in zip(stamps, seen, strict=True):
            now = stamp.inner_text()
            if now != got[-1]:
                got.append(now)
        return all(len(got) >= 4 for got in seen)

    wait_for(all_advanced, 30, "three advances of the last-update time in every tab")

    # A zoom in the first tab survives its refreshes; the other tabs still autorange.
    zoom_survives_refreshes(pages[0], charts[0])
    assert all(chart_axis(c)["auto"] for c in charts[1:])

    # One rule, added in the first tab, fires once and toasts in all three.
    add_rule(pages[0], "0.25")
    pages[0].get_by_role("tab", name="Live").click()
    for page in pages:
        toast = page.locator('[data-testid="stToast"]').filter(
            has_text="0.25 (BTCUSDT/ETHUSDT 1s) — value"
        )
        expect(toast.first).to_be_visible(timeout=45_000)
        expect(page.locator('[data-testid="stException"]')).to_have_count(0)
    for page in pages:
        page.close()


def test_a_tab_open_for_long_does_not_keep_every_run_streamlit_measured(dashboard, browser):
    """Streamlit's frontend adds performance marks and a ``script-run-cycle`` measure per run
    and never clears them; ``ui.guard.tidy_browser`` clears them every 15 s, so their count
    falls instead of growing for as long as the tab is open (docs/viewers.md)."""
    page = browser.new_page(viewport={"width": 1400, "height": 1100})
    page.goto(f"{dashboard}/?window=10&refresh=0.5")
    measures_js = "() => performance.getEntriesByName('script-run-cycle', 'measure').length"
    counts: list[int] = []

    def cleared() -> bool:
        counts.append(page.evaluate(measures_js))
        peak = max(counts)
        return peak >= 5 and counts[-1] < peak

    wait_for(cleared, 60, "the tab's script-run-cycle measures to be cleared")
    assert page.evaluate("() => performance.getEntriesByName('running', 'mark').length") <= 60
    page.close()
