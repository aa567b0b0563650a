"""Funding in a real browser, while the replay feed runs: the Live panel's funding line for
both legs, and the Backtest tab's "Charge funding", whose history is fetched in the background
and whose waiting fragment reruns the page once it is in. Auto-waiting ``expect``; no sleeps.
"""

from __future__ import annotations

import re

# The browser marks and skip, and the fixtures (one streamlit server, one Chromium).
from tests.test_browser_dashboard import browser, dashboard, pytestmark  # noqa: F401


def test_funding_on_the_live_panel_and_in_the_backtest(dashboard, browser):  # noqa: F811
    from playwright.sync_api import expect

    page = browser.new_page(viewport={"width": 1600, "height": 1300})
    exceptions = page.locator('[data-testid="stException"]')
    page.goto(f"{dashboard}/?window=10&refresh=1")
    start = page.get_by_role("button", name="Start feed")
    expect(start).to_be_enabled(timeout=30_000)
    start.click()
    line = page.locator(".st-key-funding_line")
    # The replay server's default: 0.0001 per settlement, next at 00/08/16 UTC.
    expect(line).to_contain_text(
        re.compile(r"BTCUSDT \+0\.0100 %, next \d\d:00:00 UTC"), timeout=90_000
    )
    expect(line).to_contain_text(re.compile(r"ETHUSDT \+0\.0100 %, next \d\d:00:00 UTC"))

    page.get_by_role("tab", name="Backtest").click()
    page.get_by_text("Charge funding").click()
    expect(page.get_by_text("Funding settlements charged in the span")).to_be_visible(
        timeout=60_000
    )
    metric = page.locator('[data-testid="stMetric"]').filter(has_text="Funding P&L")
    expect(metric).not_to_contain_text("off")
    expect(exceptions).to_have_count(0)
    page.close()
