"""The Watchlist tab in a real browser, while the replay feed runs.

``streamlit run app.py`` replays the bundled recording; in headless Chromium the test watches
the Live pair, types a second pair, sees both rows with figures and a sparkline, then clicks
a row and finds that pair in the Live panel. Auto-waiting ``expect``; no fixed sleeps.
"""

from __future__ import annotations

import re

# The browser marks and skip, and the fixtures (one streamlit server, one Chromium).
from tests.test_browser_dashboard import browser, dashboard, pytestmark  # noqa: F401


def test_watchlist_tab_live_in_the_browser(dashboard, browser):  # noqa: F811 - fixtures
    from playwright.sync_api import expect

    page = browser.new_page(viewport={"width": 1600, "height": 1300})
    exceptions = page.locator('[data-testid="stException"]')
    page.goto(f"{dashboard}/?window=10&refresh=1")
    start = page.get_by_role("button", name="Start feed")
    expect(start).to_be_enabled(timeout=30_000)
    start.click()

    page.get_by_role("tab", name="Watchlist").click()
    watch_live = page.get_by_role("button", name=re.compile(r"Watch the Live pair"))
    expect(watch_live).to_be_visible(timeout=30_000)
    watch_live.click()
    expect(page.get_by_text(re.compile(r"Watching BTCUSDT/ETHUSDT 1s w10 ols"))).to_be_visible(
        timeout=20_000
    )
    page.locator(".st-key-watch_pair input").fill("ETHUSDT/BTCUSDT")
    page.locator(".st-key-watch_window input").fill("20")
    page.get_by_role("button", name="Watch", exact=True).click()
    expect(page.get_by_text(re.compile(r"Watching ETHUSDT/BTCUSDT 1s w20 ols"))).to_be_visible(
        timeout=20_000
    )
    table = page.locator(".st-key-watchlist_table")
    expect(table).to_be_visible(timeout=20_000)
    # Two rows, each with a finite z once the windows filled (the grid is a canvas: read the
    # accessible table Streamlit renders beside it).
    cells = table.locator('[role="gridcell"]')
    expect(cells.filter(has_text="ETHUSDT/BTCUSDT")).to_have_count(1, timeout=60_000)
    expect(cells.filter(has_text="BTCUSDT/ETHUSDT")).to_have_count(1, timeout=60_000)
    expect(cells.filter(has_text=re.compile(r"^[+-]\d+\.\d\d$")).first).to_be_visible(
        timeout=60_000
    )
    expect(exceptions).to_have_count(0)

    # One click on a row opens that pair in the Live panel.
    row = cells.filter(has_text="ETHUSDT/BTCUSDT").first
    row.click()
    expect(page.get_by_role("heading", name=re.compile(r"ETHUSDT / BTCUSDT"))).to_be_visible(
        timeout=30_000
    )
    expect(exceptions).to_have_count(0)
    page.close()
